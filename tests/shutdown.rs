//! SIGTERM and SIGINT: idle connections are told, requests in flight finish
//! within the drain deadline, the server exits 0, and a new one can take its
//! port at once.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rustix::process::Signal;
use serde_json::json;

use tokio::io::AsyncWriteExt;

use crate::util::{ferry, frame_bytes, LibraryServer, Raw, Server, WireClient, DEADLINE};

const MIB: u64 = 1024 * 1024;

#[test]
fn sigterm_closes_idle_connections_at_once_and_finishes_requests_in_flight() {
    let mut server = Server::start(&["--plaintext"]);
    let mut idle = Raw::hello(&server);
    let mut busy = Raw::hello(&server);

    // More than the server's 256 KiB write buffer, so the reply starts
    // while the request is still coming in.
    let half = 512 * 1024;
    let body: Vec<u8> = (0..2 * half).map(|i| (i % 251) as u8).collect();
    let (go, wait_for_go) = mpsc::channel::<()>();
    let mut writer = busy.try_clone();
    let to_send = body.clone();
    let writer = thread::spawn(move || {
        writer.send_frame(
            &json!({"cmd": "echo", "size": to_send.len()}),
            &to_send[..half],
        );
        wait_for_go.recv().unwrap();
        writer.send(&to_send[half..]);
    });
    let head = busy.next_header(DEADLINE).expect("the echo reply's header");
    assert_eq!(head["ok"], true, "{head:?}");
    assert_eq!(head["size"], body.len(), "{head:?}");

    server.terminate();
    idle.expect_error("shutting_down");
    idle.expect_closed();
    // Nobody new is served.
    let late = ferry(&server, &["--plaintext", "echo", "late"]);
    late.assert_err().assert_stdout("");

    go.send(()).unwrap();
    assert!(
        busy.read_body(body.len()) == body,
        "the reply in flight was not the request's body"
    );
    writer.join().unwrap();
    busy.expect_error("shutting_down");
    busy.expect_closed();
    server.assert_exits_0_within(DEADLINE);
}

/// In-process on a paused clock: the server drains its full second while
/// the test waits for nothing. `Server::run` returning is what lets
/// `ferry serve` exit.
#[tokio::test(start_paused = true)]
async fn a_stalled_request_keeps_the_server_no_longer_than_the_drain_timeout() {
    let drain_timeout = Duration::from_secs(1);
    let server = LibraryServer::start(|config, _| {
        config.plaintext = true;
        config.limits.drain_timeout = drain_timeout;
    })
    .await;
    let mut stalled = WireClient::hello(&server).await;
    // Part of a body, never the rest; enough that the reply has begun, so
    // the request is surely in flight.
    let mut writer = stalled.take_writer();
    let writer = tokio::spawn(async move {
        let mut bytes = frame_bytes(&json!({"cmd": "echo", "size": MIB}), b"");
        bytes.extend(vec![b'z'; 300 * 1024]);
        // Stalls once the server stops reading.
        let _ = writer.write_all(&bytes).await;
    });
    let head = stalled
        .next_header()
        .await
        .expect("the echo reply's header");
    assert_eq!(head["ok"], true, "{head:?}");

    let signalled = tokio::time::Instant::now();
    tokio::time::timeout(DEADLINE, server.stop())
        .await
        .expect("the server stopped within the deadline");
    let took = signalled.elapsed();
    assert!(
        took >= drain_timeout,
        "stopped after {took:?}, without draining"
    );
    // The session still holds the connection: the server's tasks outlive
    // `run` here, where a process would have exited.
    writer.abort();
}

#[test]
fn sigterm_closes_a_connection_that_has_not_said_hello_at_once() {
    let mut server = Server::start(&["--plaintext"]);
    let mut silent = Raw::connect(server.addr());
    server.wait_for_log("connection opened");
    server.terminate();
    // Well under the 10 s hello and drain timeouts: nothing is in flight.
    let frame = silent.next_frame(Duration::from_secs(3));
    assert!(
        matches!(&frame, Ok(f) if f.code() == Some("shutting_down")),
        "3 s after SIGTERM: {frame:?}"
    );
    silent.expect_closed();
    server.assert_exits_0_within(Duration::from_secs(3));
}

#[test]
fn sigint_shuts_down_like_sigterm() {
    let mut server = Server::start(&["--plaintext"]);
    let mut idle = Raw::hello(&server);
    server.signal(Signal::INT);
    idle.expect_error("shutting_down");
    idle.expect_closed();
    server.assert_exits_0_within(DEADLINE);
}

#[test]
fn a_server_restarted_on_the_port_of_one_just_stopped_binds_at_once() {
    let mut first = Server::start(&["--plaintext"]);
    let mut conn = Raw::hello(&first);
    conn.echo("before");
    first.terminate();
    conn.expect_error("shutting_down");
    // The server closed first, so its end of this connection now sits in
    // TIME_WAIT on the port.
    conn.expect_closed();
    drop(conn);
    first.assert_exits_0_within(DEADLINE);

    let addr = first.addr().to_string();
    let second = Server::start_in(&first.sandbox, &["--plaintext", "--listen", &addr]);
    assert_eq!(second.addr(), addr);
    Raw::hello(&second).echo("after");
}
