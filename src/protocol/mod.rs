//! The ferry wire format, as pure code: no sockets, no files, no clock.
//!
//! A frame is a 4-byte little-endian header length, a UTF-8 JSON object (the
//! header), then a raw body of exactly the header's `size` bytes. PROTOCOL.md
//! at the repository root is the full specification; this module implements
//! it and its tests check the error-code table there.

pub mod code;
pub mod codec;
pub mod header;
pub mod message;

pub use code::{After, ErrorCode};
pub use codec::{Frame, FrameCodec};
pub use header::Header;
pub use message::{ErrorReply, Hello, Refusal, Reply, StreamFrame, Welcome, PROTOCOL_VERSION};

/// A frame the decoder cannot accept, refused with the code to answer it
/// with.
pub type FrameError = Refusal;

/// Why the codec stopped: a malformed frame, the stream ended mid-frame,
/// the caller broke the framing while encoding, or IO failed underneath.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer sent a frame that breaks the protocol.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame.
    #[error("the connection closed in the middle of a frame")]
    Truncated,
    /// Our own side tried to send something that is not a frame.
    #[error("cannot encode frame: {0}")]
    Encode(String),
    /// The underlying stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
