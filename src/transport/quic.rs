//! QUIC as ferry speaks it: TLS 1.3 with the same certificate, provider
//! and pinning as TCP ([`super::tls`]), ALPN `ferry/1`, and each
//! bidirectional stream a byte stream ([`QuicStream`]) carrying ferry's
//! usual frames. The transport settings come from [`crate::limits::QUIC`];
//! nothing here knows frames or services.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::limits::QuicLimits;

/// The application close codes, which the other end shows.
pub mod close {
    /// The connection ends normally: for the peer's streams, as a FIN.
    pub const DONE: u32 = 0;
    /// The peer spoke another protocol than `ferry/1`.
    pub const WRONG_PROTOCOL: u32 = 1;
    /// The source is under a login penalty.
    pub const PENALISED: u32 = 2;
    /// No stream was open for `idle_timeout`.
    pub const IDLE: u32 = 3;
    /// The server is shutting down.
    pub const SHUTTING_DOWN: u32 = 4;
}

/// The one application protocol a ferry QUIC endpoint speaks; a peer that
/// offers no other is refused in the handshake.
pub const ALPN: &[u8] = b"ferry/1";

/// Where a connection's packets go, which decides how it paces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// To this machine: no loss, no queue but the kernel's.
    Loopback,
    /// Over a network, where loss and long round trips happen.
    Network,
}

impl Path {
    /// The path to `peer`.
    pub fn to(peer: std::net::IpAddr) -> Path {
        if peer.to_canonical().is_loopback() {
            Path::Loopback
        } else {
            Path::Network
        }
    }
}

/// The transport settings both ends use: windows for a fast, distant link,
/// the stream cap, the idle timeout, the congestion controller for `path`;
/// the client also sends keep-alives.
fn transport_config(limits: &QuicLimits, client: bool, path: Path) -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    if path == Path::Network {
        // quinn's default, Cubic, reads every loss as congestion: at 1%
        // random loss and 50 ms it crawls where Linux's TCP, with BBR as
        // these machines have it, keeps most of the link. BBR paces to the
        // bandwidth it measures. On loopback, where nothing is lost,
        // Cubic moves a big file faster (bench/RESULTS.md, "QUIC against
        // TLS over TCP").
        transport.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    transport
        .max_concurrent_bidi_streams(limits.max_streams_per_connection.into())
        // ferry uses bidirectional streams only.
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(limits.stream_receive_window_bytes.into())
        .receive_window(limits.connection_receive_window_bytes.into())
        .send_window(limits.send_window_bytes)
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(limits.max_idle_timeout)
                .expect("the QUIC idle timeout fits a varint"),
        ));
    if client {
        transport.keep_alive_interval(Some(limits.keep_alive_interval));
    }
    Arc::new(transport)
}

/// The server's QUIC configuration: its certificate, ALPN `ferry/1`,
/// migration allowed (a client that changes address keeps its
/// connection), Retry tokens that expire quickly.
pub fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    limits: &QuicLimits,
    max_handshakes: usize,
) -> Result<quinn::ServerConfig, String> {
    let mut tls = super::tls::unshared_server_config(cert, key).map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config
        .transport_config(transport_config(limits, false, Path::Network))
        .migration(true)
        .retry_token_lifetime(limits.retry_token_lifetime)
        // Connection attempts quinn holds before the accept loop takes
        // them, as the TCP door's handshakes.
        .max_incoming(max_handshakes);
    Ok(config)
}

/// `config` for a connection from a client on this machine: the same but
/// for the congestion controller ([`Path::Loopback`]).
pub fn loopback_server_config(
    config: &quinn::ServerConfig,
    limits: &QuicLimits,
) -> quinn::ServerConfig {
    let mut config = config.clone();
    config.transport_config(transport_config(limits, false, Path::Loopback));
    config
}

/// The client's QUIC configuration for a server over `path`: ferry's TLS
/// client (which leaves the identity check to the pin) with ALPN `ferry/1`.
pub fn client_config(path: Path) -> quinn::ClientConfig {
    let mut config = client_config_with_alpn(ALPN);
    config.transport_config(transport_config(&crate::limits::QUIC, true, path));
    config
}

/// [`client_config`] offering another ALPN, to test that the server
/// refuses it.
pub fn client_config_with_alpn(alpn: &[u8]) -> quinn::ClientConfig {
    let mut tls = super::tls::unshared_client_config();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)
        .expect("ferry's TLS client has the TLS 1.3 suite QUIC's initial packets need");
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config(&crate::limits::QUIC, true, Path::Network));
    config
}

/// A UDP socket bound to `addr` for QUIC: `[::]` takes IPv6 only, and the
/// kernel's buffers are raised toward
/// [`QuicLimits::udp_socket_buffer_bytes`] (it caps them at
/// `net.core.rmem_max` and `wmem_max`). GSO and GRO are quinn's, used
/// where the kernel has them.
pub fn bind_udp(addr: SocketAddr, limits: &QuicLimits) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // A kernel that refuses the size keeps its default: slower, not broken.
    let _ = socket.set_recv_buffer_size(limits.udp_socket_buffer_bytes);
    let _ = socket.set_send_buffer_size(limits.udp_socket_buffer_bytes);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The address a client binds its UDP socket to for reaching `server`:
/// any address of the same family, any port.
pub fn client_bind_addr(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// A client endpoint on a fresh UDP socket for reaching `server`.
pub fn client_endpoint(server: SocketAddr) -> io::Result<quinn::Endpoint> {
    let socket = bind_udp(client_bind_addr(server), &crate::limits::QUIC)?;
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    endpoint.set_default_client_config(client_config(Path::to(server.ip())));
    Ok(endpoint)
}

/// A server endpoint on `socket`.
pub fn server_endpoint(
    socket: std::net::UdpSocket,
    config: quinn::ServerConfig,
) -> io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// The fingerprint of the certificate a QUIC peer showed, if it showed one.
pub fn peer_fingerprint(connection: &quinn::Connection) -> Option<super::Fingerprint> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast_ref::<Vec<CertificateDer<'static>>>()?;
    certs
        .first()
        .map(|cert| super::Fingerprint::of_certificate(cert))
}

/// The ALPN a QUIC connection agreed on.
pub fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let data = connection.handshake_data()?;
    let data = data.downcast_ref::<quinn::crypto::rustls::HandshakeData>()?;
    data.protocol.clone()
}

/// What [`quinn::SendStream::stopped`] returns: done when the peer has
/// every byte we sent, or stopped the stream.
type Delivered =
    Pin<Box<dyn Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>> + Send + Sync>>;

/// One bidirectional QUIC stream as a byte stream. Shutting it down
/// finishes the stream and then waits until the peer has every byte, as
/// TLS's close_notify is written before a TCP close: a refusal sent just
/// before the connection closes still arrives.
pub struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    delivered: Option<Delivered>,
}

impl QuicStream {
    /// The two halves of an opened or accepted stream.
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> QuicStream {
        QuicStream {
            send,
            recv,
            delivered: None,
        }
    }
}

impl std::fmt::Debug for QuicStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicStream")
            .field("id", &self.send.id())
            .finish_non_exhaustive()
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().recv).poll_read(cx, buf)) {
            Err(err) if closed_done(&err) => Poll::Ready(Ok(())),
            done => Poll::Ready(done),
        }
    }
}

/// Whether a read failed because the peer closed the whole connection
/// with [`close::DONE`]: the end of the stream, as a TCP peer's FIN. A
/// client closes so once every request is answered, without waiting for
/// its stream's own end to be acknowledged.
fn closed_done(err: &io::Error) -> bool {
    let done = quinn::VarInt::from_u32(close::DONE);
    matches!(
        err.get_ref().and_then(|inner| inner.downcast_ref::<quinn::ReadError>()),
        Some(quinn::ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(closed)))
            if closed.error_code == done
    )
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.get_mut().send), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().send), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.delivered.is_none() {
            // Finishing twice, or after the peer stopped the stream, is no
            // failure: there is nothing left to send either way.
            let _ = this.send.finish();
            this.delivered = Some(Box::pin(this.send.stopped()));
        }
        let delivered = this.delivered.as_mut().expect("set above");
        // Stopped by the peer, or the connection gone: nothing more to wait
        // for.
        let _ = ready!(delivered.as_mut().poll(cx));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build_with_ferrys_certificate_and_provider() {
        let (cert, key) = super::super::tls::generate_certificate().unwrap();
        let key = PrivateKeyDer::try_from(key).unwrap();
        let config = server_config(CertificateDer::from(cert), key, &crate::limits::QUIC, 16);
        loopback_server_config(&config.unwrap(), &crate::limits::QUIC);
        client_config(Path::Loopback);
        client_config(Path::Network);
    }

    #[test]
    fn only_this_machine_is_a_loopback_path() {
        let path = |ip: &str| Path::to(ip.parse().unwrap());
        assert_eq!(path("127.0.0.1"), Path::Loopback);
        assert_eq!(path("127.3.2.1"), Path::Loopback);
        assert_eq!(path("::1"), Path::Loopback);
        assert_eq!(path("::ffff:127.0.0.1"), Path::Loopback);
        assert_eq!(path("10.199.0.2"), Path::Network);
        assert_eq!(path("::ffff:192.0.2.1"), Path::Network);
    }

    #[test]
    fn udp_buffers_are_raised_as_far_as_the_kernel_allows() {
        let limits = &crate::limits::QUIC;
        let socket = bind_udp("127.0.0.1:0".parse().unwrap(), limits).unwrap();
        let socket = socket2::SockRef::from(&socket);
        let cap = |name: &str| -> usize {
            let path = format!("/proc/sys/net/core/{name}");
            let text = std::fs::read_to_string(&path).expect("Linux's socket buffer caps");
            text.trim().parse().unwrap()
        };
        // Linux grants at most its cap, and reports twice what a
        // setsockopt granted (it counts its bookkeeping): more than a
        // socket left at the default shows.
        let granted = |cap: usize| 2 * limits.udp_socket_buffer_bytes.min(cap);
        assert!(socket.recv_buffer_size().unwrap() >= granted(cap("rmem_max")));
        assert!(socket.send_buffer_size().unwrap() >= granted(cap("wmem_max")));
    }

    #[test]
    fn only_the_peers_done_close_reads_as_the_end_of_a_stream() {
        let lost = |code: u32| -> io::Error {
            quinn::ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(
                quinn::ApplicationClose {
                    error_code: quinn::VarInt::from_u32(code),
                    reason: bytes::Bytes::new(),
                },
            ))
            .into()
        };
        assert!(closed_done(&lost(close::DONE)));
        assert!(!closed_done(&lost(close::IDLE)));
        assert!(!closed_done(&lost(close::SHUTTING_DOWN)));
        let reset: io::Error = quinn::ReadError::Reset(quinn::VarInt::from_u32(0)).into();
        assert!(!closed_done(&reset));
        let timed_out: io::Error =
            quinn::ReadError::ConnectionLost(quinn::ConnectionError::TimedOut).into();
        assert!(!closed_done(&timed_out));
    }

    #[test]
    fn clients_bind_the_servers_address_family() {
        let v4: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let v6: SocketAddr = "[::1]:9001".parse().unwrap();
        assert!(client_bind_addr(v4).is_ipv4());
        assert!(client_bind_addr(v6).is_ipv6());
        assert_eq!(client_bind_addr(v6).port(), 0);
    }
}
