//! The tutorial's door: the socket tutorial's own formats, so that its
//! Python clients (no hello, no token, no TLS) work unchanged against
//! `ferry serve --seed-compat ADDR`. Its framing is `request.rs`; this file
//! is its session loop; `exec.rs`, `get.rs` and `put.rs` adapt its requests
//! onto the exec and file services.
//!
//! A connection serves requests one after another until the client closes
//! it, as the tutorial's server does: a shell command (`exec.rs`), `get
//! NAME` (`get.rs`), or a put frame (`put.rs`); `request.rs` tells them
//! apart and builds the replies. Everything that guards the framed server
//! guards this one too: the file service's confinement (`engine::root`,
//! `engine::atomic`), `--allow-exec` and the command slots, the header cap,
//! and the idle and request timeouts. Every request is logged, because
//! nobody authenticated it.

mod exec;
mod get;
mod put;
pub mod request;

use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::Error;
use crate::limits::{Limits, COMMAND_PAUSE, COMPAT_WRITE_CHUNK_BYTES};
use crate::log::peer_text;
use crate::services::ServiceContext;
use crate::transport::Endpoint;
use request::{PutFrameError, SeedRequest, LENGTH_PREFIX_BYTES};

/// Checks that every seed-compat address is TCP: the tutorial's clients
/// speak nothing else. (That it is loopback, unless
/// `--allow-remote-plaintext`, is [`crate::server::Config::validate`]'s
/// rule for every listener without TLS or a token.)
pub(crate) fn validate(endpoints: &[Endpoint]) -> Result<(), Error> {
    for endpoint in endpoints {
        if !endpoint.is_tcp() {
            return Err(Error::Usage(format!(
                "--seed-compat {endpoint}: the tutorial's clients speak TCP; give a loopback \
                 address such as 127.0.0.1:9003"
            )));
        }
    }
    Ok(())
}

/// Why a connection (or a request) cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SeedEnd {
    /// The client closed the connection between requests.
    #[error("peer closed")]
    PeerClosed,
    /// The client left or the socket failed in the middle of a request.
    #[error("peer gone: {0}")]
    Gone(std::io::Error),
    /// Nothing arrived within the idle timeout.
    #[error("idle for {0:?}")]
    Idle(std::time::Duration),
    /// A request made no progress within the request timeout.
    #[error("no progress for {0:?}")]
    Stalled(std::time::Duration),
    /// A put frame that cannot be served; see [`PutFrameError`].
    #[error("refused a put frame: {0}")]
    BadFrame(#[from] PutFrameError),
    /// A put that was refused or failed; the format cannot say so.
    #[error("{0}")]
    PutFailed(String),
    /// The server is shutting down.
    #[error("server shutting down")]
    ShutDown,
}

/// One seed-compat connection.
pub struct Session<'a, S> {
    stream: S,
    /// Bytes read and not yet used: at most a put frame's prefix and
    /// header cap.
    buf: BytesMut,
    peer: &'a str,
    context: &'a ServiceContext,
    limits: &'a Limits,
}

/// Serves one accepted connection until the client closes it, it idles
/// out, a put frame is refused, or the server shuts down (between
/// requests; one in flight finishes). Logs the connection's end.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: &str,
    context: &ServiceContext,
    limits: &Limits,
    cancel: &CancellationToken,
) {
    info!(%peer, "seed-compat connection opened");
    let mut session = Session {
        stream,
        buf: BytesMut::new(),
        peer,
        context,
        limits,
    };
    let mut requests = 0u64;
    let end = loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => break SeedEnd::ShutDown,
            next = session.next_request() => next,
        };
        let request = match next {
            Ok(request) => request,
            Err(end) => break end,
        };
        requests += 1;
        if let Err(end) = session.handle(request).await {
            break end;
        }
    };
    let _ = session.stream.shutdown().await;
    match end {
        SeedEnd::PeerClosed | SeedEnd::ShutDown => {
            info!(%peer, requests, %end, "seed-compat connection closed")
        }
        end => warn!(%peer, requests, %end, "seed-compat connection closed"),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// The most bytes the session buffers: a put frame's length and header.
    fn max_buffered(&self) -> usize {
        LENGTH_PREFIX_BYTES + self.limits.max_header_bytes
    }

    /// Reads until a request is complete. The idle timeout waits for its
    /// first bytes. A put frame's header then gets the request timeout per
    /// read; a text command ends at a pause of [`COMMAND_PAUSE`] and must
    /// do so within the request timeout. A client that leaves before its
    /// command has ended has its bytes dropped, never run as a command.
    async fn next_request(&mut self) -> Result<SeedRequest, SeedEnd> {
        let max = self.limits.max_header_bytes;
        if self.buf.is_empty() {
            let idle = self.limits.idle_timeout;
            match tokio::time::timeout(idle, self.read_more()).await {
                Err(_) => return Err(SeedEnd::Idle(idle)),
                Ok(Ok(0)) => return Err(SeedEnd::PeerClosed),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(SeedEnd::Gone(err)),
            }
        }
        let wait = self.limits.request_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = request::is_frame(&self.buf);
            if frame {
                if let Some(decoded) = request::decode(&self.buf, max)? {
                    self.buf.advance(decoded.consumed);
                    return Ok(decoded.request);
                }
            } else if self.buf.len() > max {
                return self.skip_long_command(deadline).await;
            }
            let until = if frame {
                tokio::time::Instant::now() + wait
            } else {
                deadline.min(tokio::time::Instant::now() + COMMAND_PAUSE)
            };
            match tokio::time::timeout_at(until, self.read_more()).await {
                Err(_) if frame || until >= deadline => return Err(SeedEnd::Stalled(wait)),
                Err(_) => {
                    // The client paused: its command is whole.
                    let command = self.buf.split();
                    return Ok(request::parse_text(&command, max));
                }
                Ok(Ok(0)) => return Err(SeedEnd::Gone(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(SeedEnd::Gone(err)),
            }
        }
    }

    /// Drops a text command that has passed the cap, up to the client's
    /// pause, so that its tail is not taken for the next command; it must
    /// pause within the request timeout (`deadline`).
    async fn skip_long_command(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<SeedRequest, SeedEnd> {
        let mut len = self.buf.len();
        self.buf.clear();
        let mut scratch = vec![0u8; 16 * 1024];
        loop {
            let until = deadline.min(tokio::time::Instant::now() + COMMAND_PAUSE);
            match tokio::time::timeout_at(until, self.stream.read(&mut scratch)).await {
                Err(_) if until >= deadline => {
                    return Err(SeedEnd::Stalled(self.limits.request_timeout))
                }
                Err(_) => return Ok(request::command_too_long(len, self.limits.max_header_bytes)),
                Ok(Ok(0)) => return Err(SeedEnd::Gone(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(Ok(n)) => len += n,
                Ok(Err(err)) => return Err(SeedEnd::Gone(err)),
            }
        }
    }

    /// One read into the buffer, up to its cap; `Ok(0)` at end of stream.
    /// With the buffer full (only possible while a command runs and the
    /// client sends more) it waits forever, so the caller's other branches
    /// decide. Cancel-safe: bytes count only once they have arrived.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        let room = self.max_buffered().saturating_sub(self.buf.len());
        if room == 0 {
            return std::future::pending().await;
        }
        // Room for a whole text command, so the bytes of one send arrive
        // in one read.
        self.buf.reserve(room);
        (&mut self.stream)
            .take(room as u64)
            .read_buf(&mut self.buf)
            .await
    }

    async fn handle(&mut self, request: SeedRequest) -> Result<(), SeedEnd> {
        let started = Instant::now();
        let peer = self.peer;
        match request {
            SeedRequest::Get { name } => self.get(&name, started).await,
            SeedRequest::BadGet { name, message } => {
                warn!(%peer, name = %peer_text(&name), "seed-compat get refused: {message}");
                self.send(&request::get_error_head(&name, &message)).await
            }
            SeedRequest::Exec { command } => self.exec(&command, started).await,
            SeedRequest::BadCommand { message } => {
                warn!(%peer, "seed-compat command refused: {}", message.trim_end());
                self.send_error_output("", &message).await
            }
            SeedRequest::Put { filename, filesize } => self.put(&filename, filesize, started).await,
        }
    }

    /// Writes `bytes` in chunks, each within the request timeout.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), SeedEnd> {
        for chunk in bytes.chunks(COMPAT_WRITE_CHUNK_BYTES) {
            self.write_within(chunk).await?;
        }
        Ok(())
    }

    async fn write_within(&mut self, chunk: &[u8]) -> Result<(), SeedEnd> {
        let wait = self.limits.request_timeout;
        match tokio::time::timeout(wait, self.stream.write_all(chunk)).await {
            Err(_) => Err(SeedEnd::Stalled(wait)),
            Ok(Err(err)) => Err(SeedEnd::Gone(err)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// A command reply whose output is ferry's own message.
    async fn send_error_output(&mut self, command: &str, message: &str) -> Result<(), SeedEnd> {
        let md5 = request::md5_hex(message.as_bytes());
        let head = request::output_head(
            command,
            &md5,
            message.len() as u64,
            Some(message.trim_end()),
        );
        self.send(&head).await?;
        self.send(message.as_bytes()).await?;
        self.stream.flush().await.map_err(SeedEnd::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(addrs: &[&str]) -> Vec<Endpoint> {
        addrs.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn only_tcp_is_allowed() {
        let ok = ["127.0.0.1:9003", "[::1]:0", "192.0.2.1:9003"];
        assert!(validate(&endpoints(&ok)).is_ok());
        let err = validate(&endpoints(&["unix:/tmp/x.sock"])).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }
}
