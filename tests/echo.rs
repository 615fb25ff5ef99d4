//! Echo over every transport, the `listening` and `ready` lines a server
//! starts with, and what the client says when it speaks the wrong one.

use std::os::unix::fs::PermissionsExt;

use crate::util::{ferry, hello_header, Invocation, Listening, Raw, Sandbox, Server};

#[test]
fn echo_over_tls_tcp_answers_with_the_text() {
    let server = Server::start(&[]);
    assert_eq!(server.listening()[0].mode, "TLS");
    ferry(&server, &["echo", "hello", "world"])
        .assert_ok()
        .assert_stdout("hello world\n");
}

#[test]
fn echo_over_plaintext_tcp_on_loopback_with_global_flags_before_or_after() {
    let server = Server::start(&["--plaintext"]);
    assert_eq!(server.listening()[0].mode, "plaintext");
    ferry(&server, &["--plaintext", "echo", "plain"])
        .assert_ok()
        .assert_stdout("plain\n");
    ferry(&server, &["echo", "plain", "--plaintext"])
        .assert_ok()
        .assert_stdout("plain\n");
    assert!(
        !server.sandbox.known_hosts().exists(),
        "plaintext pins nothing"
    );
}

#[test]
fn echo_over_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: [::1] cannot be bound on this machine");
        return;
    }
    let server = Server::start(&["--listen", "[::1]:0"]);
    let addr = server.addr().to_string();
    assert!(addr.starts_with("[::1]:"), "{addr}");
    ferry(&server, &["echo", "over", "v6"])
        .assert_ok()
        .assert_stdout("over v6\n");
    assert_eq!(
        server.sandbox.read_known_hosts(),
        format!("{addr} {}\n", server.fingerprint())
    );
}

#[test]
fn echo_over_a_unix_socket_that_only_its_owner_can_open() {
    let sandbox = Sandbox::new();
    let socket = sandbox.path().join("ferry.sock");
    let listen = format!("unix:{}", socket.display());
    let mut server = Server::start_in(&sandbox, &["--listen", &listen]);
    assert_eq!(
        server.listening(),
        [Listening {
            addr: listen.clone(),
            mode: "unix socket, token required".into()
        }]
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode");

    ferry(&server, &["echo", "through", "unix"])
        .assert_ok()
        .assert_stdout("through unix\n");
    assert!(
        !sandbox.known_hosts().exists(),
        "a Unix socket pins nothing"
    );

    // Being on the same machine is not enough: the token is still checked.
    let mut raw = Raw::connect(&listen);
    raw.send_frame(&hello_header("not the token"), b"");
    raw.expect_error("bad_token");
    raw.expect_closed();

    server.stop();
    assert!(!socket.exists(), "the socket file outlived the server");
}

/// The harness reads up to `ready` and knows no flag that adds a
/// listener, so a `ready` printed before any of them loses its line here.
#[test]
fn ready_comes_after_the_listening_line_of_every_listener() {
    let sandbox = Sandbox::new();
    let socket = format!("unix:{}", sandbox.path().join("ferry.sock").display());
    let any = "127.0.0.1:0";
    let server = Server::start_in(
        &sandbox,
        &[
            "--listen",
            any,
            "--listen",
            &socket,
            "--seed-compat",
            any,
            "--tcp-echo",
            any,
            "--udp-time",
            any,
            "--sntp",
            any,
            "--udp-echo",
            any,
            "--udp-chat",
            any,
        ],
    );
    let modes: Vec<&str> = server.listening().iter().map(|l| l.mode.as_str()).collect();
    assert_eq!(
        modes,
        [
            "TLS",
            "unix socket, token required",
            "seed-compat, plaintext, no token",
            "tcp echo",
            "udp time",
            "sntp",
            "udp echo",
            "udp chat",
        ]
    );
}

#[test]
fn echo_upper_capitalises_ascii_letters_only() {
    let server = Server::start(&[]);
    ferry(&server, &["echo", "--upper", "Hello, wörld", "42"])
        .assert_ok()
        .assert_stdout("HELLO, WöRLD 42\n");
}

#[test]
fn echo_without_text_answers_each_stdin_line_and_skips_empty_ones() {
    let server = Server::start(&[]);
    let run = server
        .client(&["echo"])
        .stdin("first line\n\n   \nsecond\r\n\nlast, without newline")
        .run();
    run.assert_ok()
        .assert_stdout("first line\nsecond\nlast, without newline\n");
    // One connection, and the empty lines never reached the server.
    let closed = server.wait_for_log("connection closed");
    assert!(closed.contains("requests=3"), "{closed}");
}

#[test]
fn plaintext_on_a_non_loopback_address_is_a_usage_error() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let sandbox = Sandbox::new();
        let state = sandbox.path().join("state").display().to_string();
        let args = [
            "serve",
            "--plaintext",
            "--listen",
            listen,
            "--state",
            &state,
        ];
        let run = Invocation::new(&sandbox, &args).run();
        run.assert_code(2);
        assert!(!run.stdout.contains("listening"), "{run:?}");
        run.assert_stderr_contains("loopback");
    }
}

#[test]
fn a_plaintext_client_against_a_tls_server_exits_3_with_a_hint_to_drop_plaintext() {
    let server = Server::start(&[]);
    ferry(&server, &["--plaintext", "echo", "hi"])
        .assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("drop --plaintext");
}

#[test]
fn a_tls_client_against_a_plaintext_server_exits_3_with_a_hint_to_pass_plaintext() {
    let server = Server::start(&["--plaintext"]);
    ferry(&server, &["echo", "hi"])
        .assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("pass --plaintext");
}
