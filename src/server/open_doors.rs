//! The doors open to anyone, with no ferry framing, no TLS and no token:
//! the tutorial's door (`seed/`; loopback only) and raw TCP echo
//! (`raw_echo.rs`). Each accepted connection takes one of the permits of
//! these listeners (`max_unframed_connections`; before `accept`, so a burst past
//! it waits in the kernel's queue), never one of the framed listeners': a
//! peer without the token cannot make a token holder `busy`. Connections
//! are served under the server's task tracker, so shutdown drains them
//! like any other.

use std::sync::Arc;

use super::{accept_each, raw_echo, seed, Shared};
use crate::transport::Listener;

/// What a door open to anyone serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenDoor {
    /// The socket tutorial's formats (`--seed-compat`).
    SeedCompat,
    /// Raw echo, RFC 862 over TCP (`--tcp-echo`).
    TcpEcho {
        /// Upper-case what comes back (`--echo-upper`).
        upper: bool,
    },
}

impl OpenDoor {
    /// The name in the server's `listening` line and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            OpenDoor::SeedCompat => "seed-compat, plaintext, no token",
            OpenDoor::TcpEcho { .. } => "tcp echo",
        }
    }
}

/// Accepts connections on every open door until cancelled, in one loop:
/// each connection takes one of their permits
/// (`max_unframed_connections`), never one of the framed listeners'.
pub(crate) async fn accept_loop(listeners: Vec<(Listener, OpenDoor)>, shared: Arc<Shared>) {
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
                    OpenDoor::SeedCompat => {
                        let context = &shared.services;
                        seed::serve(stream, &peer, context, &shared.limits, &shared.cancel).await
                    }
                    OpenDoor::TcpEcho { upper } => {
                        raw_echo::serve(stream, &peer, upper, &shared.limits, &shared.cancel).await
                    }
                }
                drop(permit);
            }
        },
    )
    .await
}
