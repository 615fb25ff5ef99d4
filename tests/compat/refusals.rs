//! What the seed-compat listener refuses: commands without `--allow-exec`,
//! paths that leave the root (aimed only at victim files this test creates
//! beside the root), oversize headers and outputs, commands past their
//! time, and any address that is not loopback.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;

use serde_json::{json, Value};

use super::{b64, compat_addr, compat_server, tutorial};
use crate::util::{Invocation, Sandbox, Server, DEADLINE};

/// A raw connection to the seed-compat listener, every read under a
/// deadline.
fn connect(server: &Server) -> TcpStream {
    let (host, port) = compat_addr(server);
    let stream = TcpStream::connect(format!("{host}:{port}")).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// A put frame as the tutorial's client builds it.
fn put_frame(filename: &str, data: &[u8]) -> Vec<u8> {
    let header = json!({"cmd": "put", "filename": filename, "filesize": data.len()}).to_string();
    let mut frame = (header.len() as i32).to_le_bytes().to_vec();
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(data);
    frame
}

/// Reads one reply: its header, then as many bytes as it announces.
fn read_reply(stream: &mut TcpStream) -> (Value, Vec<u8>) {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut header).unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    let size = header
        .get("total_size")
        .or_else(|| header.get("file_size"))
        .and_then(Value::as_u64)
        .unwrap();
    let mut data = vec![0u8; size as usize];
    stream.read_exact(&mut data).unwrap();
    (header, data)
}

/// Asserts that the server closed the connection: a read ends (or is reset)
/// instead of timing out.
#[track_caller]
fn assert_closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the connection is still open: {other:?}"),
    }
}

/// `outside/victim` beside the root, and links in the root that lead to it.
fn victims(server: &Server) -> std::path::PathBuf {
    let outside = server.sandbox.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("victim");
    fs::write(&victim, b"precious").unwrap();
    symlink(&victim, server.root().join("link")).unwrap();
    symlink(&outside, server.root().join("dirlink")).unwrap();
    victim
}

#[test]
fn commands_without_allow_exec_get_an_error_in_the_tutorials_format() {
    let server = compat_server(&[]);
    let results = tutorial(
        &server,
        server.sandbox.path(),
        &["ssh:touch pwned", "ssh:ls"],
    );
    for result in &results {
        let output = String::from_utf8(b64(&result["output"])).unwrap();
        assert!(output.contains("--allow-exec"), "{output}");
        assert_eq!(result["header"]["total_size"], output.len());
        assert_eq!(result["header"]["md5"], result["md5"]);
        assert!(result["header"]["error"].is_string());
    }
    assert!(!server.root().join("pwned").exists());
    assert!(!server.sandbox.path().join("pwned").exists());
    server.wait_for_log_lines("seed-compat command refused", 2);
}

#[test]
fn get_refuses_paths_that_leave_the_root_and_the_connection_goes_on() {
    let server = compat_server(&[]);
    let victim = victims(&server);
    fs::write(server.root().join("ok.txt"), b"fine").unwrap();
    let mkfifo = std::process::Command::new("mkfifo")
        .arg(server.root().join("fifo"))
        .status()
        .unwrap();
    assert!(mkfifo.success());
    let mut stream = connect(&server);
    let absolute = format!("get {}", victim.display());
    for request in [
        "get ../outside/victim",
        absolute.as_str(),
        "get link",
        "get dirlink/victim",
        "get .",
        "get fifo",
        "get",
    ] {
        stream.write_all(request.as_bytes()).unwrap();
        let (header, data) = read_reply(&mut stream);
        assert_eq!(header["file_size"], 0, "{request}: {header}");
        assert!(header["error"].is_string(), "{request}: {header}");
        assert!(data.is_empty());
    }
    stream.write_all(b"get ok.txt").unwrap();
    let (header, data) = read_reply(&mut stream);
    assert_eq!(data, b"fine", "{header}");
    server.wait_for_log_lines("seed-compat get refused", 7);
}

#[test]
fn put_frames_that_leave_the_root_store_nothing_and_close() {
    let server = compat_server(&[]);
    let victim = victims(&server);
    let absolute = victim.display().to_string();
    for filename in [
        "../outside/victim",
        absolute.as_str(),
        "dirlink/victim",
        "",
        ".ferry-partial-0123",
    ] {
        let mut stream = connect(&server);
        // The server may close before the data is all sent.
        let _ = stream.write_all(&put_frame(filename, b"overwritten"));
        assert_closed(&mut stream);
        assert_eq!(fs::read(&victim).unwrap(), b"precious", "{filename:?}");
    }
    // A link in the root is replaced by the new file, never written through.
    let mut stream = connect(&server);
    stream.write_all(&put_frame("link", b"new")).unwrap();
    stream.write_all(b"get link").unwrap();
    assert_eq!(read_reply(&mut stream).1, b"new");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(!fs::symlink_metadata(server.root().join("link"))
        .unwrap()
        .is_symlink());
    server.wait_for_log_lines("seed-compat put failed", 5);
}

#[test]
fn a_put_cut_short_leaves_nothing_behind() {
    let server = compat_server(&[]);
    let mut stream = connect(&server);
    let frame = put_frame("half.bin", &[7u8; 100_000]);
    stream.write_all(&frame[..50_000]).unwrap();
    drop(stream);
    server.wait_for_log("seed-compat put failed");
    let names: Vec<_> = fs::read_dir(server.root()).unwrap().collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn oversize_and_malformed_headers_close_the_connection() {
    let server = compat_server(&[]);
    let bad_frames: Vec<Vec<u8>> = vec![
        // Over the 64 KiB header cap: refused before anything is read.
        70_000i32.to_le_bytes().to_vec(),
        i32::MIN.to_le_bytes().to_vec(),
        put_frame_with_header(br#"{"cmd": "get", "filename": "x"}"#),
        put_frame_with_header(b"not json"),
        put_frame_with_header(br#"{"cmd": "put", "filename": "x", "filesize": -1}"#),
    ];
    for frame in &bad_frames {
        let mut stream = connect(&server);
        stream.write_all(frame).unwrap();
        assert_closed(&mut stream);
    }
    let line = server.wait_for_log("over the cap of 65536");
    assert!(line.contains("70000"), "{line}");
    assert!(fs::read_dir(server.root()).unwrap().next().is_none());
}

fn put_frame_with_header(header: &[u8]) -> Vec<u8> {
    let mut frame = (header.len() as i32).to_le_bytes().to_vec();
    frame.extend_from_slice(header);
    frame
}

#[test]
fn output_over_the_cap_is_dropped_with_a_message() {
    let server = compat_server(&["--allow-exec"]);
    let results = tutorial(
        &server,
        server.sandbox.path(),
        &["ssh:head -c 9000000 /dev/zero", "ssh:echo still here"],
    );
    let output = String::from_utf8(b64(&results[0]["output"])).unwrap();
    assert!(output.contains("cap of 8 MiB"), "{output}");
    assert_eq!(b64(&results[1]["output"]), b"still here\n");
}

#[test]
fn a_command_past_the_request_timeout_is_killed_and_reported() {
    let server = compat_server(&["--allow-exec", "--request-timeout", "1"]);
    let pidfile = server.sandbox.path().join("sleeper.pid");
    let command = format!("ssh:sleep 60 & echo $! > {}; wait", pidfile.display());
    let results = tutorial(&server, server.sandbox.path(), &[&command]);
    let output = String::from_utf8(b64(&results[0]["output"])).unwrap();
    assert!(output.contains("did not finish within"), "{output}");
    let pid = fs::read_to_string(&pidfile).unwrap();
    let pid: i32 = pid.trim().parse().unwrap();
    // The whole group was killed: the background sleeper too.
    crate::util::poll_until("the sleeper to die", DEADLINE, || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"));
        match stat {
            Err(_) => Some(()),
            Ok(s) if s.split_whitespace().nth(2) == Some("Z") => Some(()),
            Ok(_) => None,
        }
    });
}

#[test]
fn seed_compat_on_a_non_loopback_address_is_refused_at_startup() {
    let sandbox = Sandbox::new();
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let state = sandbox.path().join("state");
        let run = Invocation::new(
            &sandbox,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--state",
                state.to_str().unwrap(),
                "--seed-compat",
                addr,
            ],
        )
        .run();
        run.assert_code(2)
            .assert_stderr_contains("listens on loopback only");
        assert!(!run.stdout.contains("listening"), "{run:?}");
    }
}

#[test]
fn allow_exec_with_seed_compat_warns_at_start() {
    let server = compat_server(&["--allow-exec"]);
    server.wait_for_log("any local user can run commands");
    let quiet = compat_server(&[]);
    assert_eq!(quiet.listening().len(), 2);
    assert!(!quiet
        .log()
        .iter()
        .any(|l| l.contains("any local user can run commands")));
}

#[test]
fn a_client_that_leaves_kills_its_command() {
    let server = compat_server(&["--allow-exec"]);
    let pidfile = server.sandbox.path().join("sleeper.pid");
    let mut stream = connect(&server);
    let command = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    stream.write_all(command.as_bytes()).unwrap();
    let pid: i32 = crate::util::poll_until("the command to start", DEADLINE, || {
        fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    drop(stream);
    crate::util::poll_until(
        "the sleeper to die",
        DEADLINE,
        || match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => Some(()),
            Ok(s) if s.split_whitespace().nth(2) == Some("Z") => Some(()),
            Ok(_) => None,
        },
    );
    server.wait_for_log("seed-compat connection closed");
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = compat_server(&["--idle-timeout", "0.5"]);
    let mut stream = connect(&server);
    stream.write_all(b"get nothing-here").unwrap();
    let (header, _) = read_reply(&mut stream);
    assert!(header["error"].is_string());
    assert_closed(&mut stream);
    server.wait_for_log("idle for");
}

#[test]
fn shutdown_closes_an_open_compat_connection_and_exits_0() {
    let mut server = compat_server(&[]);
    fs::write(server.root().join("a.txt"), b"a").unwrap();
    let mut stream = connect(&server);
    stream.write_all(b"get a.txt").unwrap();
    assert_eq!(read_reply(&mut stream).1, b"a");
    server.stop();
    assert_closed(&mut stream);
}
