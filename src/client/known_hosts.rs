//! Trust on first use, as ssh does: the first certificate a server shows is
//! pinned in a known-hosts file; later connections must show the same one.
//!
//! The file has one `HOST:PORT SHA256:...` line per server; blank lines and
//! `#` comments are kept as they are.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::transport::Fingerprint;

/// The default known-hosts file: `$XDG_CONFIG_HOME/ferry/known_hosts`, else
/// `~/.config/ferry/known_hosts`.
pub fn default_path() -> Option<PathBuf> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(dir.join("ferry").join("known_hosts"))
}

/// What checking a server's certificate against the file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// The pinned fingerprint matches.
    Known,
    /// No pin yet; the caller should pin the one offered.
    Unknown,
    /// A different fingerprint is pinned.
    Changed(Fingerprint),
}

/// A known-hosts file.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The file at `path` (which need not exist yet).
    pub fn new(path: PathBuf) -> KnownHosts {
        KnownHosts { path }
    }

    /// Where the file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint pinned for `host`, if any.
    pub fn lookup(&self, host: &str) -> io::Result<Option<Fingerprint>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        Ok(text.lines().find_map(|line| {
            let (name, fp) = parse_line(line)?;
            (name == host).then_some(fp).flatten()
        }))
    }

    /// Compares `offered` with the pin for `host`.
    pub fn check(&self, host: &str, offered: Fingerprint) -> io::Result<PinCheck> {
        Ok(match self.lookup(host)? {
            None => PinCheck::Unknown,
            Some(pinned) if pinned == offered => PinCheck::Known,
            Some(pinned) => PinCheck::Changed(pinned),
        })
    }

    /// Pins `fingerprint` for `host`, replacing any older pin. The file is
    /// rewritten through a temporary file, so a crash keeps the old one.
    pub fn pin(&self, host: &str, fingerprint: Fingerprint) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let old = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(err),
        };
        let mut new = String::with_capacity(old.len() + 80);
        for line in old.lines() {
            if !matches!(parse_line(line), Some((name, _)) if name == host) {
                new.push_str(line);
                new.push('\n');
            }
        }
        new.push_str(&format!("{host} {fingerprint}\n"));
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(new.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &self.path)
    }
}

/// A line's host and fingerprint; `None` for blanks and comments, and a
/// `None` fingerprint for a line that does not parse (never matches).
fn parse_line(line: &str) -> Option<(&str, Option<Fingerprint>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut parts = line.split_whitespace();
    let host = parts.next()?;
    let fp = parts.next().and_then(|f| f.parse().ok());
    Some((host, fp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_found_replaced_and_kept_apart_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = KnownHosts::new(dir.path().join("sub/known_hosts"));
        let a = Fingerprint::of_certificate(b"a");
        let b = Fingerprint::of_certificate(b"b");
        assert_eq!(hosts.check("h:1", a).unwrap(), PinCheck::Unknown);
        hosts.pin("h:1", a).unwrap();
        hosts.pin("h:2", b).unwrap();
        assert_eq!(hosts.check("h:1", a).unwrap(), PinCheck::Known);
        assert_eq!(hosts.check("h:1", b).unwrap(), PinCheck::Changed(a));
        assert_eq!(hosts.check("h:2", b).unwrap(), PinCheck::Known);
        hosts.pin("h:1", b).unwrap();
        assert_eq!(hosts.check("h:1", b).unwrap(), PinCheck::Known);
        let text = fs::read_to_string(hosts.path()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(hosts.path()).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn comments_and_junk_lines_survive_and_never_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        fs::write(&path, "# my servers\nh:1 garbage\n\n").unwrap();
        let hosts = KnownHosts::new(path.clone());
        assert_eq!(hosts.lookup("h:1").unwrap(), None);
        hosts.pin("h:9", Fingerprint::of_certificate(b"x")).unwrap();
        assert!(fs::read_to_string(&path)
            .unwrap()
            .starts_with("# my servers\n"));
    }
}
