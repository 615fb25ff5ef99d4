//! `echo`: the body comes back unchanged, or upper-cased as the tutorial's
//! server does. Upper-casing is ASCII-only, byte for byte (Python's
//! `bytes.upper()`), so it works on any bytes, streams chunk by chunk, and
//! never changes a body's length. The reply streams back while the request
//! body is still arriving, so memory stays bounded for any size.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::protocol::message::ok_header;

/// `{"cmd": "echo", "upper": bool, "size": N}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoRequest {
    /// Upper-case ASCII letters in the reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upper: bool,
}

/// The echo rule, for every door that echoes (framed, raw TCP, datagram):
/// ASCII letters upper-cased with `upper`, every other byte as it came, so
/// a reply is as long as its request.
pub fn echo_in_place(bytes: &mut [u8], upper: bool) {
    if upper {
        bytes.make_ascii_uppercase();
    }
}

/// The bytes the reply carries for `chunk`; both ends use it (the client to
/// check the reply). A chunk with nothing to change is passed on uncopied.
pub fn transform(chunk: Bytes, upper: bool) -> Bytes {
    if upper && chunk.iter().any(u8::is_ascii_lowercase) {
        let mut out = chunk.to_vec();
        echo_in_place(&mut out, upper);
        Bytes::from(out)
    } else {
        chunk
    }
}

/// The reply to one echo datagram (RFC 862 over UDP).
pub fn datagram_reply(request: &[u8], upper: bool) -> Vec<u8> {
    let mut out = request.to_vec();
    echo_in_place(&mut out, upper);
    out
}

/// Serves one echo request of `size` body bytes.
pub async fn serve<S: ByteStream>(
    conn: &mut Connection<S>,
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
    use proptest::prelude::*;

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

    #[test]
    fn echo_returns_the_bytes_or_upper_cases_them() {
        assert_eq!(datagram_reply(b"hello \xff", false), b"hello \xff");
        assert_eq!(datagram_reply(b"hello \xff", true), b"HELLO \xff");
        assert_eq!(
            datagram_reply("straße".as_bytes(), true),
            "STRAßE".as_bytes()
        );
    }

    proptest! {
        #[test]
        fn a_reply_is_as_long_as_its_request(request in proptest::collection::vec(any::<u8>(), 0..100), upper: bool) {
            prop_assert_eq!(datagram_reply(&request, upper).len(), request.len());
        }
    }
}
