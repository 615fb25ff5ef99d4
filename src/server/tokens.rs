//! Per-client tokens: each client the server trusts by name, with a token
//! of its own and limits on what it may do. The state directory keeps them
//! in `clients.toml` (mode 0600) by name and SHA-256, never the token
//! itself, so the file can be read without handing out access.
//!
//! The running server looks at the file's identity (device, inode, size,
//! mtime) before each request and reads it again when it changed, so
//! `ferry tokens revoke` takes effect on a client's next request without
//! any signal to the server. The shared token (the `token` file) keeps
//! working beside them, with no limits.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The file of per-client tokens in the state directory.
pub const CLIENTS_FILE: &str = "clients.toml";
/// Held (flock) while `clients.toml` is changed.
const LOCK_FILE: &str = "clients.lock";

/// What one client may do, beside who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Reads only: no put, mkdir, rm, exec or shell.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// No exec or shell.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_exec: bool,
    /// The client sees this directory beneath the root as its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_subdir: Option<String>,
}

/// One client's entry in `clients.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEntry {
    /// SHA-256 of the client's token, hex.
    pub sha256: String,
    /// When it was made, seconds since the epoch.
    #[serde(default)]
    pub created: i64,
    /// What it may do.
    #[serde(flatten)]
    pub limits: Limits,
}

/// The clients of `clients.toml`, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clients {
    /// Each client, by its name.
    #[serde(default)]
    pub clients: BTreeMap<String, ClientEntry>,
}

/// Longest client name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Checks a `--root-subdir`: a relative path beneath the root, not the root.
pub fn check_root_subdir(dir: &str) -> Result<(), String> {
    let rel = crate::engine::root::RelPath::parse(dir.as_bytes())
        .map_err(|err| format!("--root-subdir {dir:?}: {err}"))?;
    if rel.is_root() {
        return Err("--root-subdir names a directory beneath the root".into());
    }
    Ok(())
}

/// Checks a client name: 1 to 64 bytes of letters, digits, `.`, `_` and
/// `-`, not starting with `-` (names go in files, logs and commands).
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a client name: use 1 to {MAX_NAME_BYTES} letters, digits, `.`, `_` or `-`"
        ))
    }
}

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Clients {
    /// Reads `clients.toml` in `state_dir`; no file is no clients.
    pub fn load(state_dir: &Path) -> io::Result<Clients> {
        match fs::read_to_string(state_dir.join(CLIENTS_FILE)) {
            Ok(text) => Clients::parse(&text),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Clients::default()),
            Err(err) => Err(err),
        }
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> io::Result<Clients> {
        toml::from_str(text).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{CLIENTS_FILE} is not valid: {err}"),
            )
        })
    }

    /// Writes the file in `state_dir`, mode 0600, through a rename.
    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        let text = toml::to_string(self).map_err(io::Error::other)?;
        crate::engine::state::write_private(&state_dir.join(CLIENTS_FILE), text.as_bytes())
    }

    /// Reads, changes and writes back the file in `state_dir` under an
    /// exclusive lock, so two changes at once (`ferry tokens add` while
    /// the server pairs a client) cannot lose one another.
    pub fn update<T>(
        state_dir: &Path,
        change: impl FnOnce(&mut Clients) -> Result<T, String>,
    ) -> Result<T, String> {
        crate::engine::state::with_lock(state_dir, LOCK_FILE, || {
            let mut clients = Clients::load(state_dir).map_err(|err| err.to_string())?;
            let result = change(&mut clients)?;
            clients
                .save(state_dir)
                .map_err(|err| format!("cannot write {CLIENTS_FILE}: {err}"))?;
            Ok(result)
        })
    }

    /// Adds a client with a fresh token, which is returned: the only time
    /// it exists outside the client. Refuses a name already taken.
    pub fn add(&mut self, name: &str, limits: Limits, now: i64) -> Result<String, String> {
        check_name(name)?;
        if self.clients.contains_key(name) {
            return Err(format!(
                "a client named {name:?} exists; revoke it first or pick another name"
            ));
        }
        let token = crate::engine::state::new_token().map_err(|err| err.to_string())?;
        self.clients.insert(
            name.to_string(),
            ClientEntry {
                sha256: token_hash(&token),
                created: now,
                limits,
            },
        );
        Ok(token)
    }

    /// The client whose token is `token`, compared in constant time.
    pub fn find(&self, token: &str) -> Option<(&str, &ClientEntry)> {
        let given = token_hash(token);
        let mut found = None;
        // Every entry is compared, so the time says nothing of which.
        for (name, entry) in &self.clients {
            if bool::from(given.as_bytes().ct_eq(entry.sha256.as_bytes())) {
                found = Some((name.as_str(), entry));
            }
        }
        found
    }
}

/// A connection's standing: the shared token, or a named client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The shared token: no limits.
    Shared,
    /// A per-client token.
    Client {
        /// The client's name.
        name: String,
        /// Its token's hash, to notice a revoke (or a re-issue).
        sha256: String,
        /// What it may do.
        limits: Limits,
    },
}

impl Grant {
    /// The limits that apply.
    pub fn limits(&self) -> Limits {
        match self {
            Grant::Shared => Limits::default(),
            Grant::Client { limits, .. } => limits.clone(),
        }
    }
}

/// The server's view of `clients.toml`, read again whenever it changed.
#[derive(Debug)]
pub struct ClientStore {
    path: PathBuf,
    cache: Mutex<(Option<FileStamp>, Arc<Clients>)>,
}

/// What tells one version of the file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev_ino: (u64, u64),
    len: u64,
    mtime: (i64, i64),
}

impl ClientStore {
    /// The store of the state directory `state_dir`.
    pub fn new(state_dir: &Path) -> ClientStore {
        ClientStore {
            path: state_dir.join(CLIENTS_FILE),
            cache: Mutex::new((None, Arc::new(Clients::default()))),
        }
    }

    /// The clients as the file says now. A file that cannot be read or
    /// parsed counts as no clients (and the caller's log says so), never
    /// as the last good copy: a revoke must not be undone by a typo.
    pub fn current(&self) -> Result<Arc<Clients>, String> {
        let stamp = match fs::metadata(&self.path) {
            Ok(md) => Some(FileStamp {
                dev_ino: (md.dev(), md.ino()),
                len: md.len(),
                mtime: (md.mtime(), md.mtime_nsec()),
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(format!("cannot read {}: {err}", self.path.display())),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != stamp || stamp.is_none() {
            let clients = match stamp {
                None => Clients::default(),
                Some(_) => fs::read_to_string(&self.path)
                    .and_then(|text| Clients::parse(&text))
                    .map_err(|err| format!("cannot read {}: {err}", self.path.display()))?,
            };
            *cache = (stamp, Arc::new(clients));
        }
        Ok(cache.1.clone())
    }

    /// Whether `grant` still holds: a client's token must still be in the
    /// file under its name, with the same hash.
    pub fn still_holds(&self, grant: &Grant) -> bool {
        match grant {
            Grant::Shared => true,
            Grant::Client { name, sha256, .. } => self.current().is_ok_and(|clients| {
                clients
                    .clients
                    .get(name)
                    .is_some_and(|entry| &entry.sha256 == sha256)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_words() {
        assert!(check_name("nas").is_ok());
        assert!(check_name("laptop-2.home_x").is_ok());
        for bad in ["", "-x", "a b", "a/b", "ü", &"x".repeat(65), "a\n"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_token_finds_its_client_and_only_its_hash_is_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let mut clients = Clients::default();
        let limits = Limits {
            read_only: true,
            ..Limits::default()
        };
        let token = clients.add("nas", limits.clone(), 1).unwrap();
        let other = clients.add("laptop", Limits::default(), 2).unwrap();
        assert!(clients.add("nas", Limits::default(), 3).is_err(), "taken");
        clients.save(tmp.path()).unwrap();
        let text = fs::read_to_string(tmp.path().join(CLIENTS_FILE)).unwrap();
        assert!(!text.contains(&token) && !text.contains(&other), "{text}");
        let mode = fs::metadata(tmp.path().join(CLIENTS_FILE)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = Clients::load(tmp.path()).unwrap();
        assert_eq!(loaded, clients);
        let (name, entry) = loaded.find(&token).unwrap();
        assert_eq!((name, &entry.limits), ("nas", &limits));
        assert_eq!(loaded.find(&other).unwrap().0, "laptop");
        assert!(loaded.find("not a token").is_none());
    }

    #[test]
    fn the_store_sees_a_revoke_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ClientStore::new(tmp.path());
        let mut clients = Clients::default();
        let token = clients.add("nas", Limits::default(), 1).unwrap();
        clients.save(tmp.path()).unwrap();
        let current = store.current().unwrap();
        let (name, entry) = current.find(&token).unwrap();
        let grant = Grant::Client {
            name: name.to_string(),
            sha256: entry.sha256.clone(),
            limits: entry.limits.clone(),
        };
        assert!(store.still_holds(&grant));
        clients.clients.remove("nas");
        clients.save(tmp.path()).unwrap();
        assert!(!store.still_holds(&grant));
        // A file that no longer parses grants nothing.
        fs::write(tmp.path().join(CLIENTS_FILE), "not [toml").unwrap();
        assert!(store.current().is_err());
        assert!(!store.still_holds(&grant));
        assert!(store.still_holds(&Grant::Shared));
    }
}
