//! `echo`: the body comes back unchanged, or upper-cased as the tutorial's
//! server does. Upper-casing is ASCII-only, byte for byte (Python's
//! `bytes.upper()`), so it works on any bytes, streams chunk by chunk, and
//! never changes a body's length. The reply streams back while the request
//! body is still arriving, so memory stays bounded for any size.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Outcome;
use crate::connection::{Connection, ConnectionError};
use crate::limits::Limits;
use crate::protocol::message::ok_header;
use crate::transport::Stream;

/// `{"cmd": "echo", "upper": bool, "size": N}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoRequest {
    /// Upper-case ASCII letters in the reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upper: bool,
}

/// The bytes the reply carries for `chunk`; both ends use it (the client to
/// check the reply).
pub fn transform(chunk: Bytes, upper: bool) -> Bytes {
    if upper && chunk.iter().any(u8::is_ascii_lowercase) {
        Bytes::from(chunk.to_ascii_uppercase())
    } else {
        chunk
    }
}

/// Serves one echo request of `size` body bytes.
pub async fn serve(
    conn: &mut Connection<Stream>,
    request: EchoRequest,
    size: u64,
) -> Result<Outcome, ConnectionError> {
    let (reader, writer) = conn.split();
    writer
        .send_header(&ok_header(&serde_json::json!({})).with_size(size))
        .await?;
    while let Some(chunk) = reader.read_body_chunk().await? {
        writer.send_body(transform(chunk, request.upper)).await?;
    }
    writer.flush().await?;
    Ok(Outcome::Ok)
}

/// A raw echo connection's whole buffer: what it reads at once and holds.
pub const RAW_ECHO_BUFFER_BYTES: usize = 16 * 1024;

/// Serves one raw TCP echo connection (`--tcp-echo`, RFC 862): bytes in,
/// the same bytes out (upper-cased with `upper`), no framing, no token,
/// until the peer closes, idles past the idle timeout, stops reading for
/// the request timeout, or the server shuts down. Memory is one buffer.
pub async fn serve_raw<S: AsyncRead + AsyncWrite + Unpin>(
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
        if upper {
            buf[..len].make_ascii_uppercase();
        }
        match tokio::time::timeout(limits.request_timeout, stream.write_all(&buf[..len])).await {
            Err(_) => break "the peer stopped reading",
            Ok(Err(_)) => break "the connection failed",
            Ok(Ok(())) => echoed += len as u64,
        }
    };
    info!(peer, bytes = echoed, "tcp echo connection ended: {end}");
    let _ = tokio::time::timeout(limits.request_timeout, stream.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_is_ascii_only_and_keeps_length() {
        let input = Bytes::from("héllo wörld \u{ff}".as_bytes().to_vec());
        let out = transform(input.clone(), true);
        assert_eq!(out.len(), input.len());
        assert_eq!(&out[..], "HéLLO WöRLD \u{ff}".as_bytes());
        assert_eq!(transform(input.clone(), false), input);
        let binary = Bytes::from_static(&[0, 0xff, b'a', 0x80]);
        assert_eq!(&transform(binary, true)[..], &[0, 0xff, b'A', 0x80]);
    }
}
