//! The QUIC door (`ferry serve --quic ADDR`): QUIC connections with the
//! server's certificate and ALPN `ferry/1`, each bidirectional stream a
//! session of its own, served by [`super::session`] exactly as a TCP
//! connection is (hello with a token, then requests). Nothing here knows
//! a service.
//!
//! Who gets in, in order: a source under a login penalty is refused before
//! any state is kept; while more than `retry_above_handshakes` handshakes
//! are in progress, a source that is not loopback must first prove its
//! address (a Retry round trip), so a flood of forged Initial packets costs
//! the server a stateless reply each, and below that a client gets in
//! without the extra round trip, as production QUIC servers do; the
//! handshake must finish within `hello_timeout` and under a
//! `max_handshakes` permit, as on TCP; a peer that agreed on another ALPN
//! is closed. The connection then takes one of `max_connections` (without
//! one, its streams' hellos are answered `busy`), and lives while it has a
//! stream open or opens one within `idle_timeout`. A handshake that does
//! not end in time penalises its source, as on TCP, when the source proved
//! its address first (loopback, or a Retry): a forged one is not
//! penalised, so nobody can get another's address refused. A failed login
//! on any stream that puts its source under a penalty closes the whole
//! connection, so a guesser cannot go on opening streams.
//!
//! Nothing here parses peer bytes: quinn and rustls read packets, the
//! handshake, ALPN and Retry tokens, and a stream's bytes go to the
//! session's frame codec, as a TCP connection's do (fuzzed by
//! `fuzz/fuzz_targets/frame_decoder.rs` and `header.rs`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::session::{self, Slot};
use super::Shared;
use crate::transport::quic::{close, negotiated_alpn, QuicStream, ALPN};
use crate::transport::Stream;

/// Whether a connection attempt from `source` must first prove its
/// address with a Retry: a source not yet validated and not on loopback
/// (whose packets cannot be forged from outside this machine), while more
/// than `retry_above` handshakes are in flight. Under that a forged source
/// holds one handshake's state until its deadline at most, so the round
/// trip is saved for everyone else.
fn needs_retry(source: IpAddr, validated: bool, in_flight: usize, retry_above: usize) -> bool {
    !validated && !source.to_canonical().is_loopback() && in_flight > retry_above
}

/// QUIC handshakes in progress: connections accepted whose handshake has
/// not ended. Each [`Handshaking`] counts one until it is dropped, so a
/// handshake that fails, times out or is cut by shutdown leaves the count
/// too.
#[derive(Debug, Default, Clone)]
struct HandshakeCount(Arc<AtomicUsize>);

impl HandshakeCount {
    fn in_flight(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn start(&self) -> Handshaking {
        self.0.fetch_add(1, Ordering::Relaxed);
        Handshaking(self.0.clone())
    }
}

/// One handshake in [`HandshakeCount`], until dropped.
#[derive(Debug)]
struct Handshaking(Arc<AtomicUsize>);

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts QUIC connections on `endpoint` until shutdown. A handshake
/// permit is taken before each accept, as the TCP door does; quinn holds
/// attempts beyond it (up to `max_incoming`) meanwhile.
pub(crate) async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let handshakes = HandshakeCount::default();
    // Half of max_handshakes at most, so a server given few still asks a
    // flood for Retries before its permits run out.
    let retry_above = crate::limits::QUIC
        .retry_above_handshakes
        .min(shared.limits.max_handshakes / 2);
    loop {
        let permit = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            permit = shared.handshakes.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let incoming = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let source = incoming.remote_address().ip().to_canonical();
        if let Some(left) = session::penalised_for(&shared, Some(source)) {
            debug!(peer = %incoming.remote_address(), "QUIC refused: under a login penalty for {left:?} more");
            incoming.refuse();
            continue;
        }
        let validated = incoming.remote_address_validated();
        let in_flight = handshakes.in_flight();
        if needs_retry(source, validated, in_flight, retry_above) && incoming.may_retry() {
            // Stateless: the reply carries a token the client must echo.
            if let Err(err) = incoming.retry() {
                debug!("cannot send a Retry: {err}");
            }
            continue;
        }
        let handshake = Handshake {
            permit,
            counted: handshakes.start(),
            proven: validated || source.is_loopback(),
        };
        debug!(
            peer = %incoming.remote_address(),
            handshakes_in_flight = in_flight + 1,
            "QUIC handshake started"
        );
        let serving = shared.clone();
        let count = handshakes.clone();
        shared
            .tracker
            .spawn(async move { serve_connection(incoming, serving, handshake, count).await });
    }
    // The endpoint is not closed here: its connections close themselves
    // once their requests in flight are done, within the drain deadline.
}

/// A handshake under way: its `max_handshakes` permit, its place in the
/// count that decides on Retries, and whether its source proved its
/// address before it began.
struct Handshake {
    permit: OwnedSemaphorePermit,
    counted: Handshaking,
    proven: bool,
}

/// One QUIC connection, from handshake to close; each stream runs a
/// session of its own.
async fn serve_connection(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    handshake: Handshake,
    handshakes: HandshakeCount,
) {
    let remote = incoming.remote_address();
    let source = Some(remote.ip().to_canonical());
    let peer = format!("{remote} (QUIC)");
    // A client on this machine gets loopback's congestion controller.
    let accepted = match &shared.quic_loopback {
        Some(config) if remote.ip().to_canonical().is_loopback() => {
            incoming.accept_with(config.clone())
        }
        _ => incoming.accept(),
    };
    let connecting = match accepted {
        Ok(connecting) => connecting,
        Err(err) => {
            debug!(%peer, "QUIC connection failed before its handshake: {err}");
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + shared.limits.hello_timeout;
    let handshake_done = tokio::select! {
        biased;
        _ = shared.cancel.cancelled() => return,
        done = tokio::time::timeout_at(deadline, connecting) => done,
    };
    let Handshake {
        permit,
        counted,
        proven,
    } = handshake;
    drop((permit, counted));
    let in_flight = handshakes.in_flight();
    let connection = match handshake_done {
        Ok(Ok(connection)) => connection,
        Ok(Err(err)) => {
            info!(%peer, handshakes_in_flight = in_flight, "QUIC handshake failed: {err}");
            return;
        }
        Err(_) => {
            warn!(%peer, "QUIC handshake not done within {:?}", shared.limits.hello_timeout);
            // As a TLS handshake that never ends over TCP, when the source
            // is known to be real. A source that skipped the Retry may be
            // forged: penalising it would refuse the address's owner.
            if proven {
                session::login_failed(&shared, &peer, source, "no QUIC handshake in time");
            }
            return;
        }
    };
    if negotiated_alpn(&connection).as_deref() != Some(ALPN) {
        info!(%peer, "refused: the peer did not speak ferry/1");
        connection.close(
            close::WRONG_PROTOCOL.into(),
            b"this server speaks ferry/1 only",
        );
        return;
    }
    // A place among max_connections for the whole connection; without one
    // every stream's hello is answered `busy`.
    let slot = shared.connections.clone().try_acquire_owned().ok();
    let opened = Instant::now();
    info!(%peer, handshakes_in_flight = in_flight, "QUIC connection opened");
    let (streams, why) = serve_streams(&connection, &peer, source, &shared, slot.is_some()).await;
    let (code, reason): (u32, &[u8]) = match why {
        Closed::Peer => (close::DONE, b""),
        Closed::Idle => (close::IDLE, b"no stream open; idle timeout"),
        Closed::Penalised => (close::PENALISED, b"a failed login; try again later"),
        Closed::ShutDown => (close::SHUTTING_DOWN, b"the server is shutting down"),
    };
    connection.close(code.into(), reason);
    info!(
        %peer,
        streams,
        elapsed_ms = opened.elapsed().as_millis() as u64,
        end = ?why,
        "QUIC connection closed"
    );
}

/// Why a QUIC connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// The peer closed it, or it was lost.
    Peer,
    /// No stream was open for `idle_timeout`.
    Idle,
    /// A failed login put its source under a penalty.
    Penalised,
    /// The server is shutting down.
    ShutDown,
}

/// Accepts streams until the connection ends, each a session; then waits
/// for the sessions (which end by themselves on shutdown). Returns how
/// many streams there were and why it ended.
async fn serve_streams(
    connection: &quinn::Connection,
    peer: &str,
    source: Option<IpAddr>,
    shared: &Arc<Shared>,
    has_slot: bool,
) -> (u64, Closed) {
    let idle_timeout = shared.limits.idle_timeout;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut sessions = JoinSet::new();
    let mut opened = 0u64;
    let why = loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break Closed::ShutDown,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {
                if session::penalised_for(shared, source).is_some() {
                    break Closed::Penalised;
                }
                if sessions.is_empty() {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                }
            }
            _ = idle.as_mut(), if sessions.is_empty() => break Closed::Idle,
            accepted = connection.accept_bi() => {
                let (send, recv) = match accepted {
                    Ok(stream) => stream,
                    Err(err) => {
                        debug!(%peer, "QUIC connection ended: {err}");
                        break Closed::Peer;
                    }
                };
                opened += 1;
                let stream = Stream::Quic(Box::new(QuicStream::new(send, recv)));
                let peer = format!("{peer} stream {}", opened);
                let slot = if has_slot { Slot::Held } else { Slot::Missing };
                let shared = shared.clone();
                sessions.spawn(async move {
                    session::run_session(stream, &peer, source, &shared, None, slot).await;
                });
            }
        }
    };
    if why == Closed::Penalised {
        sessions.abort_all();
    }
    while sessions.join_next().await.is_some() {}
    (opened, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unvalidated_sources_off_loopback_under_pressure_are_asked_to_retry() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let above = 32;
        // Under pressure: every source not validated and off loopback.
        assert!(needs_retry(ip("192.0.2.7"), false, above + 1, above));
        assert!(needs_retry(ip("2001:db8::1"), false, above + 1, above));
        assert!(!needs_retry(ip("192.0.2.7"), true, above + 1, above));
        assert!(!needs_retry(ip("127.0.0.1"), false, above + 1, above));
        assert!(!needs_retry(ip("127.3.2.1"), false, above + 1, above));
        assert!(!needs_retry(ip("::1"), false, above + 1, above));
        // An IPv4 loopback source seen on a dual-stack socket.
        assert!(!needs_retry(
            ip("::ffff:127.0.0.1"),
            false,
            above + 1,
            above
        ));
        assert!(needs_retry(ip("::ffff:192.0.2.7"), false, above + 1, above));
        // Up to the threshold nobody pays the extra round trip.
        assert!(!needs_retry(ip("192.0.2.7"), false, 0, above));
        assert!(!needs_retry(ip("192.0.2.7"), false, above, above));
        assert!(!needs_retry(ip("2001:db8::1"), false, above, above));
    }

    #[test]
    fn a_handshake_leaves_the_count_however_it_ends() {
        let count = HandshakeCount::default();
        assert_eq!(count.in_flight(), 0);
        let first = count.start();
        let second = count.clone().start();
        assert_eq!(count.in_flight(), 2);
        drop(first);
        assert_eq!(count.in_flight(), 1);
        // A task cut at shutdown drops its handshake with it.
        let task = std::thread::spawn(move || drop(second));
        task.join().unwrap();
        assert_eq!(count.in_flight(), 0);
    }
}
