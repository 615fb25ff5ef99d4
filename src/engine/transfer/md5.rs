//! md5s, as the tutorial's header carries them (`get --md5`): the sender
//! computes one while it reads a file; a receiver that skipped a file as up
//! to date computes one from its own copy here.

use std::fs::File;
use std::io;

use rustix::fs::{Mode, OFlags};

use crate::protocol::ErrorCode;

use super::super::error::{show, FileError};
use super::super::root::{fstat, Kind, RelPath, Root};
use super::read_full;
use super::CHUNK_BYTES;

/// The md5 of the regular file `path` beneath `root`, opened as files to
/// send are: without following a symlink in its last name, without
/// blocking on a FIFO, and only if it is a regular file once open. For a
/// receiver that reports the md5s of files it already had. Blocking.
pub fn md5_beneath(root: &Root, path: &[u8]) -> Result<String, FileError> {
    let cannot = |err: io::Error| {
        let err = FileError::io(path, &err);
        let shown = show(path);
        let what = err
            .message
            .strip_prefix(&format!("{shown}: "))
            .unwrap_or(&err.message);
        FileError::new(err.code, format!("{shown}: cannot compute its md5: {what}"))
    };
    let rel = RelPath::parse(path)
        .map_err(|e| FileError::new(ErrorCode::BadPath, format!("{}: {e}", show(path))))?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let fd = root.open(&rel, flags, Mode::empty()).map_err(cannot)?;
    if fstat(&fd).map_err(cannot)?.kind != Kind::File {
        return Err(FileError::new(
            ErrorCode::NotRegular,
            format!("{}: not a regular file, so no md5", show(path)),
        ));
    }
    let mut file = File::from(fd);
    let mut md5 = md5::Md5::default();
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match read_full(&mut file, &mut buf).map_err(cannot)? {
            0 => return Ok(hex(&md5::Digest::finalize(md5))),
            n => md5::Digest::update(&mut md5, &buf[..n]),
        }
    }
}

/// Lower-case hex, as `md5sum` prints a digest.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_beneath_hashes_a_regular_file_and_never_follows_its_last_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello"), b"hello\n").unwrap();
        std::os::unix::fs::symlink("hello", dir.path().join("link")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let root = Root::new(dir.path()).unwrap();
        // md5sum's answer for "hello\n".
        assert_eq!(
            md5_beneath(&root, b"hello").unwrap(),
            "b1946ac92492d2347c6235b4d2611184"
        );
        for (path, code) in [
            (&b"link"[..], ErrorCode::BadPath),
            (b"sub", ErrorCode::NotRegular),
            (b"gone", ErrorCode::NotFound),
            (b"../hello", ErrorCode::BadPath),
        ] {
            let err = md5_beneath(&root, path).unwrap_err();
            assert_eq!(err.code, code, "{}: {err}", String::from_utf8_lossy(path));
            let quoted = format!("{:?}: ", String::from_utf8_lossy(path));
            assert!(err.message.starts_with(&quoted), "{err}");
        }
    }
}
