//! The raw TCP echo door (`--tcp-echo`, RFC 862): no framing, no TLS, no
//! token; bytes come back by the echo service's rule.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::limits::{Limits, RAW_ECHO_BUFFER_BYTES};
use crate::services::echo::echo_in_place;

/// Serves one raw TCP echo connection (`--tcp-echo`, RFC 862): bytes in,
/// the same bytes out (upper-cased with `upper`), no framing, no token,
/// until the peer closes, idles past the idle timeout, stops reading for
/// the request timeout, or the server shuts down. Memory is one buffer.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: &str,
    upper: bool,
    limits: &Limits,
    cancel: &CancellationToken,
) {
    let mut buf = vec![0u8; RAW_ECHO_BUFFER_BYTES];
    let mut echoed = 0u64;
    let end = loop {
        let read = tokio::select! {
            biased;
            _ = cancel.cancelled() => break "the server is shutting down",
            read = tokio::time::timeout(limits.idle_timeout, stream.read(&mut buf)) => read,
        };
        let len = match read {
            Err(_) => break "idle past the idle timeout",
            Ok(Err(_)) => break "the connection failed",
            Ok(Ok(0)) => break "closed by the peer",
            Ok(Ok(len)) => len,
        };
        echo_in_place(&mut buf[..len], upper);
        match tokio::time::timeout(limits.request_timeout, stream.write_all(&buf[..len])).await {
            Err(_) => break "the peer stopped reading",
            Ok(Err(_)) => break "the connection failed",
            Ok(Ok(())) => echoed += len as u64,
        }
    };
    info!(peer, bytes = echoed, "tcp echo connection ended: {end}");
    let _ = tokio::time::timeout(limits.request_timeout, stream.shutdown()).await;
}
