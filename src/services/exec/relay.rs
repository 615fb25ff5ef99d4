//! The one loop that relays between a running command and the connection,
//! for `exec` (pipes) and `shell` (a pseudo-terminal) alike.
//!
//! The command's side is a [`ChildSide`]: what it prints and on which
//! channel, how it takes input, how it is killed and reaped. The loop sends
//! its output as data frames, feeds it the client's `stdin` frames one chunk
//! at a time (the next is not read until the last is written, so a command
//! that reads nothing stalls the client, not the server's memory), and ends
//! once the command has exited and its output is closed. A client that
//! stops reading stalls the command for up to
//! [`limits::STALLED_CLIENT_TIMEOUT`]; a client that leaves or breaks the
//! stream gets the command's process group killed.

use std::future::Future;
use std::io;
use std::process::ExitStatus;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{next_stdin, process, ExecEnd, StdinItem};
use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::limits;
use crate::protocol::message::StreamFrame;

/// Something a running command did.
#[derive(Debug)]
pub(crate) enum ChildEvent {
    /// It printed these bytes on this channel (`stdout` or `stderr`).
    Output(&'static str, Bytes),
    /// It took some or all of the pending input, or could not take it (its
    /// input is closed): then the rest is dropped.
    Input(io::Result<()>),
    /// One of its outputs closed.
    OutputClosed,
    /// It exited.
    Exited(ExitStatus),
}

/// A running command as the relay sees it: pipes or a pseudo-terminal.
pub(crate) trait ChildSide {
    /// Whether it may still print.
    fn output_open(&self) -> bool;
    /// Whether it still takes input.
    fn input_open(&self) -> bool;
    /// Waits for the next thing it does, while writing `input` to it (and
    /// taking what it wrote off the front). Reaped once: after
    /// [`ChildEvent::Exited`] it only prints or takes input. Cancel-safe,
    /// as it runs inside a `select!`. An error is a failed wait.
    fn next(
        &mut self,
        input: &mut Option<Bytes>,
    ) -> impl Future<Output = io::Result<ChildEvent>> + Send;
    /// The client's input ended.
    fn end_input(&mut self);
    /// The client's window changed size.
    fn resize(&mut self, rows: u16, cols: u16);
    /// Closes the server's side, as a dropped line does: nothing more is
    /// read from or written to the command.
    fn hang_up(&mut self);
    /// Kills its whole process group.
    fn kill(&mut self);
    /// Waits for it to exit, after a kill.
    fn reap(&mut self) -> impl Future<Output = ()> + Send;
    /// It ended in order: dropping it must not kill its process group.
    fn disarm(&mut self);
}

/// How a relay ended.
#[derive(Debug)]
pub(crate) struct Relayed {
    /// How the command ended, for the end frame.
    pub end: ExecEnd,
    /// Whether the server hung up at shutdown (see [`relay`]).
    pub hung_up: bool,
    /// Whether the client's stdin stream reached its end frame.
    pub client_done: bool,
}

/// Relays between `child` and the client until the command has exited and
/// its output is closed. At `deadline` the command is killed and the end
/// says it timed out. When `shutdown` is given and fires, the server hangs
/// up and kills what is left after [`limits::SHELL_HANGUP_GRACE`].
pub(crate) async fn relay<S: ByteStream, C: ChildSide>(
    conn: &mut Connection<S>,
    child: &mut C,
    deadline: Option<Instant>,
    shutdown: Option<&CancellationToken>,
) -> Result<Relayed, ConnectionError> {
    let (reader, writer) = conn.split();
    let old_timeout = writer.set_timeout(limits::STALLED_CLIENT_TIMEOUT);
    let mut pending: Option<Bytes> = None;
    let mut body_left = 0u64;
    let mut client_done = false;
    let mut status = None;
    let mut timed_out = false;
    // When the server hung up at shutdown: the moment to kill what is left.
    let mut hung_up: Option<Instant> = None;
    let relayed: Result<(), ConnectionError> = async {
        while child.output_open() || status.is_none() {
            tokio::select! {
                event = child.next(&mut pending) => match event? {
                    ChildEvent::Output(channel, bytes) => {
                        writer.send(StreamFrame::data_header(channel, 0), bytes).await?
                    }
                    ChildEvent::Exited(exited) => status = Some(exited),
                    ChildEvent::OutputClosed | ChildEvent::Input(Ok(())) => {}
                    // The command closed its input: drop the rest.
                    ChildEvent::Input(Err(_)) => pending = None,
                },
                // After the client's end of stdin this watches the
                // connection, so a client that goes away is noticed even
                // while the command prints nothing.
                item = next_stdin(reader, body_left, client_done), if client_done || pending.is_none() => {
                    match item? {
                        StdinItem::Frame(size) => body_left = size,
                        StdinItem::Data { chunk, left } => {
                            body_left = left;
                            if child.input_open() && !chunk.is_empty() {
                                pending = Some(chunk);
                            }
                        }
                        StdinItem::Resize { rows, cols } => child.resize(rows, cols),
                        StdinItem::Eof => {
                            client_done = true;
                            child.end_input();
                        }
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() && !timed_out => {
                    timed_out = true;
                    child.kill();
                }
                () = cancelled(shutdown), if shutdown.is_some() && hung_up.is_none() => {
                    child.hang_up();
                    hung_up = Some(Instant::now() + limits::SHELL_HANGUP_GRACE);
                }
                () = sleep_until(hung_up), if hung_up.is_some() && status.is_none() => {
                    child.kill();
                    hung_up = Some(Instant::now() + limits::STALLED_CLIENT_TIMEOUT);
                }
            }
        }
        Ok(())
    }
    .await;
    if relayed.is_err() {
        // The client is gone or broke the stream: nobody will read the
        // output, so the command must not outlive the connection.
        child.kill();
        child.reap().await;
    } else if timed_out {
        child.kill();
    }
    conn.writer().set_timeout(old_timeout);
    relayed?;
    child.disarm();
    let (exit_code, signal) = status.map(process::describe).unwrap_or((None, None));
    Ok(Relayed {
        end: ExecEnd {
            exit_code,
            signal,
            timed_out,
        },
        hung_up: hung_up.is_some(),
        client_done,
    })
}

/// Waits until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits until `token` fires, or for ever without one.
async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    use serde_json::json;
    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;

    use super::*;
    use crate::connection::ConnectionConfig;
    use crate::protocol::Header;

    /// What a test makes the fake command do.
    enum Step {
        Print(&'static str, &'static [u8]),
        CloseOutput,
        Exit(i32),
    }

    /// A command the test drives step by step, recording what the relay
    /// did to it.
    struct FakeChild {
        steps: mpsc::UnboundedReceiver<Step>,
        output_open: bool,
        input_open: bool,
        exited: bool,
        input: Vec<u8>,
        calls: Vec<String>,
        killed_at: Option<Instant>,
        /// Told when the relay ends the input.
        input_ended: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl FakeChild {
        fn new() -> (FakeChild, mpsc::UnboundedSender<Step>) {
            let (tx, steps) = mpsc::unbounded_channel();
            let child = FakeChild {
                steps,
                output_open: true,
                input_open: true,
                exited: false,
                input: Vec::new(),
                calls: Vec::new(),
                killed_at: None,
                input_ended: None,
            };
            (child, tx)
        }
    }

    impl ChildSide for FakeChild {
        fn output_open(&self) -> bool {
            self.output_open
        }

        fn input_open(&self) -> bool {
            self.input_open
        }

        async fn next(&mut self, input: &mut Option<Bytes>) -> io::Result<ChildEvent> {
            if let Some(bytes) = input.take() {
                self.input.extend_from_slice(&bytes);
                return Ok(ChildEvent::Input(Ok(())));
            }
            if self.killed_at.is_some() && !self.exited {
                self.exited = true;
                self.output_open = false;
                return Ok(ChildEvent::Exited(ExitStatus::from_raw(9)));
            }
            match self.steps.recv().await {
                Some(Step::Print(channel, bytes)) => {
                    Ok(ChildEvent::Output(channel, Bytes::from_static(bytes)))
                }
                Some(Step::CloseOutput) => {
                    self.output_open = false;
                    Ok(ChildEvent::OutputClosed)
                }
                Some(Step::Exit(code)) => {
                    self.exited = true;
                    Ok(ChildEvent::Exited(ExitStatus::from_raw(code << 8)))
                }
                None => std::future::pending().await,
            }
        }

        fn end_input(&mut self) {
            self.input_open = false;
            self.calls.push("end_input".into());
            if let Some(tell) = self.input_ended.take() {
                let _ = tell.send(());
            }
        }

        fn resize(&mut self, rows: u16, cols: u16) {
            self.calls.push(format!("resize {rows}x{cols}"));
        }

        fn hang_up(&mut self) {
            self.output_open = false;
            self.input_open = false;
            self.calls.push("hang_up".into());
        }

        fn kill(&mut self) {
            self.killed_at.get_or_insert_with(Instant::now);
            self.calls.push("kill".into());
        }

        async fn reap(&mut self) {
            self.calls.push("reap".into());
        }

        fn disarm(&mut self) {
            self.calls.push("disarm".into());
        }
    }

    fn config() -> ConnectionConfig {
        ConnectionConfig {
            max_header_bytes: 1024,
            request_timeout: Duration::from_secs(5),
            max_write_buffer_bytes: 64 * 1024,
            decrypts: false,
        }
    }

    fn pair() -> (Connection<DuplexStream>, Connection<DuplexStream>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        (Connection::new(a, config()), Connection::new(b, config()))
    }

    async fn send_stdin(client: &mut Connection<DuplexStream>, bytes: &'static [u8]) {
        let header = StreamFrame::data_header("stdin", 0);
        client
            .send(header, Bytes::from_static(bytes))
            .await
            .unwrap();
    }

    async fn end_stdin(client: &mut Connection<DuplexStream>) {
        let header = StreamFrame::end_header(&json!({}));
        client.send(header, Bytes::new()).await.unwrap();
    }

    /// `work`, failing the test if it hangs.
    async fn bounded<T>(work: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), work)
            .await
            .expect("the relay hung")
    }

    /// The data frames the client got, as `channel:text`.
    async fn received(client: &mut Connection<DuplexStream>, frames: usize) -> Vec<String> {
        let mut got = Vec::new();
        for _ in 0..frames {
            let header: Header = client.read_header().await.unwrap().unwrap();
            let channel = header.get("data").unwrap().as_str().unwrap().to_string();
            let body = client.reader().read_body().await.unwrap();
            got.push(format!("{channel}:{}", String::from_utf8_lossy(&body)));
        }
        got
    }

    #[tokio::test]
    async fn output_goes_out_on_its_channel_and_the_exit_ends_the_relay() {
        let (mut server, mut client) = pair();
        let (mut child, steps) = FakeChild::new();
        steps.send(Step::Print("stdout", b"out")).unwrap();
        steps.send(Step::Print("stderr", b"err")).unwrap();
        steps.send(Step::Exit(3)).unwrap();
        steps.send(Step::CloseOutput).unwrap();
        let relayed = bounded(relay(&mut server, &mut child, None, None))
            .await
            .unwrap();
        assert_eq!(relayed.end.exit_code, Some(3));
        assert!(!relayed.end.timed_out && !relayed.hung_up && !relayed.client_done);
        assert_eq!(child.calls, ["disarm"]);
        assert_eq!(received(&mut client, 2).await, ["stdout:out", "stderr:err"]);
    }

    #[tokio::test]
    async fn stdin_reaches_the_command_and_its_end_closes_the_input() {
        let (mut server, mut client) = pair();
        let (mut child, steps) = FakeChild::new();
        let (tell, input_ended) = tokio::sync::oneshot::channel();
        child.input_ended = Some(tell);
        let relaying = async {
            let relayed = relay(&mut server, &mut child, None, None).await;
            (relayed, child)
        };
        let client_side = async {
            send_stdin(&mut client, b"hello ").await;
            send_stdin(&mut client, b"world").await;
            let mut resize = Header::default();
            resize.insert("resize", true);
            resize.insert("rows", 40);
            resize.insert("cols", 100);
            client.send(resize, Bytes::new()).await.unwrap();
            end_stdin(&mut client).await;
            // Only now the command ends: it has read all of its input.
            input_ended.await.unwrap();
            steps.send(Step::Print("stdout", b"done")).unwrap();
            steps.send(Step::CloseOutput).unwrap();
            steps.send(Step::Exit(0)).unwrap();
            received(&mut client, 1).await
        };
        let ((relayed, child), got) = bounded(async { tokio::join!(relaying, client_side) }).await;
        let relayed = relayed.unwrap();
        assert!(relayed.client_done);
        assert_eq!(relayed.end.exit_code, Some(0));
        assert_eq!(child.input, b"hello world");
        assert_eq!(child.calls, ["resize 40x100", "end_input", "disarm"]);
        assert_eq!(got, ["stdout:done"]);
    }

    #[tokio::test]
    async fn a_client_that_leaves_gets_the_command_killed_and_reaped() {
        let (mut server, client) = pair();
        let (mut child, _steps) = FakeChild::new();
        drop(client);
        let relayed = bounded(relay(&mut server, &mut child, None, None)).await;
        assert!(relayed.is_err());
        assert_eq!(child.calls, ["kill", "reap"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_kills_the_command_and_the_end_says_so() {
        let (mut server, _client) = pair();
        let (mut child, _steps) = FakeChild::new();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(7);
        let relayed = relay(&mut server, &mut child, Some(deadline), None)
            .await
            .unwrap();
        assert!(relayed.end.timed_out);
        assert_eq!(relayed.end.signal, Some(9));
        assert_eq!(child.killed_at, Some(deadline));
        assert_eq!(child.calls, ["kill", "kill", "disarm"]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_hangs_up_and_kills_what_is_left_after_the_grace() {
        let (mut server, _client) = pair();
        let (mut child, _steps) = FakeChild::new();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let started = Instant::now();
        let relayed = relay(&mut server, &mut child, None, Some(&shutdown))
            .await
            .unwrap();
        assert!(relayed.hung_up);
        assert_eq!(
            child.killed_at,
            Some(started + limits::SHELL_HANGUP_GRACE),
            "killed only after the grace"
        );
        assert_eq!(child.calls, ["hang_up", "kill", "disarm"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_stalls_the_command_until_the_stall_timeout() {
        // A connection too small for one frame of output, never read.
        let (a, _b) = tokio::io::duplex(16);
        let small = ConnectionConfig {
            max_write_buffer_bytes: 16,
            ..config()
        };
        let mut server = Connection::new(a, small);
        let (mut child, steps) = FakeChild::new();
        steps.send(Step::Print("stdout", &[b'x'; 4096])).unwrap();
        let started = Instant::now();
        let relayed = relay(&mut server, &mut child, None, None).await;
        assert!(matches!(relayed, Err(ConnectionError::Timeout(_))));
        assert_eq!(started.elapsed(), limits::STALLED_CLIENT_TIMEOUT);
        assert_eq!(child.calls, ["kill", "reap"]);
        assert_eq!(server.writer().timeout(), config().request_timeout);
    }
}
