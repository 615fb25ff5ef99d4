//! `get NAME`: a file of the root, as the tutorial's file server sends it,
//! with its real md5.
//!
//! The header comes before the data and carries the md5, so the file is
//! read twice: once to hash it (streaming, in bounded chunks), once to send
//! it. The size sent is the size hashed; a file that shrinks in between
//! cannot be completed and the connection is closed, one that changes
//! at the same size arrives with an md5 that does not match, which the
//! client can check. The name is confined exactly as the file service
//! confines it (`files::parse_path`, `Root::open`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::time::Instant;

use rustix::fs::{Mode, OFlags};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use super::{request, End, Session};
use crate::protocol::ErrorCode;
use crate::services::files::error::FileError;
use crate::services::files::root::{fstat, Kind};
use crate::services::files::transfer::{CHANNEL_CHUNKS, CHUNK_BYTES};
use crate::services::files::wire::WirePath;
use crate::services::files::{self, root::Root};

/// A file opened and hashed, ready to send.
struct Hashed {
    file: File,
    size: u64,
    md5: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    pub(super) async fn get(&mut self, name: &str, started: Instant) -> Result<(), End> {
        let peer = self.peer;
        let root = self.context.root.clone();
        let owned = name.to_string();
        let hashed = tokio::task::spawn_blocking(move || open_and_hash(&root, &owned))
            .await
            .unwrap_or_else(|err| Err(FileError::new(ErrorCode::Internal, err.to_string())));
        let Hashed { file, size, md5 } = match hashed {
            Ok(hashed) => hashed,
            Err(err) => {
                warn!(%peer, name = ?name, code = %err.code, "seed-compat get refused: {}", err.message);
                return self
                    .send(&request::get_error_head(name, &err.message))
                    .await;
            }
        };
        self.send(&request::file_head(name, &md5, size)).await?;
        self.send_file(file, size).await?;
        info!(
            %peer,
            name = ?name,
            bytes = size,
            md5 = %md5,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "seed-compat get"
        );
        Ok(())
    }

    /// Sends exactly `size` bytes of `file` from its start, read on a
    /// blocking thread a few chunks ahead of the socket.
    async fn send_file(&mut self, mut file: File, size: u64) -> Result<(), End> {
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
                    return Err(End::Gone(io::Error::new(
                        err.kind(),
                        format!("cannot send the whole file: {err}"),
                    )))
                }
                None => break,
            }
        }
        drop(rx);
        let _ = reader.await;
        self.stream.flush().await.map_err(End::Gone)
    }
}

/// Opens `name` beneath the root as the file service does and hashes it.
fn open_and_hash(root: &Root, name: &str) -> Result<Hashed, FileError> {
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
    let mut file = File::from(fd);
    let mut hasher = <md5::Md5 as md5::Digest>::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut left = stat.len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file
            .read(&mut buf[..want])
            .map_err(|err| FileError::io(&shown, &err))?;
        if n == 0 {
            return Err(FileError::new(
                ErrorCode::Changed,
                format!("{}: shrank while it was being read", error_name(&shown)),
            ));
        }
        md5::Digest::update(&mut hasher, &buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|err| FileError::io(&shown, &err))?;
    Ok(Hashed {
        file,
        size: stat.len,
        md5: request::hex(&md5::Digest::finalize(hasher)),
    })
}

fn error_name(path: &[u8]) -> String {
    files::error::show(path)
}
