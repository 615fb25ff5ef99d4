//! Clients of the datagram services (`ferry time`, `ferry udp-echo`): one
//! request datagram, one reply, retried because UDP may lose either.

pub use crate::services::time::DEFAULT_ADDR as TIME_DEFAULT_ADDR;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::error::Error;
use crate::limits::UDP_RECEIVE_BUFFER_BYTES;
use crate::transport::Endpoint;

/// How a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Datagrams sent before giving up.
    pub tries: u32,
    /// How long to wait for a reply to each.
    pub timeout: Duration,
}

impl Default for Retry {
    /// Three tries, a second each: loopback and LANs answer in
    /// microseconds, and a lost datagram costs a user a second.
    fn default() -> Retry {
        Retry {
            tries: 3,
            timeout: Duration::from_secs(1),
        }
    }
}

/// Sends `request` to `server` and returns the first reply from it. The
/// socket is connected to the server, so datagrams from anyone else are
/// never taken for the reply. A reply starting with `error: ` is an
/// [`Error::DatagramError`].
pub async fn ask(server: &Endpoint, request: &[u8], retry: Retry) -> Result<Vec<u8>, Error> {
    let connect = |source: std::io::Error| Error::Connect {
        endpoint: server.to_string(),
        source,
    };
    let addr = *server
        .resolve()
        .await
        .map_err(connect)?
        .first()
        .ok_or_else(|| connect(std::io::ErrorKind::NotFound.into()))?;
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = UdpSocket::bind(local).await.map_err(connect)?;
    socket.connect(addr).await.map_err(connect)?;
    let mut buf = vec![0u8; UDP_RECEIVE_BUFFER_BYTES];
    for _ in 0..retry.tries.max(1) {
        socket.send(request).await.map_err(connect)?;
        match tokio::time::timeout(retry.timeout, socket.recv(&mut buf)).await {
            Err(_) => continue, // lost, or not answered yet: ask again
            // Nothing listens there (ICMP port unreachable): retrying
            // cannot help.
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(connect(err))
            }
            Ok(Err(_)) => continue,
            Ok(Ok(len)) => {
                let reply = buf[..len].to_vec();
                if let Some(message) = reply.strip_prefix(b"error: ") {
                    return Err(Error::DatagramError {
                        endpoint: server.to_string(),
                        message: String::from_utf8_lossy(message).into_owned(),
                    });
                }
                return Ok(reply);
            }
        }
    }
    Err(Error::NoReply {
        endpoint: server.to_string(),
        tries: retry.tries.max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server(
        reply: &'static [u8],
        answer_from: u32,
    ) -> (Endpoint, tokio::task::JoinHandle<u32>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let endpoint = Endpoint::from(socket.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 100];
            let mut seen = 0;
            loop {
                let (_, from) = socket.recv_from(&mut buf).await.unwrap();
                seen += 1;
                if seen >= answer_from {
                    socket.send_to(reply, from).await.unwrap();
                    return seen;
                }
            }
        });
        (endpoint, task)
    }

    #[tokio::test]
    async fn a_lost_datagram_is_sent_again() {
        // The server ignores the first two datagrams, as a lossy path would.
        let (endpoint, task) = server(b"12:00", 3).await;
        let retry = Retry {
            tries: 3,
            timeout: Duration::from_millis(200),
        };
        assert_eq!(ask(&endpoint, b"%H:%M", retry).await.unwrap(), b"12:00");
        assert_eq!(task.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn silence_is_an_error_after_the_tries() {
        let (endpoint, _task) = server(b"late", 10).await;
        let retry = Retry {
            tries: 2,
            timeout: Duration::from_millis(100),
        };
        let err = ask(&endpoint, b"x", retry).await.unwrap_err();
        assert!(matches!(err, Error::NoReply { tries: 2, .. }), "{err}");
        assert_eq!(err.exit_code(), crate::error::EXIT_CONNECT);
    }

    #[tokio::test]
    async fn an_error_line_is_the_services_refusal() {
        let (endpoint, _task) = server(b"error: bad format", 1).await;
        let err = ask(&endpoint, b"%", Retry::default()).await.unwrap_err();
        assert!(
            matches!(&err, Error::DatagramError { message, .. } if message == "bad format"),
            "{err}"
        );
        assert_eq!(err.exit_code(), crate::error::EXIT_REMOTE);
    }
}
