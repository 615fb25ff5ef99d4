//! The put frame of the tutorial's socketserver-style client: a header
//! `{"cmd": "put", "filename": NAME, "filesize": N}` and N raw bytes, with
//! no reply.
//!
//! The file is stored as the file service stores one: confined to the root
//! (`files::parse_path`, `Root`), written to a partial file beside its
//! target, made durable, and renamed into place (`files::atomic`), so the
//! name only ever holds the old file or the whole new one. No parent
//! directories are made, as the tutorial's server makes none. The format
//! has no reply, so a refused or failed put is logged and the connection
//! closed: the only signal left to the client is its next send or recv
//! failing.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tracing::{info, warn};

use super::{SeedEnd, Session};
use crate::engine::atomic::{PartialFile, SourceId};
use crate::engine::error::show;
use crate::engine::error::FileError;
use crate::engine::root::RelPath;
use crate::engine::transfer::{CHANNEL_CHUNKS, CHUNK_BYTES};
use crate::engine::wire::WirePath;
use crate::log::peer_text;
use crate::services::files;

/// What the connection hands the file thread.
enum Piece {
    /// The next bytes of the file.
    Data(Vec<u8>),
    /// All `filesize` bytes arrived: seal and publish.
    Done,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    pub(super) async fn put(
        &mut self,
        filename: &str,
        filesize: u64,
        started: Instant,
    ) -> Result<(), SeedEnd> {
        let peer = self.peer;
        let result = self.receive(filename, filesize).await;
        match &result {
            Ok(()) => info!(
                %peer,
                filename = %peer_text(filename),
                bytes = filesize,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "seed-compat put"
            ),
            Err(end) => {
                warn!(%peer, filename = %peer_text(filename), bytes = filesize, "seed-compat put failed: {end}")
            }
        }
        result
    }

    async fn receive(&mut self, filename: &str, filesize: u64) -> Result<(), SeedEnd> {
        let rel = files::parse_path(&WirePath::from_bytes(filename.as_bytes()))
            .map_err(|err| SeedEnd::PutFailed(err.message))?;
        if rel.is_root() {
            return Err(SeedEnd::PutFailed("an empty filename".into()));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(CHANNEL_CHUNKS);
        let root = self.context.root.clone();
        let writer = tokio::task::spawn_blocking(move || write_file(&root, &rel, filesize, rx));

        let mut left = filesize;
        let ahead = self.buf.len().min(left as usize);
        let mut sent = if ahead > 0 {
            let first = self.buf.split_to(ahead).to_vec();
            left -= ahead as u64;
            tx.send(Piece::Data(first)).await.is_ok()
        } else {
            true
        };
        let wait = self.limits.request_timeout;
        let mut failure = None;
        while sent && left > 0 {
            let mut chunk = vec![0u8; CHUNK_BYTES.min(left as usize)];
            let read = tokio::time::timeout(wait, self.stream.read(&mut chunk)).await;
            let n = match read {
                Err(_) => {
                    failure = Some(SeedEnd::Stalled(wait));
                    break;
                }
                Ok(Ok(0)) => {
                    let short = filesize - left;
                    failure = Some(SeedEnd::PutFailed(format!(
                        "the client closed after {short} of {filesize} bytes; nothing was stored"
                    )));
                    break;
                }
                Ok(Ok(n)) => n,
                Ok(Err(err)) => {
                    failure = Some(SeedEnd::Gone(err));
                    break;
                }
            };
            chunk.truncate(n);
            left -= n as u64;
            sent = tx.send(Piece::Data(chunk)).await.is_ok();
        }
        if failure.is_none() && sent {
            sent = tx.send(Piece::Done).await.is_ok();
        }
        drop(tx);
        let written = writer
            .await
            .unwrap_or_else(|err| Err(format!("the file writer failed: {err}")));
        match (failure, written) {
            (Some(end), _) => Err(end),
            (None, Err(message)) => Err(SeedEnd::PutFailed(message)),
            (None, Ok(())) if sent => Ok(()),
            (None, Ok(())) => Err(SeedEnd::PutFailed("the file writer stopped early".into())),
        }
    }
}

/// Writes the pieces to a partial file beside `rel`, then seals, syncs and
/// publishes it once [`Piece::Done`] arrives. Anything short of that
/// removes the partial: the tutorial's format cannot resume.
fn write_file(
    root: &crate::engine::root::Root,
    rel: &RelPath,
    filesize: u64,
    mut rx: tokio::sync::mpsc::Receiver<Piece>,
) -> Result<(), String> {
    let shown = rel.to_bytes();
    let fail = |err: FileError| err.message;
    let source = SourceId {
        file_size: filesize,
        mtime: (0, 0),
    };
    let mut partial = PartialFile::open(root, rel, &source, false)
        .map_err(|err| fail(FileError::write(&shown, &err)))?;
    loop {
        match rx.blocking_recv() {
            Some(Piece::Data(bytes)) => {
                if let Err(err) = partial.write(&bytes) {
                    partial.remove();
                    return Err(fail(FileError::write(&shown, &err)));
                }
            }
            Some(Piece::Done) => break,
            None => {
                partial.remove();
                return Err(format!(
                    "{}: the transfer stopped; nothing was stored",
                    show(&shown)
                ));
            }
        }
    }
    let sealed = partial
        .seal_as_received(&crate::engine::atomic::FileMeta::fresh())
        .map_err(|err| fail(FileError::write(&shown, &err)))?;
    sealed
        .sync()
        .and_then(|()| sealed.publish(true))
        .map_err(|err| fail(FileError::io(&shown, &err)))
}
