//! Fuzzes `FrameCodec` as a connection drives it: the input is a header cap,
//! a schedule of read sizes and a byte stream, fed to the decoder the way
//! `FramedRead` reads a socket. Checks that the decoder never panics; that
//! body chunks add up to exactly each header's `size` (short only for a last
//! frame cut off by the end of the stream); that the read buffer's capacity
//! stays bounded by the cap, whatever lengths and sizes the stream
//! announces; that the outcome does not depend on the read sizes; and that
//! every header decoded re-encodes to one that decodes the same.
//!
//! Input layout (missing fields take the default in brackets):
//!
//! ```text
//! byte 0      header cap, by value % 4: 64 KiB, 256, 1 + value / 4, 1 MiB [64 KiB]
//! byte 1      bits 0-3: number of reads less one; bit 4: a stretch follows  [0]
//! 2 bytes     per read, u16 LE: 0 reads all the buffer takes, under
//!             0x8000 that many bytes, else (value - 0x8000) * 64           [0]
//! 4 bytes     if bit 4 is set, a stretch: u16 LE position, u16 LE count;
//!             inserts count * 16 copies of the stream's byte at that
//!             position after it, so a short input can carry a long body.
//!             Optional because long streams are slow to run.
//! rest        the stream
//! ```

#![no_main]

use bytes::BytesMut;
use ferry::protocol::codec::{BODY_READ_BYTES, HEADER_READ_AHEAD_BYTES, LENGTH_PREFIX_BYTES};
use ferry::protocol::CodecError;
use ferry::protocol::{ErrorCode, Frame, FrameCodec, Header};
use ferry_fuzz::same_header;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

/// The read buffer's capacity never exceeds this for a given cap: the read
/// side of `Limits::max_buffer_bytes_per_connection`.
fn capacity_bound(max_header_bytes: usize) -> usize {
    LENGTH_PREFIX_BYTES + max_header_bytes + BODY_READ_BYTES + HEADER_READ_AHEAD_BYTES
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Clean,
    Code(ErrorCode),
    Truncated,
}

type Run = (Vec<(Header, Vec<u8>)>, Stop);

struct Input {
    max_header_bytes: usize,
    reads: Vec<usize>,
    stream: Vec<u8>,
}

impl Input {
    fn parse(data: &[u8]) -> Input {
        let mut rest = data;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        let le16 = |b: &[u8]| usize::from(u16::from_le_bytes([b[0], b[1]]));
        let cap = take(1).map_or(0, |b| b[0]);
        let max_header_bytes = match cap % 4 {
            0 => 64 * 1024,
            1 => 256,
            2 => 1 + usize::from(cap / 4),
            _ => 1024 * 1024,
        };
        let flags = take(1).map_or(0, |b| b[0]);
        let reads = (0..=flags & 0x0f)
            .map(|_| match take(2).map_or(0, le16) {
                0 => usize::MAX,
                n @ ..0x8000 => n,
                n => (n - 0x8000) * 64,
            })
            .collect();
        let stretch = if flags & 0x10 != 0 { take(4) } else { None };
        let stretch = stretch.map(|b| (le16(&b[..2]), le16(&b[2..]) * 16));
        let mut stream = rest.to_vec();
        if let Some((at, count)) = stretch {
            if !stream.is_empty() {
                let at = at % stream.len();
                let filler = vec![stream[at]; count];
                stream.splice(at + 1..at + 1, filler);
            }
        }
        Input {
            max_header_bytes,
            reads,
            stream,
        }
    }
}

/// Feeds `stream` to a fresh decoder. With `bounded`, each read takes at
/// most the buffer's spare capacity after `reserve(1)`, as `FramedRead`
/// does, so the buffer grows only as the decoder asks; without, each read is
/// appended whole.
fn drive(max_header_bytes: usize, stream: &[u8], reads: &[usize], bounded: bool) -> Run {
    let bound = capacity_bound(max_header_bytes);
    let mut codec = FrameCodec::new(max_header_bytes);
    let mut src = BytesMut::new();
    let mut reads = reads.iter().copied().cycle();
    let mut fed = 0;
    let mut frames: Vec<(Header, Vec<u8>)> = Vec::new();
    let mut owed = 0u64;
    loop {
        let at_eof = fed == stream.len();
        let result = if at_eof {
            codec.decode_eof(&mut src)
        } else {
            codec.decode(&mut src)
        };
        if bounded {
            assert!(
                src.capacity() <= bound,
                "read buffer capacity {} over {bound} (cap {max_header_bytes}) after {fed} of {} bytes",
                src.capacity(),
                stream.len()
            );
        }
        match result {
            Ok(Some(Frame::Header(header))) => {
                assert_eq!(owed, 0, "a header inside a body");
                owed = header.size();
                assert_eq!(codec.at_frame_boundary(), owed == 0);
                frames.push((header, Vec::new()));
            }
            Ok(Some(Frame::Body(chunk))) => {
                assert!(!chunk.is_empty(), "an empty body chunk");
                assert!(
                    chunk.len() as u64 <= owed,
                    "{} body bytes where {owed} were owed",
                    chunk.len()
                );
                owed -= chunk.len() as u64;
                frames
                    .last_mut()
                    .expect("a body before any header")
                    .1
                    .extend_from_slice(&chunk);
            }
            Ok(None) if at_eof => {
                assert!(codec.at_frame_boundary() && src.is_empty() && owed == 0);
                return (frames, Stop::Clean);
            }
            Ok(None) => {
                assert_eq!(codec.body_remaining(), owed);
                let mut n = reads.next().unwrap().clamp(1, stream.len() - fed);
                if bounded {
                    src.reserve(1);
                    n = n.min(src.capacity() - src.len());
                }
                src.extend_from_slice(&stream[fed..fed + n]);
                fed += n;
            }
            Err(CodecError::Frame(err)) => {
                assert!(
                    matches!(
                        err.code,
                        ErrorCode::EmptyHeader
                            | ErrorCode::HeaderTooLarge
                            | ErrorCode::HeaderNotUtf8
                            | ErrorCode::HeaderNotJson
                            | ErrorCode::HeaderNotObject
                            | ErrorCode::BadSize
                    ),
                    "decode answered {}",
                    err.code
                );
                return (frames, Stop::Code(err.code));
            }
            Err(CodecError::Truncated) if at_eof => return (frames, Stop::Truncated),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
}

/// Encodes a header alone and decodes it back, with no cap in the way: a
/// header may re-encode longer than it came (`1e5` is written `100000.0`).
fn round_trip(header: &Header) -> Header {
    let mut wire = BytesMut::new();
    FrameCodec::new(usize::MAX)
        .encode(Frame::Header(header.clone()), &mut wire)
        .expect("a decoded header encodes");
    assert!(wire.len() > LENGTH_PREFIX_BYTES);
    match FrameCodec::new(usize::MAX).decode(&mut wire) {
        Ok(Some(Frame::Header(back))) if wire.is_empty() => back,
        other => panic!("{header:?} re-encoded to something that decodes as {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let (frames, stop) = drive(input.max_header_bytes, &input.stream, &input.reads, true);

    if let Some((last, whole)) = frames.split_last() {
        for (header, body) in whole {
            assert_eq!(
                body.len() as u64,
                header.size(),
                "a body cut short mid-stream"
            );
        }
        let (header, body) = last;
        if stop == Stop::Truncated {
            assert!((body.len() as u64) <= header.size());
        } else {
            assert_eq!(body.len() as u64, header.size(), "the last body cut short");
        }
    }

    let whole = drive(input.max_header_bytes, &input.stream, &[usize::MAX], false);
    assert!(
        whole == (frames.clone(), stop),
        "the read sizes changed the outcome"
    );

    for (header, _) in &frames {
        let back = round_trip(header);
        assert!(
            same_header(header, &back),
            "{header:?} came back as {back:?}"
        );
    }
});
