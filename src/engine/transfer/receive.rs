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
/// thread: at 128 KiB a plaintext put of 1 GiB cost the server 0.76-0.90 s
/// of CPU, at 1 MiB 0.70-0.80 s, and its median time fell from 0.85 to
/// 0.78 s (five runs each, interleaved, tmpfs to tmpfs).
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
    /// through TLS, where that task also decrypts, by the file thread. The
    /// other way round made a 1 GiB TLS get 6-8% slower in three of four
    /// interleaved A/B runs (no change in the fourth), and a plaintext get
    /// 0-5% slower in three (medians of six to ten runs each).
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
/// checking that each file's size is the one its manifest entry gave.
async fn forward_frames<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    tx: &mpsc::Sender<Vec<Op>>,
    expected: Expected,
    progress: &dyn Progress,
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
    let mut batch: Vec<Op> = Vec::new();
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
            hand_over(std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
        }
        let header = reader.expect_header().await?;
        let head = match DataFrame::from_header(&header).map_err(TransferError::Protocol)? {
            DataFrame::Done => {
                if !batch.is_empty() {
                    hand_over(batch).await?;
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
                hand_over(std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
        }
        hashing = hasher;
    }
}
