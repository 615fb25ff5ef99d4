//! `ferry shell`, driven as a person at a terminal would: the test opens a
//! pseudo-terminal, runs the real client on it, types, and reads the screen.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::fs::OFlags;
use rustix::pty::OpenptFlags;
use rustix::termios::{self, LocalModes, Winsize};

use crate::util::{Process, Sandbox, Server};

/// `ferry shell` against `server`, with the terminal `device` as its
/// stdin, stdout and stderr.
pub(crate) fn shell_command(sandbox: &Sandbox, server: &Server, device: &OwnedFd) -> Command {
    let mut command = sandbox.command(&["--server", server.addr(), "shell"]);
    command
        .env("FERRY_STATE", server.state_dir())
        .stdin(Stdio::from(device.try_clone().unwrap()))
        .stdout(Stdio::from(device.try_clone().unwrap()))
        .stderr(Stdio::from(device.try_clone().unwrap()));
    command
}

/// The test's side of a terminal: what it types and what it has seen.
pub(crate) struct Terminal {
    master: std::fs::File,
    seen: Vec<u8>,
    output: mpsc::Receiver<Vec<u8>>,
}

impl Terminal {
    /// A new terminal of `rows` x `cols`; returns the test's side and the
    /// terminal device for the program under test.
    pub(crate) fn open(rows: u16, cols: u16) -> (Terminal, OwnedFd) {
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let device = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        set_size(&master, rows, cols);
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let terminal = Terminal {
            master,
            seen: Vec::new(),
            output,
        };
        (terminal, device)
    }

    pub(crate) fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Waits until `needle` has appeared on the screen since the last wait.
    pub(crate) fn expect(&mut self, needle: &str) {
        assert!(
            self.appears(needle, Duration::from_secs(10)),
            "{needle:?} did not appear; the screen shows {:?}",
            String::from_utf8_lossy(&self.seen)
        );
    }

    /// Whether `needle` appears within `within`; what came before it is
    /// consumed.
    pub(crate) fn appears(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = find(&self.seen, needle.as_bytes()) {
                self.seen.drain(..at + needle.len());
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.extend(bytes),
                Err(_) => return false,
            }
        }
    }
}

/// Waits (bounded) until a process with this exact command line runs.
fn wait_for_process(cmdline: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let running = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|line| line == cmdline)
        });
        if running {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn set_size(fd: &impl std::os::fd::AsFd, rows: u16, cols: u16) {
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    termios::tcsetwinsize(fd, size).unwrap();
}

#[test]
fn a_shell_session_runs_commands_passes_ctrl_c_follows_resizes_and_restores_the_terminal() {
    let sandbox = Sandbox::new();
    let server = Server::start_in(&sandbox, &["--allow-exec"]);
    let (mut terminal, device) = Terminal::open(30, 100);
    let mut command = shell_command(&sandbox, &server, &device);
    command.env("TERM", "xterm");
    let mut client = Process::spawn(&mut command);
    let cooked = termios::tcgetattr(&device).unwrap();
    assert!(cooked.local_modes.contains(LocalModes::ICANON));

    // A command, with arithmetic only a real shell does.
    terminal.type_text("echo answer=$((6*7))\n");
    terminal.expect("answer=42");

    // The remote terminal has the client's window size.
    terminal.type_text("stty size\n");
    terminal.expect("30 100");

    // Ctrl-C reaches the remote foreground job: the sleep ends at once.
    terminal.type_text("sleep 4242\n");
    assert!(
        wait_for_process(b"sleep\x004242\x00"),
        "the remote sleep never started"
    );
    terminal.type_text("\x03");
    terminal.type_text("echo after-ctrl-c\n");
    terminal.expect("after-ctrl-c");

    // A resize reaches the remote terminal. The test's terminal is not the
    // client's controlling terminal, so it sends SIGWINCH itself, as the
    // kernel would.
    // The signal and the keys travel separately, so ask until the new size
    // shows (a few tries, each bounded).
    set_size(&terminal.master, 40, 120);
    client.signal(rustix::process::Signal::WINCH);
    let resized = (0..20).any(|_| {
        terminal.type_text("stty size\n");
        terminal.appears("40 120", Duration::from_millis(500))
    });
    assert!(resized, "the remote terminal never became 40 x 120");

    // The shell's exit status is the client's, and the terminal comes back
    // out of raw mode.
    terminal.type_text("exit 5\n");
    let status = client
        .wait_within(Duration::from_secs(10))
        .expect("the client exits when the shell does");
    assert_eq!(status.code(), Some(5));
    let after = termios::tcgetattr(&device).unwrap();
    assert_eq!(
        after.local_modes, cooked.local_modes,
        "terminal not restored"
    );
}

#[test]
fn a_shell_is_refused_without_allow_exec() {
    let sandbox = Sandbox::new();
    let server = Server::start_in(&sandbox, &[]);
    let (_terminal, device) = Terminal::open(24, 80);
    let mut command = sandbox.command(&["--server", server.addr(), "shell"]);
    command
        .env("FERRY_STATE", server.state_dir())
        .stdin(Stdio::from(device.try_clone().unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut client = Process::spawn(&mut command);
    let status = client
        .wait_within(Duration::from_secs(10))
        .expect("the client gives up");
    assert_eq!(status.code(), Some(3));
    let after = termios::tcgetattr(&device).unwrap();
    assert!(
        after.local_modes.contains(LocalModes::ICANON),
        "terminal left raw"
    );
}

#[test]
fn a_shell_that_ignores_the_hangup_at_shutdown_is_killed_after_a_grace() {
    let sandbox = Sandbox::new();
    let mut server = Server::start_in(&sandbox, &["--allow-exec", "--drain-timeout", "60"]);
    let (mut terminal, device) = Terminal::open(24, 80);
    let mut client = Process::spawn(&mut shell_command(&sandbox, &server, &device));
    // Deaf to the hangup, and blocked in the shell itself (opening a FIFO
    // nobody writes), so it never reads the closed terminal either.
    terminal.type_text("trap '' HUP; mkfifo hold; echo deaf=$((1+1)); read x < hold\n");
    terminal.expect("deaf=2");
    let signalled = Instant::now();
    server.terminate();
    terminal.expect("the server is shutting down and ended the shell");
    // ferry::limits::SHELL_HANGUP_GRACE, then the kill.
    assert!(signalled.elapsed() >= Duration::from_secs(2), "no grace");
    let status = client.wait_within(Duration::from_secs(10)).expect("ends");
    assert_eq!(status.code(), Some(3));
    server.assert_exits_0_within(Duration::from_secs(10));
}
