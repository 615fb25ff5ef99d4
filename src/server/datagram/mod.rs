//! The datagram door, like inetd's built-ins: the tutorial's time service,
//! an SNTP server, echo, a gateway into the chat hub (`chat`, async,
//! as it shares the hub with framed clients), and the tutorial's UDP
//! command service (`exec`, async, as it waits on commands). One socket loop serves the
//! first three; what each answers is pure code in its service
//! ([`crate::services::time`], [`crate::services::sntp`],
//! [`crate::services::echo`]), which never touches a socket or the clock.
//!
//! UDP is message-based: no sticky packets, but datagrams can be lost or
//! cut. Every datagram is read into a buffer one byte larger than the
//! service accepts, so one that is too large is seen and refused with an
//! error datagram, never silently cut.
//!
//! A UDP source address is whatever the sender wrote, so every service,
//! the gateway included, answers through one [`guard::Guard`] per server:
//! no answer to the server's own ports or to well-known service ports, one
//! rate limit per source address ([`rate`]), and no reply over 4x the
//! datagram it answers, checked here, after the service's pure code. The
//! tutorial's UDP commands ([`exec`]) answer in many datagrams, so a reply
//! budget per source bounds them instead of the 4x cap.

pub mod chat;
pub mod exec;
pub mod guard;
pub mod rate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::limits::{UDP_MAX_PAYLOAD_BYTES, UDP_RECEIVE_BUFFER_BYTES};
use crate::services::{echo, sntp, time};

/// The service a UDP socket runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// A strftime format in, the local time out (the tutorial's protocol).
    Time,
    /// SNTP server mode.
    Sntp,
    /// The same bytes back, upper-cased with `upper`.
    Echo {
        /// Upper-case the reply, as the tutorial's servers do.
        upper: bool,
    },
}

impl Service {
    /// The name in the server's `listening` line and logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::Time => "udp time",
            Service::Sntp => "sntp",
            Service::Echo { .. } => "udp echo",
        }
    }

    /// The `ferry serve` flag that runs it.
    pub fn flag(self) -> &'static str {
        match self {
            Service::Time => "--udp-time",
            Service::Sntp => "--sntp",
            Service::Echo { .. } => "--udp-echo",
        }
    }

    /// What the service sends instead of a reply over the amplification
    /// cap, if anything: the time service's formats can expand; an echo or
    /// SNTP reply is never larger than its request.
    pub fn over_cap_reply(self) -> Option<&'static str> {
        match self {
            Service::Time => Some(time::OVER_CAP_REPLY),
            Service::Sntp | Service::Echo { .. } => None,
        }
    }

    /// The largest datagram the service takes.
    pub fn max_request_bytes(self) -> usize {
        match self {
            Service::Time => crate::limits::TIME_MAX_FORMAT_BYTES,
            // Extension fields and MACs are allowed and ignored.
            Service::Sntp => UDP_RECEIVE_BUFFER_BYTES - 1,
            Service::Echo { .. } => UDP_MAX_PAYLOAD_BYTES,
        }
    }
}

/// What one service's loop answers with: the service, and the guard all
/// the server's datagram services share.
struct State {
    service: Service,
    guard: Arc<guard::Guard>,
}

impl State {
    /// The reply to `request` from `from`, or `None` for silence: every
    /// service's answer passes the source check before and the
    /// amplification cap after.
    fn answer(&self, request: &[u8], from: SocketAddr, received: SystemTime) -> Option<Vec<u8>> {
        let name = self.service.name();
        let ntp_client = self.service == Service::Sntp && sntp::is_client_request(request);
        // Over its rate, SNTP still tells a client to slow down (a reply no
        // larger than the request); the others say nothing.
        let limited = match self.guard.admit(from, ntp_client, Instant::now()) {
            Ok(()) => false,
            Err(guard::Refusal::OverRate) if ntp_client => true,
            Err(refusal) => {
                debug!(%from, "{name}: not answered: {}", refusal.reason());
                return None;
            }
        };
        let reply = self.reply(request, received, limited)?;
        let family = guard::Family::of(from);
        if guard::reply_fits(request.len(), reply.len(), family) {
            return Some(reply);
        }
        debug!(%from, bytes = request.len(), reply = reply.len(), "{name}: reply over the cap");
        let refusal = self.service.over_cap_reply()?;
        guard::reply_fits(request.len(), refusal.len(), family).then(|| refusal.into())
    }

    /// What the service answers `request`, before the cap; `limited` says
    /// its source is over its rate.
    fn reply(&self, request: &[u8], received: SystemTime, limited: bool) -> Option<Vec<u8>> {
        let max = self.service.max_request_bytes();
        if request.len() > max {
            let refusal = format!(
                "error: the datagram is over {max} bytes, the most the {} service takes",
                self.service.name()
            );
            return Some(refusal.into_bytes());
        }
        match self.service {
            Service::Time => {
                let now = chrono::DateTime::<chrono::Local>::from(received);
                Some(time::reply(request, &now))
            }
            Service::Sntp => match sntp::reply(request, received, SystemTime::now(), limited) {
                sntp::Reply::Drop => None,
                sntp::Reply::Time(out) | sntp::Reply::Rate(out) => Some(out.to_vec()),
            },
            Service::Echo { upper } => Some(echo::datagram_reply(request, upper)),
        }
    }
}

/// How long a service's thread waits for a datagram before it looks
/// whether the server is shutting down: the most shutdown waits for it.
const SHUTDOWN_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves `service` on `socket` until `cancel`, on the calling thread;
/// `guard` is what every datagram service of the server checks sources
/// against.
///
/// Each service has a thread of its own that blocks in `recvfrom`, as the
/// simplest UDP server does: an async loop pays an `epoll_wait` each time
/// the queue runs dry, which request-reply traffic makes it do often
/// (bench/RESULTS.md).
pub fn serve(
    socket: std::net::UdpSocket,
    service: Service,
    guard: Arc<guard::Guard>,
    cancel: CancellationToken,
) {
    if let Err(err) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(SHUTDOWN_CHECK)))
    {
        warn!("{}: cannot set up the socket: {err}", service.name());
        return;
    }
    // One byte over the cap: a datagram that fills it was too large.
    let mut buf = vec![0u8; (service.max_request_bytes() + 1).min(UDP_RECEIVE_BUFFER_BYTES)];
    let state = State { service, guard };
    while !cancel.is_cancelled() {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            // A timeout to look at `cancel`, or an ICMP error for an
            // earlier reply (the peer went away), which concerns nobody now.
            Err(err) => {
                if !matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    debug!("{}: receive failed: {err}", service.name());
                }
                continue;
            }
        };
        let at = SystemTime::now();
        let Some(reply) = state.answer(&buf[..len], from, at) else {
            debug!(%from, bytes = len, "{}: no reply", service.name());
            continue;
        };
        debug!(%from, bytes = len, reply = reply.len(), "{}", service.name());
        if let Err(err) = socket.send_to(&reply, from) {
            warn!(%from, "{}: cannot reply: {err}", service.name());
        }
    }
}
