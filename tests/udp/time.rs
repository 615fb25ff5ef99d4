//! The tutorial's UDP time service and `ferry time`.

use std::net::UdpSocket;

use super::ask;
use crate::util::{Sandbox, Server};

fn time_server() -> Server {
    Server::start(&["--udp-time", "127.0.0.1:0"])
}

fn now_local() -> chrono::DateTime<chrono::Local> {
    chrono::Local::now()
}

#[test]
fn ferry_time_prints_the_servers_local_time_in_the_default_form() {
    let server = time_server();
    let addr = server.service_addr("udp time");
    let before = now_local();
    let run = server.client(&["time", "--server", addr]).run();
    let after = now_local();
    run.assert_ok();
    let printed = run.stdout.trim_end();
    let parsed = chrono::NaiveDateTime::parse_from_str(printed, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|err| panic!("{printed:?}: {err}"));
    let (lo, hi) = (before.naive_local(), after.naive_local());
    assert!(
        parsed >= lo.with_nanosecond_zero() && parsed <= hi,
        "{parsed} not between {lo} and {hi}"
    );
}

trait WithoutNanos {
    fn with_nanosecond_zero(self) -> Self;
}

impl WithoutNanos for chrono::NaiveDateTime {
    fn with_nanosecond_zero(self) -> Self {
        chrono::Timelike::with_nanosecond(&self, 0).unwrap()
    }
}

#[test]
fn a_format_is_answered_in_that_format() {
    let server = time_server();
    let addr = server.service_addr("udp time");
    let run = server.client(&["time", "%Y|%j", "--server", addr]).run();
    run.assert_ok();
    let expected = now_local().format("%Y|%j").to_string();
    assert_eq!(run.stdout.trim_end(), expected);
    // The tutorial's own client: a bare socket, one datagram each way.
    assert_eq!(
        ask(addr, b"%Y"),
        now_local().format("%Y").to_string().as_bytes()
    );
    assert_eq!(ask(addr, b"plain words"), b"plain words");
}

#[test]
fn invalid_formats_and_bytes_get_a_one_line_error() {
    let server = time_server();
    let addr = server.service_addr("udp time");
    for bad in [&b"%"[..], b"%Q", b"100%", b"\xff\xfe%Y"] {
        let reply = ask(addr, bad);
        assert!(reply.starts_with(b"error: "), "{bad:?}: {reply:?}");
        assert!(!reply.contains(&b'\n'), "one line: {reply:?}");
    }
    let run = server.client(&["time", "%Q", "--server", addr]).run();
    assert_eq!(run.code, 1, "the service refused: {run:?}");
    run.assert_stderr_contains("not a valid strftime format");
    assert!(run.stdout.is_empty());
    // The server is still serving.
    assert!(!ask(addr, b"").is_empty());
}

#[test]
fn an_oversized_datagram_is_refused_not_cut() {
    let server = time_server();
    let addr = server.service_addr("udp time");
    let reply = ask(addr, &[b'a'; 2000]);
    let text = String::from_utf8(reply).unwrap();
    assert!(
        text.starts_with("error: the datagram is over 1024 bytes"),
        "{text}"
    );
    assert_eq!(
        ask(addr, &[b'a'; 1024]),
        vec![b'a'; 1024],
        "the cap itself is fine"
    );
}

#[test]
fn ferry_time_without_a_server_fails_clearly_after_its_tries() {
    let sandbox = Sandbox::new();
    // A port with a socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let run = crate::util::Invocation::new(
        &sandbox,
        &["time", "--server", &addr, "--tries", "2", "--wait", "0.2"],
    )
    .run();
    run.assert_code(3)
        .assert_stderr_contains("no reply from")
        .assert_stderr_contains("hint:");
}

#[test]
fn server_on_the_command_line_wins_over_ferry_server() {
    let server = time_server();
    let addr = server.service_addr("udp time");
    // FERRY_SERVER names the framed server; here it points nowhere.
    let run = server
        .client(&["--server", addr, "time"])
        .env("FERRY_SERVER", "127.0.0.1:1")
        .run();
    run.assert_ok();
    assert!(!run.stdout.trim().is_empty());
}

#[test]
fn a_taken_time_port_stops_the_server_with_a_way_out() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let sandbox = Sandbox::new();
    let state = sandbox.path().join("state");
    let root = sandbox.path().join("root");
    let run = crate::util::Invocation::new(
        &sandbox,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--udp-time",
            &addr,
            "--state",
            state.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    )
    .run();
    run.assert_err()
        .assert_stderr_contains("--no-udp-time")
        .assert_stderr_contains(&addr);
}
