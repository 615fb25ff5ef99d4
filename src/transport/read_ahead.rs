//! A socket reader that takes big bites only while data streams in.
//!
//! rustls reads the socket one TLS record at a time (at most about 16 KiB),
//! so a bulk transfer over TLS costs the receiver a `recvfrom` per record.
//! Below TLS, this reader turns those into far fewer reads of up to
//! [`READ_AHEAD_BYTES`] and hands the bytes out from memory
//! (bench/RESULTS.md counts both).
//!
//! It holds that buffer only while it pays: a read that fills the caller's
//! buffer means more is waiting, so the next read goes through the big
//! buffer; once a big read brings little (the burst is over) and its bytes
//! are handed out, the buffer is freed. An idle connection holds nothing,
//! so thousands of them still cost a few KiB each.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most one read of a busy socket takes at once.
pub const READ_AHEAD_BYTES: usize = 256 * 1024;

/// A big read that brings less than this ends the burst.
const BURST_MIN_BYTES: usize = READ_AHEAD_BYTES / 4;

/// `S`, read through a buffer while bytes stream in; writes pass through.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    /// Bytes read ahead; `buf[start..]` are not yet handed out. No
    /// allocation unless a burst is under way.
    buf: Vec<u8>,
    start: usize,
    /// Whether the last read suggested more is waiting.
    streaming: bool,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`; nothing is allocated until data streams in.
    pub fn new(inner: S) -> ReadAhead<S> {
        ReadAhead {
            inner,
            buf: Vec::new(),
            start: 0,
            streaming: false,
        }
    }

    /// Bytes of memory held for reading ahead (0 when idle).
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start == this.buf.len() && out.remaining() > 0 {
            if !this.streaming || out.remaining() >= READ_AHEAD_BYTES {
                // Quiet, or the caller asks for a lot: read straight into
                // its buffer. A read that fills it hints that more waits.
                let before = out.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                let got = out.filled().len() - before;
                this.streaming = got > 0 && out.remaining() == 0;
                return Poll::Ready(Ok(()));
            }
            this.buf.clear();
            this.buf.reserve_exact(READ_AHEAD_BYTES);
            this.start = 0;
            let mut ahead = ReadBuf::uninit(&mut this.buf.spare_capacity_mut()[..READ_AHEAD_BYTES]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut ahead);
            let got = ahead.filled().len();
            if polled.is_pending() {
                // Nothing waiting: the burst is over; hold nothing while
                // the peer is quiet.
                this.buf = Vec::new();
                this.streaming = false;
                return Poll::Pending;
            }
            ready!(polled)?;
            // SAFETY: the reader initialised the first `got` bytes of the
            // spare capacity (`ReadBuf::filled`), and `got` fits in it.
            unsafe { this.buf.set_len(got) };
            this.streaming = got >= BURST_MIN_BYTES;
            if got == 0 {
                this.buf = Vec::new(); // end of stream
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.buf.len() - this.start);
        out.put_slice(&this.buf[this.start..this.start + n]);
        this.start += n;
        if this.start == this.buf.len() && !this.streaming {
            // The burst is over and handed out: hold nothing while quiet.
            this.buf = Vec::new();
            this.start = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_burst_is_read_in_big_bites_and_handed_out_whole() {
        let (mut far, near) = tokio::io::duplex(4 * READ_AHEAD_BYTES);
        let data: Vec<u8> = (0..3 * READ_AHEAD_BYTES + 77).map(|i| i as u8).collect();
        far.write_all(&data).await.unwrap();
        drop(far);
        let mut reader = ReadAhead::new(near);
        let mut got = Vec::new();
        let mut record = [0u8; 16 * 1024];
        let mut held = 0;
        loop {
            let n = reader.read(&mut record).await.unwrap();
            if n == 0 {
                break;
            }
            held = held.max(reader.buffered_capacity());
            got.extend_from_slice(&record[..n]);
        }
        assert_eq!(got, data);
        assert_eq!(held, READ_AHEAD_BYTES, "the burst went through the buffer");
        assert_eq!(reader.buffered_capacity(), 0, "freed at the end");
    }

    #[tokio::test]
    async fn a_quiet_connection_holds_no_buffer() {
        let (mut far, near) = tokio::io::duplex(64 * 1024);
        let mut reader = ReadAhead::new(near);
        let mut record = [0u8; 16 * 1024];
        for message in [&b"hello"[..], &[7u8; 20_000][..], b"bye"] {
            far.write_all(message).await.unwrap();
            let mut got = Vec::new();
            while got.len() < message.len() {
                let n = reader.read(&mut record).await.unwrap();
                got.extend_from_slice(&record[..n]);
            }
            assert_eq!(got, message);
            assert_eq!(reader.buffered_capacity(), 0, "idle after each message");
        }
    }

    #[tokio::test]
    async fn writes_pass_through() {
        let (far, near) = tokio::io::duplex(1024);
        let mut stream = ReadAhead::new(near);
        stream.write_all(b"out").await.unwrap();
        let mut far = far;
        let mut got = [0u8; 3];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"out");
    }
}
