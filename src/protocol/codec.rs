//! `FrameCodec` turns bytes into frames and frames into bytes, with no IO.
//!
//! ```text
//! +----------------+----------------------------+---------------------------+
//! | header length  | header: UTF-8 JSON object  | body: exactly `size` bytes|
//! | u32 LE, 4 bytes| `{"cmd":"echo","size":5}`  | `hello`                   |
//! +----------------+----------------------------+---------------------------+
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use ferry::protocol::{Frame, FrameCodec};
//! use tokio_util::codec::Decoder;
//!
//! let mut codec = FrameCodec::new(64 * 1024);
//! let mut wire = BytesMut::from(&b"\x17\x00\x00\x00{\"cmd\":\"echo\",\"size\":5}hello"[..]);
//! let Some(Frame::Header(header)) = codec.decode(&mut wire).unwrap() else { panic!() };
//! assert_eq!((header.cmd(), header.size()), (Some("echo"), 5));
//! assert_eq!(codec.decode(&mut wire).unwrap(), Some(Frame::Body("hello".into())));
//! ```
//!
//! The decoder checks the header length against its cap before it reserves
//! any memory, and yields a body as chunks of whatever has arrived, so a
//! 4 GiB body never sits in memory. Any way of splitting the input — a byte
//! at a time, many frames in one read — decodes to the same frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::code::ErrorCode;
use super::header::Header;
use super::{CodecError, FrameError};

/// Bytes in the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// How much buffer the decoder asks for while waiting for a frame: enough
/// that a small request arrives in one read.
pub const HEADER_READ_AHEAD_BYTES: usize = 4 * 1024;

/// How much buffer the decoder asks for while a body streams in: large enough
/// for few, big reads, small enough to bound memory per connection.
pub const BODY_READ_BYTES: usize = 256 * 1024;

/// One decoded item: a frame's header, then its body in one or more chunks.
/// A frame with `size` 0 has no `Body` items.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A parsed header; `header.size()` body bytes follow.
    Header(Header),
    /// The next chunk of the current frame's body.
    Body(Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeState {
    /// Waiting for the 4-byte header length.
    Len,
    /// Waiting for this many header bytes.
    Header(usize),
    /// Inside a body with this many bytes still to come.
    Body { remaining: u64 },
}

/// The ferry frame codec. See the module docs for the wire layout.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_header_bytes: usize,
    state: DecodeState,
    /// Body bytes the encoder still expects after the last header it wrote.
    encode_remaining: u64,
}

impl FrameCodec {
    /// A codec that refuses headers longer than `max_header_bytes`.
    pub fn new(max_header_bytes: usize) -> FrameCodec {
        FrameCodec {
            max_header_bytes,
            state: DecodeState::Len,
            encode_remaining: 0,
        }
    }

    /// The header cap this codec enforces.
    pub fn max_header_bytes(&self) -> usize {
        self.max_header_bytes
    }

    /// Whether the decoder sits between frames, with no partial frame taken.
    pub fn at_frame_boundary(&self) -> bool {
        self.state == DecodeState::Len
    }

    /// Body bytes of the current incoming frame not yet decoded.
    pub fn body_remaining(&self) -> u64 {
        match self.state {
            DecodeState::Body { remaining } => remaining,
            _ => 0,
        }
    }

    /// Writes a header (length prefix and JSON) into `dst`; the caller then
    /// sends exactly `header.size()` body bytes.
    pub fn encode_header(&mut self, header: &Header, dst: &mut BytesMut) -> Result<(), CodecError> {
        if self.encode_remaining != 0 {
            return Err(CodecError::Encode(format!(
                "a header was written while {} body bytes of the previous frame were owed",
                self.encode_remaining
            )));
        }
        let json = header.to_json();
        if json.len() > self.max_header_bytes {
            return Err(CodecError::Encode(format!(
                "header of {} bytes is over the {}-byte cap",
                json.len(),
                self.max_header_bytes
            )));
        }
        dst.reserve(LENGTH_PREFIX_BYTES + json.len());
        dst.put_u32_le(json.len() as u32);
        dst.put_slice(&json);
        self.encode_remaining = header.size();
        Ok(())
    }

    /// Accounts for `len` body bytes the caller is about to send.
    pub fn account_body(&mut self, len: usize) -> Result<(), CodecError> {
        let len = len as u64;
        if len > self.encode_remaining {
            return Err(CodecError::Encode(format!(
                "{len} body bytes sent where the header promised {} more",
                self.encode_remaining
            )));
        }
        self.encode_remaining -= len;
        Ok(())
    }

    /// Body bytes still owed for the last header written.
    pub fn encode_remaining(&self) -> u64 {
        self.encode_remaining
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            match self.state {
                DecodeState::Len => {
                    if src.len() < LENGTH_PREFIX_BYTES {
                        src.reserve(HEADER_READ_AHEAD_BYTES);
                        return Ok(None);
                    }
                    let len = u32::from_le_bytes([src[0], src[1], src[2], src[3]]) as usize;
                    if len == 0 {
                        return Err(FrameError::new(
                            ErrorCode::EmptyHeader,
                            "header length is 0; every frame needs a JSON header",
                        )
                        .into());
                    }
                    // The cap is checked before anything is reserved, so a
                    // peer cannot make us allocate what it announces.
                    if len > self.max_header_bytes {
                        return Err(FrameError::new(
                            ErrorCode::HeaderTooLarge,
                            format!(
                                "header length {len} is over the cap of {} bytes",
                                self.max_header_bytes
                            ),
                        )
                        .into());
                    }
                    src.advance(LENGTH_PREFIX_BYTES);
                    src.reserve(len.saturating_sub(src.len()));
                    self.state = DecodeState::Header(len);
                }
                DecodeState::Header(len) => {
                    if src.len() < len {
                        return Ok(None);
                    }
                    let bytes = src.split_to(len);
                    let header = Header::parse(&bytes)?;
                    self.state = match header.size() {
                        0 => DecodeState::Len,
                        remaining => DecodeState::Body { remaining },
                    };
                    return Ok(Some(Frame::Header(header)));
                }
                DecodeState::Body { remaining } => {
                    if src.is_empty() {
                        let want = remaining.min(BODY_READ_BYTES as u64) as usize;
                        src.reserve(want);
                        return Ok(None);
                    }
                    let take = remaining.min(src.len() as u64);
                    let chunk = src.split_to(take as usize).freeze();
                    let remaining = remaining - take;
                    self.state = if remaining == 0 {
                        DecodeState::Len
                    } else {
                        DecodeState::Body { remaining }
                    };
                    return Ok(Some(Frame::Body(chunk)));
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.at_frame_boundary() => Ok(None),
            None => Err(CodecError::Truncated),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        match frame {
            Frame::Header(header) => self.encode_header(&header, dst),
            Frame::Body(chunk) => {
                self.account_body(chunk.len())?;
                dst.extend_from_slice(&chunk);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(value: serde_json::Value) -> Header {
        Header::new(value.as_object().unwrap().clone())
    }

    fn encode_all(frames: &[(Header, Vec<u8>)]) -> BytesMut {
        let mut codec = FrameCodec::new(64 * 1024);
        let mut dst = BytesMut::new();
        for (head, body) in frames {
            let head = head.clone().with_size(body.len() as u64);
            codec.encode(Frame::Header(head), &mut dst).unwrap();
            if !body.is_empty() {
                codec.encode(Frame::Body(Bytes::from(body.clone())), &mut dst).unwrap();
            }
        }
        dst
    }

    /// Decodes everything available.
    fn decode_all(codec: &mut FrameCodec, src: &mut BytesMut) -> Vec<Frame> {
        std::iter::from_fn(|| codec.decode(src).unwrap()).collect()
    }

    /// Joins each header with its body chunks, so splits do not matter.
    fn merge(frames: Vec<Frame>) -> Vec<(Header, Vec<u8>)> {
        let mut out: Vec<(Header, Vec<u8>)> = Vec::new();
        for frame in frames {
            match frame {
                Frame::Header(h) => out.push((Header::new(h.fields().clone()), Vec::new())),
                Frame::Body(b) => out.last_mut().unwrap().1.extend_from_slice(&b),
            }
        }
        out
    }

    fn code_of(bytes: &[u8]) -> ErrorCode {
        let mut codec = FrameCodec::new(64 * 1024);
        let mut src = BytesMut::from(bytes);
        loop {
            match codec.decode(&mut src) {
                Err(CodecError::Frame(e)) => return e.code,
                Err(other) => panic!("unexpected error {other:?}"),
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error from {bytes:?}"),
            }
        }
    }

    fn framed(len: u32, header: &[u8]) -> Vec<u8> {
        let mut v = len.to_le_bytes().to_vec();
        v.extend_from_slice(header);
        v
    }

    #[test]
    fn many_frames_in_one_read_decode_one_by_one() {
        let frames = vec![
            (header(json!({"cmd": "echo"})), b"abc".to_vec()),
            (header(json!({"cmd": "hello", "version": 1})), vec![]),
            (header(json!({"cmd": "echo"})), vec![0u8; 1000]),
        ];
        let mut src = encode_all(&frames);
        let mut codec = FrameCodec::new(64 * 1024);
        assert_eq!(merge(decode_all(&mut codec, &mut src)), frames);
        assert!(codec.at_frame_boundary());
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_frames() {
        let frames = vec![
            (header(json!({"cmd": "echo"})), b"hello world".to_vec()),
            (header(json!({"cmd": "x"})), vec![]),
        ];
        let wire = encode_all(&frames);
        let mut codec = FrameCodec::new(64 * 1024);
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire.iter() {
            src.put_u8(*byte);
            got.extend(decode_all(&mut codec, &mut src));
        }
        assert_eq!(merge(got), frames);
    }

    #[test]
    fn a_body_split_across_reads_comes_out_in_chunks() {
        let mut codec = FrameCodec::new(1024);
        let mut src = BytesMut::from(&framed(10, br#"{"size":6}"#)[..]);
        src.extend_from_slice(b"abc");
        assert!(matches!(codec.decode(&mut src).unwrap(), Some(Frame::Header(h)) if h.size() == 6));
        assert_eq!(codec.decode(&mut src).unwrap(), Some(Frame::Body("abc".into())));
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        assert_eq!(codec.body_remaining(), 3);
        src.extend_from_slice(b"def");
        assert_eq!(codec.decode(&mut src).unwrap(), Some(Frame::Body("def".into())));
        assert!(codec.at_frame_boundary());
    }

    #[test]
    fn malformed_frames_get_their_codes() {
        assert_eq!(code_of(&framed(0, b"")), ErrorCode::EmptyHeader);
        assert_eq!(code_of(&framed(64 * 1024 + 1, b"")), ErrorCode::HeaderTooLarge);
        assert_eq!(code_of(&framed(u32::MAX, b"")), ErrorCode::HeaderTooLarge);
        assert_eq!(code_of(&framed(2, b"\xff\xfe")), ErrorCode::HeaderNotUtf8);
        assert_eq!(code_of(&framed(3, b"{{{")), ErrorCode::HeaderNotJson);
        assert_eq!(code_of(&framed(2, b"[]")), ErrorCode::HeaderNotObject);
        assert_eq!(code_of(&framed(11, br#"{"size":-5}"#)), ErrorCode::BadSize);
    }

    #[test]
    fn an_oversized_length_is_refused_before_any_reservation() {
        let mut codec = FrameCodec::new(64 * 1024);
        let mut src = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        assert!(codec.decode(&mut src).is_err());
        assert!(src.capacity() < 1024, "capacity grew to {}", src.capacity());
    }

    #[test]
    fn the_header_cap_is_inclusive() {
        let body = format!(r#"{{"pad":"{}"}}"#, "a".repeat(90));
        let mut codec = FrameCodec::new(body.len());
        let mut src = BytesMut::from(&framed(body.len() as u32, body.as_bytes())[..]);
        assert!(matches!(codec.decode(&mut src), Ok(Some(Frame::Header(_)))));
        let mut codec = FrameCodec::new(body.len() - 1);
        let mut src = BytesMut::from(&framed(body.len() as u32, body.as_bytes())[..]);
        assert!(codec.decode(&mut src).is_err());
    }

    #[test]
    fn eof_mid_frame_is_an_error_and_between_frames_is_not() {
        let mut codec = FrameCodec::new(1024);
        assert_eq!(codec.decode_eof(&mut BytesMut::new()).unwrap(), None);
        let mut src = BytesMut::from(&[5u8, 0][..]);
        assert!(matches!(codec.decode_eof(&mut src), Err(CodecError::Truncated)));
        let mut codec = FrameCodec::new(1024);
        let mut src = BytesMut::from(&framed(10, br#"{"size":6}"#)[..]);
        assert!(matches!(codec.decode_eof(&mut src), Ok(Some(Frame::Header(_)))));
        assert!(matches!(codec.decode_eof(&mut src), Err(CodecError::Truncated)));
    }

    #[test]
    fn the_encoder_refuses_a_body_the_header_did_not_announce() {
        let mut codec = FrameCodec::new(1024);
        let mut dst = BytesMut::new();
        codec.encode(Frame::Header(Header::default().with_size(2)), &mut dst).unwrap();
        assert!(codec.encode(Frame::Body("abc".into()), &mut dst).is_err());
        codec.encode(Frame::Body("ab".into()), &mut dst).unwrap();
        assert!(codec.encode(Frame::Body("c".into()), &mut dst).is_err());
    }

    #[test]
    fn the_encoder_refuses_a_header_while_body_bytes_are_owed() {
        let mut codec = FrameCodec::new(1024);
        let mut dst = BytesMut::new();
        codec.encode(Frame::Header(Header::default().with_size(2)), &mut dst).unwrap();
        assert!(codec.encode(Frame::Header(Header::default()), &mut dst).is_err());
    }

    #[test]
    fn the_encoder_refuses_a_header_over_the_cap() {
        let mut codec = FrameCodec::new(16);
        let mut h = Header::default();
        h.insert("pad", "x".repeat(32));
        assert!(codec.encode(Frame::Header(h), &mut BytesMut::new()).is_err());
    }

    #[test]
    fn python_struct_pack_i_is_little_endian_length() {
        // struct.pack('i', 13) on x86 and ARM: 0d 00 00 00
        let mut src = BytesMut::from(&b"\x0d\x00\x00\x00{\"cmd\":\"ls\"}"[..]);
        let mut codec = FrameCodec::new(1024);
        let Some(Frame::Header(h)) = codec.decode(&mut src).unwrap() else {
            panic!()
        };
        assert_eq!(h.cmd(), Some("ls"));
    }
}
