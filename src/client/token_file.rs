//! Access tokens read from a file (`--token-file`), as the server writes
//! its own: one line. A token on the command line is visible to every user
//! of the machine in `ps`; a file of mode 0600 is not. Like ssh with a
//! private key, a file that group or others can open is reported, but
//! here only as a warning for the caller to show.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Largest token file read. The server's tokens are 64 hex digits; a file
/// far larger is not a token file, and is not read whole.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// A token read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    /// The file.
    pub path: PathBuf,
    /// The token, without its line end.
    pub token: String,
    /// The file's permission bits.
    pub mode: u32,
}

impl TokenFile {
    /// Reads the token in `path`: one line, its trailing newline (and any
    /// trailing whitespace, which a token never ends with) dropped. Errors
    /// name the file.
    pub fn read(path: &Path) -> Result<TokenFile, Error> {
        let fail = |why: String| {
            Error::Usage(format!(
                "cannot use the token file {}: {why}",
                path.display()
            ))
        };
        let file = std::fs::File::open(path).map_err(|err| fail(err.to_string()))?;
        let meta = file.metadata().map_err(|err| fail(err.to_string()))?;
        if !meta.is_file() {
            return Err(fail("it is not a regular file".into()));
        }
        let mut bytes = Vec::new();
        file.take(MAX_TOKEN_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| fail(err.to_string()))?;
        if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
            return Err(fail(format!(
                "it is over {MAX_TOKEN_FILE_BYTES} bytes, so it holds no token"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| fail("it is not text".into()))?;
        let token = text.trim_end();
        if token.is_empty() {
            return Err(fail("it is empty".into()));
        }
        // A token is one word; anything else is the wrong file, and is
        // better not sent to the server.
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail(
                "it holds more than one line or word, not a token".into(),
            ));
        }
        Ok(TokenFile {
            path: path.to_path_buf(),
            token: token.to_string(),
            mode: meta.permissions().mode() & 0o7777,
        })
    }

    /// A warning to show when group or others may open the file, as ssh
    /// warns of an unprotected key; `None` for a private file.
    pub fn warning(&self) -> Option<String> {
        (self.mode & 0o077 != 0).then(|| {
            let path = self.path.display();
            format!(
                "the token file {path} is open to other users (mode {:04o}): anyone who can \
                 read it can use the server; run `chmod 600 {path}`",
                self.mode
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &[u8], mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn the_line_end_is_dropped_and_a_private_file_gets_no_warning() {
        for text in ["c0ffee\n", "c0ffee", "c0ffee\r\n", "c0ffee  \n\n"] {
            let (_dir, path) = file_with(text.as_bytes(), 0o600);
            let file = TokenFile::read(&path).unwrap();
            assert_eq!(file.token, "c0ffee", "{text:?}");
            assert_eq!(file.warning(), None);
        }
    }

    #[test]
    fn a_file_others_can_open_gets_a_warning_naming_it() {
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let (_dir, path) = file_with(b"c0ffee\n", mode);
            let warning = TokenFile::read(&path).unwrap().warning().unwrap();
            assert!(warning.contains(&path.display().to_string()), "{warning}");
            assert!(warning.contains("chmod 600"), "{warning}");
        }
    }

    #[test]
    fn what_is_not_a_token_file_is_refused_naming_it() {
        let big = vec![b'a'; MAX_TOKEN_FILE_BYTES as usize + 1];
        let cases: [&[u8]; 5] = [b"", b"\n", b"two\nlines\n", b"two words\n", &big];
        for text in cases {
            let (_dir, path) = file_with(text, 0o600);
            let err = TokenFile::read(&path).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{err}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        let (dir, _) = file_with(b"x", 0o600);
        for path in [dir.path().join("missing"), dir.path().to_path_buf()] {
            let err = TokenFile::read(&path).unwrap_err();
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }
}
