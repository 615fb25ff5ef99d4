//! Listening sockets. TCP listeners set SO_REUSEADDR (a restarted server binds
//! its port again at once) and IPV6_V6ONLY (a `[::]` listener does not
//! silently take IPv4 too) before `bind`. Unix sockets are made mode 0600
//! between `bind` and `listen`, so no other user can ever connect.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use super::{Endpoint, Stream};

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP, IPv4 or IPv6.
    Tcp(TcpListener),
    /// A Unix-domain socket at `path`, removed again on drop.
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

impl Listener {
    /// Binds every address the endpoint resolves to.
    pub async fn bind(endpoint: &Endpoint) -> io::Result<Vec<Listener>> {
        match endpoint {
            Endpoint::Tcp { .. } => {
                let addrs = endpoint.resolve().await?;
                if addrs.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{endpoint} resolves to no address"),
                    ));
                }
                addrs
                    .into_iter()
                    .map(|addr| bind_tcp(addr).map(Listener::Tcp))
                    .collect()
            }
            Endpoint::Unix(path) => Ok(vec![bind_unix(path)?]),
            Endpoint::Quic { .. } => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{endpoint} is where a client connects; serve QUIC with --quic HOST:PORT"),
            )),
        }
    }

    /// Waits for the next connection: its stream and the peer's address.
    pub async fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                // Requests and replies are small and latency-bound; Nagle
                // would hold them back.
                stream.set_nodelay(true)?;
                Ok((Stream::Tcp(stream), peer.to_string()))
            }
            Listener::Unix { listener, path } => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), format!("unix:{}", path.display())))
            }
        }
    }

    /// The address actually bound (with the real port when 0 was asked).
    pub fn local_endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Tcp(listener) => Ok(Endpoint::from(listener.local_addr()?)),
            Listener::Unix { path, .. } => Ok(Endpoint::Unix(path.clone())),
        }
    }

    /// The TCP address bound; `None` for a Unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().ok(),
            Listener::Unix { .. } => None,
        }
    }

    /// Whether connections on this listener use TCP (and so TLS by default).
    pub fn is_tcp(&self) -> bool {
        matches!(self, Listener::Tcp(_))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|err| with_context(err, &format!("cannot bind {addr}")))?;
    socket.listen(crate::limits::LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

fn bind_unix(path: &Path) -> io::Result<Listener> {
    remove_stale_socket(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket
        .bind(&SockAddr::unix(path)?)
        .map_err(|err| with_context(err, &format!("cannot bind unix:{}", path.display())))?;
    // Nobody can connect before listen(), so the socket is never reachable
    // with looser permissions.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    socket.listen(crate::limits::LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    let listener = UnixListener::from_std(socket.into())?;
    Ok(Listener::Unix {
        listener,
        path: path.to_path_buf(),
    })
}

/// Removes a socket file left by a server that died, but never a live socket
/// or anything that is not a socket.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not replacing it",
                path.display()
            ),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a server is already listening on unix:{}", path.display()),
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

fn with_context(err: io::Error, context: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{context}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn port_zero_binds_an_ephemeral_port() {
        let listeners = Listener::bind(&"127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let Endpoint::Tcp { port, .. } = listeners[0].local_endpoint().unwrap() else {
            panic!()
        };
        assert_ne!(port, 0);
    }

    #[tokio::test]
    async fn a_port_is_bound_again_at_once_after_close() {
        let first = Listener::bind(&"127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let endpoint = first[0].local_endpoint().unwrap();
        // Leave a connection in TIME_WAIT on the server side.
        let client = tokio::net::TcpStream::connect(endpoint.to_string())
            .await
            .unwrap();
        let (server_side, _) = first[0].accept().await.unwrap();
        drop(server_side);
        drop(client);
        drop(first);
        Listener::bind(&endpoint)
            .await
            .expect("rebind with SO_REUSEADDR");
    }

    #[tokio::test]
    async fn unix_sockets_are_private_and_stale_ones_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.sock");
        let endpoint = Endpoint::Unix(path.clone());
        let listener = Listener::bind(&endpoint).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(
            Listener::bind(&endpoint).await.is_err(),
            "live socket replaced"
        );
        drop(listener);
        assert!(!path.exists(), "socket file left after drop");
        // A socket file left behind by a process that died is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        Listener::bind(&endpoint)
            .await
            .expect("stale socket replaced");
    }

    #[tokio::test]
    async fn a_regular_file_is_never_replaced_by_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("precious");
        std::fs::write(&path, b"data").unwrap();
        assert!(Listener::bind(&Endpoint::Unix(path.clone())).await.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
