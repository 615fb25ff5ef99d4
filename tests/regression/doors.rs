//! The server's doors and lifetime: shutdown that always finishes, logging
//! that never stops the server, token-less listeners that cannot starve
//! token holders, and work that stops when its client leaves.

use std::io::Write;
use std::time::Duration;

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

use crate::util::{ferry, Sandbox, Server, DEADLINE};

/// `--drain-timeout` for the shutdown tests, and the most their shutdown
/// may then take: the drain timeout plus a second.
const DRAIN_SECS: &str = "1";
const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);

#[test]
fn a_server_whose_stderr_reader_left_keeps_serving_and_stops_on_sigterm() {
    let (reader, writer) = std::io::pipe().unwrap();
    // A UDP service too: its thread must see the shutdown.
    let args = [
        "--plaintext",
        "--drain-timeout",
        DRAIN_SECS,
        "--udp-echo",
        "127.0.0.1:0",
    ];
    let mut server = Server::start_with_stderr(&Sandbox::new(), &args, writer.into());
    // `ferry serve 2>&1 | tee log`, and tee dies first: every log line
    // from now on meets EPIPE.
    drop(reader);
    let first = ferry(&server, &["--plaintext", "echo", "one"]);
    let second = ferry(&server, &["--plaintext", "echo", "two"]);
    for (run, text) in [(first, "one\n"), (second, "two\n")] {
        assert_eq!((run.code, run.stdout.as_str()), (0, text), "{run:?}");
    }
    server.terminate();
    server.assert_exits_0_within(SHUTDOWN_BOUND);
}

#[test]
fn a_stderr_nobody_reads_neither_stalls_the_server_nor_its_shutdown() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    // `ferry serve 2>&1 | less`, and nobody scrolls: the pipe is full
    // before the server writes a line. Filled without blocking, then made
    // blocking again, as the server would find it.
    let flags = fcntl_getfl(&writer).unwrap();
    fcntl_setfl(&writer, flags | OFlags::NONBLOCK).unwrap();
    while writer.write(&[b'.'; 4096]).is_ok() {}
    fcntl_setfl(&writer, flags).unwrap();
    let args = ["--plaintext", "--drain-timeout", DRAIN_SECS];
    let mut server = Server::start_with_stderr(&Sandbox::new(), &args, writer.into());
    let run = server
        .client(&["--plaintext", "echo", "still here"])
        .output_within(DEADLINE);
    assert_eq!(
        (run.code, run.stdout.as_slice()),
        (0, &b"still here\n"[..]),
        "{run:?}"
    );
    server.terminate();
    server.assert_exits_0_within(SHUTDOWN_BOUND);
    drop(reader);
}
