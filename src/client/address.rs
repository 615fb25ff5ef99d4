//! Where a command-line argument points, read as scp reads it: `HOST:PATH`
//! is a path on HOST, anything else is a plain path (local or remote, as
//! the command's place for it says).
//!
//! HOST is a host of the client's config file (`nas:backup/`), or an
//! address with its port (`nas.lan:9001:backup/`, `[::1]:9001:backup/`).
//! An argument with a `/` before its first colon is always a plain path,
//! so a local file with a colon is written `./a:b`. A name before a colon
//! that is neither is an error ([`Error::UnknownHost`]) rather than a
//! guess: `ferry put report:v2.pdf` must not upload to the wrong place.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::config::{ClientConfig, HostEntry};
use crate::error::Error;
use crate::transport::{Endpoint, Fingerprint};

/// A server named on the command line, with what the config says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as typed: a configured name or an address.
    pub name: String,
    /// Where it listens.
    pub server: Endpoint,
    /// Its token file, from the config.
    pub token_file: Option<PathBuf>,
    /// The certificate it must show, from the config.
    pub fingerprint: Option<Fingerprint>,
    /// Where relative remote paths start, beneath the served root; empty
    /// for the root.
    pub remote_dir: Vec<u8>,
}

impl Target {
    /// The configured host `name`.
    pub fn named(name: &str, entry: &HostEntry) -> Target {
        let dir = entry.remote_dir.as_deref().unwrap_or_default();
        Target {
            name: name.to_string(),
            server: entry.server.clone(),
            token_file: entry.token_file.clone(),
            fingerprint: entry.fingerprint,
            remote_dir: dir.trim_matches('/').as_bytes().to_vec(),
        }
    }

    /// A host given by its address, with nothing configured.
    pub fn address(server: Endpoint) -> Target {
        Target {
            name: server.to_string(),
            server,
            token_file: None,
            fingerprint: None,
            remote_dir: Vec::new(),
        }
    }

    /// The path beneath the served root that `path`, as typed after
    /// `HOST:`, names: from the remote directory, or from the root when it
    /// starts with `/`.
    pub fn remote_path(&self, path: &[u8]) -> Vec<u8> {
        if path.first() == Some(&b'/') {
            let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
            return path[start..].to_vec();
        }
        if self.remote_dir.is_empty() {
            return path.to_vec();
        }
        if path.is_empty() {
            return self.remote_dir.clone();
        }
        [self.remote_dir.as_slice(), b"/", path].concat()
    }
}

/// An argument of a file command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// No host: a local path, or a remote path on the default server.
    Plain(OsString),
    /// `HOST:PATH`; `path` as typed after the colon.
    Remote {
        /// The host.
        target: Target,
        /// The path as typed (see [`Target::remote_path`]).
        path: Vec<u8>,
    },
}

/// Whether `arg` could name a host, so the config file is needed to read
/// it: it has a colon with no `/` before it.
pub fn may_name_host(arg: &OsStr) -> bool {
    host_colon(arg.as_bytes()).is_some()
}

/// Reads one argument of a file command.
pub fn parse_arg(arg: &OsStr, config: &ClientConfig) -> Result<Arg, Error> {
    let bytes = arg.as_bytes();
    let Some(colon) = host_colon(bytes) else {
        return Ok(Arg::Plain(arg.to_os_string()));
    };
    let (head, rest) = (&bytes[..colon], &bytes[colon + 1..]);
    let shown = String::from_utf8_lossy(bytes);
    if head.is_empty() {
        return Err(Error::Usage(format!(
            "{shown:?} names no host before its colon; a local path with a colon is written \
             ./{shown}"
        )));
    }
    let Ok(head) = std::str::from_utf8(head) else {
        return Err(Error::Usage(format!(
            "{shown:?}: a host name is text; a local path with a colon is written ./{shown}"
        )));
    };
    if let Some(entry) = config.host(head) {
        return Ok(Arg::Remote {
            target: Target::named(head, entry),
            path: rest.to_vec(),
        });
    }
    // An address and its port, then the path: HOST:PORT:PATH.
    let (port, path) = match rest.iter().position(|&b| b == b':') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    if !port.is_empty() && port.iter().all(u8::is_ascii_digit) {
        let address = format!("{head}:{}", String::from_utf8_lossy(port));
        let server = address
            .parse::<Endpoint>()
            .map_err(|err| Error::Usage(format!("{shown:?}: {err}")))?;
        return Ok(Arg::Remote {
            target: Target::address(server),
            path: path.to_vec(),
        });
    }
    Err(Error::UnknownHost {
        name: head.to_string(),
        config: config.path().to_path_buf(),
    })
}

/// Reads a host argument (`ferry exec HOST`, `ferry shell HOST`): a
/// configured name, or an address with its port (or `unix:PATH`).
pub fn parse_host(text: &str, config: &ClientConfig) -> Result<Target, Error> {
    if let Some(entry) = config.host(text) {
        return Ok(Target::named(text, entry));
    }
    if text.contains(':') {
        return text
            .parse::<Endpoint>()
            .map(Target::address)
            .map_err(|err| Error::Usage(format!("host {text:?}: {err}")));
    }
    Err(Error::UnknownHost {
        name: text.to_string(),
        config: config.path().to_path_buf(),
    })
}

/// Whether a remote path is a pattern for the server to expand: it holds
/// `*`, `?` or `[` (escaped with `\` to match them as they are).
pub fn is_pattern(path: &[u8]) -> bool {
    path.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Where `HOST:` ends: at the first colon, unless a `/` comes before it;
/// for a bracketed IPv6 address, at the first colon after the `]`.
fn host_colon(bytes: &[u8]) -> Option<usize> {
    let from = if bytes.first() == Some(&b'[') {
        let close = bytes.iter().position(|&b| b == b']')?;
        if bytes[..close].contains(&b'/') {
            return None;
        }
        close
    } else {
        0
    };
    let colon = from + bytes[from..].iter().position(|&b| b == b':')?;
    (!bytes[..colon].contains(&b'/')).then_some(colon)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> ClientConfig {
        let mut config = ClientConfig::empty(Path::new("/home/u/.config/ferry/config.toml"));
        let entry = HostEntry {
            remote_dir: Some("/backup/".into()),
            ..HostEntry::new("nas.lan:9002".parse().unwrap())
        };
        config.add_host("nas", entry).unwrap();
        config
            .add_host("pi", HostEntry::new("pi:1".parse().unwrap()))
            .unwrap();
        config
    }

    fn remote(arg: &str) -> (String, String) {
        match parse_arg(OsStr::new(arg), &config()).unwrap() {
            Arg::Remote { target, path } => (
                target.server.to_string(),
                String::from_utf8(target.remote_path(&path)).unwrap(),
            ),
            Arg::Plain(p) => panic!("{arg} read as plain {p:?}"),
        }
    }

    #[test]
    fn configured_names_and_addresses_with_ports_are_hosts() {
        assert_eq!(
            remote("nas:x.txt"),
            ("nas.lan:9002".into(), "backup/x.txt".into())
        );
        assert_eq!(remote("nas:"), ("nas.lan:9002".into(), "backup".into()));
        assert_eq!(
            remote("nas:/etc/x"),
            ("nas.lan:9002".into(), "etc/x".into())
        );
        assert_eq!(remote("pi:a:b"), ("pi:1".into(), "a:b".into()));
        assert_eq!(
            remote("box.lan:9001:dir/"),
            ("box.lan:9001".into(), "dir/".into())
        );
        assert_eq!(remote("127.0.0.1:7"), ("127.0.0.1:7".into(), "".into()));
        assert_eq!(remote("[::1]:9001:a"), ("[::1]:9001".into(), "a".into()));
        assert_eq!(remote("[::1]:9001"), ("[::1]:9001".into(), "".into()));
    }

    #[test]
    fn paths_without_a_host_are_plain() {
        for plain in ["a.txt", "./a:b", "dir/a:b", "/abs/a:b", "-", "", "[x/y]:1"] {
            assert_eq!(
                parse_arg(OsStr::new(plain), &config()).unwrap(),
                Arg::Plain(plain.into()),
                "{plain}"
            );
            assert!(!may_name_host(OsStr::new(plain)), "{plain}");
        }
        assert!(may_name_host(OsStr::new("nas:x")));
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_the_config_file() {
        for arg in ["report:v2.pdf", "nas.lan:backup", "h:99999x"] {
            let err = parse_arg(OsStr::new(arg), &config()).unwrap_err();
            assert!(matches!(err, Error::UnknownHost { .. }), "{arg}: {err}");
            assert!(err
                .to_string()
                .contains("/home/u/.config/ferry/config.toml"));
            assert!(err.hint().unwrap().contains("ferry pair"));
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
        }
        for bad in [":x", "h:99999:x"] {
            let err = parse_arg(OsStr::new(bad), &config()).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn a_host_argument_is_a_name_or_an_address() {
        let config = config();
        assert_eq!(
            parse_host("nas", &config).unwrap().server.to_string(),
            "nas.lan:9002"
        );
        assert_eq!(
            parse_host("127.0.0.1:5", &config)
                .unwrap()
                .server
                .to_string(),
            "127.0.0.1:5"
        );
        assert_eq!(
            parse_host("unix:/run/f.sock", &config)
                .unwrap()
                .server
                .to_string(),
            "unix:/run/f.sock"
        );
        assert!(matches!(
            parse_host("uptime", &config),
            Err(Error::UnknownHost { .. })
        ));
        assert!(matches!(parse_host("h:x", &config), Err(Error::Usage(_))));
    }

    #[test]
    fn patterns_are_paths_with_wildcards() {
        assert!(is_pattern(b"logs/*.log"));
        assert!(is_pattern(b"a?"));
        assert!(is_pattern(b"[ab]"));
        assert!(!is_pattern(b"plain/path.txt"));
    }
}
