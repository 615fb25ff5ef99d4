//! The client's side of `ferry pair`: run the exchange of
//! [`crate::pairing`] over a fresh TLS connection and come back with the
//! server's fingerprint and a token of this machine's own. Nothing is
//! pinned or sent before the exchange proves that both ends hold the same
//! code and see the same certificate; storing the result is the caller's.

pub use crate::pairing::Code;

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;

use super::{connect_raw, expect_ok, tls_handshake, ClientOptions};
use crate::connection::{Connection, ConnectionConfig};
use crate::error::Error;
use crate::pairing::{Exchange, PairConfirm, PairReply, PairRequest, Paired, Side};
use crate::protocol::message::request_header;
use crate::protocol::PROTOCOL_VERSION;
use crate::transport::{Endpoint, Fingerprint, Stream};

/// What a pairing earned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// The server's certificate fingerprint, proven by the exchange.
    pub fingerprint: Fingerprint,
    /// This machine's name on the server.
    pub name: String,
    /// This machine's own token.
    pub token: String,
}

/// Pairs with the server of `options` using `code`, asking to be called
/// `name` (the invite's name, if it set one, wins).
pub async fn pair(
    options: &ClientOptions,
    code: &Code,
    name: Option<&str>,
) -> Result<Pairing, Error> {
    let Endpoint::Tcp { host, .. } = &options.server else {
        return Err(Error::Usage(
            "pairing runs over TLS on TCP, so give a host and port, not a Unix socket or \
             quic://"
                .into(),
        ));
    };
    if options.plaintext {
        return Err(Error::Usage(
            "pairing needs TLS (it proves the server's certificate): drop --plaintext".into(),
        ));
    }
    let raw = tokio::time::timeout(options.connect_timeout, connect_raw(options))
        .await
        .map_err(|_| Error::Protocol(format!("no answer from {} in time", options.server)))??;
    let Stream::Tcp(tcp) = raw else {
        return Err(Error::Protocol("pairing needs a TCP connection".into()));
    };
    let (tls_stream, fingerprint) = tls_handshake(tcp, host, options).await?;
    let mut conn = Connection::new(
        Stream::ClientTls(Box::new(tls_stream)),
        ConnectionConfig {
            decrypts: true,
            max_header_bytes: options.max_header_bytes,
            request_timeout: options.request_timeout,
            max_write_buffer_bytes: 64 * 1024,
        },
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let (exchange, ours) = Exchange::start(Side::Client, &code.password(), fingerprint);
    let request = PairRequest {
        version: PROTOCOL_VERSION,
        slot: code.slot,
        spake2: b64.encode(ours),
        name: name.map(str::to_string),
    };
    conn.send(request_header("pair", &request), Bytes::new())
        .await?;
    let reply: PairReply = expect_ok(conn.reader().expect_header().await?)?
        .to_message()
        .map_err(|err| Error::Protocol(format!("bad pairing reply: {err}")))?;
    let theirs = b64
        .decode(&reply.spake2)
        .map_err(|_| Error::Protocol("bad pairing reply: not base64".into()))?;
    let key = exchange.finish(&theirs).map_err(Error::Protocol)?;
    let confirm = PairConfirm {
        mac: key.proof(Side::Client),
    };
    conn.send(request_header("pair_confirm", &confirm), Bytes::new())
        .await?;
    let paired: Paired = expect_ok(conn.reader().expect_header().await?)?
        .to_message()
        .map_err(|err| Error::Protocol(format!("bad pairing result: {err}")))?;
    // The token goes into a file and back into every hello: one line of
    // printable ASCII, as the server makes them.
    let plain =
        |t: &str| !t.is_empty() && t.len() <= 1024 && t.bytes().all(|b| b.is_ascii_graphic());
    if !plain(&paired.token) {
        return Err(Error::Protocol(
            "the server sent a token that is not one".into(),
        ));
    }
    if !key.verify(Side::Server, &paired.mac) {
        return Err(Error::Protocol(
            "the server's proof does not match: this is not the server that made the code".into(),
        ));
    }
    conn.close(Duration::from_secs(1)).await;
    Ok(Pairing {
        fingerprint,
        name: paired.name,
        token: paired.token,
    })
}
