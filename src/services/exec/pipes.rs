//! A command on pipes, as `exec` runs it: stdout and stderr read
//! concurrently (a chatty stderr cannot deadlock the command), stdin
//! written without ever blocking them, the whole process group killed when
//! it must end early.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

use super::process::{self, GuardedChild, Program};
use super::read_chunk;
use super::relay::{ChildEvent, ChildSide};
use crate::limits::PIPE_READ_BYTES;

/// A running command and its three pipes; each is `None` once closed.
#[derive(Debug)]
pub(crate) struct Pipes {
    child: GuardedChild,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    out_buf: BytesMut,
    err_buf: BytesMut,
    exited: bool,
}

impl Pipes {
    /// Starts `program` in its own process group (see [`process::spawn`]);
    /// the group is killed if this is dropped before the command ended in
    /// order.
    pub(crate) fn spawn(
        program: &Program,
        cwd: &Path,
        env: &BTreeMap<String, String>,
    ) -> io::Result<Pipes> {
        let mut child = process::spawn(program, cwd, env)?;
        Ok(Pipes {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child: GuardedChild::new(child),
            out_buf: BytesMut::with_capacity(PIPE_READ_BYTES),
            err_buf: BytesMut::with_capacity(PIPE_READ_BYTES),
            exited: false,
        })
    }
}

impl ChildSide for Pipes {
    fn output_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some()
    }

    fn input_open(&self) -> bool {
        self.stdin.is_some()
    }

    async fn next(&mut self, input: &mut Option<Bytes>) -> io::Result<ChildEvent> {
        tokio::select! {
            read = read_chunk(&mut self.stdout, &mut self.out_buf), if self.stdout.is_some() => {
                match read {
                    Some(bytes) => Ok(ChildEvent::Output("stdout", bytes)),
                    None => {
                        self.stdout = None;
                        Ok(ChildEvent::OutputClosed)
                    }
                }
            }
            read = read_chunk(&mut self.stderr, &mut self.err_buf), if self.stderr.is_some() => {
                match read {
                    Some(bytes) => Ok(ChildEvent::Output("stderr", bytes)),
                    None => {
                        self.stderr = None;
                        Ok(ChildEvent::OutputClosed)
                    }
                }
            }
            exited = self.child.wait(), if !self.exited => {
                let status = exited?;
                self.exited = true;
                Ok(ChildEvent::Exited(status))
            }
            written = write_stdin(&mut self.stdin, input), if input.is_some() => {
                if written.is_err() {
                    self.stdin = None;
                }
                Ok(ChildEvent::Input(written))
            }
            else => std::future::pending().await,
        }
    }

    fn end_input(&mut self) {
        self.stdin = None; // closes the command's stdin
    }

    fn resize(&mut self, _rows: u16, _cols: u16) {}

    fn hang_up(&mut self) {
        self.stdin = None;
        self.stdout = None;
        self.stderr = None;
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

/// Writes what it can of `pending` to the command's stdin, keeping the
/// rest; drops it when stdin is closed.
async fn write_stdin(
    stdin: &mut Option<ChildStdin>,
    pending: &mut Option<Bytes>,
) -> io::Result<()> {
    let (Some(pipe), Some(bytes)) = (stdin.as_mut(), pending.as_mut()) else {
        *pending = None;
        return Ok(());
    };
    let n = pipe.write(bytes).await?;
    if n == bytes.len() {
        *pending = None;
    } else {
        let _ = bytes.split_to(n);
    }
    Ok(())
}
