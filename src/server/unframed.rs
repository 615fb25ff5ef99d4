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

    #[test]
    fn only_tcp_is_allowed() {
        let ok = ["127.0.0.1:9003", "[::1]:0", "192.0.2.1:9003"];
        assert!(validate(&endpoints(&ok)).is_ok());
        let err = validate(&endpoints(&["unix:/tmp/x.sock"])).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }
}
