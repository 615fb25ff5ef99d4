//! One byte stream type for every transport, so the layers above are written
//! once: plain TCP, TLS over TCP (either side), a Unix-domain socket, or a
//! QUIC stream.
//! TLS errors come out in plain words ([`super::tls::in_plain_words`]).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::tls::{self, Phase};
use super::ReadAhead;

/// A connected byte stream.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP (`--plaintext`).
    Tcp(TcpStream),
    /// A Unix-domain socket.
    Unix(UnixStream),
    /// The server's end of a TLS connection.
    ServerTls(Box<tokio_rustls::server::TlsStream<ReadAhead<TcpStream>>>),
    /// The client's end of a TLS connection.
    ClientTls(Box<tokio_rustls::client::TlsStream<ReadAhead<TcpStream>>>),
    /// One bidirectional stream of a QUIC connection (either side).
    Quic(Box<super::quic::QuicStream>),
}

impl Stream {
    /// Whether what is read from this stream is decrypted first (TLS),
    /// which makes reading it costlier than a plain socket read.
    pub fn is_encrypted(&self) -> bool {
        // QUIC decrypts on its connection's own task, not on the reader's.
        matches!(self, Stream::ServerTls(_) | Stream::ClientTls(_))
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $call
            }
            Stream::Unix($s) => {
                let $s = Pin::new($s);
                $call
            }
            Stream::ServerTls($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
            Stream::ClientTls($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
            Stream::Quic($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
        }
    };
}

/// A TLS stream's errors in plain words ([`tls::in_plain_words`]).
fn plain<T>(tls: bool, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
    match polled {
        Poll::Ready(Err(err)) if tls => Poll::Ready(Err(tls::in_plain_words(err, Phase::Stream))),
        other => other,
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tls = self.is_tls();
        plain(tls, delegate!(self, s => s.poll_read(cx, buf)))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let tls = self.is_tls();
        plain(tls, delegate!(self, s => s.poll_write(cx, buf)))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let tls = self.is_tls();
        plain(tls, delegate!(self, s => s.poll_write_vectored(cx, bufs)))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::ServerTls(s) => s.is_write_vectored(),
            Stream::ClientTls(s) => s.is_write_vectored(),
            Stream::Quic(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let tls = self.is_tls();
        plain(tls, delegate!(self, s => s.poll_flush(cx)))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let tls = self.is_tls();
        plain(tls, delegate!(self, s => s.poll_shutdown(cx)))
    }
}

impl Stream {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::ServerTls(_) | Stream::ClientTls(_))
    }
}
