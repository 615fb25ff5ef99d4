//! Where a server listens or a client connects: `host:port`, `[v6]:port`,
//! `unix:PATH`, or (for a client) `quic://host:port`.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// The port ferry uses when an address names none.
pub const DEFAULT_PORT: u16 = 9001;

/// A TCP host and port, or a Unix-domain socket path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TCP address; `host` is a name, an IPv4 address or a bare IPv6
    /// address (without brackets).
    Tcp { host: String, port: u16 },
    /// A Unix-domain socket.
    Unix(PathBuf),
    /// A QUIC server (`quic://HOST:PORT`): a UDP host and port. Clients
    /// connect to it; `ferry serve --quic` takes a plain `HOST:PORT`.
    Quic { host: String, port: u16 },
}

impl Endpoint {
    /// Resolves a TCP endpoint to socket addresses (names via the system
    /// resolver). Unix endpoints resolve to nothing.
    pub async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match self {
            Endpoint::Tcp { host, port } | Endpoint::Quic { host, port } => {
                if let Ok(ip) = host.parse::<IpAddr>() {
                    return Ok(vec![SocketAddr::new(ip, *port)]);
                }
                Ok(tokio::net::lookup_host((host.as_str(), *port))
                    .await?
                    .collect())
            }
            Endpoint::Unix(_) => Ok(Vec::new()),
        }
    }

    /// Whether every address this endpoint names stays on this machine:
    /// a Unix socket, or TCP addresses that all are loopback.
    pub async fn is_local(&self) -> io::Result<bool> {
        match self {
            Endpoint::Unix(_) => Ok(true),
            Endpoint::Tcp { .. } | Endpoint::Quic { .. } => {
                let addrs = self.resolve().await?;
                Ok(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()))
            }
        }
    }

    /// Whether this is a TCP endpoint (the kind that speaks TLS).
    pub fn is_tcp(&self) -> bool {
        matches!(self, Endpoint::Tcp { .. })
    }

    /// Whether this is a QUIC endpoint.
    pub fn is_quic(&self) -> bool {
        matches!(self, Endpoint::Quic { .. })
    }

    /// The same host and port over QUIC (`--quic`); a Unix socket or a
    /// QUIC endpoint stays as it is.
    pub fn into_quic(self) -> Endpoint {
        match self {
            Endpoint::Tcp { host, port } => Endpoint::Quic { host, port },
            other => other,
        }
    }

    /// The host and port as TCP names them: what a QUIC server is pinned
    /// under, so that one certificate has one pin whichever way it is
    /// reached.
    pub fn without_quic(&self) -> Endpoint {
        match self {
            Endpoint::Quic { host, port } => Endpoint::Tcp {
                host: host.clone(),
                port: *port,
            },
            other => other.clone(),
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Quic { .. } => write!(f, "quic://{}", self.without_quic()),
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Endpoint, String> {
        if let Some(rest) = text.strip_prefix("quic://") {
            return match rest.parse::<Endpoint>()? {
                Endpoint::Tcp { host, port } => Ok(Endpoint::Quic { host, port }),
                _ => Err(format!(
                    "`{text}`: quic:// takes a host and port, as in quic://nas.lan:{DEFAULT_PORT}"
                )),
            };
        }
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path, as in unix:/run/ferry.sock".into());
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if text.is_empty() {
            return Err("empty address; use HOST:PORT, [IPV6]:PORT or unix:PATH".into());
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (v6, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: missing `]` after the IPv6 address"))?;
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("`{v6}` is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{text}`: expected `:PORT` after `]`"))?,
                ),
            };
            (v6.to_string(), port)
        } else if text.matches(':').count() > 1 {
            return Err(format!(
                "`{text}`: write an IPv6 address in brackets, as in [::1]:{DEFAULT_PORT}"
            ));
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (text.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{text}`: missing host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("`{text}`: `{p}` is not a port number (0-65535)"))?,
        };
        Ok(Endpoint::Tcp {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_every_documented_form() {
        assert_eq!("127.0.0.1:9001".parse(), Ok(tcp("127.0.0.1", 9001)));
        assert_eq!("[::1]:9001".parse(), Ok(tcp("::1", 9001)));
        assert_eq!("Example.COM:80".parse(), Ok(tcp("example.com", 80)));
        assert_eq!("myhost".parse(), Ok(tcp("myhost", DEFAULT_PORT)));
        assert_eq!("[::1]".parse(), Ok(tcp("::1", DEFAULT_PORT)));
        assert_eq!(
            "unix:/tmp/f.sock".parse(),
            Ok(Endpoint::Unix("/tmp/f.sock".into()))
        );
        let quic = |host: &str, port| Endpoint::Quic {
            host: host.into(),
            port,
        };
        assert_eq!("quic://[::1]:7".parse(), Ok(quic("::1", 7)));
        assert_eq!("quic://NAS".parse(), Ok(quic("nas", DEFAULT_PORT)));
        assert_eq!(tcp("h", 1).into_quic(), quic("h", 1));
        assert_eq!(quic("h", 1).without_quic(), tcp("h", 1));
    }

    #[test]
    fn refuses_malformed_addresses_with_a_hint() {
        for bad in [
            "",
            "unix:",
            "::1:9001",
            "[::1",
            "[zz]:1",
            "host:99999",
            ":80",
            "h:x",
            "quic://",
            "quic://unix:/x",
            "quic://quic://h:1",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} parsed");
        }
        assert!("::1:9001"
            .parse::<Endpoint>()
            .unwrap_err()
            .contains("brackets"));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "127.0.0.1:9001",
            "[::1]:9001",
            "unix:/tmp/x.sock",
            "host:1",
            "quic://[::1]:9001",
            "quic://h:2",
        ] {
            assert_eq!(text.parse::<Endpoint>().unwrap().to_string(), text);
        }
    }

    #[tokio::test]
    async fn loopback_is_local_and_others_are_not() {
        assert!("127.0.0.1:1"
            .parse::<Endpoint>()
            .unwrap()
            .is_local()
            .await
            .unwrap());
        assert!("[::1]:1"
            .parse::<Endpoint>()
            .unwrap()
            .is_local()
            .await
            .unwrap());
        assert!("unix:/x"
            .parse::<Endpoint>()
            .unwrap()
            .is_local()
            .await
            .unwrap());
        assert!(!"0.0.0.0:1"
            .parse::<Endpoint>()
            .unwrap()
            .is_local()
            .await
            .unwrap());
        assert!(!"192.0.2.1:1"
            .parse::<Endpoint>()
            .unwrap()
            .is_local()
            .await
            .unwrap());
        assert!(!"[::]:1"
            .parse::<Endpoint>()
            .unwrap()
            .is_local()
            .await
            .unwrap());
    }
}
