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

/// The most read-buffer capacity a [`FrameCodec`] with this header cap can
/// make its reader hold: a whole header with its length prefix, one body
/// read, and the read-ahead asked for between frames. It depends on the cap
/// alone, never on a length or size the peer sends; the server budgets it
/// per connection (`Limits::max_buffer_bytes_per_connection`).
pub const fn max_read_buffer_bytes(max_header_bytes: usize) -> usize {
    LENGTH_PREFIX_BYTES + max_header_bytes + BODY_READ_BYTES + HEADER_READ_AHEAD_BYTES
}

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

/// Makes room for `additional` more bytes without `BytesMut::reserve`'s
/// growth policy, which may double the allocation or keep the consumed
/// bytes before the cursor: the capacity stays at what is buffered plus what
/// is asked for, so it depends on the caps alone, as
/// `Limits::max_buffer_bytes_per_connection` budgets.
fn reserve_bounded(src: &mut BytesMut, additional: usize) {
    if src.capacity() - src.len() >= additional || src.try_reclaim(additional) {
        return;
    }
    let mut fresh = BytesMut::with_capacity(src.len() + additional);
    fresh.extend_from_slice(src);
    *src = fresh;
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            match self.state {
                DecodeState::Len => {
                    if src.len() < LENGTH_PREFIX_BYTES {
                        reserve_bounded(src, HEADER_READ_AHEAD_BYTES);
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
                    reserve_bounded(src, len.saturating_sub(src.len()));
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
                        reserve_bounded(src, want);
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
                codec
                    .encode(Frame::Body(Bytes::from(body.clone())), &mut dst)
                    .unwrap();
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
        assert_eq!(
            codec.decode(&mut src).unwrap(),
            Some(Frame::Body("abc".into()))
        );
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        assert_eq!(codec.body_remaining(), 3);
        src.extend_from_slice(b"def");
        assert_eq!(
            codec.decode(&mut src).unwrap(),
            Some(Frame::Body("def".into()))
        );
        assert!(codec.at_frame_boundary());
    }

    #[test]
    fn malformed_frames_get_their_codes() {
        assert_eq!(code_of(&framed(0, b"")), ErrorCode::EmptyHeader);
        assert_eq!(
            code_of(&framed(64 * 1024 + 1, b"")),
            ErrorCode::HeaderTooLarge
        );
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
        assert!(matches!(
            codec.decode_eof(&mut src),
            Err(CodecError::Truncated)
        ));
        let mut codec = FrameCodec::new(1024);
        let mut src = BytesMut::from(&framed(10, br#"{"size":6}"#)[..]);
        assert!(matches!(
            codec.decode_eof(&mut src),
            Ok(Some(Frame::Header(_)))
        ));
        assert!(matches!(
            codec.decode_eof(&mut src),
            Err(CodecError::Truncated)
        ));
    }

    #[test]
    fn the_encoder_refuses_a_body_the_header_did_not_announce() {
        let mut codec = FrameCodec::new(1024);
        let mut dst = BytesMut::new();
        codec
            .encode(Frame::Header(Header::default().with_size(2)), &mut dst)
            .unwrap();
        assert!(codec.encode(Frame::Body("abc".into()), &mut dst).is_err());
        codec.encode(Frame::Body("ab".into()), &mut dst).unwrap();
        assert!(codec.encode(Frame::Body("c".into()), &mut dst).is_err());
    }

    #[test]
    fn the_encoder_refuses_a_header_while_body_bytes_are_owed() {
        let mut codec = FrameCodec::new(1024);
        let mut dst = BytesMut::new();
        codec
            .encode(Frame::Header(Header::default().with_size(2)), &mut dst)
            .unwrap();
        assert!(codec
            .encode(Frame::Header(Header::default()), &mut dst)
            .is_err());
    }

    #[test]
    fn the_encoder_refuses_a_header_over_the_cap() {
        let mut codec = FrameCodec::new(16);
        let mut h = Header::default();
        h.insert("pad", "x".repeat(32));
        assert!(codec
            .encode(Frame::Header(h), &mut BytesMut::new())
            .is_err());
    }

    #[test]
    fn python_struct_pack_i_is_little_endian_length() {
        // struct.pack('i', 12) on x86 and ARM: 0c 00 00 00
        let mut src = BytesMut::from(&b"\x0c\x00\x00\x00{\"cmd\":\"ls\"}"[..]);
        let mut codec = FrameCodec::new(1024);
        let Some(Frame::Header(h)) = codec.decode(&mut src).unwrap() else {
            panic!()
        };
        assert_eq!(h.cmd(), Some("ls"));
    }
}

/// Properties of the decoder over generated frames, cuts and garbage: any cut
/// of a stream decodes to the same frames, garbage never panics and gets one
/// of the decode codes, and the read buffer stays bounded by the header cap
/// rather than by anything the peer announces.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// The header cap the server runs with by default.
    const MAX_HEADER_BYTES: usize = 64 * 1024;

    /// The codes `decode` may answer with; the others belong to later layers.
    const DECODE_CODES: [ErrorCode; 6] = [
        ErrorCode::EmptyHeader,
        ErrorCode::HeaderTooLarge,
        ErrorCode::HeaderNotUtf8,
        ErrorCode::HeaderNotJson,
        ErrorCode::HeaderNotObject,
        ErrorCode::BadSize,
    ];

    /// How a decode run ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Stop {
        /// The input ended at a frame boundary.
        Clean,
        /// The decoder refused a frame with this code.
        Code(ErrorCode),
        /// The input ended inside a frame.
        Truncated,
    }

    /// How the driver hands input to the decoder.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Reads {
        /// Appends each piece whole, growing the buffer as needed: any cut of
        /// the stream, including many frames in one piece.
        Unbounded,
        /// Starts from an empty buffer and reads no more than its spare
        /// capacity after `reserve(1)`, as `FramedRead` does in
        /// `FrameReader`, so that the buffer's capacity is the decoder's
        /// doing; it is checked against `bound` after every call.
        LikeFramedRead { bound: usize },
    }

    /// Each decoded header (with its size) and the body bytes that followed
    /// it, and how the run ended.
    type Run = (Vec<(Header, Vec<u8>)>, Stop);

    /// Feeds `wire` to a fresh decoder in pieces of the sizes in `pieces`
    /// (cycled), decoding all it can after each piece, then calls
    /// `decode_eof` until it is done, as `FramedRead` does. Checks on the way
    /// that body chunks are non-empty and never exceed what their header
    /// announced, and that only decode errors come out.
    fn drive(
        max_header_bytes: usize,
        wire: &[u8],
        pieces: &[usize],
        reads: Reads,
    ) -> Result<Run, TestCaseError> {
        let mut codec = FrameCodec::new(max_header_bytes);
        let mut src = BytesMut::new();
        let mut pieces = pieces.iter().copied().cycle();
        let mut fed = 0;
        let mut frames: Vec<(Header, Vec<u8>)> = Vec::new();
        let mut owed = 0u64;
        loop {
            let at_eof = fed == wire.len();
            let result = if at_eof {
                codec.decode_eof(&mut src)
            } else {
                codec.decode(&mut src)
            };
            if let Reads::LikeFramedRead { bound } = reads {
                prop_assert!(
                    src.capacity() <= bound,
                    "read buffer capacity {} is over {bound} after {fed} of {} bytes",
                    src.capacity(),
                    wire.len()
                );
            }
            match result {
                Ok(Some(Frame::Header(header))) => {
                    prop_assert_eq!(owed, 0, "a header inside a body");
                    owed = header.size();
                    prop_assert_eq!(codec.at_frame_boundary(), owed == 0);
                    frames.push((header, Vec::new()));
                }
                Ok(Some(Frame::Body(chunk))) => {
                    prop_assert!(!chunk.is_empty(), "an empty body chunk");
                    prop_assert!(
                        chunk.len() as u64 <= owed,
                        "a chunk of {} bytes where {owed} were owed",
                        chunk.len()
                    );
                    owed -= chunk.len() as u64;
                    frames.last_mut().unwrap().1.extend_from_slice(&chunk);
                }
                Ok(None) if at_eof => {
                    prop_assert!(codec.at_frame_boundary() && src.is_empty() && owed == 0);
                    return Ok((frames, Stop::Clean));
                }
                Ok(None) => {
                    prop_assert_eq!(codec.body_remaining(), owed);
                    let mut n = pieces.next().unwrap().clamp(1, wire.len() - fed);
                    if let Reads::LikeFramedRead { .. } = reads {
                        src.reserve(1);
                        n = n.min(src.capacity() - src.len());
                    }
                    src.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
                Err(CodecError::Frame(err)) => {
                    prop_assert!(
                        DECODE_CODES.contains(&err.code),
                        "decode answered {}",
                        err.code
                    );
                    return Ok((frames, Stop::Code(err.code)));
                }
                Err(CodecError::Truncated) if at_eof => {
                    prop_assert!(!codec.at_frame_boundary() || !src.is_empty());
                    return Ok((frames, Stop::Truncated));
                }
                Err(other) => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
            }
        }
    }

    /// Encodes frames with the codec; each header already carries the size
    /// of its body.
    fn encode(frames: &[(Header, Vec<u8>)]) -> Vec<u8> {
        let mut codec = FrameCodec::new(MAX_HEADER_BYTES);
        let mut dst = BytesMut::new();
        for (header, body) in frames {
            codec
                .encode(Frame::Header(header.clone()), &mut dst)
                .unwrap();
            if !body.is_empty() {
                codec
                    .encode(Frame::Body(Bytes::copy_from_slice(body)), &mut dst)
                    .unwrap();
            }
        }
        assert_eq!(codec.encode_remaining(), 0);
        dst.to_vec()
    }

    /// A JSON leaf of every kind. Floats are dyadic with few digits:
    /// serde_json parses other floats up to 2 ULP off, see
    /// `headers_with_any_float_survive_the_wire`.
    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (any::<i16>(), 0..8u32)
                .prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(1 << e))),
            any::<String>().prop_map(Value::String),
        ]
    }

    /// Any JSON value, arrays and objects nested up to three deep, strings
    /// of any unicode.
    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Header fields: random keys and values, and a `cmd` or none. Never
    /// `size`, which the codec owns.
    fn fields() -> impl Strategy<Value = Map<String, Value>> {
        let cmd = prop::option::of(prop_oneof![
            Just("echo".to_string()),
            Just("hello".to_string()),
            any::<String>(),
        ]);
        (
            prop::collection::btree_map(any::<String>(), json_value(), 0..6),
            cmd,
        )
            .prop_map(|(fields, cmd)| {
                let mut fields: Map<String, Value> = fields.into_iter().collect();
                fields.remove("size");
                if let Some(cmd) = cmd {
                    fields.insert("cmd".into(), Value::String(cmd));
                }
                fields
            })
    }

    /// `len` bytes that differ along the body and from seed to seed, so a
    /// chunk delivered twice or out of order shows.
    fn body_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A frame with a body of up to `max_body` bytes, often empty.
    fn frame(max_body: usize) -> impl Strategy<Value = (Header, Vec<u8>)> {
        let len = prop_oneof![1 => Just(0), 3 => 0..=max_body];
        (fields(), len, any::<u64>()).prop_map(|(fields, len, seed)| {
            (
                Header::new(fields).with_size(len as u64),
                body_bytes(len, seed),
            )
        })
    }

    /// A frame whose header is padded to near the cap, or to it.
    fn padded_frame() -> impl Strategy<Value = (Header, Vec<u8>)> {
        let len = MAX_HEADER_BYTES - 64..=MAX_HEADER_BYTES;
        (frame(512), len).prop_map(|((mut header, body), len)| {
            let room = len.saturating_sub(header.to_json().len() + r#","pad":"""#.len());
            header.insert("pad", "p".repeat(room));
            (header, body)
        })
    }

    /// Frames of all sizes, a few with headers near the cap.
    fn any_frame() -> impl Strategy<Value = (Header, Vec<u8>)> {
        prop_oneof![15 => frame(70 * 1024), 1 => padded_frame()]
    }

    /// Read sizes: single bytes, small reads, and reads of many frames.
    fn pieces() -> impl Strategy<Value = Vec<usize>> {
        let piece = prop_oneof![1..=8usize, 1..=4096usize, 1..=300_000usize];
        prop::collection::vec(piece, 1..16)
    }

    /// Pieces of one byte, or of a few, for short streams.
    fn tiny_pieces() -> impl Strategy<Value = Vec<usize>> {
        prop_oneof![Just(vec![1]), prop::collection::vec(1..=5usize, 1..8)]
    }

    /// Bytes that are mostly not frames, mixed with pieces that are or
    /// nearly are: valid frames (some with large bodies or headers, to make
    /// the buffer grow), length prefixes of any width or near the cap before
    /// random or JSON-like bytes, and `size` fields of every width.
    fn hostile_stream() -> impl Strategy<Value = Vec<u8>> {
        let near_cap = MAX_HEADER_BYTES as u32 - 64..=MAX_HEADER_BYTES as u32 + 64;
        let prefix = prop_oneof![0..300u32, near_cap, any::<u32>()];
        let jsonish = "[{}\\[\\]\":,0-9a-z\\\\ .eE+-]{0,40}";
        let segment = prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 0..64),
            2 => frame(512).prop_map(|f| encode(&[f])),
            1 => frame(300_000).prop_map(|f| encode(&[f])),
            1 => padded_frame().prop_map(|f| encode(&[f])),
            3 => (prefix, jsonish).prop_map(|(len, text)| {
                [&len.to_le_bytes()[..], text.as_bytes()].concat()
            }),
            2 => (any::<u64>(), 0..64u32).prop_map(|(size, shift)| {
                framed(format!(r#"{{"size":{}}}"#, size >> shift).as_bytes())
            }),
        ];
        prop::collection::vec(segment, 0..8).prop_map(|segments| segments.concat())
    }

    /// Splits a header's JSON text at a random char boundary inside it.
    fn char_boundary(text: &str, at: prop::sample::Index) -> usize {
        let mut i = at.index(text.len() + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    /// The JSON text of a valid header.
    fn header_text() -> impl Strategy<Value = String> {
        fields().prop_map(|f| String::from_utf8(Header::new(f).to_json()).unwrap())
    }

    /// A header behind its length prefix, whatever the header holds.
    fn framed(header: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(header);
        out
    }

    /// A frame that is malformed in one way, with the code it must get, and
    /// bytes that may follow it. The header length never exceeds the cap
    /// unless that is the fault.
    fn malformed() -> impl Strategy<Value = (Vec<u8>, ErrorCode)> {
        let bad_utf8 = [&b"\xff"[..], b"\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\x80"];
        let not_utf8 = (
            header_text(),
            any::<prop::sample::Index>(),
            prop::sample::select(bad_utf8.to_vec()),
        )
            .prop_map(|(json, at, bad)| {
                let at = char_boundary(&json, at);
                let header = [&json.as_bytes()[..at], bad, &json.as_bytes()[at..]].concat();
                (framed(&header), ErrorCode::HeaderNotUtf8)
            });
        // A proper prefix of an object never closes it.
        let cut_short = (header_text(), any::<prop::sample::Index>()).prop_map(|(json, at)| {
            let at = char_boundary(&json[..json.len() - 1], at).max(1);
            (framed(&json.as_bytes()[..at]), ErrorCode::HeaderNotJson)
        });
        let junk = prop::sample::select(vec!["x", "}", ",", "{", "]", "\"", "0"]);
        let trailing = (header_text(), junk).prop_map(|(json, junk)| {
            (
                framed(format!("{json}{junk}").as_bytes()),
                ErrorCode::HeaderNotJson,
            )
        });
        let blank =
            "[ \t\r\n]{1,8}".prop_map(|text| (framed(text.as_bytes()), ErrorCode::HeaderNotJson));
        let not_object = (json_value(), "[ \t\r\n]{0,2}")
            .prop_filter("objects are headers", |(value, _)| !value.is_object())
            .prop_map(|(value, space)| {
                let text = format!("{space}{value}{space}");
                (framed(text.as_bytes()), ErrorCode::HeaderNotObject)
            });
        let bad_size = prop_oneof![
            (i64::MIN..0).prop_map(|n| n.to_string()),
            (any::<u32>(), 1..10u32).prop_map(|(n, d)| format!("{n}.{d}")),
            any::<u32>().prop_map(|n| format!("{n}.0")),
            any::<u32>().prop_map(|n| format!("{n}e1")),
            (0..u64::MAX as u128).prop_map(|n| (n + u64::MAX as u128 + 1).to_string()),
            json_value()
                .prop_filter("numbers may be sizes", |v| !v.is_number())
                .prop_map(|v| v.to_string()),
        ];
        let bad_size = (header_text(), bad_size).prop_map(|(json, size)| {
            // `{"size":<size>` then the other fields and the closing brace.
            let rest = json.strip_prefix('{').unwrap();
            let comma = if rest == "}" { "" } else { "," };
            let text = format!(r#"{{"size":{size}{comma}{rest}"#);
            (framed(text.as_bytes()), ErrorCode::BadSize)
        });
        let fault = prop_oneof![
            Just((vec![0, 0, 0, 0], ErrorCode::EmptyHeader)),
            (MAX_HEADER_BYTES as u32 + 1..=u32::MAX)
                .prop_map(|len| (len.to_le_bytes().to_vec(), ErrorCode::HeaderTooLarge)),
            not_utf8,
            cut_short,
            trailing,
            blank,
            not_object,
            bad_size,
        ];
        let after = prop::collection::vec(any::<u8>(), 0..32);
        (fault, after).prop_map(|((wire, code), after)| ([wire, after].concat(), code))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Frames cut anywhere, with reads of any size, decode to exactly
        /// the headers and bodies encoded, and end at a frame boundary.
        #[test]
        fn any_cut_decodes_to_the_frames_encoded(
            frames in prop::collection::vec(any_frame(), 0..8),
            pieces in pieces(),
        ) {
            let wire = encode(&frames);
            let bound = max_read_buffer_bytes(MAX_HEADER_BYTES);
            for reads in [Reads::Unbounded, Reads::LikeFramedRead { bound }] {
                let (got, stop) = drive(MAX_HEADER_BYTES, &wire, &pieces, reads)?;
                prop_assert_eq!(stop, Stop::Clean);
                prop_assert!(got == frames, "{:?} decoded other frames", reads);
            }
        }

        /// A header as long as the cap decodes; one byte over, it is
        /// refused before anything else is read.
        #[test]
        fn the_cap_admits_a_header_of_exactly_its_length(
            frame in any_frame(),
            pieces in pieces(),
        ) {
            let wire = encode(std::slice::from_ref(&frame));
            let len = wire.len() - LENGTH_PREFIX_BYTES - frame.1.len();
            let run = drive(len, &wire, &pieces, Reads::Unbounded)?;
            prop_assert!(run == (vec![frame], Stop::Clean));
            let run = drive(len - 1, &wire, &pieces, Reads::Unbounded)?;
            prop_assert!(run == (vec![], Stop::Code(ErrorCode::HeaderTooLarge)));
        }

        /// Short streams fed a byte or a few at a time.
        #[test]
        fn tiny_reads_decode_to_the_frames_encoded(
            frames in prop::collection::vec(frame(64), 0..6),
            pieces in tiny_pieces(),
        ) {
            let wire = encode(&frames);
            let (got, stop) = drive(MAX_HEADER_BYTES, &wire, &pieces, Reads::Unbounded)?;
            prop_assert_eq!(stop, Stop::Clean);
            prop_assert!(got == frames);
        }

        /// A stream that ends anywhere decodes every whole frame, then ends
        /// cleanly if the cut was at a frame boundary and as truncated if
        /// not.
        #[test]
        fn a_stream_cut_short_is_truncated_unless_cut_between_frames(
            frames in prop::collection::vec(frame(2048), 1..6),
            cut in any::<prop::sample::Index>(),
            pieces in pieces(),
        ) {
            let wire = encode(&frames);
            let boundaries: Vec<usize> = std::iter::once(0)
                .chain(frames.iter().scan(0, |end, frame| {
                    *end += encode(std::slice::from_ref(frame)).len();
                    Some(*end)
                }))
                .collect();
            let cut = cut.index(wire.len() + 1);
            let (got, stop) = drive(MAX_HEADER_BYTES, &wire[..cut], &pieces, Reads::Unbounded)?;
            let whole = boundaries.iter().filter(|&&b| b > 0 && b <= cut).count();
            if boundaries.contains(&cut) {
                prop_assert_eq!(stop, Stop::Clean);
                prop_assert!(got.as_slice() == &frames[..whole]);
            } else {
                prop_assert_eq!(stop, Stop::Truncated);
                prop_assert!(got.len() == whole || got.len() == whole + 1);
                prop_assert!(got[..whole] == frames[..whole]);
                if let Some((header, body)) = got.get(whole) {
                    let (sent_header, sent_body) = &frames[whole];
                    prop_assert_eq!(header, sent_header);
                    prop_assert!(sent_body.starts_with(body) && body.len() < sent_body.len());
                }
            }
        }

        /// Garbage in any cuts never panics, gets a decode code or ends, and
        /// does not depend on the cuts; the read buffer stays bounded by the
        /// cap whatever length or size the bytes announce.
        #[test]
        fn garbage_never_panics_and_never_grows_the_buffer_unbounded(
            wire in hostile_stream(),
            max_header_bytes in prop_oneof![1..=512usize, Just(MAX_HEADER_BYTES)],
            pieces in pieces(),
        ) {
            let bound = max_read_buffer_bytes(max_header_bytes);
            let cut = drive(max_header_bytes, &wire, &pieces, Reads::LikeFramedRead { bound })?;
            let whole = drive(max_header_bytes, &wire, &[wire.len()], Reads::Unbounded)?;
            prop_assert!(cut == whole, "cuts changed the outcome: {:?} vs {:?}", cut.1, whole.1);
        }

        /// After any number of good frames, each kind of malformed frame
        /// gets its own code, whatever the cuts and whatever follows it.
        #[test]
        fn each_malformed_frame_gets_its_code(
            good in prop::collection::vec(frame(4096), 0..4),
            (bad, code) in malformed(),
            pieces in pieces(),
        ) {
            let mut wire = encode(&good);
            wire.extend_from_slice(&bad);
            let bound = max_read_buffer_bytes(MAX_HEADER_BYTES);
            for reads in [Reads::Unbounded, Reads::LikeFramedRead { bound }] {
                let (got, stop) = drive(MAX_HEADER_BYTES, &wire, &pieces, reads)?;
                prop_assert_eq!(stop, Stop::Code(code));
                prop_assert!(got == good);
            }
        }
    }

    /// A regression found by the property tests: a 200 KiB body, then a
    /// frame announcing 1 MiB, read as `FramedRead` reads, left the read
    /// buffer with 456 KiB of capacity where 324 KiB are budgeted, because
    /// `BytesMut::reserve` grew the allocation by the full read plus the
    /// consumed bytes before the cursor.
    #[test]
    fn read_buffer_stays_within_the_budgeted_bound() {
        let frames: Vec<(Header, Vec<u8>)> = [200 * 1024, 1024 * 1024]
            .into_iter()
            .map(|len| (Header::default().with_size(len as u64), vec![7; len]))
            .collect();
        let bound = max_read_buffer_bytes(MAX_HEADER_BYTES);
        let reads = Reads::LikeFramedRead { bound };
        drive(MAX_HEADER_BYTES, &encode(&frames), &[usize::MAX], reads).unwrap();
    }

    /// A regression found by fuzzing: serde_json, without its
    /// `float_roundtrip` feature, parsed some floats up to 2 ULP off, so a
    /// header carrying `7.74438979532816e-255` decoded to
    /// 7.744389795328159e-255.
    #[test]
    fn headers_with_any_float_survive_the_wire() {
        let mut header = Header::default();
        header.insert("x", 7.74438979532816e-255);
        let frames = [(header, Vec::new())];
        let (got, _) = drive(MAX_HEADER_BYTES, &encode(&frames), &[1], Reads::Unbounded).unwrap();
        assert_eq!(got, frames);
    }
}
