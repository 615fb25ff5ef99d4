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
//! [`crate::limits::SHELL_HANGUP_GRACE`], and answers `shutting_down` in place of
//! the end frame.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;

use bytes::{Bytes, BytesMut};
use rustix::fs::OFlags;
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

use super::relay::{relay, ChildEvent, ChildSide};
use super::{admit, finish, job, process};
use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::limits::PIPE_READ_BYTES;
use crate::protocol::message::ok_header;
use crate::protocol::{ErrorCode, Refusal};
use crate::services::{Outcome, ServiceContext};

/// `{"cmd": "shell", "term": "xterm-256color", "rows": 24, "cols": 80}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Run as a job that outlives a dropped connection, as `exec`'s.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detachable: bool,
    /// With `detachable`: seconds the shell runs on without a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger_secs: Option<f64>,
}

/// The `exec` command line a client sends for a shell without a terminal
/// (`ferry shell < script`, as `ssh host < script`): the login shell this
/// service would start, reading the script from stdin and ending at its
/// end, which a pseudo-terminal never reports.
pub const SCRIPT_SHELL_LINE: &str = "exec \"${SHELL:-/bin/sh}\" -l";

/// Serves one `shell` request.
pub async fn serve<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: ShellRequest,
) -> Result<Outcome, ConnectionError> {
    let detachable = request.detachable || context.detachable_default;
    let admitted = admit(context).and_then(|slot| {
        if detachable {
            job::room(context)?;
        }
        Ok((slot, job::linger(request.linger_secs)?))
    });
    let (slot, linger) = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            conn.send_error(&refusal).await?;
            return Ok(Outcome::Refused(refusal.code));
        }
    };
    let mut terminal = match Terminal::open(&request, &context.root_path) {
        Ok(terminal) => terminal,
        Err(err) => {
            let refusal = Refusal::new(ErrorCode::IoError, format!("cannot start a shell: {err}"));
            conn.send_error(&refusal).await?;
            return Ok(Outcome::Refused(ErrorCode::IoError));
        }
    };
    if detachable {
        let start = job::JobStart {
            command: "shell".into(),
            deadline: None,
            linger,
            slot,
            terminal: true,
        };
        return job::start(conn, context, terminal, start).await;
    }
    conn.send(ok_header(&serde_json::json!({})), Bytes::new())
        .await?;
    let relayed = relay(conn, &mut terminal, None, Some(&context.shutdown)).await?;
    drop(slot);
    if relayed.hung_up {
        // The session answers `shutting_down` and closes the connection,
        // which is all the client needs to hear.
        return Ok(Outcome::Refused(ErrorCode::ShuttingDown));
    }
    finish(conn, &relayed.end, relayed.client_done).await
}

/// A login shell on a pseudo-terminal: its output is the terminal's, on
/// `stdout`; its input is the user's keys.
#[derive(Debug)]
struct Terminal {
    /// The server's side of the terminal, until the shell's side closes or
    /// the server hangs up.
    master: Option<AsyncFd<OwnedFd>>,
    child: process::GuardedChild,
    out: BytesMut,
    exited: bool,
}

impl Terminal {
    /// Opens a PTY and starts the login shell on it, in `cwd`.
    fn open(request: &ShellRequest, cwd: &std::path::Path) -> io::Result<Terminal> {
        let (master, child) = open_and_spawn(request, cwd)?;
        Ok(Terminal {
            master: Some(master),
            child: process::GuardedChild::new(child),
            out: BytesMut::with_capacity(PIPE_READ_BYTES),
            exited: false,
        })
    }
}

impl ChildSide for Terminal {
    fn output_open(&self) -> bool {
        self.master.is_some()
    }

    fn input_open(&self) -> bool {
        self.master.is_some()
    }

    async fn next(&mut self, keys: &mut Option<Bytes>) -> io::Result<ChildEvent> {
        tokio::select! {
            read = read_master(self.master.as_ref(), &mut self.out), if self.master.is_some() => {
                match read {
                    Some(bytes) => Ok(ChildEvent::Output("stdout", bytes)),
                    None => {
                        self.master = None;
                        Ok(ChildEvent::OutputClosed)
                    }
                }
            }
            exited = self.child.wait(), if !self.exited => {
                let status = exited?;
                self.exited = true;
                Ok(ChildEvent::Exited(status))
            }
            written = write_master(self.master.as_ref(), keys), if keys.is_some() => {
                Ok(ChildEvent::Input(written))
            }
            else => std::future::pending().await,
        }
    }

    /// The user's end of input is not the terminal's: a shell ends at its
    /// `exit` (or ^D typed as a key), as over ssh.
    fn end_input(&mut self) {}

    fn resize(&mut self, rows: u16, cols: u16) {
        if let Some(master) = &self.master {
            set_size(master.get_ref(), rows, cols);
        }
    }

    fn hang_up(&mut self) {
        self.master = None;
    }

    fn kill(&mut self) {
        self.child.kill_group();
    }

    async fn reap(&mut self) {
        let _ = self.child.wait().await;
    }

    fn disarm(&mut self) {
        self.child.disarm();
    }
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
