//! Connecting over QUIC (`quic://HOST:PORT`, `--quic`): the handshake, the
//! same pin check as TLS over TCP, and one bidirectional stream that the
//! rest of the client uses as it uses a TCP connection. [`QuicPath`] lets
//! a caller move the connection to another local port, as a laptop that
//! changes networks does; quinn carries the connection over.

use std::io;
use std::net::SocketAddr;

use super::{check_pin, ClientOptions, Notice};
use crate::error::Error;
use crate::transport::quic::{self, close, QuicStream};
use crate::transport::Stream;

/// The QUIC connection behind a client's stream, kept to close it
/// properly.
#[derive(Debug)]
pub(crate) struct QuicLink {
    pub(crate) connection: quinn::Connection,
    pub(crate) endpoint: quinn::Endpoint,
}

impl QuicLink {
    /// Closes the connection and waits, for at most `grace`, until the
    /// close has left in a packet, so the server does not hold the
    /// connection until its idle timeout. Not until the endpoint is idle:
    /// that adds QUIC's draining period (three probe timeouts, several
    /// round trips) to every command, for nothing the server needs.
    pub(crate) async fn close(&self, grace: std::time::Duration) {
        if self.connection.close_reason().is_some() {
            return; // Closed already, by the server or a lost path.
        }
        let sent = self.connection.stats().udp_tx.datagrams;
        self.connection.close(close::DONE.into(), b"done");
        // Once closed, quinn sends nothing but the close; quinn tells no
        // event for it, its packet count does.
        let _ = tokio::time::timeout(grace, async {
            while self.connection.stats().udp_tx.datagrams == sent {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await;
    }
}

/// A handle on the local end of a client's QUIC connection.
#[derive(Debug, Clone)]
pub struct QuicPath {
    endpoint: quinn::Endpoint,
}

impl QuicPath {
    /// The local UDP address the connection sends from.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Moves the connection to a fresh UDP socket on a new port (of the
    /// same address family) and returns its address. Requests in flight
    /// go on: the server sees the new address and validates it (QUIC
    /// connection migration).
    pub fn move_to_new_port(&self) -> io::Result<SocketAddr> {
        let current = self.endpoint.local_addr()?;
        let socket = quic::bind_udp(SocketAddr::new(current.ip(), 0), &crate::limits::QUIC)?;
        let moved = socket.local_addr()?;
        self.endpoint.rebind(socket)?;
        Ok(moved)
    }
}

/// Connects to the QUIC server `host` at one of `addrs`, checks its pin as
/// a TCP server's is checked, and opens the stream the client speaks on.
pub(crate) async fn connect(
    options: &ClientOptions,
    host: &str,
    addrs: &[SocketAddr],
) -> Result<(Stream, QuicLink, Option<Notice>), Error> {
    let shown = options.server.to_string();
    let mut last_err = None;
    for &addr in addrs {
        let endpoint = quic::client_endpoint(addr).map_err(|source| Error::Connect {
            endpoint: shown.clone(),
            source,
        })?;
        let connecting = endpoint
            .connect(addr, tls_name(host))
            .map_err(|err| Error::Connect {
                endpoint: shown.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, err.to_string()),
            })?;
        match tokio::time::timeout(options.connect_timeout, connecting).await {
            Ok(Ok(connection)) => {
                let link = QuicLink {
                    connection,
                    endpoint,
                };
                return opened(options, addr, link).await;
            }
            Ok(Err(err)) => last_err = Some(handshake_error(&shown, err)),
            Err(_) => {
                last_err = Some(Error::Connect {
                    endpoint: shown.clone(),
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no QUIC answer within {:?} (is the server run with --quic, and \
                             does UDP reach it?)",
                            options.connect_timeout
                        ),
                    ),
                })
            }
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Connect {
        endpoint: shown,
        source: io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address"),
    }))
}

/// The pin check and the stream, once the handshake is done.
async fn opened(
    options: &ClientOptions,
    addr: SocketAddr,
    link: QuicLink,
) -> Result<(Stream, QuicLink, Option<Notice>), Error> {
    let offered = quic::peer_fingerprint(&link.connection)
        .ok_or_else(|| Error::Protocol("the server showed no certificate".into()))?;
    // Pinned under the host and port as TCP names them: one certificate,
    // one pin, however it is reached.
    let pinned_as = options.server.without_quic().to_string();
    let notice = match check_pin(options, &pinned_as, Some(addr), offered) {
        Ok(notice) => notice,
        Err(err) => {
            link.close(std::time::Duration::from_millis(100)).await;
            return Err(err);
        }
    };
    let (send, recv) = link
        .connection
        .open_bi()
        .await
        .map_err(|err| Error::Connect {
            endpoint: options.server.to_string(),
            source: err.into(),
        })?;
    let stream = Stream::Quic(Box::new(QuicStream::new(send, recv)));
    Ok((stream, link, notice))
}

/// The name sent in the handshake: names are not checked (the pin is),
/// but quinn needs a valid one.
fn tls_name(host: &str) -> &str {
    match rustls::pki_types::ServerName::try_from(host) {
        Ok(_) => host,
        Err(_) => "ferry",
    }
}

/// A failed QUIC handshake, as a TLS one is reported when it is the
/// handshake's fault (a refused ALPN, a closed connection).
fn handshake_error(shown: &str, err: quinn::ConnectionError) -> Error {
    match err {
        quinn::ConnectionError::TimedOut | quinn::ConnectionError::Reset => Error::Connect {
            endpoint: shown.to_string(),
            source: err.into(),
        },
        other => Error::Tls {
            endpoint: shown.to_string(),
            source: io::Error::new(io::ErrorKind::ConnectionRefused, other.to_string()),
        },
    }
}

impl super::Client {
    /// The local end of this client's QUIC connection, to move it to
    /// another port; `None` over TCP or a Unix socket.
    pub fn quic_path(&self) -> Option<QuicPath> {
        self.quic.as_ref().map(|link| QuicPath {
            endpoint: link.endpoint.clone(),
        })
    }
}
