//! `ferry serve --seed-compat-udp`: the tutorial's UDP ssh client
//! (`compat/tutorial_udp_ssh.py`, as the tutorial writes it) against the
//! real server, and what the service refuses, cuts and kills, from a plain
//! Rust socket.

use std::net::UdpSocket;
use std::time::Duration;

use super::{python_fed, scripts_dir};
use crate::util::{poll_until, Sandbox, Server, DEADLINE};

/// The mode the service's `listening` line names.
const MODE: &str = "seed-compat udp, no token";

/// What a second command from a source whose command runs gets.
const BUSY: &[u8] = b"ferry: your last command still runs; this one was not run";

/// A server with the UDP command service on a loopback port, plus `args`.
fn udp_ssh_server(args: &[&str]) -> Server {
    let mut full = vec!["--seed-compat-udp", "127.0.0.1:0", "--allow-exec"];
    full.extend_from_slice(args);
    Server::start(&full)
}

/// A plain UDP socket, as the tutorial's client has, every read under
/// [`DEADLINE`].
fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket
}

/// Sends `command` from `socket` to the service.
fn send(server: &Server, socket: &UdpSocket, command: &str) {
    socket
        .send_to(command.as_bytes(), server.service_addr(MODE))
        .unwrap();
}

/// The next `count` datagrams `socket` receives, read with a buffer far
/// larger than 1024 so that an oversize one would show.
fn receive(socket: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65_536];
    (0..count)
        .map(|i| {
            let (len, _) = socket
                .recv_from(&mut buf)
                .unwrap_or_else(|err| panic!("datagram {i} of {count}: {err}"));
            buf[..len].to_vec()
        })
        .collect()
}

/// Decodes the `b'...'` a Python `print(data)` shows.
fn python_bytes(shown: &str) -> Vec<u8> {
    let quote = shown.as_bytes()[1];
    let inner = &shown.as_bytes()[2..shown.len() - 1];
    assert_eq!(shown.as_bytes()[shown.len() - 1], quote, "{shown}");
    let mut out = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        if inner[i] != b'\\' {
            out.push(inner[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match inner[i + 1] {
            b'n' => (b'\n', 2),
            b'r' => (b'\r', 2),
            b't' => (b'\t', 2),
            b'x' => {
                let hex = std::str::from_utf8(&inner[i + 2..i + 4]).unwrap();
                (u8::from_str_radix(hex, 16).unwrap(), 4)
            }
            other => (other, 2),
        };
        out.push(byte);
        i += used;
    }
    out
}

#[test]
fn the_tutorials_udp_client_gets_stderr_then_stdout_in_1024_byte_datagrams() {
    let server = udp_ssh_server(&[]);
    let (host, port) = server.service_addr(MODE).rsplit_once(':').unwrap();
    // 1500 bytes of stderr, then 5005 of stdout: 2 and 5 datagrams. The
    // client reads one datagram per line, so six lines of `true` after the
    // command read the rest of its output.
    let command = "head -c 1500 /dev/zero | tr '\\0' e >&2; seq 1000 2000";
    let input = format!("{command}\n{}", "true\n".repeat(6));
    let script = scripts_dir().join("tutorial_udp_ssh.py");
    let dir = tempfile::tempdir().unwrap();
    let run = python_fed(
        dir.path(),
        &[script.to_str().unwrap(), host, port],
        &[],
        input.as_bytes(),
    );
    // The tutorial's loop ends only when its input does.
    assert!(run.stderr.contains("EOFError"), "{}", run.stderr);
    let shown_from = format!(" ('{host}', {port})");
    let datagrams: Vec<Vec<u8>> = run
        .stdout
        .split(">>: ")
        .filter(|shown| !shown.is_empty())
        .map(|shown| {
            let shown = shown.trim_end_matches('\n');
            let data = shown
                .strip_suffix(&shown_from)
                .unwrap_or_else(|| panic!("not from the service: {shown:?}"));
            python_bytes(data)
        })
        .collect();
    let sizes: Vec<usize> = datagrams.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1024, 476, 1024, 1024, 1024, 1024, 909]);
    assert_eq!(datagrams[..2].concat(), vec![b'e'; 1500]);
    let seq: String = (1000..=2000).map(|n| format!("{n}\n")).collect();
    assert_eq!(datagrams[2..].concat(), seq.into_bytes());
    server.wait_for_log("udp exec command");
}

#[test]
fn a_command_that_never_ends_is_killed_at_the_request_timeout() {
    let server = udp_ssh_server(&["--request-timeout", "1"]);
    let socket = client();
    send(
        &server,
        &socket,
        "echo $$ > pid; echo started; exec sleep 60",
    );
    let reply = receive(&socket, 3);
    assert_eq!(reply[0], b"", "no stderr");
    assert_eq!(reply[1], b"started\n");
    let marker = String::from_utf8(reply[2].clone()).unwrap();
    assert!(
        marker.contains("did not finish within 1s (--request-timeout) and was killed"),
        "{marker}"
    );
    let pid = std::fs::read_to_string(server.root().join("pid")).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    poll_until(
        "the command to be gone",
        DEADLINE,
        || match std::fs::read_to_string(&stat) {
            Err(_) => Some(()),
            Ok(s) if s.split_whitespace().nth(2) == Some("Z") => Some(()),
            Ok(_) => None,
        },
    );
}

#[test]
fn a_source_runs_one_command_at_a_time_and_others_are_not_held() {
    let server = udp_ssh_server(&[]);
    let first = client();
    send(
        &server,
        &first,
        "while [ ! -e go ]; do sleep 0.01; done; echo one",
    );
    // Sent after the first, from the same socket: refused, not queued.
    send(&server, &first, "echo two");
    assert_eq!(receive(&first, 1), [BUSY]);
    // Another source runs meanwhile.
    let other = client();
    send(&server, &other, "echo other");
    assert_eq!(receive(&other, 2), [&b""[..], b"other\n"]);
    std::fs::write(server.root().join("go"), "").unwrap();
    assert_eq!(receive(&first, 2), [&b""[..], b"one\n"]);
    send(&server, &first, "echo two");
    assert_eq!(receive(&first, 2), [&b""[..], b"two\n"]);
}

#[test]
fn output_past_the_budget_is_cut_with_a_marker_and_the_budget_holds() {
    let server = udp_ssh_server(&[]);
    let socket = client();
    // 200 KB of output: the command is killed past 64 KiB, and 64
    // datagrams go: stderr's empty one, 62 of output, the marker.
    send(&server, &socket, "head -c 200000 /dev/zero");
    let reply = receive(&socket, 64);
    assert_eq!(reply[0], b"");
    for datagram in &reply[1..63] {
        assert_eq!(datagram, &vec![0u8; 1024]);
    }
    let marker = String::from_utf8(reply[63].clone()).unwrap();
    assert!(
        marker.starts_with("ferry: output cut here and the command was killed"),
        "{marker}"
    );
    // The budget is spent, and refills one datagram per 156 ms: a
    // 31-datagram answer a moment later (an empty budget sends nothing at
    // all) is cut short, with the marker last.
    std::thread::sleep(Duration::from_millis(400));
    send(&server, &socket, "head -c 30000 /dev/zero");
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    loop {
        let (len, _) = socket.recv_from(&mut buf).expect("the cut reply's marker");
        got.push(buf[..len].to_vec());
        if buf[..len].starts_with(b"ferry: output cut here") {
            break;
        }
        assert!(
            got.len() < 31,
            "the whole answer came: the budget did not hold"
        );
    }
    assert!(!got
        .last()
        .unwrap()
        .starts_with(b"ferry: output cut here and"));
    assert!(got.len() < 31, "{} datagrams", got.len());
}

#[test]
fn shutdown_kills_a_running_command_and_finishes() {
    let mut server = udp_ssh_server(&[]);
    let socket = client();
    send(&server, &socket, "echo $$ > pid; exec sleep 60");
    let pid_file = server.root().join("pid");
    let pid = poll_until("the command to start", DEADLINE, || {
        let text = std::fs::read_to_string(&pid_file).ok()?;
        text.ends_with('\n').then(|| text.trim().to_string())
    });
    server.stop();
    let stat = format!("/proc/{pid}/stat");
    poll_until(
        "the command to be gone",
        DEADLINE,
        || match std::fs::read_to_string(&stat) {
            Err(_) => Some(()),
            Ok(s) if s.split_whitespace().nth(2) == Some("Z") => Some(()),
            Ok(_) => None,
        },
    );
}

/// `ferry serve ARGS` that must fail to start: its exit code and stderr.
fn serve_refused(args: &[&str]) -> (Option<i32>, String) {
    let sandbox = Sandbox::new();
    let state = sandbox.path().join("state");
    let mut full = vec![
        "serve",
        "--state",
        state.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-udp-time",
    ];
    full.extend_from_slice(args);
    let output = sandbox.command(&full).output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn the_service_needs_allow_exec_and_loopback() {
    let (code, stderr) = serve_refused(&["--seed-compat-udp", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--seed-compat-udp"), "{stderr}");
    assert!(stderr.contains("add --allow-exec"), "{stderr}");
    // 192.0.2.1 (TEST-NET-1) is on no interface: never exposed.
    let remote = ["--seed-compat-udp", "192.0.2.1:0", "--allow-exec"];
    let (code, stderr) = serve_refused(&remote);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--seed-compat-udp"), "{stderr}");
    assert!(stderr.contains("instead of 192.0.2.1:0"), "{stderr}");
    assert!(stderr.contains("--allow-remote-plaintext"), "{stderr}");
    let (code, stderr) = serve_refused(&[&remote[..], &["--allow-remote-plaintext"]].concat());
    assert_eq!(code, Some(1), "past the checks, it cannot bind: {stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[test]
fn python_bytes_are_decoded_as_python_shows_them() {
    assert_eq!(python_bytes(r"b'a\n\x00\\'"), b"a\n\x00\\");
    assert_eq!(python_bytes(r#"b"it's""#), b"it's");
}
