//! A framed connection: frame headers and body chunks in, headers and bodies
//! out, with a deadline on every step taken inside a request.
//!
//! The stream is split into a [`FrameReader`] and a [`FrameWriter`] so a
//! service can read and write at once (echo of a large body, exec with stdin
//! forwarded while output streams back). Memory is bounded on both sides: the
//! reader's buffer by the header cap plus one body read
//! ([`crate::protocol::codec::max_read_buffer_bytes`]), the writer's by
//! `max_write_buffer_bytes`, past which it waits for the peer.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::codec::FramedRead;

use crate::protocol::{CodecError, ErrorReply, Frame, FrameCodec, FrameError, Header};

/// Bodies at least this large are written straight from the caller's buffer
/// with one vectored write after the pending bytes, instead of being copied.
const COPY_BODY_BELOW_BYTES: usize = 16 * 1024;

/// Why a connection could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The peer sent something that is not a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer closed the connection in the middle of a frame.
    #[error("the connection closed in the middle of a frame")]
    Truncated,
    /// The peer closed the connection where a frame was expected.
    #[error("the connection closed before the expected frame")]
    Closed,
    /// The peer made no progress within the deadline.
    #[error("timed out after {0:?} waiting for the peer")]
    Timeout(Duration),
    /// Our side broke the framing (a bug); see the message.
    #[error("{0}")]
    Encode(String),
    /// The peer sent a well-formed frame that is not what the protocol
    /// allows at this point.
    #[error("unexpected frame: {0}")]
    Unexpected(String),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<CodecError> for ConnectionError {
    fn from(err: CodecError) -> ConnectionError {
        match err {
            CodecError::Frame(e) => ConnectionError::Frame(e),
            CodecError::Truncated => ConnectionError::Truncated,
            CodecError::Encode(e) => ConnectionError::Encode(e),
            CodecError::Io(e) => ConnectionError::Io(e),
        }
    }
}

type Result<T> = std::result::Result<T, ConnectionError>;

/// Per-connection settings.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionConfig {
    /// Header cap for both directions.
    pub max_header_bytes: usize,
    /// Deadline for each read or write step inside a request.
    pub request_timeout: Duration,
    /// Reply bytes buffered before the writer waits for the peer.
    pub max_write_buffer_bytes: usize,
    /// Whether reading the stream also decrypts it (TLS), so that a reader
    /// can keep other costly work off the task that reads
    /// ([`FrameReader::decrypts`]). The door that built the stream knows.
    pub decrypts: bool,
}

impl From<&crate::limits::Limits> for ConnectionConfig {
    fn from(limits: &crate::limits::Limits) -> ConnectionConfig {
        ConnectionConfig {
            max_header_bytes: limits.max_header_bytes,
            request_timeout: limits.request_timeout,
            max_write_buffer_bytes: limits.max_write_buffer_bytes,
            decrypts: false,
        }
    }
}

/// Any byte stream a connection runs over: TCP, a Unix socket, TLS, and
/// next a QUIC stream. Services take `Connection<S>` for any of them.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for S {}

/// A framed, split connection over any byte stream.
#[derive(Debug)]
pub struct Connection<S> {
    reader: FrameReader<ReadHalf<S>>,
    writer: FrameWriter<WriteHalf<S>>,
}

impl<S: AsyncRead + AsyncWrite> Connection<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S, config: ConnectionConfig) -> Connection<S> {
        let (read, write) = tokio::io::split(stream);
        Connection {
            reader: FrameReader::new(read, config),
            writer: FrameWriter::new(write, config),
        }
    }

    /// Both halves, for reading and writing at once.
    pub fn split(
        &mut self,
    ) -> (
        &mut FrameReader<ReadHalf<S>>,
        &mut FrameWriter<WriteHalf<S>>,
    ) {
        (&mut self.reader, &mut self.writer)
    }

    /// The reading half.
    pub fn reader(&mut self) -> &mut FrameReader<ReadHalf<S>> {
        &mut self.reader
    }

    /// The writing half.
    pub fn writer(&mut self) -> &mut FrameWriter<WriteHalf<S>> {
        &mut self.writer
    }

    /// Waits, without a deadline, for the next frame header; `None` when
    /// the peer closed the connection between frames. Cancel-safe: a
    /// partly read frame stays buffered.
    pub async fn read_header(&mut self) -> Result<Option<Header>> {
        self.reader.read_header().await
    }

    /// Sends a header and its whole body, and flushes.
    pub async fn send(&mut self, header: Header, body: Bytes) -> Result<()> {
        self.writer.send(header, body).await
    }

    /// Sends an error frame and flushes.
    pub async fn send_error(&mut self, error: impl Into<ErrorReply>) -> Result<()> {
        self.writer.send_error(error).await
    }

    /// Gives back buffer memory while the connection waits between
    /// requests, so thousands of idle connections cost little.
    pub fn release_idle_buffers(&mut self) {
        self.reader.release_idle_buffer();
        self.writer.release_idle_buffer();
    }

    /// Flushes and closes our sending side (for TLS, with close_notify),
    /// giving the peer at most `deadline` to take the rest.
    pub async fn close(mut self, deadline: Duration) {
        self.shutdown(deadline).await;
    }

    /// [`Connection::close`] through a borrow, for an owner that must
    /// know the connection is closed (see [`Connection::shutdown_now`]).
    pub async fn shutdown(&mut self, deadline: Duration) {
        let _ = tokio::time::timeout(deadline, async {
            let _ = self.writer.flush().await;
            let _ = self.writer.io.shutdown().await;
        })
        .await;
    }

    /// Starts closing our sending side without waiting, where nothing can
    /// be awaited (a client dropped on its way out after an error): for
    /// TLS, close_notify is queued and written if the socket takes it at
    /// once, so the peer sees an orderly end instead of a cut connection.
    /// Frames still buffered are dropped.
    pub fn shutdown_now(&mut self) {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = std::pin::Pin::new(&mut self.writer.io).poll_shutdown(&mut cx);
    }
}

/// The reading half: frame headers and body chunks.
#[derive(Debug)]
pub struct FrameReader<R> {
    framed: FramedRead<R, FrameCodec>,
    timeout: Duration,
    decrypts: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(read: R, config: ConnectionConfig) -> FrameReader<R> {
        FrameReader {
            framed: FramedRead::with_capacity(read, FrameCodec::new(config.max_header_bytes), 0),
            timeout: config.request_timeout,
            decrypts: config.decrypts,
        }
    }

    /// How long a read may wait for the peer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets how long a read may wait for the peer; returns the old value.
    /// A transfer lowers it to its stall timeout, so a silent peer is a cut.
    pub fn set_timeout(&mut self, timeout: Duration) -> Duration {
        std::mem::replace(&mut self.timeout, timeout)
    }

    /// Whether the stream decrypts what this reader reads (see
    /// [`ConnectionConfig::decrypts`]), so a caller can keep other work off
    /// the task that reads.
    pub fn decrypts(&self) -> bool {
        self.decrypts
    }

    /// See [`Connection::read_header`].
    pub async fn read_header(&mut self) -> Result<Option<Header>> {
        if !self.framed.decoder().at_frame_boundary() {
            return Err(ConnectionError::Encode(
                "a header was read before the previous frame's body was consumed".into(),
            ));
        }
        match self.framed.next().await {
            None => Ok(None),
            Some(Ok(Frame::Header(header))) => Ok(Some(header)),
            Some(Ok(Frame::Body(_))) => unreachable!("a body chunk at a frame boundary"),
            Some(Err(err)) => Err(err.into()),
        }
    }

    /// Reads the next frame header within the request deadline; the peer
    /// closing here is an error.
    pub async fn expect_header(&mut self) -> Result<Header> {
        let deadline = self.timeout;
        match tokio::time::timeout(deadline, self.read_header()).await {
            Err(_) => Err(ConnectionError::Timeout(deadline)),
            Ok(Ok(Some(header))) => Ok(header),
            Ok(Ok(None)) => Err(ConnectionError::Closed),
            Ok(Err(err)) => Err(err),
        }
    }

    /// The next chunk of the current frame's body, within the request
    /// deadline; `None` once the body is complete.
    pub async fn read_body_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.framed.decoder().body_remaining() == 0 {
            return Ok(None);
        }
        // Most chunks are already buffered: take them without arming a timer.
        let next = match self.framed.next().now_or_never() {
            Some(next) => next,
            None => {
                let deadline = self.timeout;
                tokio::time::timeout(deadline, self.framed.next())
                    .await
                    .map_err(|_| ConnectionError::Timeout(deadline))?
            }
        };
        match next {
            None => Err(ConnectionError::Truncated),
            Some(Ok(Frame::Body(chunk))) => Ok(Some(chunk)),
            Some(Ok(Frame::Header(_))) => unreachable!("a header inside a body"),
            Some(Err(err)) => Err(err.into()),
        }
    }

    /// Reads a whole body of a size the caller has already checked.
    pub async fn read_body(&mut self) -> Result<Bytes> {
        let mut body = BytesMut::with_capacity(self.body_remaining() as usize);
        while let Some(chunk) = self.read_body_chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Reads and drops the rest of the current body, holding at most one
    /// chunk in memory.
    pub async fn discard_body(&mut self) -> Result<()> {
        while self.read_body_chunk().await?.is_some() {}
        Ok(())
    }

    /// Body bytes of the current frame still to come.
    pub fn body_remaining(&self) -> u64 {
        self.framed.decoder().body_remaining()
    }

    fn release_idle_buffer(&mut self) {
        if self.framed.read_buffer().is_empty() {
            *self.framed.read_buffer_mut() = BytesMut::new();
        }
    }
}

/// The writing half: headers and bodies, buffered up to a cap.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    codec: FrameCodec,
    buffer: BytesMut,
    max_buffer_bytes: usize,
    timeout: Duration,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    fn new(io: W, config: ConnectionConfig) -> FrameWriter<W> {
        FrameWriter {
            io,
            codec: FrameCodec::new(config.max_header_bytes),
            buffer: BytesMut::new(),
            max_buffer_bytes: config.max_write_buffer_bytes,
            timeout: config.request_timeout,
        }
    }

    /// Queues a frame header; its body must follow through
    /// [`FrameWriter::send_body`]. Nothing is written until the buffer
    /// fills or [`FrameWriter::flush`] is called, so a header and the start
    /// of its body leave in one write.
    pub async fn send_header(&mut self, header: &Header) -> Result<()> {
        self.codec.encode_header(header, &mut self.buffer)?;
        if self.buffer.len() >= self.max_buffer_bytes {
            self.write_buffered().await?;
        }
        Ok(())
    }

    /// Sends part of the current frame's body. Small chunks are buffered;
    /// large ones go out in one vectored write together with whatever is
    /// buffered (typically the header).
    pub async fn send_body(&mut self, chunk: Bytes) -> Result<()> {
        self.codec.account_body(chunk.len())?;
        if chunk.len() < COPY_BODY_BELOW_BYTES {
            self.buffer.extend_from_slice(&chunk);
            if self.buffer.len() >= self.max_buffer_bytes {
                self.write_buffered().await?;
            }
            return Ok(());
        }
        let pending = self.buffer.split().freeze();
        let mut out = pending.chain(chunk);
        self.with_deadline(|io| async move { io.write_all_buf(&mut out).await })
            .await
    }

    /// Sends a header and its whole body, then flushes.
    pub async fn send(&mut self, header: Header, body: Bytes) -> Result<()> {
        self.send_header(&header.with_size(body.len() as u64))
            .await?;
        if !body.is_empty() {
            self.send_body(body).await?;
        }
        self.flush().await
    }

    /// Sends an error frame and flushes.
    pub async fn send_error(&mut self, error: impl Into<ErrorReply>) -> Result<()> {
        self.send(error.into().to_header(), Bytes::new()).await
    }

    /// Writes out everything buffered and flushes the stream.
    pub async fn flush(&mut self) -> Result<()> {
        self.write_buffered().await?;
        // A flush is usually done at once (a no-op for TCP).
        if let Some(flushed) = self.io.flush().now_or_never() {
            return Ok(flushed?);
        }
        self.with_deadline(|io| async move { io.flush().await })
            .await
    }

    /// How long a write may wait for the peer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets how long a write may wait for the peer; returns the old value.
    /// Exec raises it: a client that pauses its pager is not an error.
    pub fn set_timeout(&mut self, timeout: Duration) -> Duration {
        std::mem::replace(&mut self.timeout, timeout)
    }

    /// Body bytes still owed for the last header sent.
    pub fn body_owed(&self) -> u64 {
        self.codec.encode_remaining()
    }

    /// Writes out the buffer. Cancel-safe: each write(2) either completes
    /// and is taken off the buffer before the next await, or writes
    /// nothing, so a dropped flush never sends a byte twice.
    async fn write_buffered(&mut self) -> Result<()> {
        // Usually the socket takes it all at once: try one write(2) before
        // arming a timer. (One buffer goes out with write, not writev: writev
        // of a single slice costs more in the kernel for nothing.)
        if let Some(written) = self.io.write(&self.buffer).now_or_never() {
            self.buffer.advance(written?);
        }
        let deadline = self.timeout;
        while !self.buffer.is_empty() {
            let written = tokio::time::timeout(deadline, self.io.write(&self.buffer))
                .await
                .map_err(|_| ConnectionError::Timeout(deadline))??;
            if written == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            self.buffer.advance(written);
        }
        Ok(())
    }

    /// Queues a whole frame (header and body) in the buffer without any IO;
    /// [`FrameWriter::flush`] sends it. With [`FrameWriter::buffered`] this
    /// lets a caller that must keep reading (exec's stdin relay) send in
    /// steps that are safe to interrupt.
    pub fn queue(&mut self, header: Header, body: &[u8]) -> Result<()> {
        self.codec
            .encode_header(&header.with_size(body.len() as u64), &mut self.buffer)?;
        self.codec.account_body(body.len())?;
        self.buffer.extend_from_slice(body);
        Ok(())
    }

    /// Bytes queued and not yet written.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    async fn with_deadline<'a, F, Fut>(&'a mut self, op: F) -> Result<()>
    where
        F: FnOnce(&'a mut W) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>> + 'a,
    {
        let deadline = self.timeout;
        match tokio::time::timeout(deadline, op(&mut self.io)).await {
            Err(_) => Err(ConnectionError::Timeout(deadline)),
            Ok(result) => Ok(result?),
        }
    }

    fn release_idle_buffer(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = BytesMut::new();
        }
    }
}

/// Two connected ends over an in-memory pipe of `bytes`, for the tests of
/// code both peers run: a 64 KiB header cap, a 10 s deadline, and a write
/// buffer as large as the pipe.
#[cfg(test)]
pub(crate) fn test_pair(
    bytes: usize,
) -> (
    Connection<tokio::io::DuplexStream>,
    Connection<tokio::io::DuplexStream>,
) {
    let config = ConnectionConfig {
        max_header_bytes: 64 * 1024,
        request_timeout: Duration::from_secs(10),
        max_write_buffer_bytes: bytes.max(256 * 1024),
        decrypts: false,
    };
    let (a, b) = tokio::io::duplex(bytes);
    (Connection::new(a, config), Connection::new(b, config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::ok_header;
    use serde_json::json;

    fn config() -> ConnectionConfig {
        ConnectionConfig {
            max_header_bytes: 1024,
            request_timeout: Duration::from_secs(5),
            max_write_buffer_bytes: 64 * 1024,
            decrypts: false,
        }
    }

    #[tokio::test]
    async fn a_frame_sent_is_the_frame_received_in_any_size() {
        for size in [0usize, 1, 100, COPY_BODY_BELOW_BYTES, 1 << 20] {
            let (a, b) = tokio::io::duplex(8 * 1024);
            let mut left = Connection::new(a, config());
            let mut right = Connection::new(b, config());
            let body = Bytes::from((0..size).map(|i| i as u8).collect::<Vec<_>>());
            let sent = body.clone();
            let send = tokio::spawn(async move {
                left.send(ok_header(&json!({"n": 1})), sent).await.unwrap();
                left
            });
            let header = right.read_header().await.unwrap().unwrap();
            assert_eq!(header.size(), size as u64);
            assert_eq!(right.reader().read_body().await.unwrap(), body);
            send.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_header_and_a_small_body_leave_in_one_write() {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let mut conn = Connection::new(a, config());
        conn.send(ok_header(&json!({})), Bytes::from_static(b"hello"))
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut b, &mut buf)
            .await
            .unwrap();
        let expected = b"\x14\x00\x00\x00{\"ok\":true,\"size\":5}hello";
        assert_eq!(&buf[..n], &expected[..]);
    }

    /// Reads body chunks until an error, returning what arrived and the error.
    async fn read_until_error<S: AsyncRead + AsyncWrite>(
        conn: &mut Connection<S>,
    ) -> (Vec<u8>, ConnectionError) {
        let mut got = Vec::new();
        loop {
            match conn.reader().read_body_chunk().await {
                Ok(Some(chunk)) => got.extend_from_slice(&chunk),
                Ok(None) => panic!("body completed"),
                Err(err) => return (got, err),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut conn = Connection::new(a, config());
        tokio::io::AsyncWriteExt::write_all(&mut b, b"\x0a\x00\x00\x00{\"size\":9}abc")
            .await
            .unwrap();
        conn.read_header().await.unwrap().unwrap();
        let (got, err) = read_until_error(&mut conn).await;
        assert_eq!(got, b"abc");
        assert!(matches!(err, ConnectionError::Timeout(_)), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_stalls_the_writer_within_its_buffer() {
        let (a, _b) = tokio::io::duplex(1024);
        let mut conn = Connection::new(a, config());
        let (_, writer) = conn.split();
        writer
            .send_header(&ok_header(&json!({})).with_size(1 << 30))
            .await
            .unwrap();
        let mut sent = 0usize;
        let err = loop {
            match writer.send_body(Bytes::from(vec![0u8; 4096])).await {
                Ok(()) => sent += 4096,
                Err(err) => break err,
            }
        };
        assert!(matches!(err, ConnectionError::Timeout(_)));
        assert!(
            sent <= 64 * 1024 + 1024,
            "buffered {sent} bytes for a stalled peer"
        );
    }

    #[tokio::test]
    async fn eof_mid_body_is_truncation() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut conn = Connection::new(a, config());
        tokio::io::AsyncWriteExt::write_all(&mut b, b"\x0a\x00\x00\x00{\"size\":9}abc")
            .await
            .unwrap();
        drop(b);
        conn.read_header().await.unwrap().unwrap();
        let (got, err) = read_until_error(&mut conn).await;
        assert_eq!(got, b"abc");
        assert!(matches!(err, ConnectionError::Truncated), "{err:?}");
    }
}
