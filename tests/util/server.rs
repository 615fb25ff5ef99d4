//! A real `ferry serve` on port 0: started in a sandbox, taken as ready
//! once it prints `ready` after its `listening` lines, its stderr kept for
//! tests to wait on, and killed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::{Invocation, Process, Sandbox, DEADLINE};

/// How long a server may take to start: a first start generates a key.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

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

    /// Starts `ferry serve ARGS` in `sandbox` and waits until it prints
    /// `ready`, after its `listening` lines. Unless `args` say otherwise, it
    /// listens on `127.0.0.1:0`, keeps its state in the sandbox's default
    /// state dir and serves `root/` in the sandbox. Panics with the server's
    /// stderr if it exits instead.
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
        loop {
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
            if line == "ready" {
                break;
            } else if let Some(fp) = line.strip_prefix("fingerprint ") {
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
            fingerprint: fingerprint.expect("a `fingerprint` line before `ready`"),
            token_path: token_path.expect("a `token in` line before `ready`"),
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
    let stderr = process.take_stderr().expect("piped stderr");
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
