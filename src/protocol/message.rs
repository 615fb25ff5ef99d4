//! The messages every service shares: the `hello` exchange, ok and error
//! replies, and the data/end frames that carry bodies of unknown length.
//! Service requests live with their services (`crate::services`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::code::ErrorCode;
use super::header::Header;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first frame of every connection, client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version the client speaks.
    pub version: u32,
    /// The server's access token.
    pub token: String,
    /// Free-form client name and version, for the server's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

impl Hello {
    /// The frame header that carries this hello.
    pub fn to_header(&self) -> Header {
        request_header("hello", self)
    }
}

/// The server's answer to a good `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Protocol version the server speaks.
    pub version: u32,
    /// The `cmd`s this server accepts on this connection.
    pub services: Vec<String>,
    /// Server name and version.
    pub server: String,
}

/// Builds a request header: the message's fields plus `cmd`.
pub fn request_header<T: Serialize>(cmd: &str, message: &T) -> Header {
    let mut header = Header::from_message(message);
    header.insert("cmd", cmd);
    header
}

/// Builds an ok reply header: the message's fields plus `"ok": true`.
pub fn ok_header<T: Serialize>(message: &T) -> Header {
    let mut header = Header::from_message(message);
    header.insert("ok", true);
    header
}

/// A refusal or failure with its code, wherever one is made: a frame the
/// decoder cannot accept, a request a service refuses, a file operation
/// that failed. It goes on the wire as an [`ErrorReply`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The wire code.
    pub code: ErrorCode,
    /// A sentence for the person at the terminal (and the log).
    pub message: String,
}

impl Refusal {
    /// A refusal with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// The error reply that carries this refusal.
    pub fn to_reply(&self) -> ErrorReply {
        ErrorReply::new(self.code, self.message.clone())
    }

    /// The header of the error frame that carries this refusal.
    pub fn to_header(&self) -> Header {
        self.to_reply().to_header()
    }
}

impl From<&Refusal> for ErrorReply {
    fn from(refusal: &Refusal) -> ErrorReply {
        refusal.to_reply()
    }
}

impl From<&ErrorReply> for ErrorReply {
    fn from(reply: &ErrorReply) -> ErrorReply {
        reply.clone()
    }
}

/// An error as it travels on the wire: `{"ok": false, "code", "message"}`.
/// The code stays text, as a client may hear one from a newer server that
/// this build does not know; what this build sends is a [`Refusal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// A stable id from [`ErrorCode`], or one from a newer server.
    pub code: String,
    /// A sentence for the person at the terminal.
    pub message: String,
}

impl ErrorReply {
    /// An error reply with a known code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code: code.as_str().to_string(),
            message: message.into(),
        }
    }

    /// The code, if this build knows it.
    pub fn known_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_wire(&self.code)
    }

    /// The frame header that carries this error.
    pub fn to_header(&self) -> Header {
        let mut header = Header::from_message(self);
        header.insert("ok", false);
        header
    }
}

/// What a reply header says, read by a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `"ok": true`, with the whole header for the service to read.
    Ok(Header),
    /// `"ok": false`.
    Error(ErrorReply),
}

impl Reply {
    /// Reads a reply header. `None` if it is neither an ok nor an error
    /// reply, which is a protocol violation by the server.
    pub fn from_header(header: Header) -> Option<Reply> {
        match header.get("ok") {
            Some(Value::Bool(true)) => Some(Reply::Ok(header)),
            Some(Value::Bool(false)) => header.to_message().ok().map(Reply::Error),
            _ => None,
        }
    }
}

/// One frame of a streamed body: a data frame on a named channel, the end
/// frame, or an error that ends the stream early.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamFrame {
    /// `{"data": CHANNEL, "size": N}` followed by N bytes.
    Data { channel: String, size: u64 },
    /// `{"end": true, ...}`: the stream is over; other fields are the
    /// service's summary (an exit code, a checksum).
    End(Header),
    /// `{"ok": false, ...}`: the stream failed.
    Error(ErrorReply),
}

impl StreamFrame {
    /// The header of a data frame on `channel` with `size` body bytes.
    pub fn data_header(channel: &str, size: u64) -> Header {
        let mut header = Header::default().with_size(size);
        header.insert("data", channel);
        header
    }

    /// The header of an end frame carrying the service's summary fields.
    pub fn end_header<T: Serialize>(summary: &T) -> Header {
        let mut header = Header::from_message(summary);
        header.insert("end", true);
        header
    }

    /// Reads a frame of a stream. `None` if it is none of the three.
    pub fn from_header(header: Header) -> Option<StreamFrame> {
        if let Some(channel) = header.get("data").and_then(Value::as_str) {
            return Some(StreamFrame::Data {
                channel: channel.to_string(),
                size: header.size(),
            });
        }
        if header.get("end") == Some(&Value::Bool(true)) {
            return Some(StreamFrame::End(header));
        }
        match Reply::from_header(header)? {
            Reply::Error(err) => Some(StreamFrame::Error(err)),
            Reply::Ok(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_carries_cmd_version_and_token() {
        let hello = Hello {
            version: 1,
            token: "t0k".into(),
            client: None,
        };
        let header = hello.to_header();
        assert_eq!(header.cmd(), Some("hello"));
        assert_eq!(header.to_message::<Hello>().unwrap(), hello);
        assert_eq!(
            String::from_utf8(header.to_json()).unwrap(),
            r#"{"cmd":"hello","token":"t0k","version":1}"#
        );
    }

    #[test]
    fn replies_read_back() {
        let err = ErrorReply::new(ErrorCode::UnknownCmd, "no such cmd");
        assert_eq!(
            Reply::from_header(err.to_header()),
            Some(Reply::Error(err.clone()))
        );
        assert_eq!(err.known_code(), Some(ErrorCode::UnknownCmd));
        let ok = ok_header(&serde_json::json!({"x": 1}));
        assert!(matches!(Reply::from_header(ok), Some(Reply::Ok(h)) if h.get("x").is_some()));
        assert_eq!(Reply::from_header(Header::default()), None);
    }

    #[test]
    fn a_refusal_goes_out_as_the_error_reply_it_always_was() {
        let refusal = Refusal::new(ErrorCode::NotFound, "\"a\": no such file or directory");
        assert_eq!(
            String::from_utf8(refusal.to_reply().to_header().to_json()).unwrap(),
            r#"{"code":"not_found","message":"\"a\": no such file or directory","ok":false}"#
        );
        assert_eq!(ErrorReply::from(&refusal).known_code(), Some(refusal.code));
        assert_eq!(refusal.to_string(), refusal.message);
    }

    #[test]
    fn stream_frames_read_back() {
        assert_eq!(
            StreamFrame::from_header(StreamFrame::data_header("stderr", 9)),
            Some(StreamFrame::Data {
                channel: "stderr".into(),
                size: 9
            })
        );
        let end = StreamFrame::end_header(&serde_json::json!({"exit_code": 0}));
        assert!(
            matches!(StreamFrame::from_header(end), Some(StreamFrame::End(h)) if h.get("exit_code").is_some())
        );
        let err = ErrorReply::new(ErrorCode::Timeout, "late");
        assert_eq!(
            StreamFrame::from_header(err.to_header()),
            Some(StreamFrame::Error(err))
        );
        assert_eq!(StreamFrame::from_header(Header::default()), None);
    }
}
