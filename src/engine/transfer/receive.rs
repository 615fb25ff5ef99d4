//! The receiving side's socket task: reads data frames, checks each file's
//! size against its manifest entry, hashes the data when that is cheaper
//! here, and hands it to the file thread (`write.rs`) in batches.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::connection::{ConnectionError, FrameReader};
use crate::protocol::ErrorCode;

use super::super::error::FileError;
use super::super::wire::{DataFrame, Entry, EntryKind};
use super::plan::ReceivePlan;
use super::write::Op;
use super::{Progress, ReceiveSummary, TransferError, MAX_BATCH_ITEMS};

/// Data handed to the file thread at once. Each hand-off wakes that
/// thread, so a batch of several chunks costs less CPU and time than a
/// hand-off per chunk (bench/RESULTS.md).
const RECEIVE_BATCH_BYTES: usize = 1024 * 1024;
/// Batches queued for the file thread: with the one being filled, a
/// receiving transfer holds at most 3 MiB of data in memory.
const RECEIVE_QUEUE_BATCHES: usize = 2;

impl ReceivePlan {
    /// Receives the data frames of the wanted files, writing each through a
    /// partial file, until the end frame. Returns what was done.
    ///
    /// The data is hashed where it costs the least wall time: on a plain
    /// socket, by the task that reads it, so the file thread only writes;
    /// through TLS, where that task also decrypts, by the file thread, which
    /// would otherwise sit idle while the task decrypts and hashes
    /// (bench/RESULTS.md).
    pub async fn receive<R: AsyncRead + Unpin>(
        self,
        reader: &mut FrameReader<R>,
        progress: &dyn Progress,
    ) -> Result<ReceiveSummary, TransferError> {
        let (tx, rx) = mpsc::channel::<Vec<Op>>(RECEIVE_QUEUE_BATCHES);
        let hash_while_reading = !reader.decrypts();
        let expected = Expected {
            entries: self.entries.clone(),
            prefixes: hash_while_reading.then(|| {
                self.partials
                    .iter()
                    .map(|(&i, partial)| (i, partial.hasher()))
                    .collect()
            }),
        };
        let writer = tokio::task::spawn_blocking(move || self.write_all(rx, hash_while_reading));
        let result = forward_frames(reader, &tx, expected, progress).await;
        drop(tx);
        let summary = writer.await.map_err(|err| {
            FileError::new(ErrorCode::Internal, format!("file writer failed: {err}"))
        })?;
        result.map(|()| summary)
    }
}

/// What the socket side of a receive checks frames against.
struct Expected {
    /// The manifest, shared with the file thread.
    entries: Arc<Vec<Entry>>,
    /// When the reader hashes: the hash state of each resumed partial's
    /// kept prefix.
    prefixes: Option<HashMap<u64, blake3::Hasher>>,
}

/// Reads data frames off the connection and hands them to the file thread,
/// checking that each file's size is the one its manifest entry gave. When
/// the connection breaks, what arrived before still goes to the file
/// thread, which keeps it in the partial file for a resume: a connection
/// that breaks every MiB or so still gets the file across.
async fn forward_frames<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    tx: &mpsc::Sender<Vec<Op>>,
    expected: Expected,
    progress: &dyn Progress,
) -> Result<(), TransferError> {
    let mut batch: Vec<Op> = Vec::new();
    let forwarded = forward_batches(reader, tx, expected, progress, &mut batch).await;
    if forwarded.is_err() && !batch.is_empty() {
        // Best effort: a file thread that stopped or stalls loses it.
        let _ = tokio::time::timeout(reader.timeout(), tx.send(batch)).await;
    }
    forwarded
}

/// [`forward_frames`] but for what is left in `batch` when it fails.
async fn forward_batches<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    tx: &mpsc::Sender<Vec<Op>>,
    expected: Expected,
    progress: &dyn Progress,
    batch: &mut Vec<Op>,
) -> Result<(), TransferError> {
    let Expected {
        entries,
        mut prefixes,
    } = expected;
    // The file whose data is arriving, hashed as it comes (if the reader
    // hashes).
    let mut hashing: Option<blake3::Hasher> = None;
    // Ops cross to the file thread in batches of about a chunk, so small
    // files do not cost a wakeup each.
    let mut batch_bytes = 0usize;
    // The file thread must take each batch within the request deadline
    // (a disk that stalls stops the transfer, not the connection forever).
    let deadline = reader.timeout();
    let hand_over = |batch: Vec<Op>| async move {
        let stopped = || TransferError::Protocol("the file writer stopped".into());
        // Most batches find room at once: no timer for those.
        let batch = match tx.try_send(batch) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(stopped()),
            Err(mpsc::error::TrySendError::Full(batch)) => batch,
        };
        match tokio::time::timeout(deadline, tx.send(batch)).await {
            Err(_) => Err(TransferError::Connection(ConnectionError::Timeout(
                deadline,
            ))),
            Ok(Err(_)) => Err(stopped()),
            Ok(Ok(())) => Ok(()),
        }
    };
    loop {
        if batch_bytes >= RECEIVE_BATCH_BYTES || batch.len() >= MAX_BATCH_ITEMS {
            hand_over(std::mem::take(batch)).await?;
            batch_bytes = 0;
        }
        let header = reader.expect_header().await?;
        let head = match DataFrame::from_header(&header).map_err(TransferError::Protocol)? {
            DataFrame::Done => {
                if !batch.is_empty() {
                    hand_over(std::mem::take(batch)).await?;
                }
                return Ok(());
            }
            DataFrame::End(end) => {
                let received = hashing.take().map(|hasher| hasher.finalize());
                batch.push(Op::End(end, received));
                continue;
            }
            DataFrame::Head(head) => head,
        };
        let i = head.file as usize;
        let entry = entries.get(i).filter(|e| e.kind == EntryKind::File);
        let expected = entry.and_then(|e| e.file_size.checked_sub(head.offset));
        if expected != Some(header.size()) {
            return Err(TransferError::Protocol(format!(
                "file {i}: {} bytes sent where the manifest says otherwise",
                header.size()
            )));
        }
        let name = entry
            .and_then(|e| e.path.to_bytes().ok())
            .unwrap_or_default();
        progress.file_started(&name, header.size());
        batch.push(Op::Start {
            i: head.file,
            offset: head.offset,
        });
        // From an offset, the data continues the resumed prefix; an
        // offset that was not offered fails in the writer either way.
        let mut hasher = prefixes.as_mut().map(|prefixes| match head.offset {
            0 => blake3::Hasher::new(),
            _ => prefixes.remove(&head.file).unwrap_or_default(),
        });
        while let Some(chunk) = reader.read_body_chunk().await? {
            if let Some(hasher) = &mut hasher {
                hasher.update(&chunk);
            }
            progress.advanced(chunk.len() as u64);
            batch_bytes += chunk.len();
            batch.push(Op::Data(chunk));
            if batch_bytes >= RECEIVE_BATCH_BYTES {
                hand_over(std::mem::take(batch)).await?;
                batch_bytes = 0;
            }
        }
        hashing = hasher;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, entries_of, OPTIONS};
    use super::super::NoProgress;
    use super::*;
    use crate::connection::{Connection, ConnectionConfig};
    use crate::engine::root::{RelPath, Root};
    use crate::engine::wire::{FileEnd, FileHead, WirePath};
    use crate::protocol::Header;
    use bytes::Bytes;

    /// Receives `frames` (headers and bodies) for a manifest of one 5-byte
    /// file, `f.bin`, reading as a plain socket or, `decrypting`, as TLS
    /// (where the file thread hashes).
    async fn receive(
        to: &std::path::Path,
        frames: Vec<(Header, &'static [u8])>,
        decrypting: bool,
    ) -> Result<ReceiveSummary, TransferError> {
        let dst = Arc::new(Root::new(to).unwrap());
        let entry = Entry {
            kind: EntryKind::File,
            path: WirePath::from_bytes(b"f.bin"),
            file_size: 5,
            mode: 0o644,
            mtime: 0,
            mtime_ns: 0,
            sync: None,
        };
        let (plan, _) = ReceivePlan::new(dst, &RelPath::root(), vec![entry], OPTIONS).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut sender = Connection::new(a, config());
        let mut receiver = Connection::new(
            b,
            ConnectionConfig {
                decrypts: decrypting,
                ..config()
            },
        );
        let send = tokio::spawn(async move {
            let writer = sender.writer();
            for (header, body) in frames {
                writer.send_header(&header).await.unwrap();
                if !body.is_empty() {
                    writer.send_body(Bytes::from_static(body)).await.unwrap();
                }
            }
            writer.flush().await.unwrap();
            sender
        });
        let received = plan.receive(receiver.reader(), &NoProgress).await;
        drop(send.await.unwrap());
        received
    }

    fn head(size: u64) -> Header {
        DataFrame::Head(FileHead { file: 0, offset: 0 }).to_header(size)
    }

    fn end(data: &[u8]) -> Header {
        let end = FileEnd {
            file_end: 0,
            blake3: Some(blake3::hash(data).to_hex().to_string()),
            md5: None,
            error: None,
            code: None,
        };
        DataFrame::End(end).to_header(0)
    }

    #[tokio::test]
    async fn a_file_arrives_whole_hashed_on_either_thread() {
        for decrypting in [false, true] {
            let to = tempfile::tempdir().unwrap();
            let frames = vec![
                (head(5), &b"hello"[..]),
                (end(b"hello"), b""),
                (DataFrame::Done.to_header(0), b""),
            ];
            let summary = receive(to.path(), frames, decrypting).await.unwrap();
            assert_eq!(summary.errors, vec![], "decrypting: {decrypting}");
            assert_eq!((summary.files, summary.bytes), (1, 5));
            assert_eq!(std::fs::read(to.path().join("f.bin")).unwrap(), b"hello");
        }
    }

    #[tokio::test]
    async fn data_that_does_not_hash_to_the_end_frame_is_refused_on_either_thread() {
        for decrypting in [false, true] {
            let to = tempfile::tempdir().unwrap();
            let frames = vec![
                (head(5), &b"evil!"[..]),
                (end(b"good!"), b""),
                (DataFrame::Done.to_header(0), b""),
            ];
            let summary = receive(to.path(), frames, decrypting).await.unwrap();
            assert_eq!(summary.files, 0, "decrypting: {decrypting}");
            assert_eq!(summary.errors.len(), 1, "decrypting: {decrypting}");
            assert!(
                summary.errors[0].error.message.contains("checksum"),
                "{:?}",
                summary.errors
            );
            assert!(summary.errors[0].by_sender, "data that does not hash");
            assert_eq!(entries_of(to.path()), Vec::<String>::new());
        }
    }

    #[tokio::test]
    async fn a_head_whose_size_is_not_the_manifests_stops_the_receive() {
        let to = tempfile::tempdir().unwrap();
        let frames = vec![(head(4), &b"hell"[..])];
        let err = receive(to.path(), frames, false).await.unwrap_err();
        assert!(
            matches!(&err, TransferError::Protocol(m) if m.contains("the manifest says otherwise")),
            "{err}"
        );
        assert_eq!(entries_of(to.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_frame_that_is_no_data_frame_stops_the_receive() {
        let to = tempfile::tempdir().unwrap();
        let mut reply = Header::default();
        reply.insert("ok", true);
        let err = receive(to.path(), vec![(reply, b"")], false)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TransferError::Protocol(m) if m.starts_with("expected a file head")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn at_the_end_frame_a_file_never_sent_is_failed_as_not_sent() {
        let to = tempfile::tempdir().unwrap();
        let frames = vec![(DataFrame::Done.to_header(0), &b""[..])];
        let summary = receive(to.path(), frames, false).await.unwrap();
        let codes: Vec<&str> = summary
            .errors
            .iter()
            .map(|e| e.error.code.as_str())
            .collect();
        assert_eq!(codes, ["not_sent"]);
    }
}
