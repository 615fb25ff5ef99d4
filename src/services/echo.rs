//! `echo`: the body comes back unchanged, or upper-cased as the tutorial's
//! server does. Upper-casing is ASCII-only, byte for byte (Python's
//! `bytes.upper()`), so it works on any bytes, streams chunk by chunk, and
//! never changes a body's length. The reply streams back while the request
//! body is still arriving, so memory stays bounded for any size.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::connection::{Connection, ConnectionError};
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
