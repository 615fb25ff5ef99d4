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
use crate::services::exec::job::{AttachRequest, JobInfo, JobList, JobsRequest};
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
        self.relay_terminal(header, stdin, stdout, resizes).await
    }

    /// Relays a terminal session (a new shell or an attached one): keys
    /// in, output out, window sizes along. A terminal has no stderr: only
    /// this client's own notes go there.
    async fn relay_terminal<I, O>(
        &mut self,
        header: Header,
        stdin: I,
        stdout: &mut O,
        resizes: mpsc::Receiver<(u16, u16)>,
    ) -> Result<ExecEnd, Error>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
    {
        let mut notes = tokio::io::stderr();
        self.relay(
            "shell",
            header,
            Some(stdin),
            stdout,
            &mut notes,
            Some(resizes),
        )
        .await
    }

    /// Sends a request whose reply is an output stream (of `what`: a
    /// command or a shell), and relays: stdin (and window sizes) up, stdout
    /// and stderr down, until the end frame. A stream cut short is
    /// [`Error::Ended`], unless the server made it a detachable job: then
    /// the client reconnects and attaches where its output stopped.
    async fn relay<I, O, E>(
        &mut self,
        what: &'static str,
        header: Header,
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
        let conn = self.connection();
        conn.send(header, Bytes::new()).await?;
        let reply = expect_ok(conn.reader().expect_header().await?)?;
        let job = reply
            .get("job")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        if let (Some(job), true) = (&job, self.announce_jobs) {
            // \r: the terminal of a shell is raw by now.
            let line = format!(
                "ferry: job {job}; if this terminal goes, `ferry attach {job}` follows it\r\n"
            );
            write_out(stderr, line.as_bytes()).await?;
        }
        let mut pos = [0u64; 2];
        let mut sent_end = stdin.is_none();
        let mut tries = 0;
        // Where the output stood at the last reconnect: the tries start
        // anew only once output moved on, so a server that takes the
        // attach and drops it at once cannot keep the client for ever.
        let mut mark = pos;
        loop {
            let streamed = self
                .stream(
                    &mut stdin,
                    &mut sent_end,
                    stdout,
                    stderr,
                    &mut resizes,
                    &mut pos,
                )
                .await;
            let err = match streamed {
                Ok(end) => {
                    // The end frame is the server's last: our end of
                    // stdin, still on its way, only keeps the stream in
                    // step for a next request.
                    self.answered();
                    return Ok(end);
                }
                Err(err) => cut_short(what, err),
            };
            let (
                Some(job),
                Error::Ended {
                    shutting_down: false,
                    ..
                },
            ) = (&job, &err)
            else {
                return Err(err);
            };
            if pos != mark {
                tries = 0;
                mark = pos;
            }
            loop {
                if tries >= RECONNECT_TRIES {
                    return Err(err);
                }
                tokio::time::sleep(RECONNECT_FIRST_WAIT * 2u32.pow(tries)).await;
                tries += 1;
                tracing::info!("the connection dropped; attaching to job {job} again");
                match self.reattach(job, pos).await {
                    Ok(()) => break,
                    Err(Error::Remote(reply)) => return Err(Error::Remote(reply)),
                    Err(_) => continue,
                }
            }
        }
    }

    /// Connects anew and attaches to `job` from `pos`.
    async fn reattach(&mut self, job: &str, pos: [u64; 2]) -> Result<(), Error> {
        *self = Client::connect(&self.options).await?;
        self.send_attach(job, pos).await
    }

    async fn send_attach(&mut self, job: &str, pos: [u64; 2]) -> Result<(), Error> {
        let request = Request::Attach(AttachRequest {
            job: job.to_string(),
            stdout_from: pos[0],
            stderr_from: pos[1],
        });
        let conn = self.connection();
        conn.send(request.to_header(), Bytes::new()).await?;
        expect_ok(conn.reader().expect_header().await?)?;
        Ok(())
    }

    /// Attaches to a detachable job of this client's (from `ferry jobs`)
    /// and relays as [`Client::exec`] does, from the oldest output the
    /// server kept; reconnects as `exec` does if the connection drops.
    pub async fn attach<I, O, E>(
        &mut self,
        job: &str,
        stdin: Option<I>,
        stdout: &mut O,
        stderr: &mut E,
    ) -> Result<ExecEnd, Error>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let header = Request::Attach(AttachRequest {
            job: job.to_string(),
            ..AttachRequest::default()
        })
        .to_header();
        self.relay("command", header, stdin, stdout, stderr, None)
            .await
    }

    /// Attaches to a detachable shell (a job whose [`JobInfo::terminal`]
    /// is true) as [`Client::shell`] runs one: keys in, the terminal's
    /// output out, and each size on `resizes` sent to its window.
    pub async fn attach_shell<I, O>(
        &mut self,
        job: &str,
        stdin: I,
        stdout: &mut O,
        resizes: mpsc::Receiver<(u16, u16)>,
    ) -> Result<ExecEnd, Error>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
    {
        let header = Request::Attach(AttachRequest {
            job: job.to_string(),
            ..AttachRequest::default()
        })
        .to_header();
        self.relay_terminal(header, stdin, stdout, resizes).await
    }

    /// Whether to write a line naming a detachable job, and how to attach
    /// to it, on the stderr given to [`Client::exec`] (or the terminal of
    /// [`Client::shell`]) as the job starts: for a person at a terminal,
    /// not for a script that reads stderr.
    pub fn announce_jobs(&mut self, announce: bool) {
        self.announce_jobs = announce;
    }

    /// This client's detachable jobs on the server.
    pub async fn jobs(&mut self) -> Result<Vec<JobInfo>, Error> {
        let conn = self.connection();
        conn.send(Request::Jobs(JobsRequest {}).to_header(), Bytes::new())
            .await?;
        let reply = expect_ok(conn.reader().expect_header().await?)?;
        let list: JobList = reply
            .to_message()
            .map_err(|e| Error::Protocol(format!("bad jobs reply: {e}")))?;
        self.answered();
        Ok(list.jobs)
    }

    /// The streams of an exec or shell once the server has started it.
    /// `pos` counts the bytes of each stream written out, so a reattach
    /// asks for the rest; `sent_end` says whether stdin has ended.
    async fn stream<I, O, E>(
        &mut self,
        stdin: &mut Option<I>,
        sent_end: &mut bool,
        stdout: &mut O,
        stderr: &mut E,
        resizes: &mut Option<mpsc::Receiver<(u16, u16)>>,
        pos: &mut [u64; 2],
    ) -> Result<ExecEnd, Error>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let (reader, writer) = self.connection().split();
        let end_frame = || StreamFrame::end_header(&serde_json::json!({}));
        // No stdin (or it ended): the command's stdin closes at once.
        if *sent_end {
            writer.send(end_frame(), Bytes::new()).await?;
        }
        let mut input = BytesMut::with_capacity(PIPE_READ_BYTES);
        let mut channel = Channel::Stdout;
        let mut body_left = 0u64;
        // Bytes of the frame now being read that this client has already.
        let mut skip = 0u64;
        // Stdin frames are queued and flushed in steps that are safe to
        // interrupt, so output is read all the while: a server blocked on
        // sending output must never wait for a client blocked on stdin.
        let end = loop {
            let pending = writer.buffered() > 0;
            let room = writer.buffered() < MAX_QUEUED_INPUT;
            tokio::select! {
                item = next_output(reader, body_left) => {
                    match item? {
                        Output::Frame { to, size, offset } => {
                            channel = to;
                            body_left = size;
                            let at = &mut pos[to as usize];
                            skip = 0;
                            if let Some(offset) = offset {
                                if offset > *at {
                                    let note = dropped_note(to, offset - *at);
                                    write_out(stderr, note.as_bytes()).await?;
                                    *at = offset;
                                }
                                skip = *at - offset;
                            }
                        }
                        Output::Data { mut chunk, left } => {
                            body_left = left;
                            let skipped = skip.min(chunk.len() as u64);
                            skip -= skipped;
                            let _ = chunk.split_to(skipped as usize);
                            pos[channel as usize] += chunk.len() as u64;
                            match channel {
                                Channel::Stdout => write_out(stdout, &chunk).await?,
                                Channel::Stderr => write_out(stderr, &chunk).await?,
                            }
                        }
                        Output::End(end) => break end,
                    }
                }
                flushed = writer.flush(), if pending => flushed?,
                size = next_size(resizes), if resizes.is_some() && room => {
                    match size {
                        Some((rows, cols)) => {
                            let mut resize = Header::default();
                            resize.insert("resize", true);
                            resize.insert("rows", rows);
                            resize.insert("cols", cols);
                            writer.queue(resize, &[])?;
                        }
                        None => *resizes = None,
                    }
                }
                read = read_chunk(stdin, &mut input), if stdin.is_some() && room => {
                    match read {
                        Some(chunk) => writer.queue(StreamFrame::data_header("stdin", 0), &chunk)?,
                        None => {
                            *stdin = None;
                            writer.queue(end_frame(), &[])?;
                            *sent_end = true;
                        }
                    }
                }
            }
        };
        // The command ended before our stdin did: end our stream too, so the
        // connection is ready for the next request.
        if !*sent_end {
            writer.queue(end_frame(), &[])?;
            *stdin = None;
            *sent_end = true;
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
    Stdout = 0,
    Stderr = 1,
}

/// What the client prints when a job's buffer dropped output it had not
/// printed yet.
fn dropped_note(channel: Channel, bytes: u64) -> String {
    let name = match channel {
        Channel::Stdout => "stdout",
        Channel::Stderr => "stderr",
    };
    format!(
        "\n[ferry: {bytes} bytes of {name} dropped: more than the server keeps for a detached job]\n"
    )
}

/// Reconnects to a detachable job before giving up.
const RECONNECT_TRIES: u32 = 6;
/// The wait before the first reconnect; each next one waits twice as long
/// (0.25 + 0.5 + ... + 8 s: about 16 s in all, well inside the default
/// linger of a minute).
const RECONNECT_FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

enum Output {
    Frame {
        to: Channel,
        size: u64,
        offset: Option<u64>,
    },
    Data {
        chunk: Bytes,
        left: u64,
    },
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
    let offset = header.get("offset").and_then(serde_json::Value::as_u64);
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
            Ok(Output::Frame { to, size, offset })
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
