//! `ferry exec` end to end: the real client binary runs commands on a real
//! `ferry serve --allow-exec`, over TLS unless a test moves enough bytes, or
//! speaks the raw protocol, that plaintext keeps it fast. One file per
//! concern; the helpers they share are here.
//!
//! Every command a test starts writes the PIDs of its processes to files in
//! that test's sandbox, so the test can check by PID, never by name, that
//! nothing outlived what should have ended it; and whatever is still alive
//! when a test fails is killed by PID on the way out.

mod hosts;
mod interactive;
mod lifetime;
mod status;
mod streams;
mod wire;

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde_json::{Map, Value};

pub(super) use crate::util::poll_until;
pub(super) use crate::util::read_all_in_background;
use crate::util::{Invocation, Output, Raw, Server};

pub(super) const MIB: usize = 1024 * 1024;

/// How long a client run may take before a test calls it hung. Runs that
/// move hundreds of MiB through a debug build need more than the harness's
/// usual deadline.
pub(super) const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// How long the processes of a killed command may take to be gone.
pub(super) const DEATH_DEADLINE: Duration = Duration::from_secs(2);

/// A server that runs commands: `--allow-exec` and `args`. Its certificate
/// is pinned already, as for a user who has connected before, so a client
/// has nothing to say of its own and every byte on its stdout and stderr
/// is the command's.
pub(super) fn exec_server(args: &[&str]) -> Server {
    let mut full = vec!["--allow-exec"];
    full.extend_from_slice(args);
    let server = Server::start(&full);
    pin(&server);
    server
}

/// Pins `server`'s certificate in its sandbox's known_hosts.
pub(super) fn pin(server: &Server) {
    if server.listening()[0].mode == "TLS" {
        let line = format!("{} {}\n", server.addr(), server.fingerprint());
        server.sandbox.write_known_hosts(&line);
    }
}

/// `ferry exec ARGS` against `server`, with `--plaintext` when the server
/// listens in plaintext.
pub(super) fn exec(server: &Server, args: &[&str]) -> Invocation {
    let mut full = Vec::with_capacity(args.len() + 2);
    if server.listening()[0].mode == "plaintext" {
        full.push("--plaintext");
    }
    full.push("exec");
    full.extend_from_slice(args);
    server.client(&full)
}

/// Runs `invocation` to its end.
pub(super) fn output(invocation: Invocation) -> Output {
    invocation.output_within(RUN_DEADLINE)
}

/// Asserts a run exited `code` with exactly `stdout` and `stderr`.
#[track_caller]
pub(super) fn assert_output(output: &Output, code: i32, stdout: &str, stderr: &str) {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert_eq!(
        (output.code, text(&output.stdout), text(&output.stderr)),
        (code, stdout.to_string(), stderr.to_string()),
        "exit code, stdout, stderr"
    );
}

/// Asserts `got` is `want` byte for byte; on failure says where they part
/// instead of printing megabytes.
#[track_caller]
pub(super) fn assert_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    let around = |bytes: &[u8]| {
        let end = bytes.len().min(at + 32);
        String::from_utf8_lossy(&bytes[at.saturating_sub(32).min(end)..end]).into_owned()
    };
    panic!(
        "{what}: {} bytes where {} were expected, first difference at byte {at}: \
         got {:?}, expected {:?}",
        got.len(),
        want.len(),
        around(got),
        around(want)
    );
}

/// Asserts a run failed as ferry fails, not as a command does: exit 3,
/// nothing on stdout, a `ferry:` line on stderr saying each of `needles`.
#[track_caller]
pub(super) fn assert_ferry_failed(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.code, 3, "{stderr}");
    assert_eq!(output.stdout, b"", "{stderr}");
    assert!(stderr.starts_with("ferry: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
}

/// `len` pseudo-random bytes from `seed` (BLAKE3's extendable output).
pub(super) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    let mut out = vec![0u8; len];
    hasher.finalize_xof().fill(&mut out);
    out
}

/// A path as a `&str`, for a command line.
pub(super) fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A process a remote command started, known by its PID and its start time,
/// so a PID the kernel has since handed to someone else is never taken for
/// it. Killed by PID when dropped if it is still alive: a failing test
/// leaves nothing running.
#[derive(Debug)]
pub(super) struct Remote {
    pid: i32,
    started: Option<u64>,
}

impl Remote {
    /// The process with `pid`, as it is now. If it is already gone, it
    /// counts as dead from the start.
    pub(super) fn new(pid: i32) -> Remote {
        let started = proc_stat(pid).map(|(_, started)| started);
        Remote { pid, started }
    }

    /// The process id.
    pub(super) fn pid(&self) -> i32 {
        self.pid
    }

    /// Its state letter from `/proc/PID/stat` (`R`, `S`, `Z`, ...), while
    /// the PID is still this process's.
    pub(super) fn state(&self) -> Option<char> {
        let (state, started) = proc_stat(self.pid)?;
        (Some(started) == self.started).then_some(state)
    }

    /// Whether it still runs: not gone, and not a zombie (dead, only not yet
    /// reaped by whoever inherited it).
    pub(super) fn is_alive(&self) -> bool {
        self.state().is_some_and(|s| s != 'Z' && s != 'X')
    }

    /// Bytes it has written so far (`wchar` of `/proc/PID/io`).
    pub(super) fn bytes_written(&self) -> Option<u64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid)).ok()?;
        let wchar = io.lines().find_map(|l| l.strip_prefix("wchar:"))?;
        let written = wchar.trim().parse().ok()?;
        self.is_alive().then_some(written)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if self.is_alive() {
            if let Some(pid) = Pid::from_raw(self.pid) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
    }
}

/// The state letter and start time (in clock ticks since boot) of `pid`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after it
    // start with the state (field 3); the start time is field 22.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let started = fields.get(19)?.parse().ok()?;
    Some((state, started))
}

/// Waits until `path` holds `count` whole lines of PIDs (a remote command
/// writes them with `echo $$ >> FILE` and `echo $! >> FILE`), and returns
/// those processes.
#[track_caller]
pub(super) fn read_pids(path: &Path, count: usize) -> Vec<Remote> {
    poll_until(
        &format!("{count} PIDs in {}", path.display()),
        crate::util::DEADLINE,
        || {
            let text = std::fs::read_to_string(path).ok()?;
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            if lines.len() < count || !lines[count - 1].ends_with('\n') {
                return None;
            }
            let remotes = lines[..count]
                .iter()
                .map(|l| Remote::new(l.trim().parse().expect("a PID per line")))
                .collect();
            Some(remotes)
        },
    )
}

/// Asserts every one of `remotes` is gone within [`DEATH_DEADLINE`].
#[track_caller]
pub(super) fn assert_all_die(remotes: &[Remote]) {
    let deadline = Instant::now() + DEATH_DEADLINE;
    loop {
        let alive: Vec<(i32, Option<char>)> = remotes
            .iter()
            .filter(|r| r.is_alive())
            .map(|r| (r.pid(), r.state()))
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running {DEATH_DEADLINE:?} later (pid, state): {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What one exec stream carried, read with the raw protocol: everything
/// on stdout, everything on stderr, and the end frame's header.
#[derive(Debug)]
pub(super) struct Streamed {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub end: Map<String, Value>,
}

/// Reads an exec reply to its end frame: the ok header, data frames, end.
#[track_caller]
pub(super) fn read_exec_reply(raw: &mut Raw) -> Streamed {
    let ok = raw.read_frame();
    assert!(ok.is_ok(), "exec refused: {ok:?}");
    let mut streamed = Streamed {
        stdout: Vec::new(),
        stderr: Vec::new(),
        end: Map::new(),
    };
    loop {
        let frame = raw.read_frame();
        if frame.header.get("end") == Some(&Value::Bool(true)) {
            assert_eq!(frame.body, b"", "the end frame has no body");
            streamed.end = frame.header;
            return streamed;
        }
        match frame.header.get("data").and_then(Value::as_str) {
            Some("stdout") => streamed.stdout.extend_from_slice(&frame.body),
            Some("stderr") => streamed.stderr.extend_from_slice(&frame.body),
            _ => panic!("expected output or the end, got {frame:?}"),
        }
    }
}

#[test]
fn the_helpers_see_what_they_claim() {
    // A PID read from /proc is alive; once killed and reaped, it is not,
    // and a zombie does not count as alive either.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let remote = Remote::new(child.id() as i32);
    assert!(remote.is_alive());
    child.kill().unwrap();
    poll_until("a zombie", DEATH_DEADLINE, || {
        (remote.state() == Some('Z')).then_some(())
    });
    assert!(!remote.is_alive());
    child.wait().unwrap();
    assert_eq!(remote.state(), None);
    assert!(!Remote::new(child.id() as i32).is_alive());
    assert_eq!(random_bytes(1, 100), random_bytes(1, 100));
    assert_ne!(random_bytes(1, 100), random_bytes(2, 100));
}
