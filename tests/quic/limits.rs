//! QUIC's own limits against the real binary: streams per connection and
//! a connection with no stream open.

use std::time::Instant;

use futures_util::FutureExt;

use super::{hello_stream, quic_server, raw_connection, read_header};
use crate::util::DEADLINE;

#[tokio::test]
async fn a_connection_opens_at_most_its_cap_of_streams_at_once() {
    let cap = ferry::limits::QUIC.max_streams_per_connection as usize;
    let server = quic_server(&[]);
    let token = server.token();
    let (_endpoint, connection) = raw_connection(&server).await;
    let mut streams = Vec::new();
    for _ in 0..cap {
        let (send, mut recv) = hello_stream(&connection, &token).await;
        let welcome = tokio::time::timeout(DEADLINE, read_header(&mut recv))
            .await
            .expect("a welcome");
        assert_eq!(welcome["ok"], true, "{welcome}");
        streams.push((send, recv));
    }
    // One more must wait for the server to give credit.
    assert!(
        connection.open_bi().now_or_never().is_none(),
        "the server allowed more than {cap} streams at once"
    );
    // Ending sessions frees their places; quinn announces the new credit
    // once an eighth of the cap is free.
    for (mut send, mut recv) in streams.drain(..cap / 8 + 1) {
        send.finish().unwrap();
        let rest = tokio::time::timeout(DEADLINE, recv.read_to_end(1024))
            .await
            .expect("the server ends the stream");
        assert_eq!(rest.unwrap(), b"", "nothing after the welcome");
    }
    let freed = tokio::time::timeout(DEADLINE, connection.open_bi()).await;
    assert!(freed.expect("a place freed").is_ok());
}

#[tokio::test]
async fn a_connection_without_a_stream_is_closed_at_the_idle_timeout() {
    let server = quic_server(&["--idle-timeout", "1"]);
    let (_endpoint, connection) = raw_connection(&server).await;
    let started = Instant::now();
    let closed = tokio::time::timeout(DEADLINE, connection.closed())
        .await
        .expect("closed within the deadline");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(3)),
        "{closed:?}"
    );
    assert!(started.elapsed().as_secs_f64() >= 0.9, "closed early");
}

#[tokio::test]
async fn streams_that_never_say_hello_are_cut_at_the_hello_deadline() {
    let server = quic_server(&["--hello-timeout", "1"]);
    let (_endpoint, connection) = raw_connection(&server).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    // One byte makes the stream exist for the server; no hello follows.
    send.write_all(&[0]).await.unwrap();
    let reply = tokio::time::timeout(DEADLINE, read_header(&mut recv))
        .await
        .expect("a reply within the deadline");
    assert_eq!(reply["code"], "timeout", "{reply}");
}

#[tokio::test]
async fn quic_connections_count_against_max_connections() {
    let server = quic_server(&["--max-connections", "1"]);
    let token = server.token();
    let (_first_endpoint, first) = raw_connection(&server).await;
    let (_send, mut recv) = hello_stream(&first, &token).await;
    let welcome = tokio::time::timeout(DEADLINE, read_header(&mut recv))
        .await
        .expect("a welcome");
    assert_eq!(welcome["ok"], true, "{welcome}");
    // The first connection holds the one place, for all its streams.
    let (_send, mut recv) = hello_stream(&first, &token).await;
    let again = tokio::time::timeout(DEADLINE, read_header(&mut recv))
        .await
        .expect("a welcome");
    assert_eq!(again["ok"], true, "{again}");
    let (_second_endpoint, second) = raw_connection(&server).await;
    let (_send, mut recv) = hello_stream(&second, &token).await;
    let refused = tokio::time::timeout(DEADLINE, read_header(&mut recv))
        .await
        .expect("a refusal");
    assert_eq!(refused["code"], "busy", "{refused}");
}

#[tokio::test]
async fn a_handshake_left_half_done_is_dropped_and_penalised_at_the_hello_deadline() {
    let server = quic_server(&["--hello-timeout", "1", "--penalize-loopback"]);
    // A relay that passes the client's first datagram (its Initial) to the
    // server and drops everything after: the server's handshake never ends.
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let endpoint = ferry::transport::quic::client_endpoint(relay_addr).unwrap();
    let connecting = endpoint.connect(relay_addr, "localhost").unwrap();
    let client = tokio::spawn(connecting);
    let mut initial = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(DEADLINE, relay.recv_from(&mut initial))
        .await
        .expect("the client's Initial")
        .unwrap();
    relay
        .send_to(&initial[..len], super::quic_addr(&server))
        .await
        .unwrap();
    let line = server.wait_for_log("QUIC handshake not done within");
    assert!(line.contains("1s"), "{line}");
    // And its source is penalised, as for a TLS handshake over TCP.
    let penalty = server.wait_for_log("after a failed login (no QUIC handshake in time)");
    assert!(penalty.contains("127.0.0.1 is refused for"), "{penalty}");
    client.abort();
}
