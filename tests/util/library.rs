//! The server as a library, on the test's own runtime: `ferry::server`
//! bound on port 0 and run until the test stops it. Its deadlines then run
//! on tokio's clock, which a test can pause (`start_paused = true`), so a
//! test of a ten-second timeout takes no wall time and cannot be early or
//! late by a loaded machine's scheduling.
//!
//! [`WireClient`] speaks the protocol to it byte by byte, as [`super::Raw`]
//! does to a spawned binary, but without blocking the runtime the server
//! runs on. Every read has a deadline of [`DEADLINE`] on the same clock.

use std::path::Path;

use ferry::limits::Limits;
use ferry::server::{Config, Server};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::raw::{Frame, NoFrame};
use super::{frame_bytes, hello_header, DEADLINE};

/// A `ferry::server::Server` running on the test's runtime, its state and
/// root in a temporary directory.
pub struct LibraryServer {
    /// Removed when the server is dropped.
    _dir: tempfile::TempDir,
    listening: Vec<String>,
    token: String,
    shutdown: oneshot::Sender<()>,
    running: JoinHandle<()>,
}

impl LibraryServer {
    /// Binds a server configured as `ferry serve --listen 127.0.0.1:0` is,
    /// after `adjust` has changed what the test needs (it is given the
    /// temporary directory, e.g. for a Unix socket's path), and runs it.
    pub async fn start(adjust: impl FnOnce(&mut Config, &Path)) -> LibraryServer {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-")
            .tempdir()
            .expect("create a temporary directory");
        let mut config = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            root: dir.path().join("root"),
            state_dir: dir.path().join("state"),
            plaintext: false,
            allow_remote_plaintext: false,
            penalties: true,
            penalize_loopback: false,
            limits: Limits::default(),
            allow_exec: false,
            detachable_default: false,
            seed_compat: Vec::new(),
            tcp_echo: Vec::new(),
            udp: Vec::new(),
            echo_upper: false,
            udp_chat: Vec::new(),
            seed_compat_udp: Vec::new(),
            quic: Vec::new(),
            http: Vec::new(),
            http_upload: false,
        };
        adjust(&mut config, dir.path());
        let server = Server::bind(config).await.expect("bind the server");
        let listening = server
            .local_endpoints()
            .into_iter()
            .map(|(endpoint, _)| endpoint.to_string())
            .collect();
        let token = std::fs::read_to_string(server.token_path())
            .expect("read the token")
            .trim()
            .to_string();
        let (shutdown, stop) = oneshot::channel();
        let running = tokio::spawn(server.run(async {
            let _ = stop.await;
        }));
        LibraryServer {
            _dir: dir,
            listening,
            token,
            shutdown,
            running,
        }
    }

    /// The first framed address, as `Raw::connect` takes it.
    pub fn addr(&self) -> &str {
        &self.listening[0]
    }

    /// Every framed address, in the order of `listen`.
    pub fn listening(&self) -> &[String] {
        &self.listening
    }

    /// The access token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Resolves the shutdown future and waits for `run` to return: until
    /// requests in flight end or the drain deadline passes.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.running.await.expect("the server's task panicked");
    }
}

/// Any stream the client can speak over: TCP or a Unix socket.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for S {}

/// The write half of a [`WireClient`], for a task that writes while the
/// test reads.
pub type WireWriter = tokio::io::WriteHalf<Box<dyn ByteStream>>;

/// A client that speaks the wire protocol byte by byte, over plaintext TCP
/// or a Unix socket, without blocking the runtime.
pub struct WireClient {
    reader: tokio::io::ReadHalf<Box<dyn ByteStream>>,
    writer: Option<WireWriter>,
}

impl WireClient {
    /// Connects to `addr` (`host:port` or `unix:/path`).
    pub async fn connect(addr: &str) -> WireClient {
        let stream: Box<dyn ByteStream> = match addr.strip_prefix("unix:") {
            Some(path) => Box::new(tokio::net::UnixStream::connect(path).await.unwrap()),
            None => {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                Box::new(tcp)
            }
        };
        let (reader, writer) = tokio::io::split(stream);
        WireClient {
            reader,
            writer: Some(writer),
        }
    }

    /// Connects to `server` and says hello with its token; asserts the
    /// welcome.
    pub async fn hello(server: &LibraryServer) -> WireClient {
        let mut client = WireClient::connect(server.addr()).await;
        client
            .send(&frame_bytes(&hello_header(server.token()), b""))
            .await;
        let welcome = client.read_frame().await;
        assert!(welcome.is_ok(), "hello refused: {welcome:?}");
        client
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        let writer = self.writer.as_mut().expect("the writer was taken");
        writer.write_all(bytes).await.expect("write to the server");
    }

    /// Sends one echo request and asserts its reply.
    pub async fn echo(&mut self, text: &str) {
        let header = serde_json::json!({"cmd": "echo", "size": text.len()});
        self.send(&frame_bytes(&header, text.as_bytes())).await;
        let reply = self.read_frame().await;
        assert!(reply.is_ok(), "echo refused: {reply:?}");
        assert_eq!(String::from_utf8_lossy(&reply.body), text);
    }

    /// The write half, for a task of its own.
    pub fn take_writer(&mut self) -> WireWriter {
        self.writer.take().expect("the writer was taken")
    }

    /// Reads exactly `buf.len()` bytes; `Ok(n)` with a smaller `n` means
    /// the peer closed after `n` bytes.
    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<usize, NoFrame> {
        let mut filled = 0;
        while filled < buf.len() {
            let read = self.reader.read(&mut buf[filled..]);
            match tokio::time::timeout(DEADLINE, read).await {
                Err(_) => return Err(NoFrame::TimedOut),
                Ok(Ok(0)) => return Ok(filled),
                Ok(Ok(n)) => filled += n,
                // A reset is the peer closing, without the courtesy of a FIN.
                Ok(Err(_)) => return Ok(filled),
            }
        }
        Ok(filled)
    }

    async fn fill(&mut self, buf: &mut [u8]) -> Result<(), NoFrame> {
        match self.read_exact(buf).await? {
            n if n == buf.len() => Ok(()),
            _ => Err(NoFrame::Truncated),
        }
    }

    /// Reads a frame's length and header.
    pub async fn next_header(&mut self) -> Result<Map<String, Value>, NoFrame> {
        let mut len = [0u8; 4];
        match self.read_exact(&mut len).await? {
            0 => return Err(NoFrame::Closed),
            4 => {}
            _ => return Err(NoFrame::Truncated),
        }
        let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
        self.fill(&mut header).await?;
        match serde_json::from_slice(&header) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(NoFrame::Malformed(
                String::from_utf8_lossy(&header).into_owned(),
            )),
        }
    }

    /// Reads one whole frame; panics if none arrives within [`DEADLINE`].
    pub async fn read_frame(&mut self) -> Frame {
        let header = match self.next_header().await {
            Ok(header) => header,
            Err(err) => panic!("expected a frame, got {err:?}"),
        };
        let size = header.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
        let mut body = vec![0u8; size];
        if let Err(err) = self.fill(&mut body).await {
            panic!("reading a body of {size} bytes: {err:?}");
        }
        Frame { header, body }
    }

    /// Reads a frame and asserts it is an error with `code`; returns its
    /// message.
    pub async fn expect_error(&mut self, code: &str) -> String {
        let frame = self.read_frame().await;
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
    pub async fn expect_closed(&mut self) {
        match self.next_header().await {
            Err(NoFrame::Closed) => {}
            other => panic!("expected the server to close the connection, got {other:?}"),
        }
    }
}
