//! The receiving side of the big files of a striped transfer: each one is
//! a [`RangedPartial`] that ranges arriving on any of the extra streams are
//! written into at their offsets, each range checked against its BLAKE3 as
//! it lands and recorded, and the whole file checked and published at the
//! end, once every stream is done.
//!
//! A range that is refused (outside the grid, a second copy of a verified
//! range with other bytes, a hash that does not match) stops its stream
//! and fails the file; nothing is published, and the ranges verified so far
//! stay recorded beside the partial for the next attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::AsyncRead;

use crate::connection::FrameReader;
use crate::protocol::ErrorCode;

use super::super::atomic::{FileMeta, WriteError};
use super::super::error::{code_of, show, FileError};
use super::super::ranged::RangedPartial;
use super::super::ranges::{Begin, RangeBook, RangeError};
use super::super::wire::{parse_hash, EntryError, FileEnd, RangeFrame};
use super::{FailedFile, Progress, ReceiveSummary, TransferError};

/// Bytes of a range gathered before they are written in one go.
const WRITE_BATCH_BYTES: usize = 1024 * 1024;

/// One striped file on the receiving side.
#[derive(Debug)]
pub(super) struct StripedFile {
    pub shown: Vec<u8>,
    mtime: (i64, u32),
    meta: FileMeta,
    partial: RangedPartial,
    /// Bytes kept from an earlier attempt.
    kept_bytes: u64,
    state: Mutex<StripeState>,
    whole: Mutex<WholeHash>,
}

#[derive(Debug)]
struct StripeState {
    book: RangeBook,
    /// The sender's end frame, from the first stream.
    end: Option<FileEnd>,
    /// Why a range was refused: the file fails, its verified ranges kept.
    refused: Option<String>,
    /// Bytes written by ranges that arrived whole.
    received: u64,
}

/// The whole file's BLAKE3 so far, of its bytes up to `hashed_to`: fed in
/// order as the ranges ahead of it are verified, so the file is not read
/// again whole after its last range. Apart from [`StripeState`], so the
/// reading and hashing never hold up a stream that is landing a range.
#[derive(Debug, Default)]
struct WholeHash {
    hasher: blake3::Hasher,
    hashed_to: u64,
}

impl StripedFile {
    pub fn new(
        shown: Vec<u8>,
        (mtime, meta): ((i64, u32), FileMeta),
        partial: RangedPartial,
        book: RangeBook,
    ) -> StripedFile {
        let kept_bytes = book.verified().map(|(_, len, _)| len).sum();
        StripedFile {
            shown,
            mtime,
            meta,
            partial,
            kept_bytes,
            state: Mutex::new(StripeState {
                book,
                end: None,
                refused: None,
                received: 0,
            }),
            whole: Mutex::new(WholeHash::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, StripeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Feeds the whole-file hash every verified range from where it stands
    /// on. Blocking.
    fn catch_up(&self) -> std::io::Result<()> {
        let mut whole = self.whole.lock().unwrap_or_else(|e| e.into_inner());
        let size = self.state().book.size();
        loop {
            let at = whole.hashed_to;
            if at >= size || !self.state().book.is_verified(at) {
                return Ok(());
            }
            let WholeHash { hasher, hashed_to } = &mut *whole;
            *hashed_to += self.partial.hash_into(hasher, size, at)?;
        }
    }

    /// Keeps the sender's end frame for the file, which comes on the first
    /// stream while its ranges may still be arriving.
    pub fn set_end(&self, end: FileEnd) {
        self.state().end = Some(end);
    }

    fn refuse(&self, err: &RangeError) -> TransferError {
        let message = format!("{}: {err}", show(&self.shown));
        self.state().refused.get_or_insert(message.clone());
        TransferError::Protocol(message)
    }
}

/// The striped files of one transfer, by manifest index; each stream
/// receives into them.
#[derive(Debug, Default)]
pub struct StripeReceiver {
    pub(super) files: HashMap<u64, Arc<StripedFile>>,
}

impl StripeReceiver {
    /// Whether no file is striped.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Receives ranges from one stream until its end frame.
    pub async fn receive<R: AsyncRead + Unpin>(
        &self,
        reader: &mut FrameReader<R>,
        progress: &dyn Progress,
    ) -> Result<(), TransferError> {
        loop {
            let header = reader.expect_header().await?;
            let head = match RangeFrame::from_header(&header).map_err(TransferError::Protocol)? {
                RangeFrame::Done => return Ok(()),
                RangeFrame::End(end) => {
                    return Err(TransferError::Protocol(format!(
                        "the end of range {} of file {} came with no range before it",
                        end.offset, end.range_end
                    )))
                }
                RangeFrame::Head(head) => head,
            };
            let file = self.files.get(&head.range).cloned().ok_or_else(|| {
                TransferError::Protocol(format!(
                    "a range of file {}, which was not asked for in ranges",
                    head.range
                ))
            })?;
            let (offset, len) = (head.offset, header.size());
            let begin = file.state().book.begin(offset, len);
            let begin = begin.map_err(|err| file.refuse(&err))?;
            let landed = receive_range(&file, reader, (offset, begin), progress).await;
            if landed.is_err() && begin == Begin::New {
                file.state().book.abandon(offset);
            }
            let received = landed?;
            let header = reader.expect_header().await?;
            let end = match RangeFrame::from_header(&header).map_err(TransferError::Protocol)? {
                RangeFrame::End(end) if end.range_end == head.range && end.offset == offset => end,
                _ => {
                    if begin == Begin::New {
                        file.state().book.abandon(offset);
                    }
                    return Err(TransferError::Protocol(format!(
                        "range {offset} of file {} was not followed by its end frame",
                        head.range
                    )));
                }
            };
            let sent = parse_hash(&end.blake3);
            let landing = file.clone();
            let landed = tokio::task::spawn_blocking(move || {
                land(&landing, offset, len, (begin, received, sent))
            })
            .await
            .map_err(|err| {
                TransferError::Local(FileError::new(ErrorCode::Internal, err.to_string()))
            })?;
            landed.map_err(|err| file.refuse(&err))?;
        }
    }

    /// Settles every striped file once all streams are done: published when
    /// all its ranges are verified and the whole file hashes to the
    /// sender's BLAKE3; otherwise failed, keeping its verified ranges for
    /// the next attempt (unless the sender said the file changed).
    /// Blocking.
    pub fn finish(&self, summary: &mut ReceiveSummary, list_files: bool) {
        let mut indexes: Vec<u64> = self.files.keys().copied().collect();
        indexes.sort_unstable();
        for i in indexes {
            let file = &self.files[&i];
            match finish_one(file) {
                Ok((received, md5)) => {
                    summary.files += 1;
                    summary.bytes += received;
                    summary.resumed_bytes += file.kept_bytes;
                    if let Some(md5) = md5 {
                        summary.md5s.push((i, md5));
                    }
                    if list_files {
                        summary.published.push((i, file.kept_bytes));
                    }
                }
                Err((err, by_sender)) => summary.errors.push(FailedFile {
                    error: EntryError {
                        i,
                        code: err.code.as_str().to_string(),
                        message: err.message,
                    },
                    by_sender,
                }),
            }
        }
    }
}

/// Reads one range's body, writing it at its offset (a new range) or only
/// hashing it (a second copy of a verified one). The BLAKE3 of its bytes.
async fn receive_range<R: AsyncRead + Unpin>(
    file: &Arc<StripedFile>,
    reader: &mut FrameReader<R>,
    (offset, begin): (u64, Begin),
    progress: &dyn Progress,
) -> Result<blake3::Hash, TransferError> {
    let mut hasher = blake3::Hasher::new();
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut at = offset;
    while let Some(chunk) = reader.read_body_chunk().await? {
        hasher.update(&chunk);
        progress.advanced(chunk.len() as u64);
        if begin != Begin::New {
            continue;
        }
        batch_bytes += chunk.len();
        batch.push(chunk);
        if batch_bytes >= WRITE_BATCH_BYTES {
            write_batch(file, std::mem::take(&mut batch), at).await?;
            at += batch_bytes as u64;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        write_batch(file, batch, at).await?;
    }
    Ok(hasher.finalize())
}

/// Writes `batch` at `offset` off the async threads.
async fn write_batch(
    file: &Arc<StripedFile>,
    batch: Vec<Bytes>,
    offset: u64,
) -> Result<(), TransferError> {
    let writing = file.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut at = offset;
        for chunk in batch {
            writing.partial.write_at(&chunk, at)?;
            at += chunk.len() as u64;
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|err| FileError::new(ErrorCode::Internal, err.to_string()))?;
    let file_shown = &file.shown;
    written.map_err(|err| TransferError::Local(FileError::io(file_shown, &err)))
}

/// Lands a range that arrived whole: a new one is verified and recorded; a
/// second copy of a verified one must carry the same bytes. Blocking.
fn land(
    file: &StripedFile,
    offset: u64,
    len: u64,
    (begin, received, sent): (Begin, blake3::Hash, Result<blake3::Hash, String>),
) -> Result<(), RangeError> {
    let Ok(sent) = sent else {
        file.state().book.abandon(offset);
        return Err(RangeError::Mismatch(offset));
    };
    match begin {
        Begin::Verified(kept) if kept == received && kept == sent => Ok(()),
        Begin::Verified(_) => Err(RangeError::Conflict(offset)),
        Begin::New => {
            {
                let mut state = file.state();
                state.book.land(offset, received, sent)?;
                state.received += len;
                // A record that cannot be written costs a resend, not the
                // file.
                let _ = file.partial.record(&state.book, file.mtime);
            }
            // A range that cannot be read back is read again at the end.
            let _ = file.catch_up();
            Ok(())
        }
    }
}

/// Publishes one striped file, or says why not and whose fault it was.
fn finish_one(file: &StripedFile) -> Result<(u64, Option<String>), (FileError, bool)> {
    let state = file.state();
    let shown = show(&file.shown);
    if let Some(refused) = &state.refused {
        return Err((FileError::new(ErrorCode::BadRequest, refused.clone()), true));
    }
    let Some(end) = state.end.clone() else {
        let message = format!("{shown}: the sender never ended it");
        return Err((FileError::new(ErrorCode::NotSent, message), true));
    };
    if let Some(error) = &end.error {
        // The sender's file is not the one the kept ranges came from.
        file.partial.remove();
        let code = end.code.as_deref().and_then(ErrorCode::from_wire);
        let message = format!("{shown}: {error}");
        return Err((
            FileError::new(code.unwrap_or(ErrorCode::Changed), message),
            true,
        ));
    }
    if !state.book.is_complete() {
        let missing = state.book.missing().len();
        let message = format!(
            "{shown}: {missing} of its {} ranges did not arrive; run the transfer again to \
             continue from the others",
            state.book.count()
        );
        return Err((FileError::new(ErrorCode::NotSent, message), true));
    }
    let expected = end
        .blake3
        .as_deref()
        .ok_or_else(|| "no blake3 in the end frame".to_string())
        .and_then(parse_hash)
        .map_err(|m| (FileError::new(ErrorCode::BadRequest, m), true))?;
    let received_bytes = state.received;
    drop(state);
    file.catch_up()
        .map_err(|err| (FileError::io(&file.shown, &err), false))?;
    let received = file
        .whole
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .hasher
        .finalize();
    let sealed = file
        .partial
        .seal(&received, &expected, &file.meta)
        .map_err(|err| {
            let by_sender = matches!(err, WriteError::HashMismatch);
            (FileError::write(&file.shown, &err), by_sender)
        })?;
    let published = sealed.sync().and_then(|()| sealed.publish(true));
    published.map_err(|err| {
        let message = format!("{shown}: cannot publish: {err}");
        (FileError::new(code_of(&err), message), false)
    })?;
    Ok((received_bytes, end.md5))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, OPTIONS};
    use super::super::{send_files, NoProgress, RangeSender, ReceiveOptions, ReceivePlan};
    use super::*;
    use crate::connection::Connection;
    use crate::engine::manifest::Manifest;
    use crate::engine::ranges::RANGE_BYTES;
    use crate::engine::root::{RelPath, Root};
    use crate::engine::wire::{from_json_lines, Want, WantAction};

    const STRIPED: ReceiveOptions = ReceiveOptions {
        stripe: true,
        ..OPTIONS
    };

    fn big(len: u64, seed: u64) -> Vec<u8> {
        (0..len).map(|n| ((n * 31 + seed) % 251) as u8).collect()
    }

    /// Sends `d` from `from` to `to` with the big files over `streams`
    /// extra in-memory streams; the summary and the wants.
    async fn striped(
        from: &std::path::Path,
        to: &std::path::Path,
        streams: usize,
    ) -> (ReceiveSummary, Vec<Want>) {
        let src = Arc::new(Root::new(from).unwrap());
        let dst = Arc::new(Root::new(to).unwrap());
        let manifest = Manifest::from_root(&src, &RelPath::parse(b"d").unwrap(), true).unwrap();
        let (plan, wants) =
            ReceivePlan::new(dst, &RelPath::root(), manifest.entries.clone(), STRIPED).unwrap();
        let wants: Vec<Want> = from_json_lines(&wants.body).unwrap();
        let stripes = Arc::new(plan.stripes());
        let manifest = Arc::new(manifest);
        let ranges = RangeSender::new(manifest.clone(), Some(src.clone()), &wants).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut sender = Connection::new(a, config());
        let mut receiver = Connection::new(b, config());
        let sent_wants = wants.clone();
        let first = tokio::spawn(async move {
            let (_, writer) = sender.split();
            send_files(writer, manifest, Some(src), sent_wants, false, &NoProgress)
                .await
                .unwrap();
        });
        let mut extra = Vec::new();
        for _ in 0..streams {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let ranges = ranges.clone();
            tokio::spawn(async move {
                let mut conn = Connection::new(a, config());
                ranges.send(conn.writer(), &NoProgress).await.unwrap();
            });
            let stripes = stripes.clone();
            extra.push(tokio::spawn(async move {
                let mut conn = Connection::new(b, config());
                stripes.receive(conn.reader(), &NoProgress).await
            }));
        }
        let mut summary = plan.receive(receiver.reader(), &NoProgress).await.unwrap();
        first.await.unwrap();
        for stream in extra {
            stream.await.unwrap().unwrap();
        }
        tokio::task::spawn_blocking(move || {
            stripes.finish(&mut summary, true);
            (summary, wants)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn big_files_arrive_in_ranges_over_several_streams_and_small_ones_on_the_first() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::create_dir(from.path().join("d")).unwrap();
        let a = big(3 * RANGE_BYTES + 7, 1);
        let b = big(2 * RANGE_BYTES, 2);
        std::fs::write(from.path().join("d/a.bin"), &a).unwrap();
        std::fs::write(from.path().join("d/b.bin"), &b).unwrap();
        std::fs::write(from.path().join("d/small"), b"small").unwrap();
        let (summary, wants) = striped(from.path(), to.path(), 3).await;
        let stripes = wants
            .iter()
            .filter(|w| matches!(w.action, WantAction::Stripe { .. }))
            .count();
        assert_eq!(stripes, 2, "{wants:?}");
        assert_eq!(summary.errors, vec![]);
        assert_eq!(summary.files, 3);
        assert_eq!(summary.bytes, a.len() as u64 + b.len() as u64 + 5);
        assert_eq!(std::fs::read(to.path().join("d/a.bin")).unwrap(), a);
        assert_eq!(std::fs::read(to.path().join("d/b.bin")).unwrap(), b);
        assert_eq!(std::fs::read(to.path().join("d/small")).unwrap(), b"small");
        let left: Vec<_> = std::fs::read_dir(to.path().join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 3, "no partial or record left: {left:?}");
    }

    #[tokio::test]
    async fn a_rerun_sends_only_the_ranges_not_yet_verified() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::create_dir(from.path().join("d")).unwrap();
        let a = big(3 * RANGE_BYTES, 3);
        std::fs::write(from.path().join("d/a.bin"), &a).unwrap();
        // An earlier attempt verified and recorded the middle range.
        std::fs::create_dir(to.path().join("d")).unwrap();
        let md = std::fs::metadata(from.path().join("d/a.bin")).unwrap();
        let mtime = {
            use std::os::unix::fs::MetadataExt;
            (md.mtime(), md.mtime_nsec() as u32)
        };
        let dir = Arc::new(std::os::fd::OwnedFd::from(
            std::fs::File::open(to.path().join("d")).unwrap(),
        ));
        let partial =
            RangedPartial::open_in(dir, std::ffi::OsStr::new("a.bin"), a.len() as u64).unwrap();
        let middle = &a[RANGE_BYTES as usize..2 * RANGE_BYTES as usize];
        partial.write_at(middle, RANGE_BYTES).unwrap();
        let mut book = RangeBook::new(a.len() as u64);
        book.begin(RANGE_BYTES, RANGE_BYTES).unwrap();
        let hash = blake3::hash(middle);
        book.land(RANGE_BYTES, hash, hash).unwrap();
        partial.record(&book, mtime).unwrap();
        drop(partial);
        let (summary, wants) = striped(from.path(), to.path(), 2).await;
        assert!(
            wants.iter().any(|w| matches!(
                &w.action,
                WantAction::Stripe { kept, .. } if kept == &[RANGE_BYTES]
            )),
            "{wants:?}"
        );
        assert_eq!(summary.errors, vec![]);
        assert_eq!(
            summary.bytes,
            2 * RANGE_BYTES,
            "only the missing ranges moved"
        );
        assert_eq!(summary.resumed_bytes, RANGE_BYTES);
        assert_eq!(std::fs::read(to.path().join("d/a.bin")).unwrap(), a);
    }
}
