//! The file service's errors, on both ends: a [`Refusal`] (a wire code and
//! a message). Filesystem errors map to codes by errno, and messages carry the
//! path with control characters escaped (`{:?}`), never raw peer bytes.

use std::io;

use crate::protocol::{ErrorCode, Refusal};

use super::atomic::WriteError;
use super::root::PathError;

/// A refusal or failure of one file operation; its message names the path.
pub type FileError = Refusal;

/// The file service's constructors: by errno, and by write error.
impl Refusal {
    /// An IO error on `path`, with its code from the errno.
    pub fn io(path: &[u8], err: &io::Error) -> FileError {
        let code = code_of(err);
        let what = match code {
            ErrorCode::BadPath => {
                "leads out of the served root, or through a symlink where a directory must be"
                    .to_string()
            }
            ErrorCode::NotFound => "no such file or directory".to_string(),
            _ => err.to_string(),
        };
        FileError::new(code, format!("{}: {what}", show(path)))
    }
}

/// A path for a message: quoted, control characters escaped.
pub fn show(path: &[u8]) -> String {
    if path.is_empty() {
        return "the root".to_string();
    }
    format!("{:?}", String::from_utf8_lossy(path))
}

/// The wire code for a filesystem error.
pub fn code_of(err: &io::Error) -> ErrorCode {
    use rustix::io::Errno;
    let Some(raw) = err.raw_os_error() else {
        return match err.kind() {
            io::ErrorKind::NotFound => ErrorCode::NotFound,
            io::ErrorKind::InvalidInput => ErrorCode::BadPath,
            _ => ErrorCode::IoError,
        };
    };
    let errno = Errno::from_raw_os_error(raw);
    if errno == Errno::NOENT {
        ErrorCode::NotFound
    } else if errno == Errno::ISDIR {
        ErrorCode::IsADirectory
    } else if errno == Errno::NOTDIR {
        ErrorCode::NotADirectory
    } else if errno == Errno::EXIST || errno == Errno::NOTEMPTY {
        ErrorCode::Exists
    } else if errno == Errno::XDEV || errno == Errno::LOOP || errno == Errno::NAMETOOLONG {
        // RESOLVE_BENEATH refuses escapes with EXDEV; O_NOFOLLOW with ELOOP.
        ErrorCode::BadPath
    } else if errno == Errno::ACCESS || errno == Errno::PERM || errno == Errno::ROFS {
        ErrorCode::PermissionDenied
    } else if errno == Errno::NOSPC || errno == Errno::DQUOT {
        ErrorCode::NoSpace
    } else {
        ErrorCode::IoError
    }
}

impl From<PathError> for FileError {
    fn from(err: PathError) -> FileError {
        FileError::new(ErrorCode::BadPath, err.to_string())
    }
}

impl Refusal {
    /// A write error on `path`.
    pub fn write(path: &[u8], err: &WriteError) -> FileError {
        match err {
            WriteError::HashMismatch => FileError::new(
                ErrorCode::ChecksumMismatch,
                format!("{}: {err}", show(path)),
            ),
            WriteError::Busy => {
                FileError::new(ErrorCode::InProgress, format!("{}: {err}", show(path)))
            }
            WriteError::Io(io) => FileError::io(path, io),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_codes() {
        let e = |errno: rustix::io::Errno| code_of(&io::Error::from(errno));
        use rustix::io::Errno;
        assert_eq!(e(Errno::NOENT), ErrorCode::NotFound);
        assert_eq!(e(Errno::XDEV), ErrorCode::BadPath);
        assert_eq!(e(Errno::NOSPC), ErrorCode::NoSpace);
        assert_eq!(e(Errno::ISDIR), ErrorCode::IsADirectory);
        assert_eq!(e(Errno::IO), ErrorCode::IoError);
    }

    #[test]
    fn messages_escape_control_characters_in_paths() {
        let err = FileError::io(
            b"evil\x1b[2Jname",
            &io::Error::from(rustix::io::Errno::NOENT),
        );
        assert!(!err.message.contains('\x1b'), "{}", err.message);
        assert!(err.message.contains("no such file"));
    }
}
