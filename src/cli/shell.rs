//! `ferry shell`: an interactive login shell on the server, like `ssh host`.
//! The local terminal goes into raw mode (restored on the way out, however
//! the session ends), window size changes are forwarded, and keys such as
//! Ctrl-C pass through to the remote terminal. Without a terminal on stdin
//! (`ferry shell < script`), the login shell runs the script through
//! `exec`, without a pseudo-terminal, and ends at its end.

use std::io::IsTerminal;

use clap::Args;
use ferry::client::Error;
use ferry::client::ExecRequest;
use ferry::client::{ShellRequest, SCRIPT_SHELL_LINE};
use rustix::termios::{self, OptionalActions, Termios};
use tokio::signal::unix::{signal, SignalKind};

use super::{connect, GlobalArgs};

/// `ferry shell` arguments.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The server: a host of the config file (`ferry hosts`) or an address
    /// with its port [default: --server].
    #[arg(value_name = "HOST")]
    pub host: Option<String>,

    /// Keep the shell running on the server if the connection drops; the
    /// client reconnects by itself (see `ferry exec --detachable`).
    #[arg(long)]
    detachable: bool,

    /// With --detachable: how long the shell runs on without a connection.
    #[arg(long, value_name = "SECS", value_parser = super::parse_seconds,
          default_value = "60", requires = "detachable")]
    linger: std::time::Duration,
}

/// Puts stdin's terminal in raw mode and restores it when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode for a terminal stdin; `None` when stdin is not a terminal.
    fn enter() -> std::io::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// The local window size, if stdout is a terminal.
fn window_size() -> Option<(u16, u16)> {
    let size = termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// Runs `ferry shell`; returns the remote shell's exit status.
pub async fn run(args: ShellArgs, global: &GlobalArgs) -> Result<u8, Error> {
    if !std::io::stdin().is_terminal() {
        return run_script(&args, global).await;
    }
    let mut client = connect(global).await?;
    client.announce_jobs(std::io::stderr().is_terminal() && !global.quiet);
    let (rows, cols) = window_size().unwrap_or((24, 80));
    let request = ShellRequest {
        term: std::env::var("TERM").ok(),
        rows,
        cols,
        detachable: args.detachable,
        linger_secs: args.detachable.then_some(args.linger.as_secs_f64()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let watcher = watch_window(tx)?;
    let raw = RawMode::enter()?;
    let mut stdout = tokio::io::stdout();
    let ended = client
        .shell(&request, tokio::io::stdin(), &mut stdout, rx)
        .await;
    drop(raw);
    watcher.abort();
    let end = ended.map_err(|err| match err {
        Error::Remote(reply) => Error::NotRun(reply),
        other => other,
    })?;
    client.close().await;
    Ok(end.shell_status().clamp(0, 255) as u8)
}

/// Sends the terminal's window size on `tx` each time it changes, until
/// the returned task is aborted or the receiver is gone.
fn watch_window(
    tx: tokio::sync::mpsc::Sender<(u16, u16)>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut winch = signal(SignalKind::window_change())?;
    Ok(tokio::spawn(async move {
        while winch.recv().await.is_some() {
            if let Some(size) = window_size() {
                if tx.send(size).await.is_err() {
                    break;
                }
            }
        }
    }))
}

/// Runs `ferry attach` for a detachable shell: the local terminal raw, its
/// window size sent at once and on each change, as `ferry shell` does.
pub(super) async fn attach(client: &mut ferry::client::Client, job: &str) -> Result<u8, Error> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    if let Some(size) = window_size() {
        let _ = tx.try_send(size);
    }
    let watcher = watch_window(tx)?;
    let raw = RawMode::enter()?;
    let mut stdout = tokio::io::stdout();
    let ended = client
        .attach_shell(job, tokio::io::stdin(), &mut stdout, rx)
        .await;
    drop(raw);
    watcher.abort();
    let end = ended.map_err(|err| match err {
        Error::Remote(reply) => Error::NotRun(reply),
        other => other,
    })?;
    Ok(end.shell_status().clamp(0, 255) as u8)
}

/// Runs stdin as a script in the server's login shell, as `ssh host <
/// script` does: stdout and stderr apart, the shell's exit status.
async fn run_script(args: &ShellArgs, global: &GlobalArgs) -> Result<u8, Error> {
    let mut client = connect(global).await?;
    let request = ExecRequest {
        shell: Some(SCRIPT_SHELL_LINE.to_string()),
        detachable: args.detachable,
        linger_secs: args.detachable.then_some(args.linger.as_secs_f64()),
        ..ExecRequest::default()
    };
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let end = client
        .exec(&request, Some(tokio::io::stdin()), &mut stdout, &mut stderr)
        .await
        .map_err(|err| match err {
            Error::Remote(reply) => Error::NotRun(reply),
            other => other,
        })?;
    client.close().await;
    Ok(end.shell_status().clamp(0, 255) as u8)
}
