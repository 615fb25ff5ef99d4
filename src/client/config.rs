//! The client's config file, `$XDG_CONFIG_HOME/ferry/config.toml` (or
//! `--config`, `FERRY_CONFIG`): servers by name, as ssh's `~/.ssh/config`.
//!
//! ```toml
//! [hosts.nas]
//! server = "nas.lan:9001"
//! token-file = "nas.token"        # relative to this file's directory
//! fingerprint = "SHA256:..."      # required of the server, as --fingerprint
//! remote-dir = "backup"           # where relative remote paths start
//! ```
//!
//! The file may also hold `ferry serve` settings as top-level keys, so one
//! `FERRY_CONFIG` can serve both: the client reads only the `hosts` table
//! (and refuses any other table, a likely typo), `ferry serve` skips it.
//!
//! [`ClientConfig::save`] rewrites the file through `toml_edit`, keeping
//! the user's comments and layout, by a temporary file renamed over it, with
//! mode 0600: it names token files and fingerprints.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table};

use crate::error::Error;
use crate::transport::{Endpoint, Fingerprint};

/// The config file's name in ferry's config directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Largest config file read: a few hundred hosts fit in a few KiB, so a
/// larger file is not a config file, and is not read whole.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Longest host name: a name is typed before every remote path.
pub const MAX_HOST_NAME_BYTES: usize = 64;

/// The settings of a `[hosts.NAME]` table, by key.
const HOST_KEYS: &[&str] = &["server", "token-file", "fingerprint", "remote-dir"];

/// One named host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// Where it listens.
    pub server: Endpoint,
    /// A file holding its access token. Relative paths are taken from the
    /// config file's directory, `~/` from `HOME`, when the file is loaded.
    pub token_file: Option<PathBuf>,
    /// The certificate it must show (as `--fingerprint`).
    pub fingerprint: Option<Fingerprint>,
    /// The remote directory relative remote paths start from (as a login
    /// directory does for scp); empty or absent for the served root.
    pub remote_dir: Option<String>,
}

impl HostEntry {
    /// An entry with only its server.
    pub fn new(server: Endpoint) -> HostEntry {
        HostEntry {
            server,
            token_file: None,
            fingerprint: None,
            remote_dir: None,
        }
    }
}

/// The client's config file, loaded.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    path: PathBuf,
    doc: DocumentMut,
    /// The hosts in file order.
    hosts: Vec<(String, HostEntry)>,
}

impl ClientConfig {
    /// The default file: `$XDG_CONFIG_HOME/ferry/config.toml`, else
    /// `~/.config/ferry/config.toml`; `None` when neither variable is set.
    pub fn default_path() -> Option<PathBuf> {
        crate::client::known_hosts::config_dir().map(|dir| dir.join(CONFIG_FILE))
    }

    /// An empty config that [`ClientConfig::save`] would write to `path`.
    pub fn empty(path: &Path) -> ClientConfig {
        ClientConfig {
            path: path.to_path_buf(),
            doc: DocumentMut::new(),
            hosts: Vec::new(),
        }
    }

    /// Reads `path`; a missing file is an empty config. Errors are usage
    /// errors that name the file (and the line, for TOML).
    pub fn load(path: &Path) -> Result<ClientConfig, Error> {
        let fail = |why: String| Error::Usage(format!("{}: {why}", path.display()));
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ClientConfig::empty(path))
            }
            Err(err) => return Err(fail(err.to_string())),
        };
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| fail(err.to_string()))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "over {MAX_CONFIG_BYTES} bytes, so not a config file"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
        ClientConfig::parse(path, &text).map_err(fail)
    }

    /// Parses `text` as the file at `path`.
    fn parse(path: &Path, text: &str) -> Result<ClientConfig, String> {
        let doc: DocumentMut = text
            .parse()
            .map_err(|err| format!("not valid TOML: {err}"))?;
        let mut hosts = Vec::new();
        for (key, item) in doc.iter() {
            if key == "hosts" {
                let table = item.as_table_like().ok_or(
                    "`hosts` must be a table of hosts, as in [hosts.nas] server = \"nas.lan:9001\"",
                )?;
                for (name, entry) in table.iter() {
                    let entry = parse_entry(path, name, entry)
                        .map_err(|why| format!("[hosts.{name}]: {why}"))?;
                    hosts.push((name.to_string(), entry));
                }
            } else if item.is_table_like() || item.is_array_of_tables() {
                return Err(format!(
                    "unknown section `{key}`; the client reads [hosts.NAME] tables (top-level \
                     keys are `ferry serve` settings)"
                ));
            }
            // Any other top-level key is a `ferry serve` setting, which
            // `ferry serve --config` checks.
        }
        Ok(ClientConfig {
            path: path.to_path_buf(),
            doc,
            hosts,
        })
    }

    /// The file this config was read from and is saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|(n, _)| n == name).map(|(_, e)| e)
    }

    /// Every host, in file order.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, &HostEntry)> {
        self.hosts.iter().map(|(n, e)| (n.as_str(), e))
    }

    /// Adds the host `name`, or replaces its entry (keeping its place and
    /// any comments around it). A relative `token_file` is kept as given in
    /// the file and taken from the config file's directory.
    pub fn add_host(&mut self, name: &str, entry: HostEntry) -> Result<(), Error> {
        check_host_name(name).map_err(Error::Usage)?;
        let mut table = Table::new();
        table.insert("server", toml_edit::value(entry.server.to_string()));
        if let Some(file) = &entry.token_file {
            let text = file.to_str().ok_or_else(|| {
                Error::Usage(format!(
                    "the token file {} is not UTF-8, which TOML cannot hold",
                    file.display()
                ))
            })?;
            table.insert("token-file", toml_edit::value(text));
        }
        if let Some(fp) = &entry.fingerprint {
            table.insert("fingerprint", toml_edit::value(fp.to_string()));
        }
        if let Some(dir) = &entry.remote_dir {
            table.insert("remote-dir", toml_edit::value(dir.as_str()));
        }
        let hosts = self
            .doc
            .entry("hosts")
            .or_insert_with(|| {
                let mut hosts = Table::new();
                // `[hosts.nas]` headers only, no empty `[hosts]`.
                hosts.set_implicit(true);
                Item::Table(hosts)
            })
            .as_table_like_mut()
            .ok_or_else(|| {
                Error::Usage(format!("{}: `hosts` is not a table", self.path.display()))
            })?;
        match hosts.get_mut(name) {
            // Replace the settings, keep the header's comments and place.
            Some(Item::Table(old)) => {
                old.clear();
                for (key, value) in table.iter() {
                    old.insert(key, value.clone());
                }
            }
            _ => {
                hosts.insert(name, Item::Table(table));
            }
        }
        let resolved = HostEntry {
            token_file: entry.token_file.map(|file| resolve_path(&self.path, &file)),
            ..entry
        };
        match self.hosts.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = resolved,
            None => self.hosts.push((name.to_string(), resolved)),
        }
        Ok(())
    }

    /// Removes the host `name`; whether it was there.
    pub fn remove_host(&mut self, name: &str) -> bool {
        let before = self.hosts.len();
        self.hosts.retain(|(n, _)| n != name);
        if let Some(hosts) = self.doc.get_mut("hosts").and_then(Item::as_table_like_mut) {
            hosts.remove(name);
        }
        self.hosts.len() != before
    }

    /// Writes the config to its file: a temporary file beside it (mode
    /// 0600, created exclusively), synced, renamed over the old one, and
    /// the directory synced, so a crash leaves the old file or the new one.
    /// The directory is created (mode 0700) if missing. Another writer
    /// between this config's `load` and `save` loses its change.
    pub fn save(&self) -> Result<(), Error> {
        let cannot = |err: std::io::Error| {
            Error::Usage(format!("cannot write {}: {err}", self.path.display()))
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(cannot)?;
        let name = self.path.file_name().unwrap_or(OsStr::new(CONFIG_FILE));
        let tmp = dir.join(format!(
            ".{}.tmp.{}",
            String::from_utf8_lossy(name.as_bytes()),
            std::process::id()
        ));
        let open = || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
        };
        // A temporary file of this process id is a crashed earlier run's.
        let mut file = match open() {
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp).map_err(cannot)?;
                open()
            }
            other => other,
        }
        .map_err(cannot)?;
        let written = file
            .write_all(self.doc.to_string().as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(err) = written {
            let _ = fs::remove_file(&tmp);
            return Err(cannot(err));
        }
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(cannot)
    }
}

/// Checks a host name: 1 to [`MAX_HOST_NAME_BYTES`] ASCII letters, digits,
/// `.`, `-` and `_`, starting with a letter or digit, so that `NAME:PATH`
/// reads one way only.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_HOST_NAME_BYTES
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a host name: use up to {MAX_HOST_NAME_BYTES} letters, digits, `.`, \
             `-` and `_`, starting with a letter or digit"
        ))
    }
}

/// A `[hosts.NAME]` table.
fn parse_entry(config: &Path, name: &str, item: &Item) -> Result<HostEntry, String> {
    check_host_name(name)?;
    let table = item
        .as_table_like()
        .ok_or("a host is a table, as in [hosts.nas] server = \"nas.lan:9001\"")?;
    for (key, _) in table.iter() {
        if !HOST_KEYS.contains(&key) {
            return Err(format!(
                "unknown setting `{key}`; a host has {}",
                HOST_KEYS.join(", ")
            ));
        }
    }
    let text = |key: &str| -> Result<Option<&str>, String> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => item
                .as_str()
                .map(Some)
                .ok_or_else(|| format!("`{key}` must be a string")),
        }
    };
    let server = text("server")?
        .ok_or("missing `server`, the host's address, as in server = \"nas.lan:9001\"")?
        .parse::<Endpoint>()
        .map_err(|err| format!("`server`: {err}"))?;
    let fingerprint = text("fingerprint")?
        .map(|fp| {
            fp.parse::<Fingerprint>()
                .map_err(|err| format!("`fingerprint`: {err}"))
        })
        .transpose()?;
    Ok(HostEntry {
        server,
        token_file: text("token-file")?.map(|file| resolve_path(config, Path::new(file))),
        fingerprint,
        remote_dir: text("remote-dir")?.map(str::to_string),
    })
}

/// A path from the config file: `~/` from `HOME`, relative from the
/// config file's directory.
fn resolve_path(config: &Path, path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(home).join(rest);
        }
    }
    if path.is_absolute() {
        return path.to_path_buf();
    }
    config.parent().unwrap_or(Path::new(".")).join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientConfig, String> {
        ClientConfig::parse(Path::new("/etc/ferry/config.toml"), text)
    }

    #[test]
    fn hosts_are_read_with_every_setting_and_relative_paths_from_the_file() {
        let fp = Fingerprint::of_certificate(b"nas");
        let config = parse(&format!(
            "listen = \"0.0.0.0:9001\"  # a serve setting, not the client's\n\
             [hosts.nas]\nserver = \"NAS.lan:9002\"\ntoken-file = \"nas.token\"\n\
             fingerprint = \"{fp}\"\nremote-dir = \"backup\"\n\
             [hosts.pi]\nserver = \"[::1]:7\"\ntoken-file = \"/abs/pi.token\"\n"
        ))
        .unwrap();
        let names: Vec<&str> = config.hosts().map(|(n, _)| n).collect();
        assert_eq!(names, ["nas", "pi"]);
        let nas = config.host("nas").unwrap();
        assert_eq!(nas.server.to_string(), "nas.lan:9002");
        assert_eq!(
            nas.token_file.as_deref(),
            Some(Path::new("/etc/ferry/nas.token"))
        );
        assert_eq!(nas.fingerprint, Some(fp));
        assert_eq!(nas.remote_dir.as_deref(), Some("backup"));
        let pi = config.host("pi").unwrap();
        assert_eq!(pi.token_file.as_deref(), Some(Path::new("/abs/pi.token")));
        assert_eq!(pi.remote_dir, None);
        assert!(config.host("other").is_none());
    }

    #[test]
    fn mistakes_are_refused_by_name() {
        for (text, needle) in [
            ("[hosts.nas]\n", "missing `server`"),
            ("[hosts.nas]\nserver = 9001\n", "`server` must be a string"),
            ("[hosts.nas]\nserver = \"h:x\"\n", "`server`"),
            (
                "[hosts.nas]\nserver = \"h:1\"\nport = 2\n",
                "unknown setting `port`",
            ),
            (
                "[hosts.nas]\nserver = \"h:1\"\nfingerprint = \"md5\"\n",
                "`fingerprint`",
            ),
            ("[host.nas]\nserver = \"h:1\"\n", "unknown section `host`"),
            ("[hosts.\"a:b\"]\nserver = \"h:1\"\n", "not a host name"),
            ("hosts = 3\n", "`hosts` must be a table"),
            ("[hosts\n", "not valid TOML"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn host_names_read_one_way_only() {
        for good in ["nas", "NAS-2", "pi.local", "a_b", "9"] {
            assert!(check_host_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_HOST_NAME_BYTES + 1);
        for bad in [
            "",
            "a:b",
            "a/b",
            "-x",
            ".x",
            "a b",
            "ü",
            "[::1]",
            long.as_str(),
        ] {
            assert!(check_host_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_file_is_empty_and_save_creates_it_private_keeping_comments() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        let mut config = ClientConfig::load(&path).unwrap();
        assert_eq!(config.hosts().count(), 0);
        let fp = Fingerprint::of_certificate(b"x");
        config
            .add_host(
                "nas",
                HostEntry {
                    token_file: Some("nas.token".into()),
                    fingerprint: Some(fp),
                    ..HostEntry::new("nas.lan:9001".parse().unwrap())
                },
            )
            .unwrap();
        config.save().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        // A user's comment and serve setting survive a rewrite.
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("# mine\nlisten = \"127.0.0.1:0\"\n{text}")).unwrap();
        let mut config = ClientConfig::load(&path).unwrap();
        assert_eq!(
            config.host("nas").unwrap().token_file.as_deref(),
            Some(path.parent().unwrap().join("nas.token").as_path())
        );
        config
            .add_host("pi", HostEntry::new("pi:1".parse().unwrap()))
            .unwrap();
        config
            .add_host("nas", HostEntry::new("nas.lan:9002".parse().unwrap()))
            .unwrap();
        config.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# mine\nlisten = \"127.0.0.1:0\"\n"),
            "{text}"
        );
        let again = ClientConfig::load(&path).unwrap();
        let hosts: Vec<(&str, String)> = again
            .hosts()
            .map(|(n, e)| (n, e.server.to_string()))
            .collect();
        assert_eq!(
            hosts,
            [("nas", "nas.lan:9002".into()), ("pi", "pi:1".into())]
        );
        assert_eq!(
            again.host("nas").unwrap().fingerprint,
            None,
            "replaced whole"
        );
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left"
        );

        let mut config = again;
        assert!(config.remove_host("pi"));
        assert!(!config.remove_host("pi"));
        config.save().unwrap();
        assert!(ClientConfig::load(&path).unwrap().host("pi").is_none());
    }

    #[test]
    fn an_oversized_or_unreadable_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        let err = ClientConfig::load(&big).unwrap_err().to_string();
        assert!(err.contains("big.toml") && err.contains("over"), "{err}");
        let err = ClientConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(ClientConfig::empty(&big)
            .add_host("bad name", HostEntry::new("h:1".parse().unwrap()))
            .is_err());
    }
}
