//! A text command run as the tutorial's "ssh with a header" server runs it:
//! `sh -c` in the root with the server's environment, then one reply of
//! stdout followed by stderr.
//!
//! The header comes first and carries `total_size`, so the whole output
//! must be read before anything is sent. It is held in memory up to
//! [`MAX_COMPAT_OUTPUT_BYTES`]; past that the command is killed and the
//! client told why. The command must finish within the request timeout
//! (the format sends nothing until it has), holds a command slot until its
//! reply is sent, and its process group is killed if the client leaves.
//! Spawning, process groups and reading pipes are `services::exec`'s
//! ([`Pipes`]).

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use super::{request, SeedEnd, Session};
use crate::limits::MAX_COMPAT_OUTPUT_BYTES;
use crate::log::peer_text;
use crate::services::exec::process::Program;
use crate::services::exec::{admit, ChildEvent, ChildSide, Pipes};

/// How a command's run ended, before the reply.
enum Ran {
    /// It exited (or was killed by a signal) with this output.
    Done { stdout: Vec<u8>, stderr: Vec<u8> },
    /// ferry stopped it; the client gets this message instead.
    Stopped(String),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    pub(super) async fn exec(&mut self, command: &str, started: Instant) -> Result<(), SeedEnd> {
        let peer = self.peer;
        let _slot = match admit(self.context) {
            Ok(slot) => slot,
            Err(refusal) => {
                warn!(%peer, command = %peer_text(command), "seed-compat command refused: {}", refusal.message);
                let message = format!("ferry: {}\n", refusal.message);
                return self.send_error_output(command, &message).await;
            }
        };
        let ran = self.run(command).await?;
        let (stdout, stderr) = match ran {
            Ran::Done { stdout, stderr } => (stdout, stderr),
            Ran::Stopped(message) => {
                warn!(%peer, command = %peer_text(command), "seed-compat command stopped: {}", message.trim_end());
                return self.send_error_output(command, &message).await;
            }
        };
        let total = (stdout.len() + stderr.len()) as u64;
        let md5 = {
            use md5::Digest;
            let mut hasher = md5::Md5::new();
            hasher.update(&stdout);
            hasher.update(&stderr);
            request::hex(&hasher.finalize())
        };
        self.send(&request::output_head(command, &md5, total, None))
            .await?;
        self.send(&stdout).await?;
        self.send(&stderr).await?;
        self.stream.flush().await.map_err(SeedEnd::Gone)?;
        info!(
            %peer,
            command = %peer_text(command),
            bytes = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "seed-compat command"
        );
        Ok(())
    }

    /// Runs the command to its end, collecting its output, while watching
    /// the connection: a client that leaves gets its command killed.
    async fn run(&mut self, command: &str) -> Result<Ran, SeedEnd> {
        let root = self.context.root_path.clone();
        let mut child = match Pipes::spawn(&Program::Shell(command.into()), &root, &BTreeMap::new())
        {
            Ok(child) => child,
            Err(err) => return Ok(Ran::Stopped(format!("ferry: cannot run sh: {err}\n"))),
        };
        // The tutorial's commands read no input: stdin is closed at once.
        child.end_input();
        let mut no_input = None;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let timeout = self.limits.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut status = None;
        let mut stopped = None;
        while (child.output_open() || status.is_none()) && !(stopped.is_some() && status.is_some())
        {
            tokio::select! {
                event = child.next(&mut no_input) => match event.map_err(SeedEnd::Gone)? {
                    ChildEvent::Output("stdout", bytes) => stdout.extend_from_slice(&bytes),
                    ChildEvent::Output(_, bytes) => stderr.extend_from_slice(&bytes),
                    ChildEvent::Exited(exited) => status = Some(exited),
                    ChildEvent::OutputClosed | ChildEvent::Input(_) => {}
                },
                _ = tokio::time::sleep_until(deadline), if stopped.is_none() => {
                    child.kill();
                    child.hang_up();
                    stopped = Some(format!(
                        "ferry: the command did not finish within {timeout:?} (--request-timeout) \
                         and was killed; this format sends nothing until a command ends, so use \
                         `ferry exec` for long commands\n"
                    ));
                }
                read = self.read_more() => {
                    // Bytes sent ahead are kept for the next request; the
                    // end of the stream means the client is gone.
                    if !matches!(read, Ok(n) if n > 0) {
                        child.kill();
                        child.reap().await;
                        let err = read.err().unwrap_or_else(|| std::io::ErrorKind::UnexpectedEof.into());
                        return Err(SeedEnd::Gone(err));
                    }
                }
            }
            if stopped.is_none() && stdout.len() + stderr.len() > MAX_COMPAT_OUTPUT_BYTES {
                child.kill();
                stopped = Some(format!(
                    "ferry: the command's output passed the cap of {} MiB and was dropped; \
                     redirect it to a file and `get` it, or use `ferry exec`, which streams\n",
                    MAX_COMPAT_OUTPUT_BYTES >> 20
                ));
                stdout = Vec::new();
                stderr = Vec::new();
                child.hang_up();
            }
        }
        child.disarm();
        Ok(match stopped {
            Some(message) => Ran::Stopped(message),
            None => Ran::Done { stdout, stderr },
        })
    }
}
