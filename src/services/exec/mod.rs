//! `exec`: run a command on the server and stream its output back.
//!
//! The reply is an ok header, then a stream of `stdout` and `stderr` data
//! frames as the command produces them, then an end frame with the exit
//! code or signal. Meanwhile the client streams `stdin` data frames and ends
//! them with its own end frame; after sending its end frame the server reads
//! the client's stream to its end, so both sides stay in step for the next
//! request. stdout and stderr are read concurrently (a chatty stderr cannot
//! deadlock the command) and stdin is written without ever blocking them.
//! Memory stays bounded: a client that stops reading stalls the command,
//! whose pipes fill. A timeout or a client that leaves kills the whole
//! process group.
//!
//! One loop (`relay`) does this for a command on pipes (`pipes`) and
//! for `shell`'s login shell on a pseudo-terminal ([`pty`]); each says what
//! it reads, how it takes input and how it ends, as a `ChildSide`. A
//! command sent with `detachable` is a [`job`] instead: its own task drives
//! the `ChildSide` into a bounded buffer that connections follow, so the
//! command outlives a dropped connection for its linger.

pub mod job;
mod pipes;
pub mod process;
pub mod pty;
mod relay;

pub(crate) use pipes::Pipes;
pub(crate) use relay::{ChildEvent, ChildSide};

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::{Outcome, ServiceContext};
use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::limits::{MAX_STDIN_FRAME_BYTES, PIPE_READ_BYTES};
use crate::protocol::message::{ok_header, StreamFrame};
use crate::protocol::{ErrorCode, Refusal};
use process::Program;

/// `{"cmd": "exec", "shell": "ls -l"}` or `{"cmd": "exec", "argv": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// A command line for the server's shell, `sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// A program and its arguments, run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Working directory: relative to the served root, or absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Variables added to the server's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Seconds after which the command's process group is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Run as a job that outlives a dropped connection (see [`job`]); the
    /// ok reply then carries its id as `job`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detachable: bool,
    /// With `detachable`: seconds the job runs on without a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger_secs: Option<f64>,
}

/// The fields of the end frame that closes an exec stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEnd {
    /// The exit code, when the command exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Whether the timeout killed it.
    #[serde(default)]
    pub timed_out: bool,
}

impl ExecEnd {
    /// The status a shell would report: the code, 128+signal, or 124 after
    /// a timeout (as `timeout(1)` does).
    pub fn shell_status(&self) -> i32 {
        if self.timed_out {
            124
        } else if let Some(code) = self.exit_code {
            code
        } else {
            128 + self.signal.unwrap_or(0)
        }
    }
}

impl ExecRequest {
    fn program(&self) -> Result<Program, String> {
        match (&self.shell, &self.argv) {
            (Some(line), None) if !line.is_empty() => Ok(Program::Shell(line.clone())),
            (None, Some(argv)) if !argv.is_empty() => Ok(Program::Argv(argv.clone())),
            (Some(_), Some(_)) => Err("give `shell` or `argv`, not both".into()),
            _ => Err("an empty command".into()),
        }
    }

    fn timeout(&self) -> Result<Option<Duration>, String> {
        match self.timeout_secs {
            None => Ok(None),
            Some(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => {
                Ok(Some(Duration::from_secs_f64(secs)))
            }
            Some(secs) => Err(format!("`timeout_secs` {secs} is not a positive number")),
        }
    }
}

/// Serves one `exec` request.
pub async fn serve<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: ExecRequest,
) -> Result<Outcome, ConnectionError> {
    let checked = (|| {
        let slot = admit(context)?;
        let program = request
            .program()
            .map_err(|m| Refusal::new(ErrorCode::BadRequest, m))?;
        let timeout = request
            .timeout()
            .map_err(|m| Refusal::new(ErrorCode::BadRequest, m))?;
        let cwd = match &request.cwd {
            None => context.root_path.clone(),
            Some(dir) => context.root_path.join(dir),
        };
        if !cwd.is_dir() {
            return Err(Refusal::new(
                ErrorCode::NotFound,
                format!(
                    "working directory {:?} does not exist on the server",
                    request.cwd.as_deref().unwrap_or(".")
                ),
            ));
        }
        let linger = job::linger(request.linger_secs)?;
        if request.detachable || context.detachable_default {
            job::room(context)?;
        }
        Ok((program, timeout, cwd, slot, linger))
    })();
    let (program, timeout, cwd, slot, linger) = match checked {
        Ok(checked) => checked,
        Err(refusal) => {
            conn.send_error(&refusal).await?;
            return Ok(Outcome::Refused(refusal.code));
        }
    };
    // A command that cannot start is reported as without `detachable`.
    let spawned = match Pipes::spawn(&program, &cwd, &request.env) {
        Ok(child) if request.detachable || context.detachable_default => {
            let start = job::JobStart {
                command: describe_program(&program),
                deadline: timeout.map(|t| tokio::time::Instant::now() + t),
                linger,
                slot,
                terminal: false,
            };
            return job::start(conn, context, child, start).await;
        }
        other => other,
    };
    conn.send(ok_header(&serde_json::json!({})), Bytes::new())
        .await?;
    let (end, client_done) = run(conn, spawned, timeout).await?;
    drop(slot);
    finish(conn, &end, client_done).await
}

/// A program as `ferry jobs` shows it.
fn describe_program(program: &Program) -> String {
    match program {
        Program::Shell(line) => line.clone(),
        Program::Argv(argv) => argv.join(" "),
    }
}

/// Whether this server runs commands now: `--allow-exec`, and a free slot
/// under `--max-commands` (held until the returned permit is dropped).
pub(crate) fn admit(
    context: &ServiceContext,
) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
    if !context.allow_exec {
        return Err(Refusal::new(
            ErrorCode::NotAllowed,
            "this server does not run commands; start it with `ferry serve --allow-exec`",
        ));
    }
    context.exec_slots.clone().try_acquire_owned().map_err(|_| {
        Refusal::new(
            ErrorCode::ExecLimit,
            "the server is running its maximum of commands at once; try again",
        )
    })
}

/// Ends an output stream: the end frame, then (unless it came already)
/// the client's stdin stream up to its end, so the connection is ready
/// for the next request. A client that leaves instead (a QUIC client
/// closes as soon as it has the end frame) has all it asked for: that is
/// the session's end, not a failed request.
pub(crate) async fn finish<S: ByteStream>(
    conn: &mut Connection<S>,
    end: &ExecEnd,
    client_done: bool,
) -> Result<Outcome, ConnectionError> {
    conn.writer()
        .send_header(&StreamFrame::end_header(end))
        .await?;
    conn.writer().flush().await?;
    if !client_done {
        match drain_stdin(conn).await {
            // The session's next read finds the end and closes it.
            Err(ConnectionError::Closed | ConnectionError::Truncated) => {}
            drained => drained?,
        }
    }
    Ok(Outcome::Ok)
}

/// Runs the command, streaming its output and its stdin, and returns how it
/// ended and whether the client's stdin stream has ended. A failed spawn is
/// reported as a shell would: a message on stderr and status 127 (not
/// found) or 126 (not executable).
async fn run<S: ByteStream>(
    conn: &mut Connection<S>,
    spawned: std::io::Result<Pipes>,
    timeout: Option<Duration>,
) -> Result<(ExecEnd, bool), ConnectionError> {
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            let code = match err.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
            let message = format!("ferry: cannot run the command: {err}\n");
            let (_, writer) = conn.split();
            writer
                .send(StreamFrame::data_header("stderr", 0), Bytes::from(message))
                .await?;
            let end = ExecEnd {
                exit_code: Some(code),
                ..ExecEnd::default()
            };
            return Ok((end, false));
        }
    };
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let relayed = relay::relay(conn, &mut child, deadline, None).await?;
    Ok((relayed.end, relayed.client_done))
}

/// Reads what a pipe or stream has, up to [`PIPE_READ_BYTES`]; `None` at
/// its end, on an error, or when there is none. Both ends use it: the
/// server for a command's output, the client for its stdin.
pub async fn read_chunk<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut BytesMut,
) -> Option<Bytes> {
    let pipe = pipe.as_mut()?;
    buf.reserve(PIPE_READ_BYTES);
    match pipe.read_buf(buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(buf.split().freeze()),
    }
}

/// One step of the client's stdin stream.
pub(crate) enum StdinItem {
    /// A data frame's header: this many body bytes follow.
    Frame(u64),
    /// Part of a data frame's body, and how much of it is left.
    Data { chunk: Bytes, left: u64 },
    /// The client's window changed size (`shell` only).
    Resize { rows: u16, cols: u16 },
    /// The client's end frame: its stdin is closed.
    Eof,
}

/// Reads the next step of the client's stdin stream. Each call reads one
/// header or one chunk, so it is safe to drop inside a `select!`.
pub(crate) async fn next_stdin<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut crate::connection::FrameReader<R>,
    body_left: u64,
    ended: bool,
) -> Result<StdinItem, ConnectionError> {
    if ended {
        // A client that ended its stdin sends nothing more until our end
        // frame: anything now means it is gone or broke the protocol.
        return Err(match reader.read_header().await? {
            None => ConnectionError::Closed,
            Some(_) => ConnectionError::Unexpected("a frame after the end of stdin".into()),
        });
    }
    if body_left > 0 {
        let chunk = reader.read_body_chunk().await?.unwrap_or_default();
        return Ok(StdinItem::Data {
            left: reader.body_remaining(),
            chunk,
        });
    }
    let header = reader.read_header().await?.ok_or(ConnectionError::Closed)?;
    if header.get("resize") == Some(&serde_json::Value::Bool(true)) {
        let number = |key| {
            header
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        return Ok(StdinItem::Resize {
            rows: number("rows").min(u16::MAX as u64) as u16,
            cols: number("cols").min(u16::MAX as u64) as u16,
        });
    }
    match StreamFrame::from_header(header) {
        Some(StreamFrame::Data { channel, size }) if channel == "stdin" => {
            if size > MAX_STDIN_FRAME_BYTES {
                return Err(ConnectionError::Unexpected(format!(
                    "a stdin frame of {size} bytes is over the cap of {MAX_STDIN_FRAME_BYTES}"
                )));
            }
            Ok(StdinItem::Frame(size))
        }
        Some(StreamFrame::End(_)) => Ok(StdinItem::Eof),
        _ => Err(ConnectionError::Unexpected(
            "expected stdin data or the end of stdin during exec".into(),
        )),
    }
}

/// After the server's end frame, reads the client's stdin stream to its
/// end frame (the client sends one once it sees ours), discarding data.
pub(crate) async fn drain_stdin<S: ByteStream>(
    conn: &mut Connection<S>,
) -> Result<(), ConnectionError> {
    let reader = conn.reader();
    loop {
        let header = reader.expect_header().await?;
        if header.get("resize") == Some(&serde_json::Value::Bool(true)) {
            continue;
        }
        match StreamFrame::from_header(header) {
            Some(StreamFrame::Data { channel, .. }) if channel == "stdin" => {
                reader.discard_body().await?
            }
            Some(StreamFrame::End(_)) => return Ok(()),
            _ => {
                return Err(ConnectionError::Unexpected(
                    "expected stdin data or the end of stdin after exec".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_a_shell_reports_them() {
        let end = |exit_code, signal, timed_out| ExecEnd {
            exit_code,
            signal,
            timed_out,
        };
        assert_eq!(end(Some(3), None, false).shell_status(), 3);
        assert_eq!(end(None, Some(9), false).shell_status(), 137);
        assert_eq!(end(None, Some(9), true).shell_status(), 124);
    }

    #[test]
    fn a_request_names_one_program() {
        let mut request = ExecRequest {
            shell: Some("ls".into()),
            ..ExecRequest::default()
        };
        assert_eq!(request.program(), Ok(Program::Shell("ls".into())));
        request.argv = Some(vec!["ls".into()]);
        assert!(request.program().is_err());
        assert!(ExecRequest::default().program().is_err());
        let bad_timeout = ExecRequest {
            timeout_secs: Some(-1.0),
            ..ExecRequest::default()
        };
        assert!(bad_timeout.timeout().is_err());
    }
}
