//! What every datagram service checks before it answers, so that a forged
//! source address cannot turn ferry against itself or anyone else. A UDP
//! source is whatever the sender wrote, so a datagram "from" one of the
//! server's own ports would have the server answer itself, and one from
//! another small service (echo, chargen) would have the two answer each
//! other without end. Neither is ever answered; nothing is sent to say so.
//! And since the reply goes wherever the source says, no reply may be more
//! than [`DATAGRAM_MAX_AMPLIFICATION`] times the datagram it answers, and
//! each source address gets answers at a bounded rate, shared by all the
//! services of one server ([`Guard`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use super::rate::RateLimit;
use crate::limits::{
    DATAGRAM_MAX_AMPLIFICATION, DATAGRAM_RATE_BURST, DATAGRAM_RATE_INTERVAL,
    DATAGRAM_RATE_MAX_SOURCES,
};

/// Source ports never answered: echo, daytime, chargen and time (RFC 862,
/// 867, 864, 868), which answer whatever reaches them, and NTP, whose
/// servers answer too. A datagram from one is either a loop being started
/// or a reply nobody asked ferry for.
pub const WELL_KNOWN_SERVICE_PORTS: [u16; 5] = [7, 13, 19, 37, NTP_PORT];

/// The port NTP runs on: the one well-known port the SNTP service answers,
/// for client requests only, as NTP servers do.
pub const NTP_PORT: u16 = 123;

/// Why a datagram gets no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It claims to come from one of the server's own sockets.
    OwnPort,
    /// It comes from a well-known service's port (echo, daytime, chargen,
    /// time, NTP), which would answer back.
    WellKnownPort,
    /// Its source address is past its burst and rate.
    OverRate,
}

impl Refusal {
    /// Why, for the log.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::OwnPort => "from one of the server's own ports",
            Refusal::WellKnownPort => "from a well-known service port",
            Refusal::OverRate => "the source is over its rate",
        }
    }
}

/// The addresses this server is bound to, UDP and TCP: a datagram from one
/// of them would be answered to the server itself.
#[derive(Debug, Clone, Default)]
pub struct OwnAddresses {
    ports: Vec<u16>,
    ips: Vec<IpAddr>,
    /// Some socket is bound to `0.0.0.0` or `[::]`, so every address of
    /// this host reaches it.
    any_ip: bool,
}

impl OwnAddresses {
    /// The server's bound socket addresses.
    pub fn new(bound: impl IntoIterator<Item = SocketAddr>) -> OwnAddresses {
        let mut own = OwnAddresses::default();
        for addr in bound {
            let ip = addr.ip().to_canonical();
            own.any_ip |= ip.is_unspecified();
            own.ports.push(addr.port());
            own.ips.push(ip);
        }
        own.ports.sort_unstable();
        own.ports.dedup();
        own.ips.sort_unstable();
        own.ips.dedup();
        own
    }

    /// Whether `from` may be one of the server's own sockets: one of its
    /// ports, at an address that reaches the server.
    pub fn contains(&self, from: SocketAddr) -> bool {
        if self.ports.binary_search(&from.port()).is_err() {
            return false;
        }
        let ip = from.ip().to_canonical();
        ip.is_loopback()
            || ip.is_unspecified()
            || self.ips.contains(&ip)
            || (self.any_ip && is_address_of_this_host(ip))
    }
}

/// Whether `ip` is an address of this host, as the kernel sees it now
/// (addresses come and go): only a local address can be bound. Asked only
/// for datagrams from one of the server's ports, so rarely.
fn is_address_of_this_host(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Whether a datagram from `from` may be answered at all. `ntp_client`
/// says it is an NTP client request to the SNTP service, which NTP clients
/// may send from port 123.
pub fn check_source(own: &OwnAddresses, from: SocketAddr, ntp_client: bool) -> Result<(), Refusal> {
    if own.contains(from) {
        return Err(Refusal::OwnPort);
    }
    let port = from.port();
    if WELL_KNOWN_SERVICE_PORTS.contains(&port) && !(port == NTP_PORT && ntp_client) {
        return Err(Refusal::WellKnownPort);
    }
    Ok(())
}

/// What every datagram service of one server checks a source against: the
/// server's own addresses and well-known ports, and one rate limit per
/// source address for all the services together. Shared between the
/// services' threads.
#[derive(Debug)]
pub struct Guard {
    own: OwnAddresses,
    rate: Mutex<RateLimit>,
    penalize_loopback: bool,
}

impl Guard {
    /// A guard for a server bound to `own`, with the rate limits in
    /// [`crate::limits`]. Loopback sources are exempt from the rate limit
    /// (benchmarks and local tools send fast) unless `penalize_loopback`.
    pub fn new(own: OwnAddresses, penalize_loopback: bool) -> Guard {
        let rate = RateLimit::new(
            DATAGRAM_RATE_BURST,
            DATAGRAM_RATE_INTERVAL,
            DATAGRAM_RATE_MAX_SOURCES,
        );
        Guard {
            own,
            rate: Mutex::new(rate),
            penalize_loopback,
        }
    }

    /// Whether a datagram from `from`, received at `now`, may be answered;
    /// it counts against the source's rate if it passes [`check_source`].
    /// `ntp_client` says it is an NTP client request to the SNTP service.
    pub fn admit(&self, from: SocketAddr, ntp_client: bool, now: Instant) -> Result<(), Refusal> {
        check_source(&self.own, from, ntp_client)?;
        let ip = from.ip().to_canonical();
        if ip.is_loopback() && !self.penalize_loopback {
            return Ok(());
        }
        // A panic elsewhere while holding the lock leaves counts, nothing
        // that cannot be used.
        let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        if rate.over(ip, now) {
            Err(Refusal::OverRate)
        } else {
            Ok(())
        }
    }

    /// Source addresses whose rate is tracked now.
    pub fn tracked_sources(&self) -> usize {
        self.rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sources()
    }
}

/// The IP version a datagram travels over, which sets its header bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4: 20 bytes of IP header.
    V4,
    /// IPv6: 40 bytes of IP header.
    V6,
}

impl Family {
    /// The family a datagram from `addr` came over; an IPv4-mapped address
    /// on a dual-stack socket came over IPv4.
    pub fn of(addr: SocketAddr) -> Family {
        match addr.ip().to_canonical() {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// IP and UDP header bytes in front of every datagram's payload.
    pub fn header_bytes(self) -> usize {
        const UDP_HEADER: usize = 8;
        match self {
            Family::V4 => 20 + UDP_HEADER,
            Family::V6 => 40 + UDP_HEADER,
        }
    }
}

/// Whether a reply of `reply_bytes` may answer a datagram of
/// `request_bytes` (payloads): on the wire, at most
/// [`DATAGRAM_MAX_AMPLIFICATION`] times its size.
pub fn reply_fits(request_bytes: usize, reply_bytes: usize, family: Family) -> bool {
    let header = family.header_bytes();
    reply_bytes.saturating_add(header)
        <= request_bytes
            .saturating_add(header)
            .saturating_mul(DATAGRAM_MAX_AMPLIFICATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_services_over_cap_refusal_answers_even_an_empty_request() {
        use crate::services::time::OVER_CAP_REPLY;
        assert!(OVER_CAP_REPLY.starts_with("error: "));
        assert!(reply_fits(0, OVER_CAP_REPLY.len(), Family::V4));
    }

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn own() -> OwnAddresses {
        OwnAddresses::new([at("127.0.0.1:9000"), at("192.0.2.7:7007"), at("[::1]:9001")])
    }

    #[test]
    fn the_servers_own_ports_on_its_own_addresses_are_refused() {
        let own = own();
        for from in [
            "127.0.0.1:9000",
            "127.0.0.2:7007", // any loopback address reaches a loopback socket
            "0.0.0.0:9001",   // sending to 0.0.0.0 reaches this host
            "192.0.2.7:9000", // an address the server is bound to
            "[::ffff:127.0.0.1]:9000", // IPv4 through a dual-stack socket
            "[::1]:7007",
        ] {
            assert_eq!(
                check_source(&own, at(from), false),
                Err(Refusal::OwnPort),
                "{from}"
            );
        }
        // Another host may use the same port number; the server does not
        // answer itself by answering it.
        assert_eq!(check_source(&own, at("192.0.2.8:9000"), false), Ok(()));
        assert_eq!(check_source(&own, at("127.0.0.1:9002"), false), Ok(()));
    }

    #[test]
    fn on_an_unspecified_address_every_address_of_this_host_is_own() {
        let own = OwnAddresses::new([at("0.0.0.0:9000")]);
        assert_eq!(
            check_source(&own, at("127.0.0.9:9000"), false),
            Err(Refusal::OwnPort)
        );
        // 192.0.2.0/24 is for documentation: no host has it.
        assert_eq!(check_source(&own, at("192.0.2.1:9000"), false), Ok(()));
        assert!(is_address_of_this_host("127.0.0.1".parse().unwrap()));
        assert!(!is_address_of_this_host("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn every_service_draws_on_one_rate_per_source_and_loopback_is_exempt() {
        let now = Instant::now();
        let remote = at("192.0.2.8:40000");
        let local = at("127.0.0.1:40000");
        for penalize_loopback in [false, true] {
            let guard = Guard::new(own(), penalize_loopback);
            for _ in 0..DATAGRAM_RATE_BURST {
                assert_eq!(guard.admit(remote, false, now), Ok(()));
            }
            // The same address on another port, to another service.
            let again = at("192.0.2.8:40001");
            assert_eq!(guard.admit(again, true, now), Err(Refusal::OverRate));
            let later = now + DATAGRAM_RATE_INTERVAL;
            assert_eq!(guard.admit(remote, false, later), Ok(()));
            let local_answered = (0..100)
                .filter(|_| guard.admit(local, false, now).is_ok())
                .count();
            let expected = if penalize_loopback {
                DATAGRAM_RATE_BURST as usize
            } else {
                100
            };
            assert_eq!(local_answered, expected, "penalize {penalize_loopback}");
        }
    }

    #[test]
    fn the_guard_tracks_a_bounded_number_of_sources() {
        let guard = Guard::new(OwnAddresses::default(), true);
        let now = Instant::now();
        for i in 0..2 * DATAGRAM_RATE_MAX_SOURCES as u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            let _ = guard.admit(SocketAddr::new(ip, 40000), false, now);
        }
        assert_eq!(guard.tracked_sources(), DATAGRAM_RATE_MAX_SOURCES);
    }

    #[test]
    fn refused_sources_do_not_spend_tokens() {
        let guard = Guard::new(own(), true);
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(
                guard.admit(at("127.0.0.1:9000"), false, now),
                Err(Refusal::OwnPort)
            );
        }
        assert_eq!(guard.admit(at("127.0.0.1:40000"), false, now), Ok(()));
    }

    #[test]
    fn a_reply_fits_in_four_times_its_request_on_the_wire() {
        // IPv4: an empty request is 28 bytes, so 112 for the reply, 84 of
        // them payload.
        assert!(reply_fits(0, 84, Family::V4));
        assert!(!reply_fits(0, 85, Family::V4));
        assert!(reply_fits(1, 88, Family::V4));
        assert!(!reply_fits(1, 89, Family::V4));
        // IPv6: 48 bytes of headers, so 192 - 48 = 144.
        assert!(reply_fits(0, 144, Family::V6));
        assert!(!reply_fits(0, 145, Family::V6));
        // An echo, or an SNTP reply to a 48-byte request, always fits.
        assert!(reply_fits(65_507, 65_507, Family::V4));
        assert!(reply_fits(48, 48, Family::V6));
        assert!(reply_fits(usize::MAX, usize::MAX, Family::V6));
        assert_eq!(Family::of(at("[::ffff:127.0.0.1]:1")), Family::V4);
        assert_eq!(Family::of(at("[::1]:1")), Family::V6);
    }

    #[test]
    fn well_known_ports_are_refused_but_ntp_clients() {
        let own = OwnAddresses::default();
        for port in WELL_KNOWN_SERVICE_PORTS {
            let from = SocketAddr::new("192.0.2.8".parse().unwrap(), port);
            assert_eq!(
                check_source(&own, from, false),
                Err(Refusal::WellKnownPort),
                "{port}"
            );
        }
        assert_eq!(check_source(&own, at("192.0.2.8:123"), true), Ok(()));
        assert_eq!(
            check_source(&own, at("192.0.2.8:7"), true),
            Err(Refusal::WellKnownPort)
        );
        assert_eq!(check_source(&own, at("192.0.2.8:40000"), false), Ok(()));
    }
}
