//! Spawning a command in its own process group, and ending the whole group.
//! A command's children inherit the group, so killing the group leaves no
//! orphan running when the client leaves or the timeout passes.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A command line for the server's shell (`sh -c`).
    Shell(String),
    /// A program and its arguments, run directly.
    Argv(Vec<String>),
}

/// Starts `program` in `cwd` with extra `env`, in a new process group, with
/// piped stdin, stdout and stderr.
pub fn spawn(program: &Program, cwd: &Path, env: &BTreeMap<String, String>) -> io::Result<Child> {
    let mut command = match program {
        Program::Shell(line) => {
            let mut command = Command::new("sh");
            command.arg("-c").arg(line);
            command
        }
        Program::Argv(argv) => {
            let (first, rest) = argv
                .split_first()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
            let mut command = Command::new(first);
            command.args(rest);
            command
        }
    };
    command
        .current_dir(cwd)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // If this task is dropped without reaping (a panic), the leader at
        // least dies; the group is killed explicitly everywhere else.
        .kill_on_drop(true);
    command.spawn()
}

/// Sends SIGKILL to the command's whole process group.
pub fn kill_group(child: &Child) {
    if let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Kills a command's process group when dropped, unless disarmed: a task
/// dropped without finishing (the server's drain deadline passed) must not
/// leave the command and its children running.
#[derive(Debug)]
pub struct GroupGuard {
    group: Option<rustix::process::Pid>,
}

impl GroupGuard {
    /// Guards `child`'s process group (the child leads it).
    pub fn new(child: &Child) -> GroupGuard {
        GroupGuard {
            group: child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
        }
    }

    /// The command ended in order: leave its group alone.
    pub fn disarm(mut self) {
        self.group = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

/// A running command with the guard on its process group: what every
/// child side (pipes, PTY) holds, so killing, reaping and disarming are
/// written once.
#[derive(Debug)]
pub struct GuardedChild {
    child: Child,
    guard: Option<GroupGuard>,
}

impl GuardedChild {
    /// Guards `child`, which leads its own process group.
    pub fn new(child: Child) -> GuardedChild {
        let guard = GroupGuard::new(&child);
        GuardedChild {
            child,
            guard: Some(guard),
        }
    }

    /// Waits for the command to exit.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// Sends SIGKILL to the command's whole process group.
    pub fn kill_group(&self) {
        kill_group(&self.child);
    }

    /// The command ended in order: leave its group alone when dropped.
    pub fn disarm(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.disarm();
        }
    }
}

/// An exit status as the protocol reports it: the code, or the signal.
pub fn describe(status: std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    (status.code(), status.signal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn killing_the_group_ends_grandchildren_too() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        // The shell starts a background sleeper and records its pid.
        let line = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let mut child = spawn(&Program::Shell(line), dir.path(), &BTreeMap::new()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no grandchild started"
            );
            tokio::task::yield_now().await;
        }
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        kill_group(&child);
        let status = child.wait().await.unwrap();
        assert_eq!(describe(status).1, Some(9));
        // The grandchild is gone (or a zombie about to be reaped by init).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat"));
            match stat {
                Err(_) => break,
                Ok(s) if s.split_whitespace().nth(2) == Some("Z") => break,
                Ok(_) => {
                    assert!(std::time::Instant::now() < deadline, "grandchild survived");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn argv_runs_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let argv = vec!["echo".to_string(), "$HOME; rm -rf /".to_string()];
        let child = spawn(&Program::Argv(argv), dir.path(), &BTreeMap::new()).unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(out.stdout, b"$HOME; rm -rf /\n");
    }
}
