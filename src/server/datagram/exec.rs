//! The tutorial's UDP command service (`--seed-compat-udp`): a datagram
//! holding a command line runs it with `sh -c` in the root, as the
//! tutorial's server runs `subprocess.Popen(cmd, shell=True)`, and the
//! command's stderr, then its stdout, come back as datagrams of at most
//! [`UDP_EXEC_DATAGRAM_BYTES`], the `recvfrom(1024)` its client reads
//! with. Each stream is at least one datagram, empty when the stream is,
//! as the tutorial's two `sendto`s are.
//!
//! It trusts nothing: whoever can send a datagram to the port runs
//! commands as the server's user, and a UDP source can be forged. So it
//! listens on loopback only (unless `--allow-remote-plaintext`), needs
//! `--allow-exec`, passes every datagram through the door's
//! [`Guard`], runs at most one command per source address at a time (a
//! second one is refused in one short datagram, never queued), holds a
//! command slot and the request timeout like every command, and sends a
//! source no more reply datagrams than its budget ([`UDP_EXEC_REPLY_BURST`],
//! refilled one per [`UDP_EXEC_REPLY_INTERVAL`]); output past it is cut and
//! a last datagram says so. Spawning, process groups and reading pipes are
//! `services::exec`'s (`Pipes`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::guard::{reply_fits, Family, Guard};
use super::rate::RateLimit;
use crate::limits::{
    DATAGRAM_RATE_MAX_SOURCES, UDP_EXEC_DATAGRAM_BYTES, UDP_EXEC_REPLY_BURST,
    UDP_EXEC_REPLY_INTERVAL, UDP_RECEIVE_BUFFER_BYTES,
};
use crate::log::peer_text;
use crate::services::exec::process::Program;
use crate::services::exec::{admit, ChildEvent, ChildSide, Pipes};
use crate::services::ServiceContext;

/// The name in the server's `listening` line and logs.
pub const NAME: &str = "seed-compat udp, no token";

/// The answer to a datagram from a source whose command still runs: short
/// enough for the amplification cap of an empty datagram.
pub const BUSY_REPLY: &str = "ferry: your last command still runs; this one was not run";

/// The answer to a command over [`UDP_EXEC_DATAGRAM_BYTES`], which the
/// tutorial's server would have cut and run.
const TOO_LONG_REPLY: &str = "ferry: a command is at most 1024 bytes; this one was not run";

/// The answer to a command that is not UTF-8, which `sh -c` takes as text.
const NOT_TEXT_REPLY: &str = "ferry: a command is UTF-8 text; this one was not run";

/// The answer when every command slot is taken (`--max-commands`).
const FULL_REPLY: &str = "ferry: the server runs its most commands at once; try again";

/// How a command's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited (or a signal of its own ended it).
    Exited,
    /// The request timeout passed; its process group was killed.
    TimedOut(Duration),
    /// Its output passed what a source may ever be sent; it was killed.
    TooMuchOutput,
    /// The server shut down; it was killed.
    Shutdown,
    /// It could not be started.
    NotStarted(String),
}

impl Ending {
    /// The marker datagram that closes the reply, if the command did not
    /// simply end.
    fn marker(&self) -> Option<String> {
        match self {
            Ending::Exited => None,
            Ending::TimedOut(timeout) => Some(format!(
                "ferry: the command did not finish within {timeout:?} (--request-timeout) and \
                 was killed; use `ferry exec` for long commands"
            )),
            Ending::TooMuchOutput => Some(cut_marker(true)),
            Ending::Shutdown => {
                Some("ferry: the server is shutting down; the command was killed".into())
            }
            Ending::NotStarted(err) => Some(format!("ferry: cannot run sh: {err}")),
        }
    }
}

/// The datagram that replaces the rest of an output over the budget.
fn cut_marker(killed: bool) -> String {
    let killed = if killed {
        " and the command was killed"
    } else {
        ""
    };
    format!(
        "ferry: output cut here{killed}: a source is sent at most {UDP_EXEC_REPLY_BURST} \
         datagrams of {UDP_EXEC_DATAGRAM_BYTES} bytes per {}s; use `ferry exec`, which streams",
        (UDP_EXEC_REPLY_INTERVAL * UDP_EXEC_REPLY_BURST).as_secs()
    )
}

/// The datagrams that answer a command, in order, before the budget:
/// stderr then stdout, each in pieces of [`UDP_EXEC_DATAGRAM_BYTES`] and
/// at least one (empty) datagram, then the ending's marker if any.
pub fn plan(stderr: &[u8], stdout: &[u8], ending: &Ending) -> Vec<Vec<u8>> {
    let pieces = |stream: &[u8]| -> Vec<Vec<u8>> {
        if stream.is_empty() {
            return vec![Vec::new()];
        }
        stream
            .chunks(UDP_EXEC_DATAGRAM_BYTES)
            .map(<[u8]>::to_vec)
            .collect()
    };
    let mut datagrams = pieces(stderr);
    datagrams.extend(pieces(stdout));
    datagrams.extend(ending.marker().map(String::into_bytes));
    datagrams
}

/// `planned` cut to `granted` datagrams: whole if it fits, else the first
/// `granted - 1` and a marker saying the rest was cut (`killed` says the
/// command was killed for it), or nothing at all.
pub fn within_budget(mut planned: Vec<Vec<u8>>, granted: usize, killed: bool) -> Vec<Vec<u8>> {
    if planned.len() <= granted {
        return planned;
    }
    if granted == 0 {
        return Vec::new();
    }
    planned.truncate(granted - 1);
    planned.push(cut_marker(killed).into_bytes());
    planned
}

/// What every command of the service shares.
struct Door {
    socket: UdpSocket,
    services: ServiceContext,
    timeout: Duration,
    guard: Arc<Guard>,
    /// Reply datagrams each source IP address may still be sent.
    budget: Mutex<RateLimit>,
    /// Source addresses whose command runs now; each holds a command slot,
    /// so there are at most `--max-commands`.
    running: Mutex<HashSet<SocketAddr>>,
    cancel: CancellationToken,
}

impl Door {
    /// Takes up to `wanted` datagrams of `to`'s budget; how many it had.
    fn spend(&self, to: SocketAddr, wanted: usize) -> usize {
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        budget.take(to.ip().to_canonical(), wanted, std::time::Instant::now()) as usize
    }

    /// Sends a one-datagram refusal to a datagram of `request_bytes`, if it
    /// fits the amplification cap and the source's budget.
    async fn refuse(&self, to: SocketAddr, request_bytes: usize, reply: &str) {
        debug!(%to, "udp exec: refused: {reply}");
        if reply_fits(request_bytes, reply.len(), Family::of(to)) && self.spend(to, 1) == 1 {
            let _ = self.socket.send_to(reply.as_bytes(), to).await;
        }
    }
}

/// Serves the tutorial's UDP commands on `socket` until `cancel`; each
/// command runs in a task of `tracker`, killed at shutdown. `services`
/// holds the command slots and root, `timeout` is how long a command may
/// run, and `guard` what every datagram service checks sources against.
pub async fn serve(
    socket: UdpSocket,
    services: ServiceContext,
    timeout: Duration,
    guard: Arc<Guard>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let door = Arc::new(Door {
        socket,
        services,
        timeout,
        guard,
        budget: Mutex::new(RateLimit::new(
            UDP_EXEC_REPLY_BURST,
            UDP_EXEC_REPLY_INTERVAL,
            DATAGRAM_RATE_MAX_SOURCES,
        )),
        running: Mutex::new(HashSet::new()),
        cancel,
    });
    // One byte over the longest command: a datagram that fills it is too long.
    let mut buf = vec![0u8; (UDP_EXEC_DATAGRAM_BYTES + 1).min(UDP_RECEIVE_BUFFER_BYTES)];
    loop {
        let (len, from) = tokio::select! {
            biased;
            _ = door.cancel.cancelled() => break,
            received = door.socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                // An ICMP error for an earlier reply: the peer went away.
                Err(err) => {
                    debug!("udp exec: receive failed: {err}");
                    continue;
                }
            },
        };
        if let Err(refusal) = door.guard.admit(from, false, std::time::Instant::now()) {
            debug!(%from, "udp exec: not answered: {}", refusal.reason());
            continue;
        }
        if len > UDP_EXEC_DATAGRAM_BYTES {
            door.refuse(from, len, TOO_LONG_REPLY).await;
            continue;
        }
        let Ok(command) = std::str::from_utf8(&buf[..len]) else {
            door.refuse(from, len, NOT_TEXT_REPLY).await;
            continue;
        };
        let command = command.to_string();
        if !door
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(from)
        {
            door.refuse(from, len, BUSY_REPLY).await;
            continue;
        }
        let slot = match admit(&door.services) {
            Ok(slot) => slot,
            Err(refusal) => {
                door.running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&from);
                warn!(%from, command = %peer_text(&command), "udp exec: refused: {}", refusal.message);
                door.refuse(from, len, FULL_REPLY).await;
                continue;
            }
        };
        let door = door.clone();
        tracker.spawn(async move {
            let started = std::time::Instant::now();
            let ran = run(
                &command,
                &door.services.root_path,
                door.timeout,
                &door.cancel,
            )
            .await;
            drop(slot);
            // Free before the first reply goes: the tutorial's client sends
            // its next command as soon as one datagram arrives.
            door.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&from);
            let killed = ran.ending == Ending::TooMuchOutput;
            let planned = plan(&ran.stderr, &ran.stdout, &ran.ending);
            let granted = door.spend(from, planned.len());
            let reply = within_budget(planned, granted, killed);
            info!(
                %from,
                command = %peer_text(&command),
                ending = ?ran.ending,
                bytes = ran.stderr.len() + ran.stdout.len(),
                datagrams = reply.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "udp exec command"
            );
            for datagram in reply {
                if let Err(err) = door.socket.send_to(&datagram, from).await {
                    debug!(%from, "udp exec: cannot reply: {err}");
                    break;
                }
            }
        });
    }
}

/// A command's output and how it ended.
struct Ran {
    stderr: Vec<u8>,
    stdout: Vec<u8>,
    ending: Ending,
}

/// Runs `command` in `root` to its end, `timeout` or shutdown, keeping its
/// output up to what a source may ever be sent; past that it is killed.
async fn run(command: &str, root: &Path, timeout: Duration, cancel: &CancellationToken) -> Ran {
    let mut ran = Ran {
        stderr: Vec::new(),
        stdout: Vec::new(),
        ending: Ending::Exited,
    };
    let mut child = match Pipes::spawn(&Program::Shell(command.into()), root, &BTreeMap::new()) {
        Ok(child) => child,
        Err(err) => {
            ran.ending = Ending::NotStarted(err.to_string());
            return ran;
        }
    };
    // The tutorial's commands read no input: stdin is closed at once.
    child.end_input();
    let mut no_input = None;
    let max_bytes = UDP_EXEC_REPLY_BURST as usize * UDP_EXEC_DATAGRAM_BYTES;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut exited = false;
    let mut killed = false;
    while child.output_open() || !exited {
        tokio::select! {
            event = child.next(&mut no_input) => match event {
                Ok(ChildEvent::Output("stdout", bytes)) => ran.stdout.extend_from_slice(&bytes),
                Ok(ChildEvent::Output(_, bytes)) => ran.stderr.extend_from_slice(&bytes),
                Ok(ChildEvent::Exited(_)) => exited = true,
                Ok(ChildEvent::OutputClosed | ChildEvent::Input(_)) => {}
                Err(err) => {
                    debug!("udp exec: waiting on the command failed: {err}");
                    break;
                }
            },
            _ = tokio::time::sleep_until(deadline), if !killed => {
                ran.ending = Ending::TimedOut(timeout);
                killed = true;
            }
            _ = cancel.cancelled(), if !killed => {
                ran.ending = Ending::Shutdown;
                killed = true;
            }
        }
        if !killed && ran.stdout.len() + ran.stderr.len() > max_bytes {
            ran.ending = Ending::TooMuchOutput;
            killed = true;
        }
        if killed {
            // Its children may hold the pipes open: stop reading them too.
            child.kill();
            child.hang_up();
            child.reap().await;
            exited = true;
        }
    }
    if !killed {
        child.disarm();
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_then_stdout_in_pieces_of_1024_each_at_least_one() {
        let stderr = vec![b'e'; 1500];
        let stdout = vec![b'o'; 2048];
        let planned = plan(&stderr, &stdout, &Ending::Exited);
        let sizes: Vec<usize> = planned.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1024, 476, 1024, 1024]);
        assert!(planned[1].iter().all(|&b| b == b'e'));
        assert!(planned[2].iter().all(|&b| b == b'o'));
        assert_eq!(
            plan(b"", b"", &Ending::Exited),
            [Vec::<u8>::new(), Vec::new()]
        );
        let timed_out = plan(b"", b"hi\n", &Ending::TimedOut(Duration::from_secs(1)));
        assert_eq!(timed_out.len(), 3);
        assert!(String::from_utf8_lossy(&timed_out[2]).contains("--request-timeout"));
    }

    #[test]
    fn a_reply_over_the_budget_ends_with_a_marker_within_it() {
        let planned = plan(b"", &vec![b'o'; 10 * 1024], &Ending::Exited);
        assert_eq!(planned.len(), 11);
        assert_eq!(within_budget(planned.clone(), 11, false), planned);
        let cut = within_budget(planned.clone(), 4, false);
        assert_eq!(cut.len(), 4);
        assert_eq!(cut[..3], planned[..3]);
        assert_eq!(cut[3], cut_marker(false).into_bytes());
        assert_eq!(
            within_budget(planned.clone(), 1, true),
            [cut_marker(true).into_bytes()]
        );
        assert!(within_budget(planned, 0, false).is_empty());
    }

    #[test]
    fn every_marker_and_refusal_fits_one_datagram_the_client_reads() {
        let markers = [
            cut_marker(true),
            cut_marker(false),
            Ending::TimedOut(Duration::from_secs(30)).marker().unwrap(),
            Ending::Shutdown.marker().unwrap(),
        ];
        for marker in &markers {
            assert!(marker.len() <= UDP_EXEC_DATAGRAM_BYTES, "{marker}");
        }
        // A refusal may answer an empty datagram: within the 4x cap.
        for refusal in [BUSY_REPLY, TOO_LONG_REPLY, NOT_TEXT_REPLY, FULL_REPLY] {
            assert!(reply_fits(0, refusal.len(), Family::V4), "{refusal}");
        }
    }

    #[tokio::test]
    async fn a_command_that_floods_is_killed_at_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let ran = run("yes", dir.path(), Duration::from_secs(30), &cancel).await;
        assert_eq!(ran.ending, Ending::TooMuchOutput);
        let max = UDP_EXEC_REPLY_BURST as usize * UDP_EXEC_DATAGRAM_BYTES;
        // One pipe read past the cap at most.
        assert!(ran.stdout.len() <= max + crate::limits::PIPE_READ_BYTES);
    }

    #[tokio::test]
    async fn shutdown_kills_a_running_command() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let ran = run("sleep 60", dir.path(), Duration::from_secs(60), &cancel).await;
        assert_eq!(ran.ending, Ending::Shutdown);
    }
}
