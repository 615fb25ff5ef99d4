//! Authentication and plaintext: per-source penalties, token files, the key
//! exchange, and plaintext only where it cannot be overheard.

use ferry::client::{Client, ClientOptions};

use crate::util::Server;

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
