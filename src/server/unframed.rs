//! Listeners that speak no ferry framing, no TLS and no token: the
//! seed-compat listener (the tutorial's formats; loopback only) and raw TCP
//! echo. Each accepted connection takes one of the permits of these
//! listeners (`max_unframed_connections`; before `accept`, so a burst past
//! it waits in the kernel's queue), never one of the framed listeners': a
//! peer without the token cannot make a token holder `busy`. Connections
//! are served under the server's task tracker, so shutdown drains them
//! like any other.

use super::{accept_each, Shared};
use crate::error::Error;
use crate::services::{compat, echo};
use crate::transport::{Endpoint, Listener};
use std::sync::Arc;

/// Checks that every seed-compat address is TCP on loopback: the listener
/// has no TLS and no token, so anyone who can reach it can use it.
pub(crate) async fn validate(endpoints: &[Endpoint]) -> Result<(), Error> {
    for endpoint in endpoints {
        if !endpoint.is_tcp() {
            return Err(Error::Usage(format!(
                "--seed-compat {endpoint}: the tutorial's clients speak TCP; give a loopback \
                 address such as 127.0.0.1:9003"
            )));
        }
        let local = endpoint.is_local().await.map_err(|err| {
            Error::Usage(format!("cannot resolve --seed-compat {endpoint}: {err}"))
        })?;
        if !local {
            return Err(Error::Usage(format!(
                "--seed-compat is plaintext and takes no token, so it is only allowed on loopback \
                 addresses, and {endpoint} is not one; listen on 127.0.0.1 or [::1]"
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

/// Accepts connections on every unframed listener until cancelled, in
/// one loop: each connection takes one of the unframed permits
/// (`max_unframed_connections`), never one of the framed listeners'.
pub(crate) async fn accept_loop(listeners: Vec<(Listener, Unframed)>, shared: Arc<Shared>) {
    let permits = shared.unframed_connections.clone();
    let serving = shared.clone();
    accept_each(
        listeners,
        &shared,
        permits,
        move |stream, peer, service, permit| {
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

    #[tokio::test]
    async fn only_loopback_tcp_is_allowed() {
        assert!(validate(&endpoints(&["127.0.0.1:9003", "[::1]:0"]))
            .await
            .is_ok());
        for bad in [
            "0.0.0.0:9003",
            "[::]:0",
            "192.0.2.1:9003",
            "unix:/tmp/x.sock",
        ] {
            let err = validate(&endpoints(&[bad])).await.unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
            assert!(err.to_string().contains("127.0.0.1"), "{bad}: {err}");
        }
    }
}
