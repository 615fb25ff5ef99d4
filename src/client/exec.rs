//! The client side of `exec`: send the request, then at once stream stdin
//! up and copy the command's stdout and stderr down, each to its own place,
//! byte for byte, until the server's end frame.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{expect_ok, Client};
use crate::connection::{ConnectionError, FrameReader};
use crate::error::Error;
use crate::protocol::message::StreamFrame;
use crate::protocol::{ErrorCode, Header};
use crate::services::exec::pty::ShellRequest;
use crate::services::Request;
use crate::{
    limits::PIPE_READ_BYTES,
    services::exec::{read_chunk, ExecEnd, ExecRequest},
};
use tokio::sync::mpsc;

/// Stdin bytes queued for the server before the client stops reading more.
const MAX_QUEUED_INPUT: usize = 256 * 1024;

impl Client {
    /// Runs a command on the server. `stdin`, if given, is forwarded until
    /// its end (then the command's stdin closes); without it the command's
    /// stdin is closed at once. Output is written to `stdout` and `stderr`
    /// as it arrives. Returns how the command ended.
    pub async fn exec<I, O, E>(
        &mut self,
        request: &ExecRequest,
        stdin: Option<I>,
        stdout: &mut O,
        stderr: &mut E,
    ) -> Result<ExecEnd, Error>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let header = Request::Exec(request.clone()).to_header();
        self.relay("command", header, stdin, stdout, stderr, None)
            .await
    }

    /// Opens an interactive login shell on a pseudo-terminal on the server:
    /// `stdin` carries the keys, `stdout` gets the terminal's output, and
    /// each size sent on `resizes` (rows, columns) resizes the remote window.
    pub async fn shell<I, O>(
        &mut self,
        request: &ShellRequest,
        stdin: I,
        stdout: &mut O,
        resizes: mpsc::Receiver<(u16, u16)>,
    ) -> Result<ExecEnd, Error>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
    {
        let header = Request::Shell(request.clone()).to_header();
        let mut no_stderr = tokio::io::sink();
        self.relay(
            "shell",
            header,
            Some(stdin),
            stdout,
            &mut no_stderr,
            Some(resizes),
        )
        .await
    }

    /// Sends a request whose reply is an output stream (of `what`: a
    /// command or a shell), and relays: stdin (and window sizes) up, stdout
    /// and stderr down, until the end frame. A stream cut short is
    /// [`Error::Ended`].
    async fn relay<I, O, E>(
        &mut self,
        what: &'static str,
        header: Header,
        stdin: Option<I>,
        stdout: &mut O,
        stderr: &mut E,
        resizes: Option<mpsc::Receiver<(u16, u16)>>,
    ) -> Result<ExecEnd, Error>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let conn = self.connection();
        conn.send(header, Bytes::new()).await?;
        expect_ok(conn.reader().expect_header().await?)?;
        self.stream(stdin, stdout, stderr, resizes)
            .await
            .map_err(|err| cut_short(what, err))
    }

    /// The streams of an exec or shell once the server has started it.
    async fn stream<I, O, E>(
        &mut self,
        mut stdin: Option<I>,
        stdout: &mut O,
        stderr: &mut E,
        mut resizes: Option<mpsc::Receiver<(u16, u16)>>,
    ) -> Result<ExecEnd, Error>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let (reader, writer) = self.connection().split();
        let end_frame = || StreamFrame::end_header(&serde_json::json!({}));
        // No stdin: the command's stdin closes at once.
        let mut sent_end = stdin.is_none();
        if sent_end {
            writer.send(end_frame(), Bytes::new()).await?;
        }
        let mut input = BytesMut::with_capacity(PIPE_READ_BYTES);
        let mut channel = Channel::Stdout;
        let mut body_left = 0u64;
        // Stdin frames are queued and flushed in steps that are safe to
        // interrupt, so output is read all the while: a server blocked on
        // sending output must never wait for a client blocked on stdin.
        let end = loop {
            let pending = writer.buffered() > 0;
            let room = writer.buffered() < MAX_QUEUED_INPUT;
            tokio::select! {
                item = next_output(reader, body_left) => {
                    match item? {
                        Output::Frame { to, size } => {
                            channel = to;
                            body_left = size;
                        }
                        Output::Data { chunk, left } => {
                            body_left = left;
                            match channel {
                                Channel::Stdout => write_out(stdout, &chunk).await?,
                                Channel::Stderr => write_out(stderr, &chunk).await?,
                            }
                        }
                        Output::End(end) => break end,
                    }
                }
                flushed = writer.flush(), if pending => flushed?,
                size = next_size(&mut resizes), if resizes.is_some() && room => {
                    match size {
                        Some((rows, cols)) => {
                            let mut resize = Header::default();
                            resize.insert("resize", true);
                            resize.insert("rows", rows);
                            resize.insert("cols", cols);
                            writer.queue(resize, &[])?;
                        }
                        None => resizes = None,
                    }
                }
                read = read_chunk(&mut stdin, &mut input), if stdin.is_some() && room => {
                    match read {
                        Some(chunk) => writer.queue(StreamFrame::data_header("stdin", 0), &chunk)?,
                        None => {
                            stdin = None;
                            writer.queue(end_frame(), &[])?;
                            sent_end = true;
                        }
                    }
                }
            }
        };
        // The command ended before our stdin did: end our stream too, so the
        // connection is ready for the next request.
        if !sent_end {
            writer.queue(end_frame(), &[])?;
        }
        writer.flush().await?;
        Ok(end)
    }
}

/// An output stream (of `what`) that stopped before its end frame,
/// because the server is shutting down or the connection broke, as
/// [`Error::Ended`]: neither is the command's doing nor a login problem.
/// Local errors (writing stdout) and refusals pass unchanged.
fn cut_short(what: &'static str, err: Error) -> Error {
    use std::io::ErrorKind;
    match err {
        Error::Remote(reply) if reply.known_code() == Some(ErrorCode::ShuttingDown) => {
            Error::Ended {
                what,
                shutting_down: true,
            }
        }
        Error::Connection(ConnectionError::Closed | ConnectionError::Truncated) => Error::Ended {
            what,
            shutting_down: false,
        },
        Error::Connection(ConnectionError::Io(io))
            if matches!(
                io.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ) =>
        {
            Error::Ended {
                what,
                shutting_down: false,
            }
        }
        other => other,
    }
}

#[derive(Debug, Clone, Copy)]
enum Channel {
    Stdout,
    Stderr,
}

enum Output {
    Frame { to: Channel, size: u64 },
    Data { chunk: Bytes, left: u64 },
    End(ExecEnd),
}

/// The next step of the server's output stream; one header or one chunk per
/// call, so it is safe to drop inside a `select!`.
async fn next_output<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    body_left: u64,
) -> Result<Output, Error> {
    if body_left > 0 {
        let chunk = reader.read_body_chunk().await?.unwrap_or_default();
        return Ok(Output::Data {
            left: reader.body_remaining(),
            chunk,
        });
    }
    let header = reader
        .read_header()
        .await?
        .ok_or(Error::Connection(ConnectionError::Closed))?;
    match StreamFrame::from_header(header) {
        Some(StreamFrame::Data { channel, size }) => {
            let to = match channel.as_str() {
                "stdout" => Channel::Stdout,
                "stderr" => Channel::Stderr,
                other => {
                    return Err(Error::Protocol(format!(
                        "output on an unknown channel {other:?}"
                    )))
                }
            };
            Ok(Output::Frame { to, size })
        }
        Some(StreamFrame::End(header)) => header
            .to_message::<ExecEnd>()
            .map(Output::End)
            .map_err(|e| Error::Protocol(format!("bad exec end frame: {e}"))),
        Some(StreamFrame::Error(reply)) => Err(Error::Remote(reply)),
        None => Err(Error::Protocol("expected exec output".into())),
    }
}

async fn next_size(resizes: &mut Option<mpsc::Receiver<(u16, u16)>>) -> Option<(u16, u16)> {
    resizes.as_mut()?.recv().await
}

async fn write_out<W: AsyncWrite + Unpin>(out: &mut W, bytes: &[u8]) -> Result<(), Error> {
    out.write_all(bytes).await?;
    out.flush().await?;
    Ok(())
}
