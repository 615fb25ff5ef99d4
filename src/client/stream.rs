//! Files from and to a stream instead of the local disk: `ferry get
//! HOST:FILE -` and `ferry put - HOST:FILE`.
//!
//! A get to a writer passes the bytes on as they arrive and checks their
//! BLAKE3 at the end: bytes already written cannot be taken back, so a
//! mismatch is an error the caller must report, not a file discarded.
//!
//! A put from a reader first spools it into an unnamed temporary file, so
//! the manifest can carry the size the protocol needs up front, and the
//! data goes through the ordinary put: the server publishes the file
//! atomically and keeps it only if its BLAKE3 matches. The spool costs
//! disk (in `$TMPDIR`) but no protocol change, and the kernel frees it
//! however the process ends.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{expect_ok, Client};
use crate::engine::error::show;
use crate::engine::root::RelPath;
use crate::engine::transfer::{send_wants, Direction, Wants};
use crate::engine::wire::{
    parse_hash, DataFrame, Entry, EntryKind, FileEnd, Want, WantAction, WirePath,
};
use crate::error::Error;
use crate::protocol::{ErrorCode, ErrorReply};
use crate::services::files::GetRequest;
use crate::services::Request;

impl Client {
    /// Downloads the one file `remote` into `out`, as its bytes arrive;
    /// returns how many. Fails after writing if the bytes do not hash to
    /// the BLAKE3 the server sent (`checksum_mismatch`) or the server
    /// could not send the file whole: what was written is then not the
    /// file.
    pub async fn get_to_writer<W: AsyncWrite + Unpin>(
        &mut self,
        remote: &[u8],
        out: &mut W,
    ) -> Result<u64, Error> {
        let requested =
            RelPath::parse(remote).map_err(|e| Error::Usage(format!("{}: {e}", show(remote))))?;
        if requested.is_root() {
            return Err(Error::Usage(
                "the served root is a directory; name one file to write to stdout".into(),
            ));
        }
        let request = GetRequest {
            path: WirePath::from_bytes(remote),
            recursive: false,
            md5: false,
            streams: 1,
        };
        self.connection()
            .send(Request::Get(request).to_header(), Bytes::new())
            .await?;
        let reader = self.connection().reader();
        let reply = expect_ok(reader.expect_header().await?)?;
        let entries: Vec<Entry> = super::files::read_lines(reader, &reply).await?;
        super::files::check_names(&requested, &entries)?;
        let size = match entries.as_slice() {
            [entry] if entry.kind == EntryKind::File => entry.file_size,
            _ => {
                return Err(Error::Protocol(format!(
                    "the server sent {} entries where one file was asked for",
                    entries.len()
                )))
            }
        };
        let mut wants = Wants::default();
        wants.push(&Want {
            i: 0,
            action: WantAction::Send {
                offset: 0,
                prefix_blake3: None,
            },
        });
        send_wants(self.connection().writer(), Direction::Get, &mut wants).await?;

        let reader = self.connection().reader();
        let not_sent = |end: FileEnd| {
            let code = end.code.unwrap_or_else(|| ErrorCode::NotSent.to_string());
            let why = end.error.unwrap_or_else(|| "no reason given".into());
            Error::Remote(ErrorReply {
                code,
                message: format!("{}: the server could not send it: {why}", show(remote)),
            })
        };
        let header = reader.expect_header().await?;
        match DataFrame::from_header(&header) {
            Ok(DataFrame::End(end)) => return Err(not_sent(end)),
            Ok(DataFrame::Head(head))
                if head.file == 0 && head.offset == 0 && header.size() == size => {}
            _ => {
                return Err(Error::Protocol(format!(
                    "expected the {size} bytes of {}",
                    show(remote)
                )))
            }
        }
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        while let Some(chunk) = reader.read_body_chunk().await? {
            hasher.update(&chunk);
            out.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        out.flush().await?;
        let end = match DataFrame::from_header(&reader.expect_header().await?) {
            Ok(DataFrame::End(end)) if end.file_end == 0 => end,
            _ => return Err(Error::Protocol("expected the end frame of the file".into())),
        };
        if end.error.is_some() {
            return Err(not_sent(end));
        }
        let claimed = end
            .blake3
            .as_deref()
            .ok_or_else(|| Error::Protocol("the file's end frame has no BLAKE3".into()))
            .and_then(|hex| parse_hash(hex).map_err(Error::Protocol))?;
        if DataFrame::from_header(&reader.expect_header().await?) != Ok(DataFrame::Done) {
            return Err(Error::Protocol("expected the end of the data".into()));
        }
        if hasher.finalize() != claimed {
            return Err(Error::Remote(ErrorReply::new(
                ErrorCode::ChecksumMismatch,
                format!(
                    "{}: the {written} bytes written do not hash to the BLAKE3 the server sent: \
                     they are not the file, discard them",
                    show(remote)
                ),
            )));
        }
        Ok(written)
    }
}

/// A stream copied into an unnamed temporary file, to be sent as a file.
#[derive(Debug)]
pub struct Spool {
    file: File,
    bytes: u64,
}

impl Spool {
    /// Copies `input` to its end into a new unnamed file in `$TMPDIR`.
    pub fn from_reader(mut input: impl Read) -> std::io::Result<Spool> {
        let mut file = tempfile::tempfile()?;
        let bytes = std::io::copy(&mut input, &mut file)?;
        file.rewind()?;
        Ok(Spool { file, bytes })
    }

    /// How many bytes it holds.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// A path that opens the file while this spool lives: the sender
    /// opens files by path, and this one has no name.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_holds_the_stream_and_opens_by_its_path() {
        let spool = Spool::from_reader(&b"tar bytes"[..]).unwrap();
        assert_eq!(spool.len(), 9);
        assert_eq!(std::fs::read(spool.path()).unwrap(), b"tar bytes");
        assert!(std::fs::metadata(spool.path()).unwrap().is_file());
    }
}
