//! Listeners that speak no ferry framing, no TLS and no token: the
//! seed-compat listener (the tutorial's formats; loopback only) and raw TCP
//! echo. Each accepted connection takes one of the server's connection
//! permits (before `accept`, so a burst past `max_connections` waits in the
//! kernel's queue) and is served under the server's task tracker, so
//! shutdown drains it like any other connection.

use super::{accept_each, Shared};
use crate::error::Error;
use crate::services::{compat, echo};
use crate::transport::{Endpoint, Listener};
use std::sync::Arc;

/// Checks that every seed-compat address is TCP: the tutorial's clients
/// speak nothing else. (That it is loopback, unless
/// `--allow-remote-plaintext`, is [`super::Config::validate`]'s rule for
/// every listener without TLS or a token.)
pub(crate) fn validate(endpoints: &[Endpoint]) -> Result<(), Error> {
    for endpoint in endpoints {
        if !endpoint.is_tcp() {
            return Err(Error::Usage(format!(
                "--seed-compat {endpoint}: the tutorial's clients speak TCP; give a loopback \
                 address such as 127.0.0.1:9003"
            )));
        }
    }
    Ok(())
}

/// What an unframed listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unframed {
    /// The socket tutorial's formats (`--seed-compat`).
    SeedCompat,
    /// Raw echo, RFC 862 over TCP (`--tcp-echo`).
    TcpEcho {
        /// Upper-case what comes back (`--echo-upper`).
        upper: bool,
    },
}

impl Unframed {
    /// The name in the server's `listening` line and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Unframed::SeedCompat => "seed-compat, plaintext, no token",
            Unframed::TcpEcho { .. } => "tcp echo",
        }
    }
}

/// Accepts connections for `service` until cancelled; each takes one of
/// the server's connection permits.
pub(crate) async fn accept_loop(listener: Listener, shared: Arc<Shared>, service: Unframed) {
    let permits = shared.connections.clone();
    let serving = shared.clone();
    accept_each(
        listener,
        &shared,
        permits,
        service.name(),
        move |stream, peer, permit| {
            let shared = serving.clone();
            async move {
                match service {
                    Unframed::SeedCompat => {
                        let context = &shared.services;
                        compat::serve(stream, &peer, context, &shared.limits, &shared.cancel).await
                    }
                    Unframed::TcpEcho { upper } => {
                        echo::serve_raw(stream, &peer, upper, &shared.limits, &shared.cancel).await
                    }
                }
                drop(permit);
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(addrs: &[&str]) -> Vec<Endpoint> {
        addrs.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn only_tcp_is_allowed() {
        let ok = ["127.0.0.1:9003", "[::1]:0", "192.0.2.1:9003"];
        assert!(validate(&endpoints(&ok)).is_ok());
        let err = validate(&endpoints(&["unix:/tmp/x.sock"])).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }
}
