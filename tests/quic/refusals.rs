//! Who is refused over QUIC: a wrong token, a client limited by its token,
//! a peer that speaks another protocol, and a source under a penalty.

use std::fs;

use super::{hello_stream, over_quic, quic_addr, quic_server, raw_connection, read_header};
use crate::util::DEADLINE;

#[test]
fn the_server_announces_its_quic_listener_before_ready() {
    let server = quic_server(&[]);
    let quic = server
        .listening()
        .iter()
        .find(|l| l.mode == "QUIC")
        .expect("a `listening ADDR (QUIC)` line");
    assert!(quic.addr.starts_with("127.0.0.1:"), "{quic:?}");
}

#[test]
fn a_wrong_token_is_refused_over_quic() {
    let server = quic_server(&[]);
    let run = over_quic(
        &server,
        &[
            "--token",
            "wrong",
            "--fingerprint",
            server.fingerprint(),
            "echo",
            "x",
        ],
    )
    .env_remove("FERRY_STATE")
    .run();
    run.assert_err()
        .assert_stderr_contains("wrong access token")
        .assert_stdout("");
}

#[test]
fn a_read_only_client_token_is_read_only_over_quic() {
    let server = quic_server(&[]);
    fs::write(server.root().join("f"), b"data").unwrap();
    let token_file = server.sandbox.path().join("viewer.token");
    let token_file = token_file.to_str().unwrap();
    let state = server.state_dir().to_str().unwrap();
    let add = server
        .client(&[
            "tokens",
            "--state",
            state,
            "add",
            "viewer",
            "--out",
            token_file,
            "--read-only",
        ])
        .run();
    add.assert_ok();
    let as_viewer = |args: &[&str]| {
        let mut full = vec![
            "--token-file",
            token_file,
            "--fingerprint",
            server.fingerprint(),
        ];
        full.extend_from_slice(args);
        over_quic(&server, &full).env_remove("FERRY_STATE").run()
    };
    as_viewer(&["ls"]).assert_ok().assert_stdout("f\n");
    as_viewer(&["mkdir", "d"])
        .assert_code(1)
        .assert_stderr_contains("read-only");
    as_viewer(&["exec", "--", "true"])
        .assert_err()
        .assert_stderr_contains("read-only");
    assert!(!server.root().join("d").exists());
}

#[tokio::test]
async fn a_peer_offering_another_alpn_is_refused_in_the_handshake() {
    let server = quic_server(&[]);
    let addr = quic_addr(&server);
    let endpoint = ferry::transport::quic::client_endpoint(addr).unwrap();
    let h3 = ferry::transport::quic::client_config_with_alpn(b"h3");
    let connecting = endpoint.connect_with(h3, addr, "localhost").unwrap();
    let result = tokio::time::timeout(DEADLINE, connecting)
        .await
        .expect("an answer within the deadline");
    let err = result.expect_err("the handshake fails");
    // TLS alert 120, no_application_protocol, as a QUIC crypto error.
    assert!(
        matches!(&err, quinn::ConnectionError::ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::crypto(120)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wrong_token_under_a_penalty_closes_the_whole_quic_connection() {
    let server = quic_server(&["--penalize-loopback"]);
    let (_endpoint, connection) = raw_connection(&server).await;
    let (_send, mut recv) = hello_stream(&connection, "wrong").await;
    let reply = tokio::time::timeout(DEADLINE, read_header(&mut recv))
        .await
        .expect("a reply");
    assert_eq!(reply["code"], "bad_token", "{reply}");
    let closed = tokio::time::timeout(DEADLINE, connection.closed())
        .await
        .expect("the connection closed");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(2)),
        "{closed:?}"
    );
    // And the source is refused at once while its penalty lasts.
    let again = over_quic(&server, &["echo", "x"]).run();
    again.assert_err();
}
