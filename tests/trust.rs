//! Trust on first use, `--fingerprint`, and where the token comes from.

use std::os::unix::fs::PermissionsExt;

use ferry::transport::Fingerprint;

use crate::util::{ferry, Server};

/// A fingerprint no test server has.
fn another_fingerprint() -> String {
    Fingerprint::of_certificate(b"a certificate of some other server").to_string()
}

#[test]
fn first_tls_connection_pins_the_fingerprint_and_says_so_on_stderr_only() {
    let server = Server::start(&[]);
    let known_hosts = server.sandbox.known_hosts();
    let pin_line = format!("{} {}\n", server.addr(), server.fingerprint());

    let run = ferry(&server, &["echo", "hi"]);
    run.assert_ok().assert_stdout("hi\n");
    let path = known_hosts.display().to_string();
    run.assert_stderr_contains("pinned")
        .assert_stderr_contains(server.fingerprint())
        .assert_stderr_contains(&path);
    assert_eq!(server.sandbox.read_known_hosts(), pin_line);
    let mode = std::fs::metadata(&known_hosts)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "known_hosts mode");

    // Known from now on: nothing more to say.
    let again = ferry(&server, &["echo", "hi"]);
    again.assert_ok().assert_stdout("hi\n");
    assert_eq!(again.stderr, "", "{again:?}");

    // -q pins as well, silently.
    std::fs::remove_file(&known_hosts).unwrap();
    let quiet = ferry(&server, &["-q", "echo", "hi"]);
    quiet.assert_ok().assert_stdout("hi\n");
    assert_eq!(quiet.stderr, "", "{quiet:?}");
    assert_eq!(server.sandbox.read_known_hosts(), pin_line);
}

#[test]
fn a_different_pinned_fingerprint_is_refused_naming_the_known_hosts_file() {
    let server = Server::start(&[]);
    let pins = format!(
        "# my servers\n{} {}\n",
        server.addr(),
        another_fingerprint()
    );
    server.sandbox.write_known_hosts(&pins);

    let run = ferry(&server, &["echo", "hi"]);
    let known_hosts = server.sandbox.known_hosts().display().to_string();
    run.assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("has changed")
        .assert_stderr_contains(server.fingerprint())
        .assert_stderr_contains(&known_hosts);
    assert_eq!(
        server.sandbox.read_known_hosts(),
        pins,
        "the pin was changed"
    );
    // The client stopped before its hello, so the token never left it.
    let closed = server.wait_for_log("connection closed");
    assert!(closed.contains("requests=0"), "{closed}");
}

#[test]
fn a_server_restarted_with_a_new_state_dir_on_the_same_port_is_refused() {
    let mut first = Server::start(&[]);
    ferry(&first, &["echo", "hi"])
        .assert_ok()
        .assert_stdout("hi\n");
    first.stop();

    let addr = first.addr().to_string();
    let new_state = first.sandbox.path().join("new-state").display().to_string();
    let second = Server::start_in(&first.sandbox, &["--listen", &addr, "--state", &new_state]);
    assert_eq!(second.addr(), addr);
    assert_ne!(second.fingerprint(), first.fingerprint());

    let run = ferry(&second, &["echo", "hi"]);
    let known_hosts = second.sandbox.known_hosts().display().to_string();
    run.assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("has changed")
        .assert_stderr_contains(second.fingerprint())
        .assert_stderr_contains(&known_hosts);
}

#[test]
fn fingerprint_flag_refuses_a_mismatch_and_accepts_and_repins_a_match() {
    let server = Server::start(&[]);
    let run = ferry(
        &server,
        &["--fingerprint", &another_fingerprint(), "echo", "hi"],
    );
    run.assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("--fingerprint")
        .assert_stderr_contains(server.fingerprint());
    assert!(
        !server.sandbox.known_hosts().exists(),
        "a refused server was pinned"
    );

    // The real fingerprint is accepted, and replaces a stale pin.
    let stale = format!("{} {}\n", server.addr(), another_fingerprint());
    server.sandbox.write_known_hosts(&stale);
    let run = ferry(
        &server,
        &["echo", "hi", "--fingerprint", server.fingerprint()],
    );
    run.assert_ok()
        .assert_stdout("hi\n")
        .assert_stderr_contains("re-pinned");
    assert_eq!(
        server.sandbox.read_known_hosts(),
        format!("{} {}\n", server.addr(), server.fingerprint())
    );
}

#[test]
fn token_flag_beats_ferry_token_which_beats_the_local_state_dir() {
    let server = Server::start(&[]);
    let good = server.token();
    let bad = "not-the-token";
    let wrong_state = server.sandbox.path().join("wrong-state");
    std::fs::create_dir_all(&wrong_state).unwrap();
    std::fs::write(wrong_state.join("token"), format!("{bad}\n")).unwrap();
    let echo = || server.client(&["echo", "a"]);

    // The state dir named by FERRY_STATE, and the default one under
    // XDG_STATE_HOME, where this server keeps its state.
    echo().run().assert_ok().assert_stdout("a\n");
    echo()
        .env_remove("FERRY_STATE")
        .run()
        .assert_ok()
        .assert_stdout("a\n");

    // FERRY_TOKEN beats the state dir, whichever is right.
    echo()
        .env("FERRY_TOKEN", bad)
        .run()
        .assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("wrong access token");
    let run = echo()
        .env("FERRY_TOKEN", &good)
        .env("FERRY_STATE", &wrong_state)
        .run();
    run.assert_ok().assert_stdout("a\n");

    // --token beats FERRY_TOKEN, whichever is right.
    let run = server
        .client(&["--token", bad, "echo", "a"])
        .env("FERRY_TOKEN", &good)
        .run();
    run.assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("wrong access token");
    let run = server
        .client(&["echo", "a", "--token", &good])
        .env("FERRY_TOKEN", bad)
        .run();
    run.assert_ok().assert_stdout("a\n");

    // No token anywhere: the hint says where the client looked.
    let empty = server.sandbox.path().join("empty-state");
    let run = echo().env("FERRY_STATE", &empty).run();
    run.assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("no access token")
        .assert_stderr_contains(&empty.join("token").display().to_string());
}

#[test]
fn a_wrong_token_exits_3_and_the_server_logs_the_attempt() {
    let server = Server::start(&[]);
    let guess = "guessed-token-1234";
    let run = ferry(&server, &["--token", guess, "echo", "hi"]);
    run.assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("wrong access token")
        .assert_stderr_contains("FERRY_TOKEN");
    let line = server.wait_for_log("refused: wrong access token");
    assert!(
        line.contains("WARN") && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
    assert!(
        !server.log().iter().any(|l| l.contains(guess)),
        "the server logged the token it was offered"
    );
}
