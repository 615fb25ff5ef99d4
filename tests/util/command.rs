//! One run of the `ferry` client binary: how a test sets it up
//! ([`Invocation`]) and what it ended with ([`Run`], or [`Output`] for
//! bytes).

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use super::{read_all_in_background, Process, Sandbox, Server};

/// How long a client process may run.
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

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

/// Assertions on a finished run, as ripgrep's `TestCommand` has them: each
/// returns the run so they chain, and a failure shows the whole run.
impl Run {
    /// Asserts the run exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Run {
        self.assert_code(0)
    }

    /// Asserts the run exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        if self.code != code {
            self.fail(format_args!("expected exit code {code}"));
        }
        self
    }

    /// Asserts the run failed: any exit code but 0.
    #[track_caller]
    pub fn assert_err(&self) -> &Run {
        if self.code == 0 {
            self.fail("expected a failure");
        }
        self
    }

    /// Asserts stdout is exactly `expected`.
    #[track_caller]
    pub fn assert_stdout(&self, expected: &str) -> &Run {
        if self.stdout != expected {
            self.fail(format_args!("expected stdout {expected:?}"));
        }
        self
    }

    /// Asserts stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Run {
        if !self.stdout.contains(needle) {
            self.fail(format_args!("expected stdout to contain {needle:?}"));
        }
        self
    }

    /// Asserts stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Run {
        if !self.stderr.contains(needle) {
            self.fail(format_args!("expected stderr to contain {needle:?}"));
        }
        self
    }

    /// Panics saying what was expected, and showing the whole run.
    #[track_caller]
    fn fail(&self, what: impl fmt::Display) -> ! {
        panic!("{what}, but the run ended so:\n{self}")
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each stream as it was, so a missing last newline shows as the
        // next marker on the same line.
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}--- end ---",
            self.code, self.stdout, self.stderr,
        )
    }
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

/// Runs the `ferry` client binary against `server` with `args`.
pub fn ferry(server: &Server, args: &[&str]) -> Run {
    server.client(args).run()
}

#[test]
fn a_failed_assertion_on_a_run_shows_the_whole_run() {
    let run = Run {
        code: 3,
        stdout: "partial".into(),
        stderr: "ferry: refused\n".into(),
    };
    run.assert_code(3)
        .assert_stdout("partial")
        .assert_stderr_contains("refused");
    let failure = std::panic::catch_unwind(|| {
        run.assert_ok();
    })
    .expect_err("exit 3 is not ok");
    let message = failure.downcast_ref::<String>().expect("a formatted panic");
    assert_eq!(
        message,
        "expected exit code 0, but the run ended so:\nexit code 3\n--- stdout ---\n\
         partial--- stderr ---\nferry: refused\n--- end ---"
    );
}
