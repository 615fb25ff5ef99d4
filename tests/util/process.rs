//! A child process with a deadline on every wait, and no way to outlive the
//! test that started it.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal};

/// Reads `out` to its end on a thread of its own, so a pipe never fills
/// and blocks the process writing it.
pub fn read_all_in_background(mut out: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        bytes
    })
}

/// What a finished process wrote, as text.
#[derive(Debug)]
pub struct Collected {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
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

    /// Reads the piped stdout and stderr to their ends and waits up to
    /// `within` for the exit. A process still running then is killed, and
    /// `Err` holds what it wrote to stdout.
    pub fn collect_within(&mut self, within: Duration) -> Result<Collected, String> {
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        let stdout = read_all_in_background(self.take_stdout().expect("stdout piped"));
        let stderr = read_all_in_background(self.take_stderr().expect("stderr piped"));
        let Some(status) = self.wait_within(within) else {
            self.signal(Signal::KILL);
            let _ = self.wait_within(within);
            return Err(text(stdout.join().unwrap()));
        };
        Ok(Collected {
            status,
            stdout: text(stdout.join().unwrap()),
            stderr: text(stderr.join().unwrap()),
        })
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
