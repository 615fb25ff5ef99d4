//! The chat hub against the real binary: `ferry chat` clients talking to
//! each other, the interactive client, the UDP gateway with a plain socket,
//! and the hub's limits (names, slow readers, silent clients, many
//! clients).

pub(crate) mod gateway;
mod hub;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::util::{Process, Run, Server, DEADLINE};

/// A `ferry chat --listen` client, its stdout lines read in the background.
pub struct Listener {
    _process: Process,
    lines: mpsc::Receiver<String>,
}

impl Listener {
    /// Starts `ferry chat --name NAME --listen [extra]` and waits until it
    /// is in the chat.
    pub fn start(server: &Server, name: &str, extra: &[&str]) -> Listener {
        let mut args = vec!["--plaintext", "chat", "--name", name, "--listen"];
        args.extend_from_slice(extra);
        let mut process = server
            .client(&args)
            .spawn_with(Stdio::null(), Stdio::piped());
        let stdout = process.take_stdout().expect("piped stdout");
        let stderr = process.take_stderr().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The client says on stderr when it is in.
        let (ready_tx, ready) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[chat listener] {line}");
                if line.starts_with("* you are") {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready.recv_timeout(DEADLINE).expect("the listener joined");
        Listener {
            _process: process,
            lines,
        }
    }

    /// Waits for a line that `matches`, skipping others; panics after the
    /// deadline, listing what came.
    #[track_caller]
    pub fn expect(&self, matches: impl Fn(&str) -> bool) -> String {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) if matches(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no such line; saw {seen:?}"),
            }
        }
    }
}

/// A plaintext server for chat tests, with `extra` flags.
pub fn chat_server(extra: &[&str]) -> Server {
    let mut args = vec!["--plaintext"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// `ferry --plaintext chat ARGS` against `server`, to its end.
pub fn chat(server: &Server, args: &[&str]) -> Run {
    chat_with_input(server, args, "")
}

/// [`chat`] with `input` on its stdin.
pub fn chat_with_input(server: &Server, args: &[&str], input: impl Into<Vec<u8>>) -> Run {
    let mut full = vec!["--plaintext", "chat"];
    full.extend_from_slice(args);
    server.client(&full).stdin(input).run()
}
