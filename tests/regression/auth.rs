//! Authentication and plaintext: per-source penalties, token files, the key
//! exchange, and plaintext only where it cannot be overheard.

use std::time::{Duration, Instant};

use ferry::client::{Client, ClientOptions};

use crate::util::{ferry, Server};

/// Library client options for `server`: its token and pinned fingerprint,
/// no files of the user's read or written.
fn client_options(server: &Server) -> ClientOptions {
    ClientOptions {
        token: Some(server.token()),
        fingerprint: Some(server.fingerprint().parse().unwrap()),
        known_hosts: None,
        state_dir: None,
        ..ClientOptions::new(server.addr().parse().unwrap())
    }
}

/// A recording of today's TLS traffic must not be readable by a quantum
/// computer of tomorrow: ferry's client and server agree on the hybrid
/// X25519MLKEM768, as OpenSSH 10 does by default.
#[tokio::test]
async fn tls_key_exchange_is_post_quantum_hybrid() {
    let server = Server::start(&[]);
    let client = Client::connect(&client_options(&server)).await.unwrap();
    assert_eq!(client.key_exchange_group(), Some("X25519MLKEM768"));
    client.close().await;
}

/// A token guesser must not get unlimited tries: a wrong token gets its
/// source refused at accept, even with the right token, until the penalty
/// ends, and the penalty is logged once. Loopback is exempt without
/// --penalize-loopback, so local users cannot lock each other out.
#[test]
fn a_wrong_token_gets_its_source_refused_until_the_penalty_ends() {
    let server = Server::start(&["--penalize-loopback", "--penalty-min", "1"]);
    let wrong = server
        .client(&["echo", "hi"])
        .env("FERRY_TOKEN", "not-the-token")
        .run();
    // The penalty began before the wrong client exited, so it is over a
    // second from now at the latest.
    let penalty_over = Instant::now() + Duration::from_secs(1);
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("127.0.0.1 is now refused for 1 s"),
        "{}",
        wrong.stderr
    );

    let refused = ferry(&server, &["echo", "hi"]);
    assert!(
        Instant::now() < penalty_over,
        "too slow to test within the penalty"
    );
    assert_eq!(
        refused.code, 3,
        "the right token got in: {}",
        refused.stdout
    );
    assert!(
        refused.stderr.contains("refusing this address"),
        "no hint: {}",
        refused.stderr
    );
    let logged = server.wait_for_log_lines("penalised: 127.0.0.1 is refused for 1 s", 1);
    assert_eq!(logged.len(), 1, "logged once per penalty: {logged:?}");

    std::thread::sleep(penalty_over.saturating_duration_since(Instant::now()));
    let accepted = ferry(&server, &["echo", "hi"]);
    assert_eq!(
        (accepted.code, accepted.stdout.as_str()),
        (0, "hi\n"),
        "{}",
        accepted.stderr
    );

    let exempt = Server::start(&["--penalty-min", "600"]);
    let wrong = exempt
        .client(&["echo", "hi"])
        .env("FERRY_TOKEN", "not-the-token")
        .run();
    assert_eq!(wrong.code, 3);
    assert!(!wrong.stderr.contains("refused for"), "{}", wrong.stderr);
    assert_eq!(
        ferry(&exempt, &["echo", "hi"]).code,
        0,
        "loopback penalised"
    );
}
