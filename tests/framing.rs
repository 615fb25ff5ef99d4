//! Frames a broken or hostile peer sends: each gets its code, and the
//! connection closes or goes on as the code says. These run the server with
//! `--plaintext` so they can write bytes no real client would.

use std::time::Duration;

use serde_json::json;

use crate::util::{frame_bytes, hello_header, Raw, Server};

/// The default header cap.
pub(super) const HEADER_CAP: usize = 64 * 1024;

#[test]
fn hello_problems_get_their_codes_and_close_the_connection() {
    let server = Server::start(&["--plaintext"]);
    let token = server.token();
    let cases = [
        (
            "unsupported_version",
            json!({"cmd": "hello", "version": 2, "token": token}),
            "",
        ),
        ("bad_token", hello_header("wrong"), ""),
        ("bad_token", hello_header(""), ""),
        ("bad_request", json!({"cmd": "hello", "version": 1}), ""),
        (
            "bad_request",
            json!({"cmd": "hello", "version": "1", "token": token}),
            "",
        ),
        (
            "bad_request",
            json!({"cmd": "hello", "version": 1, "token": token, "size": 1}),
            "x",
        ),
    ];
    for (code, header, body) in cases {
        let mut raw = Raw::connect(server.addr());
        raw.send_frame(&header, body.as_bytes());
        let message = raw.expect_error(code);
        if code == "unsupported_version" {
            assert!(message.contains("version 1"), "{message}");
        }
        raw.expect_closed();
    }
}

#[test]
fn a_first_frame_other_than_hello_gets_hello_required_and_a_close() {
    let server = Server::start(&["--plaintext"]);
    let cases = [
        (json!({"cmd": "echo", "size": 2}), "hi"),
        (json!({"cmd": "launch"}), ""),
        (json!({"version": 1, "token": server.token()}), ""),
    ];
    for (header, body) in cases {
        let mut raw = Raw::connect(server.addr());
        raw.send_frame(&header, body.as_bytes());
        raw.expect_error("hello_required");
        raw.expect_closed();
    }
}

/// The header bytes of a frame with `text` as its header, as sent.
fn raw_header(text: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(text);
    out
}

/// Bytes that are not a frame, each with the code that answers it.
fn malformed_frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty_header", 0u32.to_le_bytes().to_vec()),
        (
            "header_too_large",
            (HEADER_CAP as u32 + 1).to_le_bytes().to_vec(),
        ),
        ("header_too_large", u32::MAX.to_le_bytes().to_vec()),
        ("header_not_utf8", raw_header(b"{\"cmd\":\"\xff\xfe\"}")),
        ("header_not_json", raw_header(b"{\"cmd\": echo}")),
        (
            "header_not_json",
            raw_header(b"{\"cmd\":\"echo\"} trailing"),
        ),
        ("header_not_object", raw_header(b"[\"cmd\",\"echo\"]")),
        ("header_not_object", raw_header(b"\"echo\"")),
        ("bad_size", raw_header(br#"{"cmd":"echo","size":-1}"#)),
        ("bad_size", raw_header(br#"{"cmd":"echo","size":"5"}"#)),
        ("bad_size", raw_header(br#"{"cmd":"echo","size":1.5}"#)),
        ("bad_size", raw_header(br#"{"cmd":"echo","size":null}"#)),
        (
            "bad_size",
            raw_header(br#"{"cmd":"echo","size":18446744073709551616}"#),
        ),
    ]
}

/// Sends each malformed frame on its own connection to `addr`, before and
/// after hello, and checks its code and the close.
pub(crate) fn check_malformed_frames(server: &Server, addr: &str) {
    for (code, bytes) in malformed_frames() {
        for after_hello in [false, true] {
            eprintln!("{code}: {bytes:?}, after hello: {after_hello}");
            let mut raw = if after_hello {
                Raw::hello_at(server, addr)
            } else {
                Raw::connect(addr)
            };
            raw.send(&bytes);
            raw.expect_error(code);
            raw.expect_closed();
        }
    }
}

#[test]
fn malformed_frames_get_their_codes_and_the_connection_closes() {
    let server = Server::start(&["--plaintext"]);
    check_malformed_frames(&server, server.addr());
    Raw::hello(&server).echo("the server serves on");
}

#[test]
fn the_header_cap_admits_exactly_its_size_and_refuses_one_more_at_once() {
    for (cap, args) in [
        (HEADER_CAP, &["--plaintext"][..]),
        (1024, &["--plaintext", "--max-header-bytes", "1024"][..]),
    ] {
        let server = Server::start(args);
        let mut raw = Raw::hello(&server);

        let mut header = json!({"cmd": "echo", "size": 2, "pad": ""});
        let short = serde_json::to_vec(&header).unwrap().len();
        header["pad"] = "x".repeat(cap - short).into();
        assert_eq!(serde_json::to_vec(&header).unwrap().len(), cap);
        raw.send_frame(&header, b"ok");
        let reply = raw.read_frame();
        assert!(reply.is_ok(), "cap {cap}: {reply:?}");
        assert_eq!(reply.body, b"ok");

        // Only the length is sent, never the header it announces: the
        // answer must come without waiting for those bytes.
        raw.send(&(cap as u32 + 1).to_le_bytes());
        let message = raw.expect_error("header_too_large");
        assert!(message.contains(&(cap + 1).to_string()), "{message}");
        raw.expect_closed();
    }
}

#[test]
fn unknown_and_missing_cmd_are_refused_and_the_connection_goes_on() {
    let server = Server::start(&["--plaintext"]);
    let token = server.token();
    let mut raw = Raw::hello(&server);
    let cases = [
        ("unknown_cmd", json!({"cmd": "launch"}), ""),
        ("unknown_cmd", json!({"cmd": "launch", "size": 5}), "abcde"),
        ("missing_cmd", json!({}), ""),
        ("missing_cmd", json!({"size": 3}), "abc"),
        ("missing_cmd", json!({"cmd": 7}), ""),
        (
            "bad_request",
            json!({"cmd": "echo", "upper": "yes", "size": 2}),
            "hi",
        ),
        ("bad_request", hello_header(&token), ""),
    ];
    for (code, header, body) in cases {
        raw.send_frame(&header, body.as_bytes());
        let message = raw.expect_error(code);
        if code == "unknown_cmd" {
            assert!(
                message.contains("launch") && message.contains("echo"),
                "{message}"
            );
        }
        raw.echo("next request");
    }
}

#[test]
fn a_refusal_comes_before_the_refused_body_which_is_then_skipped() {
    let server = Server::start(&["--plaintext"]);
    let mut raw = Raw::hello(&server);
    // Each body looks like a frame of its own: it must be skipped, not
    // served.
    let body = frame_bytes(&json!({"cmd": "echo", "size": 4}), b"evil");
    for (code, header) in [
        ("unknown_cmd", json!({"cmd": "launch", "size": body.len()})),
        ("missing_cmd", json!({"size": body.len()})),
        (
            "bad_request",
            json!({"cmd": "echo", "upper": 1, "size": body.len()}),
        ),
    ] {
        raw.send_frame(&header, b"");
        raw.expect_error(code);
        raw.send(&body);
        raw.echo("good");
    }
}

#[test]
fn clients_that_vanish_mid_frame_leave_the_server_healthy() {
    let mut server = Server::start(&["--plaintext"]);
    let echo_header = frame_bytes(&json!({"cmd": "echo", "size": 100}), b"");
    let hello = frame_bytes(&hello_header(&server.token()), b"");
    let cuts: [(bool, Vec<u8>); 4] = [
        (false, hello[..7].to_vec()),
        (true, echo_header[..2].to_vec()),
        (true, echo_header[..10].to_vec()),
        (true, [&echo_header[..], &[b'x'; 40]].concat()),
    ];
    for (after_hello, cut) in &cuts {
        let mut raw = if *after_hello {
            Raw::hello(&server)
        } else {
            Raw::connect(server.addr())
        };
        raw.send(cut);
    }
    let ended = server.wait_for_log_lines("end=peer closed", cuts.len());
    assert_eq!(ended.len(), cuts.len(), "{ended:#?}");
    Raw::hello(&server).echo("still serving");
    assert_eq!(server.wait_within(Duration::ZERO), None, "the server died");
}

/// Each way of failing a login penalises its source, and the next
/// connection from it is closed before a word is said; a client of another
/// protocol version is no attacker and goes free.
#[test]
fn garbage_silence_and_bad_hellos_penalise_their_source() {
    let penalised = |extra: &[&str]| {
        let mut args = vec!["--penalize-loopback", "--penalty-min", "600"];
        args.extend_from_slice(extra);
        Server::start(&args)
    };
    let refused_at_once = |server: &Server| Raw::connect(server.addr()).expect_closed();

    let server = penalised(&["--plaintext"]);
    let mut raw = Raw::connect(server.addr());
    raw.send(&raw_header(b"[not json"));
    raw.expect_error("header_not_json");
    server.wait_for_log("refused for 600 s after a failed login (garbage before hello)");
    refused_at_once(&server);

    let server = penalised(&["--plaintext"]);
    let mut raw = Raw::connect(server.addr());
    raw.send_frame(&json!({"cmd": "echo", "size": 2}), b"hi");
    let message = raw.expect_error("hello_required");
    assert!(
        message.contains("127.0.0.1 is now refused for 600 s"),
        "{message}"
    );
    refused_at_once(&server);

    let server = penalised(&["--plaintext", "--hello-timeout", "0.2"]);
    let mut raw = Raw::connect(server.addr());
    let message = raw.expect_error("timeout");
    assert!(message.contains("refused for 600 s"), "{message}");
    server.wait_for_log("(no hello in time)");
    refused_at_once(&server);

    // A plaintext hello to the TLS listener is not TLS (it is answered
    // with a TLS alert).
    let server = penalised(&[]);
    let mut raw = Raw::connect(server.addr());
    raw.send_frame(&hello_header(&server.token()), b"");
    server.wait_for_log("(not TLS)");
    refused_at_once(&server);

    let server = penalised(&["--plaintext"]);
    let mut raw = Raw::connect(server.addr());
    let other_version = json!({"cmd": "hello", "version": 2, "token": server.token()});
    raw.send_frame(&other_version, b"");
    let message = raw.expect_error("unsupported_version");
    assert!(!message.contains("refused for"), "{message}");
    Raw::hello(&server);
}
