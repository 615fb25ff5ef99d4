//! ferry over QUIC (`ferry serve --quic ADDR`, `quic://HOST:PORT`,
//! `--quic`) against the real binary on loopback: every service unchanged,
//! the same token and pins as TCP, QUIC's own limits, and a connection
//! that survives the client moving to another UDP port mid-request.

mod limits;
mod migration;
mod refusals;
mod services;

use std::net::SocketAddr;

use crate::util::{Invocation, Server};

/// A server that also listens for QUIC and runs commands, with `args`.
pub fn quic_server(args: &[&str]) -> Server {
    let mut full = vec!["--quic", "127.0.0.1:0", "--allow-exec"];
    full.extend_from_slice(args);
    Server::start(&full)
}

/// The address of `server`'s QUIC listener.
pub fn quic_addr(server: &Server) -> SocketAddr {
    server
        .service_addr("QUIC")
        .parse()
        .expect("a socket address")
}

/// `server`'s QUIC listener as a client names it.
pub fn quic_url(server: &Server) -> String {
    format!("quic://{}", quic_addr(server))
}

/// `ferry ARGS` against `server` over QUIC.
pub fn over_quic(server: &Server, args: &[&str]) -> Invocation {
    server.client(args).env("FERRY_SERVER", quic_url(server))
}

/// A library client over QUIC to `server`, with its token and pin given.
pub async fn library_client(server: &Server) -> ferry::client::Client {
    let server_url: ferry::client::Endpoint = quic_url(server).parse().unwrap();
    let options = ferry::client::ClientOptions {
        token: Some(server.token()),
        fingerprint: Some(server.fingerprint().parse().unwrap()),
        known_hosts: None,
        ..ferry::client::ClientOptions::new(server_url)
    };
    ferry::client::Client::connect(&options)
        .await
        .expect("connect over QUIC")
}

/// A bare QUIC connection to `server` with ferry's client settings, for
/// tests that speak below the client library.
pub async fn raw_connection(server: &Server) -> (quinn::Endpoint, quinn::Connection) {
    let addr = quic_addr(server);
    let endpoint = ferry::transport::quic::client_endpoint(addr).unwrap();
    let connection = endpoint
        .connect(addr, "localhost")
        .unwrap()
        .await
        .expect("a QUIC handshake");
    (endpoint, connection)
}

/// Sends a `hello` with `token` on a new stream of `connection`.
pub async fn hello_stream(
    connection: &quinn::Connection,
    token: &str,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = connection.open_bi().await.expect("a stream");
    let hello = crate::util::frame_bytes(&crate::util::hello_header(token), b"");
    send.write_all(&hello).await.expect("send hello");
    (send, recv)
}

/// Reads one frame header from a QUIC stream (ferry's frames: a 4-byte
/// little-endian length, then the JSON header).
pub async fn read_header(recv: &mut quinn::RecvStream) -> serde_json::Value {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.expect("a frame length");
    let mut json = vec![0u8; u32::from_le_bytes(len) as usize];
    recv.read_exact(&mut json).await.expect("a frame header");
    serde_json::from_slice(&json).expect("a JSON header")
}
