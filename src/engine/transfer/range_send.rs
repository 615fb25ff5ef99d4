//! The sending side of the big files of a striped transfer: one queue of
//! the ranges the receiver wants, which every extra stream takes from
//! until it is empty, so a fast stream carries more and a stream that
//! failed to open costs nothing but its share of speed. Each range goes as
//! a head, its bytes and an end frame with its BLAKE3; the first stream
//! carries each file's whole BLAKE3 (`send.rs`).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use crate::connection::FrameWriter;
use crate::protocol::ErrorCode;

use super::super::error::FileError;
use super::super::manifest::Manifest;
use super::super::ranges::RangeBook;
use super::super::root::Root;
use super::super::wire::{RangeEnd, RangeFrame, RangeHead, Want, WantAction};
use super::send::Opener;
use super::{Progress, TransferError, CHUNK_BYTES};

/// Bytes read from the file at once for a range.
const READ_BYTES: usize = 4 * CHUNK_BYTES;

/// The ranges still to send of one transfer's striped files.
#[derive(Debug)]
pub struct RangeSender {
    manifest: Arc<Manifest>,
    root: Option<Arc<Root>>,
    /// File index, offset, length.
    queue: Mutex<VecDeque<(u64, u64, u64)>>,
}

impl RangeSender {
    /// The ranges the `Stripe` wants ask for (all but the kept ones), or
    /// `None` when no want is striped.
    pub fn new(
        manifest: Arc<Manifest>,
        root: Option<Arc<Root>>,
        wants: &[Want],
    ) -> Option<Arc<RangeSender>> {
        let mut queue = VecDeque::new();
        let mut striped = false;
        for want in wants {
            let WantAction::Stripe { kept, .. } = &want.action else {
                continue;
            };
            let Some(entry) = manifest.entries.get(want.i as usize) else {
                continue;
            };
            striped = true;
            let mut book = RangeBook::new(entry.file_size);
            for &offset in kept {
                // The hash is checked whole on the first stream; here only
                // which ranges to leave out matters.
                let _ = book.keep(offset, blake3::hash(b""));
            }
            queue.extend(
                book.missing()
                    .into_iter()
                    .map(|(offset, len)| (want.i, offset, len)),
            );
        }
        striped.then(|| {
            Arc::new(RangeSender {
                manifest,
                root,
                queue: Mutex::new(queue),
            })
        })
    }

    /// Ranges not yet taken by a stream.
    pub fn ranges_left(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn next(&self) -> Option<(u64, u64, u64)> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Sends ranges on one stream until none is left, then its end frame.
    pub async fn send<W: AsyncWrite + Unpin>(
        self: &Arc<Self>,
        writer: &mut FrameWriter<W>,
        progress: &dyn Progress,
    ) -> Result<(), TransferError> {
        let mut open: HashMap<u64, Arc<File>> = HashMap::new();
        while let Some((i, offset, len)) = self.next() {
            let file = match open.get(&i) {
                Some(file) => file.clone(),
                None => {
                    let this = self.clone();
                    let opened = blocking(move || {
                        let entry = &this.manifest.entries[i as usize];
                        let source = this
                            .manifest
                            .sources
                            .get(i as usize)
                            .and_then(Option::as_ref);
                        let source = source.ok_or_else(|| {
                            FileError::new(ErrorCode::BadRequest, "no such file in the manifest")
                        })?;
                        let mut opener = Opener::new(this.root.as_deref(), &this.manifest.in_root);
                        opener.open(entry, source)
                    })
                    .await;
                    match opened {
                        Ok(file) => open.entry(i).or_insert(Arc::new(file)).clone(),
                        // The first stream reports the file as failed; its
                        // ranges are left out here.
                        Err(_) => continue,
                    }
                }
            };
            let head = RangeFrame::Head(RangeHead { range: i, offset });
            writer.send_header(&head.to_header(len)).await?;
            let mut hasher = blake3::Hasher::new();
            let mut at = offset;
            while at < offset + len {
                let want = (offset + len - at).min(READ_BYTES as u64) as usize;
                let reading = file.clone();
                let chunk = blocking(move || {
                    let mut buf = vec![0u8; want];
                    // A file that shrank still owes the announced bytes:
                    // zeros, and the first stream's end frame says it changed.
                    let mut filled = 0;
                    while filled < want {
                        match reading.read_at(&mut buf[filled..], at + filled as u64) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => filled += n,
                        }
                    }
                    Ok(buf)
                })
                .await?;
                hasher.update(&chunk);
                at += chunk.len() as u64;
                // Sent and counted a piece at a time, so progress (and the
                // rate a client measures its first stream by) moves evenly.
                let mut chunk = Bytes::from(chunk);
                while !chunk.is_empty() {
                    let piece = chunk.split_to(chunk.len().min(CHUNK_BYTES));
                    let len = piece.len() as u64;
                    writer.send_body(piece).await?;
                    progress.advanced(len);
                }
            }
            let end = RangeFrame::End(RangeEnd {
                range_end: i,
                offset,
                blake3: hasher.finalize().to_hex().to_string(),
            });
            writer.send_header(&end.to_header(0)).await?;
        }
        writer.send_header(&RangeFrame::Done.to_header(0)).await?;
        writer.flush().await?;
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| Err(FileError::new(ErrorCode::Internal, err.to_string())))
}
