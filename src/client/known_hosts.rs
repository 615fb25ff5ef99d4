//! Trust on first use, as ssh does: the first certificate a server shows is
//! pinned in a known-hosts file; later connections must show the same one.
//!
//! The file has one `HOST:PORT SHA256:...` line per key; blank lines and
//! `#` comments are kept as they are. A server is pinned under two keys:
//! its name as the user typed it (`localhost:9001`) and the address the
//! connection reached (`127.0.0.1:9001`), and every pin found under either
//! must match. So `localhost` and `127.0.0.1` are one server, not two
//! with a pin each, and a file written with name keys only keeps working.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::transport::Fingerprint;

/// The default known-hosts file: `$XDG_CONFIG_HOME/ferry/known_hosts`, else
/// `~/.config/ferry/known_hosts`.
pub fn default_path() -> Option<PathBuf> {
    config_dir().map(|dir| dir.join("known_hosts"))
}

/// ferry's client config directory: `$XDG_CONFIG_HOME/ferry`, else
/// `~/.config/ferry`; `None` when neither variable is set.
pub fn config_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(dir.join("ferry"))
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

/// What checking a server under all its keys found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCheck {
    /// Every key with a pin matches; these keys have none yet (to pin
    /// quietly: the server is known under another).
    Known {
        /// The keys to add.
        missing: Vec<String>,
    },
    /// No key has a pin.
    Unknown,
    /// The pin under `key` is another fingerprint.
    Changed {
        /// The key whose pin differs.
        key: String,
        /// Its fingerprint.
        pinned: Fingerprint,
    },
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

    /// Compares `offered` with the pins under every one of `keys` (the
    /// server as typed, and the address reached), read in one pass.
    pub fn check_server(&self, keys: &[&str], offered: Fingerprint) -> io::Result<ServerCheck> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(err),
        };
        let mut missing = Vec::new();
        let mut known = false;
        for key in keys {
            let pinned = text.lines().find_map(|line| {
                let (name, fp) = parse_line(line)?;
                (name == *key).then_some(fp).flatten()
            });
            match pinned {
                Some(pinned) if pinned != offered => {
                    return Ok(ServerCheck::Changed {
                        key: key.to_string(),
                        pinned,
                    })
                }
                Some(_) => known = true,
                None if !missing.iter().any(|m| m == key) => missing.push(key.to_string()),
                None => {}
            }
        }
        Ok(if known {
            ServerCheck::Known { missing }
        } else {
            ServerCheck::Unknown
        })
    }

    /// Pins `fingerprint` for `host`, replacing any older pin. The file is
    /// rewritten through a temporary file, so a crash keeps the old one.
    pub fn pin(&self, host: &str, fingerprint: Fingerprint) -> io::Result<()> {
        self.pin_all(&[host], fingerprint)
    }

    /// Pins `fingerprint` under each of `keys`, replacing older pins, in
    /// one rewrite of the file.
    pub fn pin_all(&self, keys: &[&str], fingerprint: Fingerprint) -> io::Result<()> {
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
            if !matches!(parse_line(line), Some((name, _)) if keys.contains(&name)) {
                new.push_str(line);
                new.push('\n');
            }
        }
        let mut written: Vec<&str> = Vec::new();
        for key in keys {
            if !written.contains(key) {
                new.push_str(&format!("{key} {fingerprint}\n"));
                written.push(key);
            }
        }
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
    fn a_server_is_checked_and_pinned_under_its_name_and_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = KnownHosts::new(dir.path().join("known_hosts"));
        let a = Fingerprint::of_certificate(b"a");
        let b = Fingerprint::of_certificate(b"b");
        let keys = ["localhost:1", "127.0.0.1:1"];
        assert_eq!(hosts.check_server(&keys, a).unwrap(), ServerCheck::Unknown);
        hosts.pin_all(&keys, a).unwrap();
        assert_eq!(
            hosts.check_server(&keys, a).unwrap(),
            ServerCheck::Known { missing: vec![] }
        );
        // Another name for the same address: known, and its own key is
        // still to be written.
        let other = ["box:1", "127.0.0.1:1"];
        assert_eq!(
            hosts.check_server(&other, a).unwrap(),
            ServerCheck::Known {
                missing: vec!["box:1".into()]
            }
        );
        // A different certificate on the address is a change, whatever
        // name it is reached by.
        assert_eq!(
            hosts.check_server(&other, b).unwrap(),
            ServerCheck::Changed {
                key: "127.0.0.1:1".into(),
                pinned: a
            }
        );
        // The same key twice (typed as the address) is one line.
        hosts.pin_all(&["127.0.0.1:2", "127.0.0.1:2"], b).unwrap();
        let text = fs::read_to_string(hosts.path()).unwrap();
        assert_eq!(text.matches("127.0.0.1:2 ").count(), 1, "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
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
