//! The exec stream on the wire, spoken byte by byte: its frames, its end
//! frame's fields, its refusals, and that both streams end in step so the
//! connection carries the next request.

use serde_json::{json, Value};

use super::{arg, assert_all_die, exec_server, read_exec_reply, read_pids};
use crate::util::Raw;

/// Sends stdin data frames, one per piece, then the end of stdin.
fn send_stdin(raw: &mut Raw, pieces: &[&[u8]]) {
    for piece in pieces {
        raw.send_frame(&json!({"data": "stdin", "size": piece.len()}), piece);
    }
    raw.send_frame(&json!({"end": true}), b"");
}

#[test]
fn two_execs_share_a_connection_when_stdin_ends_after_the_command() {
    let server = exec_server(&["--plaintext"]);
    let mut raw = Raw::hello(&server);

    // The first command ends while our stdin stream is still open.
    raw.send_frame(&json!({"cmd": "exec", "shell": "echo first"}), b"");
    let first = read_exec_reply(&mut raw);
    assert_eq!(first.stdout, b"first\n");
    assert_eq!(first.end["exit_code"], 0, "{first:?}");
    // Only now does our stream end, with data the command never reads:
    // the server must read past it before the next request.
    send_stdin(&mut raw, &[b"too late", br#"{"cmd": "echo"}"#]);

    raw.send_frame(&json!({"cmd": "exec", "argv": ["cat"]}), b"");
    send_stdin(&mut raw, &[b"second ", b"in two frames"]);
    let second = read_exec_reply(&mut raw);
    assert_eq!(
        String::from_utf8_lossy(&second.stdout),
        "second in two frames"
    );
    assert_eq!(second.stderr, b"");
    assert_eq!(second.end["exit_code"], 0, "{second:?}");

    raw.echo("still in step");
}

#[test]
fn the_end_frame_says_how_the_command_ended() {
    let server = exec_server(&["--plaintext"]);
    let pids = server.sandbox.path().join("pids");
    let mut raw = Raw::hello(&server);
    let mut run = |request: Value| {
        raw.send_frame(&request, b"");
        send_stdin(&mut raw, &[]);
        read_exec_reply(&mut raw).end
    };

    let end = run(json!({"cmd": "exec", "shell": "exit 7"}));
    assert_eq!(end["exit_code"], 7, "{end:?}");
    assert_eq!(end.get("signal"), None, "{end:?}");
    assert_eq!(end["timed_out"], false, "{end:?}");

    let end = run(json!({"cmd": "exec", "shell": "kill -TERM $$"}));
    assert_eq!(end["signal"], 15, "{end:?}");
    assert_eq!(end.get("exit_code"), None, "{end:?}");
    assert_eq!(end["timed_out"], false, "{end:?}");

    let end = run(json!({"cmd": "exec", "argv": ["no-such-command-for-ferry"]}));
    assert_eq!(end["exit_code"], 127, "{end:?}");

    let shell = format!("echo $$ > {}; exec sleep 30", arg(&pids));
    raw.send_frame(
        &json!({"cmd": "exec", "shell": shell, "timeout_secs": 0.2}),
        b"",
    );
    send_stdin(&mut raw, &[]);
    let sleeper = read_pids(&pids, 1);
    let end = read_exec_reply(&mut raw).end;
    assert_eq!(end["timed_out"], true, "{end:?}");
    assert_eq!(end["signal"], 9, "{end:?}");
    assert_all_die(&sleeper);
}

#[test]
fn malformed_exec_requests_are_refused_and_the_connection_goes_on() {
    let server = exec_server(&["--plaintext"]);
    let mut raw = Raw::hello(&server);
    let refusals = [
        (json!({"cmd": "exec"}), "bad_request"),
        (json!({"cmd": "exec", "shell": ""}), "bad_request"),
        (json!({"cmd": "exec", "argv": []}), "bad_request"),
        (
            json!({"cmd": "exec", "shell": "touch marker", "argv": ["touch", "marker"]}),
            "bad_request",
        ),
        (
            json!({"cmd": "exec", "shell": "touch marker", "timeout_secs": -1}),
            "bad_request",
        ),
        (
            json!({"cmd": "exec", "shell": "touch marker", "timeout_secs": 0}),
            "bad_request",
        ),
        (
            json!({"cmd": "exec", "shell": "touch marker", "cwd": "missing"}),
            "not_found",
        ),
    ];
    for (request, code) in refusals {
        raw.send_frame(&request, b"");
        let message = raw.expect_error(code);
        assert!(!message.is_empty(), "{request}");
        // A refusal opens no stream: the next request follows at once.
        raw.echo("goes on");
    }
    assert!(!server.root().join("marker").exists());
}

#[test]
fn a_stdin_frame_over_the_cap_is_refused_and_kills_the_command() {
    let server = exec_server(&["--plaintext"]);
    let pids = server.sandbox.path().join("pids");
    let mut raw = Raw::hello(&server);
    let shell = format!("echo $$ > {}; exec sleep 300", arg(&pids));
    raw.send_frame(&json!({"cmd": "exec", "shell": shell}), b"");
    assert!(raw.read_frame().is_ok());
    let remotes = read_pids(&pids, 1);
    // Announce 1 MiB + 1 of stdin: more than one frame may carry.
    raw.send_frame(&json!({"data": "stdin", "size": (1 << 20) + 1}), b"");
    let message = raw.expect_error("bad_request");
    assert!(message.contains("stdin"), "{message}");
    raw.expect_closed();
    assert_all_die(&remotes);
}
