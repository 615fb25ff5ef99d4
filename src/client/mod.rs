//! The client library: connect, check the server's identity, say hello, and
//! call services (one file per service). No terminal code lives here; what to
//! print is the CLI's business, so notices such as a new pin are returned.

pub mod address;
pub mod chat;
pub mod config;
pub mod datagram;
pub mod echo;
pub mod exec;
pub mod files;
pub mod known_hosts;
pub mod pair;
pub mod quic;
mod ramp;
pub mod retry;
pub mod stream;
pub mod stripe;
pub mod sync;
pub mod token_file;

// The types this API takes and returns, so that its callers (the CLI among
// them) need no module but this one.
pub use crate::engine::state::default_state_dir;
pub use crate::engine::transfer::{Progress, TransferEvent};
pub use crate::engine::wire::WirePath;
pub use crate::error::{Error, EXIT_CONNECT, EXIT_USAGE};
pub use crate::escape::{escape_for_terminal, escape_line};
pub use crate::protocol::{ErrorReply, PROTOCOL_VERSION};
pub use crate::services::exec::job::JobInfo;
pub use crate::services::exec::pty::{ShellRequest, SCRIPT_SHELL_LINE};
pub use crate::services::exec::ExecRequest;
pub use crate::services::files::ops::FileInfo;
pub use crate::transport::{Endpoint, Fingerprint};

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::connection::{Connection, ConnectionConfig, ConnectionError};
use crate::protocol::{Header, Hello, Reply, Welcome};
use crate::transport::{tls, Stream};
use known_hosts::{KnownHosts, ServerCheck};

/// How to reach and trust a server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server.
    pub server: Endpoint,
    /// The access token; when `None`, the one in `state_dir` is used.
    pub token: Option<String>,
    /// A fingerprint the server must show (overrides and updates the pin).
    pub fingerprint: Option<Fingerprint>,
    /// Speak plain TCP instead of TLS (to a loopback server only, unless
    /// `allow_remote_plaintext`).
    pub plaintext: bool,
    /// Let `plaintext` reach a server off loopback, where anyone on the
    /// path can read the token and the traffic.
    pub allow_remote_plaintext: bool,
    /// Where pins live; `None` disables trust on first use, so only
    /// `fingerprint` can authenticate a TLS server.
    pub known_hosts: Option<KnownHosts>,
    /// The state directory of a server on this machine, for its token.
    pub state_dir: Option<PathBuf>,
    /// Deadline for the TCP connect and the TLS handshake.
    pub connect_timeout: Duration,
    /// Deadline for each step of a request.
    pub request_timeout: Duration,
    /// Header cap for both directions.
    pub max_header_bytes: usize,
}

impl ClientOptions {
    /// Options for `server` with the default known-hosts file and state
    /// directory, and no token or fingerprint given.
    pub fn new(server: Endpoint) -> ClientOptions {
        ClientOptions {
            server,
            token: None,
            fingerprint: None,
            plaintext: false,
            allow_remote_plaintext: false,
            known_hosts: known_hosts::default_path().map(KnownHosts::new),
            state_dir: crate::engine::state::default_state_dir(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_header_bytes: crate::limits::Limits::default().max_header_bytes,
        }
    }

    /// Checks that plaintext goes only where it cannot be overheard:
    /// every address the server resolved to must be loopback, unless
    /// `allow_remote_plaintext`. A usage error names the flag to add.
    pub fn check_plaintext_to(&self, addrs: &[std::net::SocketAddr]) -> Result<(), Error> {
        if !self.plaintext || self.allow_remote_plaintext {
            return Ok(());
        }
        match addrs.iter().find(|addr| !addr.ip().is_loopback()) {
            None => Ok(()),
            Some(addr) => Err(Error::Usage(format!(
                "--plaintext sends the token and everything else unencrypted, so it only talks \
                 to a server on loopback, and {} is {addr}; drop --plaintext (TLS is the \
                 default), or add --allow-remote-plaintext if nobody can listen on the way",
                self.server
            ))),
        }
    }

    fn resolve_token(&self) -> Result<String, Error> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let no_token = || Error::NoToken {
            endpoint: self.server.to_string(),
            looked_in: self
                .state_dir
                .as_ref()
                .map(|d| d.join(crate::engine::state::TOKEN_FILE)),
        };
        let dir = self.state_dir.as_ref().ok_or_else(no_token)?;
        match crate::engine::state::read_token(dir) {
            Ok(token) if !token.is_empty() => Ok(token),
            _ => Err(no_token()),
        }
    }
}

/// Something the client did that the user should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A server's certificate was pinned for the first time.
    Pinned {
        /// The server.
        endpoint: String,
        /// Its fingerprint.
        fingerprint: Fingerprint,
        /// The known-hosts file.
        known_hosts: PathBuf,
    },
    /// An older pin was replaced, as `--fingerprint` asked.
    Repinned {
        /// The server.
        endpoint: String,
        /// The new fingerprint.
        fingerprint: Fingerprint,
        /// The known-hosts file.
        known_hosts: PathBuf,
    },
}

/// A TLS handshake with the server over `tcp`: the stream and the
/// fingerprint of the certificate it showed, which the caller must check
/// (or, pairing, bind into its exchange) before sending anything.
pub(crate) async fn tls_handshake(
    tcp: tokio::net::TcpStream,
    host: &str,
    options: &ClientOptions,
) -> Result<
    (
        tokio_rustls::client::TlsStream<crate::transport::ReadAhead<tokio::net::TcpStream>>,
        Fingerprint,
    ),
    Error,
> {
    let endpoint = options.server.to_string();
    let connector = tokio_rustls::TlsConnector::from(tls::client_config());
    let handshake = connector.connect(
        tls::server_name(host),
        crate::transport::ReadAhead::new(tcp),
    );
    let tls_stream = tokio::time::timeout(options.connect_timeout, handshake)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the server did not finish the TLS handshake",
            ))
        })
        .map_err(|source| Error::Tls {
            endpoint,
            source: tls::in_plain_words(source, tls::Phase::Handshake),
        })?;
    let offered = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| Fingerprint::of_certificate(cert))
        .ok_or_else(|| Error::Protocol("the server showed no certificate".into()))?;
    Ok((tls_stream, offered))
}

/// A connection that has said hello. Dropped without [`Client::close`]
/// (an error on the way), it still ends TLS properly if the socket takes
/// the close_notify at once, so a refusal is not logged as a failure.
#[derive(Debug)]
pub struct Client {
    conn: Connection<Stream>,
    welcome: Welcome,
    notices: Vec<Notice>,
    key_exchange_group: Option<String>,
    /// The QUIC connection, when the stream is one of its streams.
    quic: Option<quic::QuicLink>,
    /// Whether the server has answered every request in full (its last
    /// frame read), so nothing this client still has to send matters to
    /// it: [`Client::close`] then need not wait for it to be delivered.
    answered: bool,
    closed: bool,
    /// How it connected: for a striped transfer's extra connections, and
    /// to reconnect to a detachable job.
    options: ClientOptions,
    /// The round trip of the hello exchange.
    hello_rtt: Duration,
    /// Whether the server is on this machine (loopback or a Unix socket).
    local: bool,
    /// Whether a detachable job's id is written to the command's stderr
    /// as it starts (see [`Client::announce_jobs`]).
    announce_jobs: bool,
    /// How the first extra stream of the last striped transfer to fail
    /// by a cut failed: its files fail one by one, not the transfer, so a
    /// retry is told this way ([`retry`]).
    stripe_cut: Option<Error>,
}

/// What a new connection says hello with, and whether its server is on
/// this machine (a striped transfer's automatic choice of streams).
struct Said<'a> {
    token: String,
    ticket: Option<Joins<'a>>,
    local: bool,
}

/// How an extra connection joins a striped transfer: its ticket, and
/// whether the server holds its ranges until the client says go.
#[derive(Clone, Copy)]
pub(crate) struct Joins<'a> {
    pub ticket: &'a str,
    pub hold: bool,
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.closed {
            self.conn.shutdown_now();
            if let Some(link) = &self.quic {
                link.connection
                    .close(crate::transport::quic::close::DONE.into(), b"client gone");
            }
        }
    }
}

impl Client {
    /// Connects, checks the server's certificate, and says hello. The token
    /// is sent only after the certificate has been checked.
    pub async fn connect(options: &ClientOptions) -> Result<Client, Error> {
        Client::open(options, None).await
    }

    /// Another connection to the same server for a striped transfer, let in
    /// by `ticket` instead of the token (TLS resumes the first one's
    /// session, so no full handshake either).
    pub(crate) async fn join(options: &ClientOptions, joins: Joins<'_>) -> Result<Client, Error> {
        Client::open(options, Some(joins)).await
    }

    async fn open(options: &ClientOptions, ticket: Option<Joins<'_>>) -> Result<Client, Error> {
        let token = match ticket {
            Some(_) => String::new(),
            None => options.resolve_token()?,
        };
        let endpoint = options.server.to_string();
        let mut notices = Vec::new();
        let mut key_exchange_group = None;
        let mut quic = None;
        if let Endpoint::Quic { host, .. } = &options.server {
            if options.plaintext {
                return Err(Error::Usage(
                    "QUIC is always encrypted; drop --plaintext, or connect over TCP".into(),
                ));
            }
            let cannot = |source| Error::Connect {
                endpoint: endpoint.clone(),
                source,
            };
            let addrs = options.server.resolve().await.map_err(cannot)?;
            let local = addrs.iter().all(|addr| addr.ip().is_loopback());
            let (stream, link, notice) = self::quic::connect(options, host, &addrs).await?;
            notices.extend(notice);
            quic = Some(link);
            let said = Said {
                token,
                ticket,
                local,
            };
            return Client::hello(stream, said, options, notices, None, quic).await;
        }
        let raw = tokio::time::timeout(options.connect_timeout, connect_raw(options))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Connect {
                    endpoint: endpoint.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {:?}", options.connect_timeout),
                    ),
                })
            })?;

        let local = match &raw {
            Stream::Tcp(tcp) => tcp.peer_addr().is_ok_and(|addr| addr.ip().is_loopback()),
            _ => true,
        };
        let stream = match (raw, &options.server) {
            (Stream::Tcp(tcp), Endpoint::Tcp { host, .. }) if !options.plaintext => {
                let reached = tcp.peer_addr().ok();
                let (tls_stream, offered) = tls_handshake(tcp, host, options).await?;
                if let Some(notice) = check_pin(options, &endpoint, reached, offered)? {
                    notices.push(notice);
                }
                key_exchange_group = tls::key_exchange_group(tls_stream.get_ref().1);
                tracing::debug!(
                    handshake = ?tls_stream.get_ref().1.handshake_kind(),
                    "TLS handshake with {endpoint}"
                );
                Stream::ClientTls(Box::new(tls_stream))
            }
            (raw, _) => raw,
        };
        let said = Said {
            token,
            ticket,
            local,
        };
        Client::hello(stream, said, options, notices, key_exchange_group, quic).await
    }

    /// Says hello on a connected (and, where it applies, pinned) stream.
    async fn hello(
        stream: Stream,
        said: Said<'_>,
        options: &ClientOptions,
        notices: Vec<Notice>,
        key_exchange_group: Option<String>,
        quic: Option<quic::QuicLink>,
    ) -> Result<Client, Error> {
        let endpoint = options.server.to_string();
        let config = ConnectionConfig {
            max_header_bytes: options.max_header_bytes,
            request_timeout: options.request_timeout,
            max_write_buffer_bytes: 256 * 1024,
            decrypts: stream.is_encrypted(),
        };
        let mut conn = Connection::new(stream, config);
        let client = Some(format!("ferry {}", env!("CARGO_PKG_VERSION")));
        let Said {
            token,
            ticket,
            local,
        } = said;
        let hello = match ticket {
            Some(joins) => crate::services::files::stripe::TicketHello {
                version: PROTOCOL_VERSION,
                ticket: joins.ticket.to_string(),
                hold: joins.hold,
                client,
            }
            .to_header(),
            None => Hello {
                version: PROTOCOL_VERSION,
                token,
                client,
            }
            .to_header(),
        };
        let asked = std::time::Instant::now();
        conn.send(hello, Bytes::new()).await?;
        let reply = match conn.reader().expect_header().await {
            Ok(reply) => reply,
            // A TLS server answers a plaintext hello with a TLS alert, which
            // does not parse as a frame.
            Err(ConnectionError::Frame(_)) if options.plaintext && options.server.is_tcp() => {
                return Err(Error::Protocol(
                    "the server did not answer in plaintext; it probably requires TLS \
                     (drop --plaintext)"
                        .into(),
                ))
            }
            Err(err) => return Err(err.into()),
        };
        let hello_rtt = asked.elapsed();
        let welcome = match Reply::from_header(reply) {
            Some(Reply::Ok(header)) => header
                .to_message::<Welcome>()
                .map_err(|err| Error::Protocol(format!("bad welcome: {err}")))?,
            Some(Reply::Error(err)) => return Err(Error::Refused(err)),
            None => return Err(Error::Protocol("the answer to hello is not a reply".into())),
        };
        tracing::debug!(
            server = ?welcome.server,
            version = welcome.version,
            key_exchange = key_exchange_group.as_deref().unwrap_or("none (no TLS)"),
            "connected to {endpoint}"
        );
        Ok(Client {
            conn,
            welcome,
            notices,
            key_exchange_group,
            quic,
            answered: true,
            closed: false,
            options: options.clone(),
            hello_rtt,
            local,
            announce_jobs: false,
            stripe_cut: None,
        })
    }

    /// The round trip of the hello exchange, which picks the streams of a
    /// transfer when `--streams` is not given.
    pub fn hello_rtt(&self) -> Duration {
        self.hello_rtt
    }

    /// The server's welcome: its version and services.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The TLS key exchange group the server agreed to, as IANA names it
    /// (`X25519MLKEM768`); `None` over plaintext or a Unix socket.
    pub fn key_exchange_group(&self) -> Option<&str> {
        self.key_exchange_group.as_deref()
    }

    /// Notices from connecting (a new pin), for the caller to show.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// The framed connection, for service calls. A call may send what the
    /// server needs until it has read the whole answer and says so with
    /// [`Client::answered`].
    pub(crate) fn connection(&mut self) -> &mut Connection<Stream> {
        self.answered = false;
        &mut self.conn
    }

    /// Tells [`Client::close`] that the server's answer to the last request
    /// has been read to its final frame: the server has everything it
    /// needed, and what is still on its way (exec's end of stdin, the
    /// stream's end) it no longer waits for.
    pub(crate) fn answered(&mut self) {
        self.answered = true;
    }

    /// Closes the connection politely. Over QUIC, unless every request was
    /// answered in full, the stream is finished and its last bytes
    /// acknowledged first: unlike TCP's kernel, nothing delivers them once
    /// this process is gone (a chat line, say, would be lost). Once
    /// answered, the connection closes at once, which saves the round
    /// trip of that acknowledgement; the server reads the close as the
    /// stream's end.
    pub async fn close(mut self) {
        let grace = Duration::from_secs(1);
        match &self.quic {
            Some(link) if self.answered => link.close(grace).await,
            Some(link) => {
                self.conn.shutdown(grace).await;
                link.close(grace).await;
            }
            None => self.conn.shutdown(grace).await,
        }
        self.closed = true;
    }
}

/// Reads a reply header: ok gives the header, an error frame becomes
/// [`Error::Remote`].
pub(crate) fn expect_ok(header: Header) -> Result<Header, Error> {
    match Reply::from_header(header) {
        Some(Reply::Ok(header)) => Ok(header),
        Some(Reply::Error(err)) => Err(Error::Remote(err)),
        None => Err(Error::Protocol("expected a reply frame".into())),
    }
}

/// Connects to the server; a plaintext connection only to addresses
/// [`ClientOptions::check_plaintext_to`] allows. The addresses checked are
/// the ones connected to: a name is resolved once.
async fn connect_raw(options: &ClientOptions) -> Result<Stream, Error> {
    let cannot = |source| Error::Connect {
        endpoint: options.server.to_string(),
        source,
    };
    match &options.server {
        Endpoint::Unix(path) => Ok(Stream::Unix(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(cannot)?,
        )),
        Endpoint::Tcp { .. } | Endpoint::Quic { .. } => {
            let addrs = options.server.resolve().await.map_err(cannot)?;
            options.check_plaintext_to(&addrs)?;
            connect_tcp(&addrs).await.map_err(cannot)
        }
    }
}

async fn connect_tcp(addrs: &[std::net::SocketAddr]) -> std::io::Result<Stream> {
    let mut last_err = None;
    for &addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(Stream::Tcp(stream));
            }
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolves to no address",
        )
    }))
}

/// Checks the offered fingerprint against `--fingerprint` or the pins of
/// the server as typed (`endpoint`) and of the address it was `reached`
/// at, pinning it under both on first use (see [`known_hosts`]).
fn check_pin(
    options: &ClientOptions,
    endpoint: &str,
    reached: Option<std::net::SocketAddr>,
    offered: Fingerprint,
) -> Result<Option<Notice>, Error> {
    if let Some(expected) = options.fingerprint {
        if expected != offered {
            return Err(Error::FingerprintMismatch {
                endpoint: endpoint.to_string(),
                expected,
                offered,
            });
        }
    }
    let Some(hosts) = &options.known_hosts else {
        return match options.fingerprint {
            Some(_) => Ok(None),
            None => Err(Error::Usage(
                "no known-hosts file (HOME and XDG_CONFIG_HOME are unset); pass --fingerprint"
                    .into(),
            )),
        };
    };
    let address = reached.map(|addr| Endpoint::from(addr).to_string());
    let mut keys = vec![endpoint];
    keys.extend(address.as_deref());
    let check = hosts.check_server(&keys, offered).map_err(|err| {
        Error::Io(std::io::Error::new(
            err.kind(),
            format!("cannot read {}: {err}", hosts.path().display()),
        ))
    })?;
    let pin = |keys: &[&str]| -> Result<(), Error> {
        hosts.pin_all(keys, offered).map_err(|err| {
            Error::Io(std::io::Error::new(
                err.kind(),
                format!("cannot write {}: {err}", hosts.path().display()),
            ))
        })
    };
    match check {
        ServerCheck::Known { missing } if missing.is_empty() => Ok(None),
        // Known under its other key: the same server, nothing to say.
        ServerCheck::Known { missing } => {
            let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
            pin(&missing).map(|()| None)
        }
        ServerCheck::Unknown => pin(&keys).map(|()| {
            Some(Notice::Pinned {
                endpoint: endpoint.to_string(),
                fingerprint: offered,
                known_hosts: hosts.path().to_path_buf(),
            })
        }),
        ServerCheck::Changed { .. } if options.fingerprint.is_some() => pin(&keys).map(|()| {
            Some(Notice::Repinned {
                endpoint: endpoint.to_string(),
                fingerprint: offered,
                known_hosts: hosts.path().to_path_buf(),
            })
        }),
        ServerCheck::Changed { key, pinned } => Err(Error::FingerprintChanged {
            endpoint: key,
            pinned,
            offered,
            known_hosts: hosts.path().to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(texts: &[&str]) -> Vec<std::net::SocketAddr> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn plaintext_goes_to_loopback_only_unless_allowed() {
        let plaintext = ClientOptions {
            plaintext: true,
            ..ClientOptions::new("server:9001".parse().unwrap())
        };
        let local = addrs(&["127.0.0.1:9001", "127.3.2.1:9001", "[::1]:9001"]);
        assert!(plaintext.check_plaintext_to(&local).is_ok());
        for remote in [
            "192.0.2.1:9001",
            "0.0.0.0:9001",
            "[::]:9001",
            "[2001:db8::1]:9001",
        ] {
            // One remote address among loopback ones is enough to refuse.
            let mixed = addrs(&["127.0.0.1:9001", remote]);
            let err = plaintext.check_plaintext_to(&mixed).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{remote}: {err}");
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
            assert!(
                err.to_string().contains("--allow-remote-plaintext"),
                "{err}"
            );
            let allowed = ClientOptions {
                allow_remote_plaintext: true,
                ..plaintext.clone()
            };
            assert!(allowed.check_plaintext_to(&mixed).is_ok(), "{remote}");
            let tls = ClientOptions {
                plaintext: false,
                ..plaintext.clone()
            };
            assert!(tls.check_plaintext_to(&mixed).is_ok(), "{remote}");
        }
    }
}
