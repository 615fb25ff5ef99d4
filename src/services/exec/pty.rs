//! `shell`: an interactive login shell on a pseudo-terminal, like `ssh host`.
//!
//! The server opens a PTY, starts the user's login shell with the PTY as its
//! controlling terminal (so Ctrl-C typed by the user becomes SIGINT for the
//! remote foreground job), and relays bytes: the terminal's output as
//! `stdout` data frames, the user's keys from `stdin` data frames. A
//! `{"resize": true, "rows": R, "cols": C}` frame from the client sets the
//! window size. The stream ends as `exec`'s does.
//!
//! A shell would hold a shutting-down server until its drain deadline and
//! then be cut off unannounced, so at shutdown the server hangs up the
//! terminal (closes its side, as a dropped line does: the shell and its
//! foreground job get SIGHUP), kills what is left after
//! [`limits::SHELL_HANGUP_GRACE`], and answers `shutting_down` in place of
//! the end frame.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustix::fs::OFlags;
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

use super::{admit, finish, next_stdin, process, ExecEnd, StdinItem, PIPE_READ_BYTES};
use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::limits;
use crate::protocol::message::{ok_header, StreamFrame};
use crate::protocol::{ErrorCode, ErrorReply};
use crate::services::{Outcome, ServiceContext};

/// `{"cmd": "shell", "term": "xterm-256color", "rows": 24, "cols": 80}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShellRequest {
    /// The client's `TERM`, passed to the shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    /// Window height in rows.
    #[serde(default)]
    pub rows: u16,
    /// Window width in columns.
    #[serde(default)]
    pub cols: u16,
}

/// The `exec` command line a client sends for a shell without a terminal
/// (`ferry shell < script`, as `ssh host < script`): the login shell this
/// service would start, reading the script from stdin and ending at its
/// end, which a pseudo-terminal never reports.
pub const SCRIPT_SHELL_LINE: &str = "exec \"${SHELL:-/bin/sh}\" -l";

/// How long a send to a client may stall; long, as for `exec`.
const STALLED_CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Serves one `shell` request.
pub async fn serve<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: ShellRequest,
) -> Result<Outcome, ConnectionError> {
    let _slot = match admit(context) {
        Ok(slot) => slot,
        Err(reply) => {
            conn.send_error(&reply).await?;
            return Ok(Outcome::Refused(
                reply.known_code().unwrap_or(ErrorCode::Internal),
            ));
        }
    };
    let started = open_and_spawn(&request, &context.root_path);
    let (master, mut child) = match started {
        Ok(started) => started,
        Err(err) => {
            let reply = ErrorReply::new(ErrorCode::IoError, format!("cannot start a shell: {err}"));
            conn.send_error(&reply).await?;
            return Ok(Outcome::Refused(ErrorCode::IoError));
        }
    };
    let guard = process::GroupGuard::new(&child);
    conn.send(ok_header(&serde_json::json!({})), Bytes::new())
        .await?;
    let (reader, writer) = conn.split();
    let old_timeout = writer.set_timeout(STALLED_CLIENT_TIMEOUT);
    let mut out = BytesMut::with_capacity(PIPE_READ_BYTES);
    let mut keys: Option<Bytes> = None;
    let mut body_left = 0u64;
    let mut client_done = false;
    // The server's side of the terminal, until the shell's side closes or
    // the server hangs up.
    let mut master = Some(master);
    let mut status = None;
    // When the server hung up at shutdown: the moment to kill what is left.
    let mut hung_up: Option<tokio::time::Instant> = None;
    let relayed: Result<(), ConnectionError> = async {
        while master.is_some() || status.is_none() {
            tokio::select! {
                read = read_master(master.as_ref(), &mut out), if master.is_some() => match read {
                    Some(bytes) => writer.send(StreamFrame::data_header("stdout", 0), bytes).await?,
                    None => master = None,
                },
                exited = child.wait(), if status.is_none() => status = Some(exited?),
                written = write_master(master.as_ref(), &mut keys), if keys.is_some() => {
                    if written.is_err() {
                        keys = None;
                    }
                }
                () = context.shutdown.cancelled(), if hung_up.is_none() => {
                    master = None;
                    hung_up = Some(tokio::time::Instant::now() + limits::SHELL_HANGUP_GRACE);
                }
                () = sleep_until(hung_up), if hung_up.is_some() && status.is_none() => {
                    process::kill_group(&child);
                    hung_up = Some(tokio::time::Instant::now() + STALLED_CLIENT_TIMEOUT);
                }
                item = next_stdin(reader, body_left, client_done), if client_done || keys.is_none() => {
                    match item? {
                        StdinItem::Frame(size) => body_left = size,
                        StdinItem::Data { chunk, left } => {
                            body_left = left;
                            if !chunk.is_empty() {
                                keys = Some(chunk);
                            }
                        }
                        StdinItem::Resize { rows, cols } => {
                            if let Some(master) = &master {
                                set_size(master.get_ref(), rows, cols);
                            }
                        }
                        StdinItem::Eof => client_done = true,
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    if relayed.is_err() {
        process::kill_group(&child);
        let _ = child.wait().await;
    }
    conn.writer().set_timeout(old_timeout);
    relayed?;
    guard.disarm();
    if hung_up.is_some() {
        // The session answers `shutting_down` and closes the connection,
        // which is all the client needs to hear.
        return Ok(Outcome::Refused(ErrorCode::ShuttingDown));
    }
    let (exit_code, signal) = status.map(process::describe).unwrap_or((None, None));
    let end = ExecEnd {
        exit_code,
        signal,
        timed_out: false,
    };
    finish(conn, &end, client_done).await
}

/// Opens a PTY and starts the login shell on its terminal side.
fn open_and_spawn(
    request: &ShellRequest,
    cwd: &std::path::Path,
) -> io::Result<(AsyncFd<OwnedFd>, tokio::process::Child)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let terminal = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    set_size(&master, request.rows, request.cols);
    // As SCRIPT_SHELL_LINE chooses it.
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".to_string());
    let mut command = tokio::process::Command::new(&shell);
    command
        .arg("-l")
        .current_dir(cwd)
        .env("TERM", request.term.as_deref().unwrap_or("xterm"))
        .stdin(Stdio::from(terminal.try_clone()?))
        .stdout(Stdio::from(terminal.try_clone()?))
        .stderr(Stdio::from(terminal))
        .kill_on_drop(true);
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only setsid(2) and ioctl(2), which are async-signal-safe; it allocates
    // nothing and touches no locks.
    unsafe {
        command.pre_exec(|| {
            // A new session whose controlling terminal is the PTY: job
            // control works and Ctrl-C reaches the foreground job.
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(std::io::stdin())?;
            Ok(())
        });
    }
    let child = command.spawn()?;
    rustix::fs::fcntl_setfl(&master, OFlags::NONBLOCK)?;
    // SAFETY: `master` is an OwnedFd: it owns a valid descriptor, which the
    // AsyncFd keeps and closes; nothing else closes or replaces it.
    let master = unsafe { AsyncFd::register(master)? };
    Ok((master, child))
}

fn set_size(master: &impl AsFd, rows: u16, cols: u16) {
    if rows > 0 && cols > 0 {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

/// Waits until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Reads what the terminal printed; `None` once the shell's side is closed
/// (Linux answers EIO then), or when there is no terminal.
async fn read_master(master: Option<&AsyncFd<OwnedFd>>, buf: &mut BytesMut) -> Option<Bytes> {
    let master = master?;
    buf.resize(PIPE_READ_BYTES, 0);
    loop {
        let mut guard = master.readable().await.ok()?;
        match guard
            .try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf[..]).map_err(io::Error::from))
        {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => return Some(Bytes::copy_from_slice(&buf[..n])),
            Err(_would_block) => continue,
        }
    }
}

/// Writes the user's keys to the terminal; an error once it is gone.
async fn write_master(
    master: Option<&AsyncFd<OwnedFd>>,
    keys: &mut Option<Bytes>,
) -> io::Result<()> {
    let Some(bytes) = keys.as_mut() else {
        return Ok(());
    };
    let Some(master) = master else {
        return Err(io::ErrorKind::BrokenPipe.into());
    };
    loop {
        let mut guard = master.writable().await?;
        match guard
            .try_io(|fd| rustix::io::write(fd.get_ref(), &bytes[..]).map_err(io::Error::from))
        {
            Ok(Ok(n)) => {
                if n >= bytes.len() {
                    *keys = None;
                } else {
                    let _ = bytes.split_to(n);
                }
                return Ok(());
            }
            Ok(Err(err)) => return Err(err),
            Err(_would_block) => continue,
        }
    }
}
