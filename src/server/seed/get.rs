//! `get NAME`: a file of the root, as the tutorial's file server sends it,
//! with its real md5.
//!
//! The header comes before the data and carries the md5, so the file is
//! read twice: once to hash it (streaming, in bounded chunks), once to send
//! it. The size sent is the size hashed; a file that shrinks in between
//! cannot be completed and the connection is closed, one that changes
//! at the same size arrives with an md5 that does not match, which the
//! client can check. The name is confined exactly as the file service
//! confines it (`files::parse_path`, `Root::open`). Nothing is written
//! while the file is hashed, so the socket is watched instead: a client
//! that leaves stops the hashing within a chunk, as does the request being
//! dropped at the drain deadline.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rustix::fs::{Mode, OFlags};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use super::{request, SeedEnd, Session};
use crate::engine::error::FileError;
use crate::engine::root::Root;
use crate::engine::root::{fstat, Kind};
use crate::engine::transfer::{CHANNEL_CHUNKS, CHUNK_BYTES};
use crate::engine::wire::WirePath;
use crate::log::peer_text;
use crate::protocol::ErrorCode;
use crate::services::files;

/// A file opened and hashed, ready to send.
struct Hashed {
    file: File,
    size: u64,
    md5: String,
}

/// Why a file was not hashed.
enum NotHashed {
    /// It cannot be sent; the client is told why.
    Refused(FileError),
    /// Told to stop after `hashed` of `size` bytes.
    Stopped { hashed: u64, size: u64 },
}

/// Tells the hashing thread to stop, when set or when dropped: a request
/// dropped at the drain deadline stops its thread too.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    pub(super) async fn get(&mut self, name: &str, started: Instant) -> Result<(), SeedEnd> {
        let peer = self.peer;
        let root = self.context.root.clone();
        let owned = name.to_string();
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let stopped = stop.0.clone();
        let mut hashing =
            tokio::task::spawn_blocking(move || open_and_hash(&root, &owned, &stopped));
        // The hash comes before the header, so nothing is written while it
        // runs: watch the socket, or a client that left would cost a whole
        // file's hashing.
        let hashed = loop {
            tokio::select! {
                joined = &mut hashing => break joined,
                read = self.read_more() => {
                    // Bytes sent ahead are kept for the next request.
                    if matches!(read, Ok(n) if n > 0) {
                        continue;
                    }
                    drop(stop);
                    if let Ok(Err(NotHashed::Stopped { hashed, size })) = hashing.await {
                        warn!(
                            %peer, name = %peer_text(name), hashed, size,
                            "seed-compat get abandoned: the client left while its file was hashed"
                        );
                    }
                    let err = read.err().unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into());
                    return Err(SeedEnd::Gone(err));
                }
            }
        };
        let hashed = hashed.unwrap_or_else(|err| {
            let err = FileError::new(ErrorCode::Internal, err.to_string());
            Err(NotHashed::Refused(err))
        });
        let Hashed { file, size, md5 } = match hashed {
            Ok(hashed) => hashed,
            Err(NotHashed::Refused(err)) => {
                warn!(%peer, name = %peer_text(name), code = %err.code, "seed-compat get refused: {}", err.message);
                return self
                    .send(&request::get_error_head(name, &err.message))
                    .await;
            }
            // Only dropping `stop`, above, once the client left, stops it.
            Err(NotHashed::Stopped { .. }) => {
                return Err(SeedEnd::Gone(io::ErrorKind::Interrupted.into()))
            }
        };
        self.send(&request::file_head(name, &md5, size)).await?;
        self.send_file(file, size).await?;
        info!(
            %peer,
            name = %peer_text(name),
            bytes = size,
            md5 = %md5,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "seed-compat get"
        );
        Ok(())
    }

    /// Sends exactly `size` bytes of `file` from its start, read on a
    /// blocking thread a few chunks ahead of the socket.
    async fn send_file(&mut self, mut file: File, size: u64) -> Result<(), SeedEnd> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Vec<u8>>>(CHANNEL_CHUNKS);
        let reader = tokio::task::spawn_blocking(move || {
            let mut left = size;
            while left > 0 {
                let mut chunk = vec![0u8; CHUNK_BYTES.min(left as usize)];
                let read = match file.read(&mut chunk) {
                    Ok(0) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was being sent",
                    )),
                    Ok(n) => {
                        left -= n as u64;
                        chunk.truncate(n);
                        Ok(chunk)
                    }
                    Err(err) => Err(err),
                };
                let failed = read.is_err();
                if tx.blocking_send(read).is_err() || failed {
                    return;
                }
            }
        });
        let mut sent = 0u64;
        while sent < size {
            match rx.recv().await {
                Some(Ok(chunk)) => {
                    self.write_within(&chunk).await?;
                    sent += chunk.len() as u64;
                }
                Some(Err(err)) => {
                    return Err(SeedEnd::Gone(io::Error::new(
                        err.kind(),
                        format!("cannot send the whole file: {err}"),
                    )))
                }
                None => break,
            }
        }
        drop(rx);
        let _ = reader.await;
        self.stream.flush().await.map_err(SeedEnd::Gone)
    }
}

/// Opens `name` beneath the root as the file service does and hashes it,
/// looking at `stop` between chunks.
fn open_and_hash(root: &Root, name: &str, stop: &AtomicBool) -> Result<Hashed, NotHashed> {
    let (mut file, size, shown) = open(root, name).map_err(NotHashed::Refused)?;
    let mut hasher = <md5::Md5 as md5::Digest>::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut left = size;
    while left > 0 {
        if stop.load(Ordering::Relaxed) {
            let hashed = size - left;
            return Err(NotHashed::Stopped { hashed, size });
        }
        let want = buf.len().min(left as usize);
        let n = file
            .read(&mut buf[..want])
            .map_err(|err| NotHashed::Refused(FileError::io(&shown, &err)))?;
        if n == 0 {
            return Err(NotHashed::Refused(FileError::new(
                ErrorCode::Changed,
                format!("{}: shrank while it was being read", error_name(&shown)),
            )));
        }
        md5::Digest::update(&mut hasher, &buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|err| NotHashed::Refused(FileError::io(&shown, &err)))?;
    Ok(Hashed {
        file,
        size,
        md5: request::hex(&md5::Digest::finalize(hasher)),
    })
}

/// Opens `name` beneath the root as the file service does: a regular file,
/// its size, and its path as errors show it.
fn open(root: &Root, name: &str) -> Result<(File, u64, Vec<u8>), FileError> {
    let rel = files::parse_path(&WirePath::from_bytes(name.as_bytes()))?;
    let shown = rel.to_bytes();
    // Non-blocking, so that opening a FIFO returns at once (to be refused
    // below) instead of waiting for a writer; reads of a regular file are
    // unaffected.
    let fd = root
        .open(&rel, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())
        .map_err(|err| FileError::io(&shown, &err))?;
    let stat = fstat(&fd).map_err(|err| FileError::io(&shown, &err))?;
    match stat.kind {
        Kind::File => {}
        Kind::Dir => {
            return Err(FileError::new(
                ErrorCode::IsADirectory,
                format!("{}: is a directory; get sends one file", error_name(&shown)),
            ))
        }
        _ => {
            return Err(FileError::new(
                ErrorCode::NotRegular,
                format!("{}: not a regular file", error_name(&shown)),
            ))
        }
    }
    Ok((File::from(fd), stat.len, shown))
}

fn error_name(path: &[u8]) -> String {
    crate::engine::error::show(path)
}
