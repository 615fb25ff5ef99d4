//! The harness every integration test stands on: a real `ferry serve` on
//! port 0, the `ferry` client binary, and a raw speaker of the wire protocol.
//!
//! Each server lives in a [`Sandbox`], a temporary directory that stands in
//! for a user's home: `HOME`, `XDG_STATE_HOME` and `XDG_CONFIG_HOME` point into
//! it and every other variable (all `FERRY_*` among them) is cleared, so no
//! test reads or writes the real user's pins, tokens or files. Nothing here
//! sleeps: readiness is the server's `listening` lines, exits are waited for
//! through a pidfd, and every read carries a deadline, so a broken server
//! fails a test instead of hanging the suite.

pub mod fake;
pub mod outside_tool;
mod raw;

pub use raw::{frame_bytes, hello_header, Raw};

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal};

/// The binary under test.
pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// How long anything that should happen "at once" may take before a test
/// gives up. Generous, because a debug build on a loaded two-core machine is
/// slow; it only costs time when a test is failing anyway.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How long a server may take to start: a first start generates a key.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// How long a client process may run.
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// A temporary stand-in for a user's home directory.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A fresh, empty sandbox.
    pub fn new() -> Arc<Sandbox> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-")
            .tempdir()
            .expect("create a temporary directory");
        Arc::new(Sandbox { dir })
    }

    /// The sandbox directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `$XDG_STATE_HOME/ferry`: where a client looks for the token of a
    /// server on this machine, and where servers keep their state unless a
    /// test passes `--state`.
    pub fn default_state_dir(&self) -> PathBuf {
        self.path().join("xdg-state/ferry")
    }

    /// `$XDG_CONFIG_HOME/ferry/known_hosts`, where the client pins servers.
    pub fn known_hosts(&self) -> PathBuf {
        self.path().join("xdg-config/ferry/known_hosts")
    }

    /// The known-hosts file's text.
    pub fn read_known_hosts(&self) -> String {
        std::fs::read_to_string(self.known_hosts()).expect("read known_hosts")
    }

    /// Writes the known-hosts file, as a user editing it would.
    pub fn write_known_hosts(&self, text: &str) {
        let path = self.known_hosts();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }

    /// The `ferry` binary with `args`, in this sandbox's environment only.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(FERRY);
        cmd.args(args)
            .env_clear()
            .env("HOME", self.path().join("home"))
            .env("XDG_STATE_HOME", self.path().join("xdg-state"))
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env("RUST_BACKTRACE", "1")
            .current_dir(self.path());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd
    }
}

/// A child process that can be waited for with a deadline, and is killed
/// (by its own PID, which cannot be reused while it is unreaped) if it is
/// still running when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `cmd`.
    pub fn spawn(cmd: &mut Command) -> Process {
        let child = cmd.spawn().expect("start the ferry binary");
        let pidfd = rustix::process::pidfd_open(Pid::from_child(&child), PidfdFlags::empty())
            .expect("pidfd_open (Linux 5.3 or later)");
        Process {
            child,
            pidfd,
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process, unless it has already been reaped.
    /// Until then its PID cannot belong to anyone else.
    pub fn signal(&self, signal: Signal) {
        if self.status.is_none() {
            rustix::process::kill_process(Pid::from_child(&self.child), signal)
                .expect("send a signal");
        }
    }

    /// Waits up to `within` for the process to exit; `None` if it is still
    /// running then.
    pub fn wait_within(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = rustix::event::Timespec::try_from(left).expect("a sane timeout");
            let mut fds = [rustix::event::PollFd::new(
                &self.pidfd,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => return None,
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => panic!("poll on a pidfd: {err}"),
            }
        }
        self.status = self.child.try_wait().expect("reap the child");
        assert!(
            self.status.is_some(),
            "pidfd readable but the child is not reapable"
        );
        self.status
    }

    /// The write end of the process's stdin, if it was piped and not taken.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// The read end of the process's stdout, if it was piped and not taken.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The read end of the process's stderr, if it was piped and not taken.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server's stderr, kept line by line so tests can wait for a log line.
#[derive(Debug, Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// One `listening ADDR (MODE)` line of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// The address as the server printed it: `127.0.0.1:PORT`,
    /// `[::1]:PORT`, `unix:/path`.
    pub addr: String,
    /// `TLS`, `plaintext`, or `unix socket, token required`.
    pub mode: String,
}

/// Flags that each add one more `listening` line after the framed ones.
const EXTRA_LISTENER_FLAGS: &[&str] = &[
    "--seed-compat",
    "--udp-time",
    "--sntp",
    "--udp-echo",
    "--tcp-echo",
    "--udp-chat",
];

/// How many `listening` lines the flags in `args` add beyond `--listen`.
fn extra_listeners(args: &[&str]) -> usize {
    args.iter()
        .filter(|a| EXTRA_LISTENER_FLAGS.contains(a))
        .count()
}

/// A running `ferry serve`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    /// The environment the server (and clients started through it) run in.
    pub sandbox: Arc<Sandbox>,
    process: Process,
    listening: Vec<Listening>,
    fingerprint: String,
    token_path: PathBuf,
    state_dir: PathBuf,
    root: PathBuf,
    log: Arc<Log>,
}

impl Server {
    /// Starts a server in a fresh sandbox. See [`Server::start_in`].
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(&Sandbox::new(), args)
    }

    /// Starts `ferry serve ARGS` in `sandbox` and waits until it prints its
    /// `listening` lines. Unless `args` say otherwise, it listens on
    /// `127.0.0.1:0`, keeps its state in the sandbox's default state dir and
    /// serves `root/` in the sandbox. Panics with the server's stderr if it
    /// exits instead.
    pub fn start_in(sandbox: &Arc<Sandbox>, args: &[&str]) -> Server {
        Server::start_with(sandbox, args, None)
    }

    /// Starts a server as [`Server::start_in`] does, its stderr going to
    /// `stderr` (a pipe the test holds) instead of the harness: its log is
    /// then the test's to read or neglect, and [`Server::wait_for_log`]
    /// sees nothing.
    pub fn start_with_stderr(sandbox: &Arc<Sandbox>, args: &[&str], stderr: Stdio) -> Server {
        Server::start_with(sandbox, args, Some(stderr))
    }

    fn start_with(sandbox: &Arc<Sandbox>, args: &[&str], stderr: Option<Stdio>) -> Server {
        let mut full: Vec<String> = vec!["serve".into()];
        full.extend(args.iter().map(|a| a.to_string()));
        let listeners =
            args.iter().filter(|a| **a == "--listen").count().max(1) + extra_listeners(args);
        if !args.contains(&"--listen") {
            full.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        // The time service is on by default on a fixed port; tests that run
        // at once would fight over it, so only those that ask get one.
        if !args.contains(&"--udp-time") {
            full.push("--no-udp-time".into());
        }
        let state_dir = match args.iter().position(|a| *a == "--state") {
            Some(i) => PathBuf::from(args[i + 1]),
            None => {
                full.push("--state".into());
                full.push(sandbox.default_state_dir().display().to_string());
                sandbox.default_state_dir()
            }
        };
        let root = match args.iter().position(|a| *a == "--root") {
            // Relative to the server's working directory, the sandbox.
            Some(i) => sandbox.path().join(args[i + 1]),
            None => {
                full.push("--root".into());
                full.push(sandbox.path().join("root").display().to_string());
                sandbox.path().join("root")
            }
        };

        let mut cmd = sandbox.command(&full);
        let forwarded = stderr.is_none();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.unwrap_or_else(Stdio::piped));
        let mut process = Process::spawn(&mut cmd);
        // The test's copy of a given stderr is in `cmd`: closed here, so the
        // test's end of the pipe is the only other one.
        drop(cmd);
        let pid = process.pid();
        let log = Arc::new(Log::default());
        if forwarded {
            forward_stderr(&mut process, pid, log.clone());
        }
        let stdout_lines = read_lines_in_background(process.take_stdout().expect("piped stdout"));

        let mut fingerprint = None;
        let mut token_path = None;
        let mut listening = Vec::new();
        let deadline = Instant::now() + STARTUP_DEADLINE;
        while listening.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match stdout_lines.recv_timeout(left) {
                Ok(line) => line,
                Err(err) => {
                    let status = process.wait_within(DEADLINE);
                    let stderr = log.lines.lock().unwrap().join("\n");
                    panic!(
                        "ferry {full:?} did not become ready ({err}; exit status {status:?}); \
                         stderr:\n{stderr}"
                    );
                }
            };
            if let Some(fp) = line.strip_prefix("fingerprint ") {
                fingerprint = Some(fp.to_string());
            } else if let Some(path) = line.strip_prefix("token in ") {
                token_path = Some(PathBuf::from(path));
            } else if let Some(rest) = line.strip_prefix("listening ") {
                let (addr, mode) = rest
                    .split_once(" (")
                    .unwrap_or_else(|| panic!("unexpected listening line {line:?}"));
                listening.push(Listening {
                    addr: addr.to_string(),
                    mode: mode.trim_end_matches(')').to_string(),
                });
            }
        }
        // Keep draining stdout so the server can never block on it.
        thread::spawn(move || stdout_lines.iter().for_each(drop));

        Server {
            sandbox: sandbox.clone(),
            process,
            listening,
            fingerprint: fingerprint.expect("a `fingerprint` line before `listening`"),
            token_path: token_path.expect("a `token in` line before `listening`"),
            state_dir,
            root,
            log,
        }
    }

    /// The first address the server listens on.
    pub fn addr(&self) -> &str {
        &self.listening[0].addr
    }

    /// Every `listening` line, in order.
    pub fn listening(&self) -> &[Listening] {
        &self.listening
    }

    /// The address of the service named in its `listening` line, e.g.
    /// `udp time` or `tcp echo`.
    pub fn service_addr(&self, service: &str) -> &str {
        self.listening
            .iter()
            .find(|l| l.mode == service)
            .map(|l| l.addr.as_str())
            .unwrap_or_else(|| panic!("no {service} in {:?}", self.listening))
    }

    /// The certificate fingerprint the server printed, `SHA256:...`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The access token, read from the file the server named.
    pub fn token(&self) -> String {
        let path = if self.token_path.is_absolute() {
            self.token_path.clone()
        } else {
            self.sandbox.path().join(&self.token_path)
        };
        std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
            .trim()
            .to_string()
    }

    /// The server's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The directory the server serves (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Asks the server to shut down, as an init system does.
    pub fn terminate(&self) {
        self.signal(Signal::TERM);
    }

    /// Waits up to `within` for the server to exit.
    pub fn wait_within(&mut self, within: Duration) -> Option<ExitStatus> {
        self.process.wait_within(within)
    }

    /// Asserts that the server exits 0 within `within`.
    #[track_caller]
    pub fn assert_exits_0_within(&mut self, within: Duration) {
        let status = self.wait_within(within);
        assert!(
            status.is_some_and(|s| s.success()),
            "the server did not exit 0 within {within:?}: {status:?}"
        );
    }

    /// SIGTERM, then asserts that the server exits 0 within [`DEADLINE`].
    #[track_caller]
    pub fn stop(&mut self) {
        self.terminate();
        self.assert_exits_0_within(DEADLINE);
    }

    /// Waits until `count` stderr lines contain `needle`, and returns them.
    #[track_caller]
    pub fn wait_for_log_lines(&self, needle: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            let found: Vec<String> = lines
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "the server logged {} of {count} lines containing {needle:?}; its log:\n{}",
                    found.len(),
                    lines.join("\n")
                );
            }
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Waits for a stderr line containing `needle`, and returns it.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_lines(needle, 1).remove(0)
    }

    /// Every stderr line the server has written so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// The server's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.memory_bytes("VmHWM")
    }

    /// The server's resident memory now (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.memory_bytes("VmRSS")
    }

    /// A `kB` line of `/proc/PID/status` of the server, in bytes.
    fn memory_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status of the server");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("a {field} line in kB"));
        kib * 1024
    }

    /// A `ferry` client run in this server's sandbox, aimed at it through
    /// `FERRY_SERVER` (a `--server` flag overrides it), with its token found
    /// through `FERRY_STATE`, the server's state directory.
    pub fn client(&self, args: &[&str]) -> Invocation {
        Invocation::new(&self.sandbox, args)
            .env("FERRY_SERVER", self.addr())
            .env("FERRY_STATE", self.state_dir())
    }
}

/// Forwards a child's stderr to the test's output with a prefix (shown only
/// when a test fails), keeping each line for [`Server::wait_for_log`].
fn forward_stderr(process: &mut Process, pid: u32, log: Arc<Log>) {
    let stderr = process.child.stderr.take().expect("piped stderr");
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[server {pid}] {line}");
            log.lines.lock().unwrap().push(line);
            log.grew.notify_all();
        }
    });
}

fn read_lines_in_background(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// What a `ferry` client run ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The exit code (`-1` if a signal ended it).
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// One run of the `ferry` binary in a sandbox, to its end, with input and
/// environment set by the test.
#[derive(Debug)]
pub struct Invocation {
    cmd: Command,
    stdin: Vec<u8>,
}

impl Invocation {
    /// `ferry ARGS` in `sandbox`'s environment.
    pub fn new(sandbox: &Sandbox, args: &[&str]) -> Invocation {
        Invocation {
            cmd: sandbox.command(args),
            stdin: Vec::new(),
        }
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Invocation {
        self.cmd.env(key, value);
        self
    }

    /// Removes an environment variable the harness would set.
    pub fn env_remove(mut self, key: &str) -> Invocation {
        self.cmd.env_remove(key);
        self
    }

    /// Runs the client in `dir` instead of the sandbox directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Invocation {
        self.cmd.current_dir(dir);
        self
    }

    /// Starts the binary without waiting for it, stdin and output discarded,
    /// for tests that interrupt a client in the middle of its work.
    pub fn spawn(mut self) -> Process {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Process::spawn(&mut self.cmd)
    }

    /// Starts the binary without waiting for it, with stdin, stdout and
    /// stderr piped for the test to take ([`Process::take_stdin`] and the
    /// like), for tests that talk to a client while it runs.
    pub fn spawn_piped(mut self) -> Process {
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Process::spawn(&mut self.cmd)
    }

    /// Starts the binary without waiting for it, with `stdin` and `stdout`
    /// as given (a terminal, a full device) and stderr piped for the test
    /// to take.
    pub fn spawn_with(mut self, stdin: Stdio, stdout: Stdio) -> Process {
        self.cmd.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
        Process::spawn(&mut self.cmd)
    }

    /// Bytes for the client's stdin (empty by default).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Invocation {
        self.stdin = bytes.into();
        self
    }

    /// Runs the binary to its end (killing it after a deadline) and returns
    /// what it did.
    pub fn run(self) -> Run {
        let output = self.output_within(CLIENT_DEADLINE);
        Run {
            code: output.code,
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    }

    /// Runs the binary to its end and returns what it did, its output as
    /// bytes; panics (killing it) if it still runs after `within`.
    pub fn output_within(mut self, within: Duration) -> Output {
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = Process::spawn(&mut self.cmd);
        let mut stdin = process.take_stdin().expect("piped stdin");
        let input = std::mem::take(&mut self.stdin);
        // Written from a thread: a client that answers as it reads could
        // otherwise fill its stdout pipe while we are still writing.
        let writer = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let stdout = read_all_in_background(process.take_stdout().expect("piped stdout"));
        let stderr = read_all_in_background(process.take_stderr().expect("piped stderr"));
        let status = process.wait_within(within);
        let Some(status) = status else {
            drop(process);
            panic!(
                "ferry {:?} still running after {within:?}; stderr:\n{}",
                self.cmd.get_args().collect::<Vec<_>>(),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        };
        writer.join().unwrap();
        let output = Output {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        // Shown when a test fails; a long output only by its start.
        let show =
            |bytes: &[u8]| String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
        eprintln!(
            "[ferry] {:?} -> exit {}, stdout ({} bytes) {:?}, stderr {:?}",
            self.cmd.get_args().collect::<Vec<_>>(),
            output.code,
            output.stdout.len(),
            show(&output.stdout),
            show(&output.stderr)
        );
        output
    }
}

/// What a `ferry` client run ended with, its output as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code (`-1` if a signal ended it).
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

fn read_all_in_background(mut out: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        bytes
    })
}

/// Runs the `ferry` client binary against `server` with `args`.
pub fn ferry(server: &Server, args: &[&str]) -> Run {
    server.client(args).run()
}

/// Polls `check` every millisecond until it gives a value, for at most
/// `within`; panics naming `what` if it never does. For what no event
/// announces: a file growing on disk, a process dying.
#[track_caller]
pub fn poll_until<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
