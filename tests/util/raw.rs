//! A client that speaks the wire protocol byte by byte, written from the
//! protocol's description rather than from ferry's codec, so the two can
//! disagree and a test can say so.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{Server, DEADLINE};

/// One frame as read off the wire: the header's fields and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The header's JSON object, `size` included when it was sent.
    pub header: Map<String, Value>,
    /// Exactly `size` bytes.
    pub body: Vec<u8>,
}

impl Frame {
    /// Whether the header says `"ok": true`.
    pub fn is_ok(&self) -> bool {
        self.header.get("ok") == Some(&Value::Bool(true))
    }

    /// The error code of an error frame.
    pub fn code(&self) -> Option<&str> {
        self.header.get("code").and_then(Value::as_str)
    }
}

/// Why no frame could be read.
#[derive(Debug)]
pub enum NoFrame {
    /// The peer closed the connection (EOF or reset) before a frame began.
    Closed,
    /// The peer closed the connection in the middle of a frame.
    Truncated,
    /// Nothing arrived before the deadline.
    TimedOut,
    /// A header arrived but is not a JSON object; its text is kept for the
    /// failure message.
    Malformed(#[allow(dead_code)] String),
}

/// The bytes of one frame: the u32 little-endian header length, the header
/// JSON, then `body` (the header must announce its size itself).
pub fn frame_bytes(header: &Value, body: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("JSON");
    let mut out = Vec::with_capacity(4 + json.len() + body.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(body);
    out
}

#[derive(Debug)]
enum RawStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A client that speaks the wire protocol byte by byte, over plaintext TCP
/// or a Unix socket, so tests can send what the real client never would.
/// Every read has a deadline.
#[derive(Debug)]
pub struct Raw {
    stream: RawStream,
}

impl Raw {
    /// Connects to `addr` (`host:port` or `unix:/path`).
    #[track_caller]
    pub fn connect(addr: &str) -> Raw {
        match Raw::try_connect(addr) {
            Ok(raw) => raw,
            Err(err) => panic!("connect to {addr}: {err}"),
        }
    }

    /// Connects to `addr`, or says why not.
    pub fn try_connect(addr: &str) -> io::Result<Raw> {
        let stream = match addr.strip_prefix("unix:") {
            Some(path) => RawStream::Unix(UnixStream::connect(path)?),
            None => {
                let tcp = TcpStream::connect(addr)?;
                tcp.set_nodelay(true)?;
                RawStream::Tcp(tcp)
            }
        };
        Ok(Raw { stream })
    }

    /// Connects to the server's first address and says hello with its
    /// token; asserts the welcome.
    #[track_caller]
    pub fn hello(server: &Server) -> Raw {
        Raw::hello_at(server, server.addr())
    }

    /// Connects to `addr` of `server` and says hello; asserts the welcome.
    #[track_caller]
    pub fn hello_at(server: &Server, addr: &str) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send_frame(&hello_header(&server.token()), b"");
        let welcome = raw.read_frame();
        assert!(welcome.is_ok(), "hello refused: {welcome:?}");
        assert_eq!(welcome.header["version"], 1, "{welcome:?}");
        raw
    }

    /// A second handle on the same connection, e.g. for a writer thread.
    pub fn try_clone(&self) -> Raw {
        let stream = match &self.stream {
            RawStream::Tcp(s) => RawStream::Tcp(s.try_clone().unwrap()),
            RawStream::Unix(s) => RawStream::Unix(s.try_clone().unwrap()),
        };
        Raw { stream }
    }

    /// Writes raw bytes, or says why not.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            RawStream::Tcp(s) => s.write_all(bytes),
            RawStream::Unix(s) => s.write_all(bytes),
        }
    }

    /// Writes raw bytes.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("write to the server");
    }

    /// Writes one frame: `header` (which must carry any `size`) and `body`.
    #[track_caller]
    pub fn send_frame(&mut self, header: &Value, body: &[u8]) {
        self.send(&frame_bytes(header, body));
    }

    /// Sends one echo request and asserts its reply.
    #[track_caller]
    pub fn echo(&mut self, text: &str) {
        self.send_frame(&json!({"cmd": "echo", "size": text.len()}), text.as_bytes());
        let reply = self.read_frame();
        assert!(reply.is_ok(), "echo refused: {reply:?}");
        assert_eq!(String::from_utf8_lossy(&reply.body), text);
    }

    /// Reads exactly `buf.len()` bytes within `deadline`. `Ok(n)` with
    /// `n < buf.len()` means the peer closed after `n` bytes.
    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, NoFrame> {
        let mut filled = 0;
        while filled < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoFrame::TimedOut);
            }
            let result = match &mut self.stream {
                RawStream::Tcp(s) => {
                    s.set_read_timeout(Some(left)).unwrap();
                    s.read(&mut buf[filled..])
                }
                RawStream::Unix(s) => {
                    s.set_read_timeout(Some(left)).unwrap();
                    s.read(&mut buf[filled..])
                }
            };
            match result {
                Ok(0) => return Ok(filled),
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(NoFrame::TimedOut)
                }
                // A reset is the peer closing, without the courtesy of a FIN.
                Err(_) => return Ok(filled),
            }
        }
        Ok(filled)
    }

    fn fill(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), NoFrame> {
        match self.read_exact_by(buf, deadline)? {
            n if n == buf.len() => Ok(()),
            _ => Err(NoFrame::Truncated),
        }
    }

    /// Reads a frame's length and header within `within`.
    pub fn next_header(&mut self, within: Duration) -> Result<Map<String, Value>, NoFrame> {
        let deadline = Instant::now() + within;
        let mut len = [0u8; 4];
        match self.read_exact_by(&mut len, deadline)? {
            0 => return Err(NoFrame::Closed),
            4 => {}
            _ => return Err(NoFrame::Truncated),
        }
        let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
        self.fill(&mut header, deadline)?;
        match serde_json::from_slice(&header) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(NoFrame::Malformed(
                String::from_utf8_lossy(&header).into_owned(),
            )),
        }
    }

    /// Reads `len` body bytes within [`DEADLINE`].
    #[track_caller]
    pub fn read_body(&mut self, len: usize) -> Vec<u8> {
        let mut body = vec![0u8; len];
        if let Err(err) = self.fill(&mut body, Instant::now() + DEADLINE) {
            panic!("reading a body of {len} bytes: {err:?}");
        }
        body
    }

    /// Reads one whole frame within `within`.
    pub fn next_frame(&mut self, within: Duration) -> Result<Frame, NoFrame> {
        let deadline = Instant::now() + within;
        let header = self.next_header(within)?;
        let size = header.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
        let mut body = vec![0u8; size];
        self.fill(&mut body, deadline)?;
        Ok(Frame { header, body })
    }

    /// Reads one whole frame; panics if none arrives within [`DEADLINE`].
    #[track_caller]
    pub fn read_frame(&mut self) -> Frame {
        match self.next_frame(DEADLINE) {
            Ok(frame) => frame,
            Err(err) => panic!("expected a frame, got {err:?}"),
        }
    }

    /// Reads a frame and asserts it is an error with `code`; returns its
    /// message.
    #[track_caller]
    pub fn expect_error(&mut self, code: &str) -> String {
        let frame = self.read_frame();
        assert_eq!(
            frame.header["ok"], false,
            "expected error {code}, got {frame:?}"
        );
        assert_eq!(frame.code(), Some(code), "{frame:?}");
        assert_eq!(frame.body, b"", "error frames have no body");
        match frame.header["message"].as_str() {
            Some(message) => message.to_string(),
            None => panic!("error without a message: {frame:?}"),
        }
    }

    /// Asserts the server closes the connection (EOF or reset) within
    /// [`DEADLINE`] without sending anything more.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        match self.next_header(DEADLINE) {
            Err(NoFrame::Closed) => {}
            other => panic!("expected the server to close the connection, got {other:?}"),
        }
    }
}

/// The header of a version-1 `hello` with `token`.
pub fn hello_header(token: &str) -> Value {
    json!({"cmd": "hello", "version": 1, "token": token})
}
