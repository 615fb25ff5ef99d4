//! An SNTP server (RFC 4330; server mode of RFC 5905) as pure code: the
//! reply to a request given the times the socket loop read, and whether
//! its source is over the rate every datagram service shares
//! ([`crate::server::datagram::rate`]). No sockets and no clock here.
//!
//! ```text
//!  0       1       2       3
//! +-------+-------+-------+-------+
//! |LI|VN|M| strat | poll  | prec  |   LI 0, VN copied, mode 4 (server)
//! | root delay                    |
//! | root dispersion               |
//! | reference id                  |   "LOCL" (a stratum 1 local clock), or
//! | reference timestamp (8)       |   the kiss code "RATE" at stratum 0
//! | originate timestamp (8)       |   the request's transmit timestamp
//! | receive timestamp (8)         |   when the request arrived
//! | transmit timestamp (8)        |   when the reply leaves
//! +-------------------------------+
//! ```
//!
//! Requests shorter than 48 bytes, or not in client mode, get no reply; a
//! reply is always 48 bytes, never more than the request, so the service
//! cannot amplify traffic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The size of an NTP packet without extensions, and of every reply.
pub const PACKET_BYTES: usize = 48;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// The stratum this server claims: a primary server on its local clock,
/// which strict clients accept (they reject stratum 0 and 16).
const STRATUM: u8 = 1;

/// log2 of the clock's precision in seconds: about a microsecond.
const PRECISION: i8 = -20;

/// What to send back for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Nothing: too short, or not a client request.
    Drop,
    /// A time reply.
    Time([u8; PACKET_BYTES]),
    /// A Kiss-o'-Death telling the client to slow down.
    Rate([u8; PACKET_BYTES]),
}

/// The reply to `request`, which arrived at `received`; `transmit` is the
/// time stamped as the reply leaves. `limited` says the source is over its
/// rate.
pub fn reply(request: &[u8], received: SystemTime, transmit: SystemTime, limited: bool) -> Reply {
    if !is_client_request(request) {
        return Reply::Drop;
    }
    let version = (request[0] >> 3) & 0b111;
    let mut out = [0u8; PACKET_BYTES];
    // Originate: the client's transmit timestamp, so it can match the reply.
    out[24..32].copy_from_slice(&request[40..48]);
    if limited {
        out[0] = (3 << 6) | (version << 3) | 4; // LI 3: unsynchronised
        out[1] = 0; // stratum 0: a kiss code in the reference id
        out[2] = request[2];
        out[3] = PRECISION as u8;
        out[12..16].copy_from_slice(b"RATE");
        return Reply::Rate(out);
    }
    out[0] = (version << 3) | 4; // LI 0, VN copied, mode 4
    out[1] = STRATUM;
    out[2] = request[2].clamp(4, 17); // poll: the client's, kept sane
    out[3] = PRECISION as u8;
    // Root delay 0; root dispersion about 1 ms (in 16.16 seconds).
    out[8..12].copy_from_slice(&66u32.to_be_bytes());
    out[12..16].copy_from_slice(b"LOCL");
    out[16..24].copy_from_slice(&timestamp(received));
    out[32..40].copy_from_slice(&timestamp(received));
    out[40..48].copy_from_slice(&timestamp(transmit));
    Reply::Time(out)
}

/// Whether `request` is an NTP client request this server answers: 48
/// bytes or more, mode 3 (client), version 1 to 4.
pub fn is_client_request(request: &[u8]) -> bool {
    let Some(&first) = request.first() else {
        return false;
    };
    let version = (first >> 3) & 0b111;
    let mode = first & 0b111;
    request.len() >= PACKET_BYTES && mode == 3 && (1..=4).contains(&version)
}

/// `time` as a 64-bit NTP timestamp: seconds since 1900 and a binary
/// fraction.
pub fn timestamp(time: SystemTime) -> [u8; 8] {
    let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = (since_unix.as_secs() + NTP_UNIX_OFFSET_SECS) as u32; // era 0 wraps in 2036
    let fraction = ((u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&secs.to_be_bytes());
    out[4..].copy_from_slice(&fraction.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(version: u8, mode: u8) -> [u8; 48] {
        let mut packet = [0u8; 48];
        packet[0] = (version << 3) | mode;
        packet[2] = 6;
        packet[40..48].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        packet
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn a_client_request_gets_a_synchronised_server_reply() {
        let received = at(1_764_165_789, 500_000_000);
        let transmit = at(1_764_165_789, 500_100_000);
        let Reply::Time(out) = reply(&request(4, 3), received, transmit, false) else {
            panic!("no time reply");
        };
        assert_eq!(out[0] >> 6, 0, "LI 0");
        assert_eq!((out[0] >> 3) & 7, 4, "VN copied");
        assert_eq!(out[0] & 7, 4, "server mode");
        assert!((1..=15).contains(&out[1]), "stratum");
        assert_eq!(&out[12..16], b"LOCL");
        assert_eq!(&out[24..32], &[1, 2, 3, 4, 5, 6, 7, 8], "originate");
        // 1,764,165,789 + 2,208,988,800 = 3,973,154,589 seconds; half a
        // second is 0x8000_0000.
        assert_eq!(&out[32..36], &3_973_154_589u32.to_be_bytes());
        assert_eq!(&out[36..40], &0x8000_0000u32.to_be_bytes());
        assert_eq!(out[40..44], out[32..36], "same second");
        assert!(out[44..48] > out[36..40], "transmit after receive");
        let Reply::Time(v3) = reply(&request(3, 3), received, transmit, false) else {
            panic!()
        };
        assert_eq!((v3[0] >> 3) & 7, 3);
    }

    #[test]
    fn short_or_non_client_packets_get_nothing() {
        let now = at(0, 0);
        assert_eq!(reply(&[0x23; 47], now, now, false), Reply::Drop);
        assert_eq!(reply(&[], now, now, false), Reply::Drop);
        for (version, mode) in [(4, 4), (4, 1), (4, 6), (0, 3), (5, 3), (7, 3)] {
            assert_eq!(
                reply(&request(version, mode), now, now, false),
                Reply::Drop,
                "{version}/{mode}"
            );
        }
    }

    #[test]
    fn an_over_rate_client_gets_a_kiss_of_death() {
        let now = at(1_764_165_789, 0);
        let Reply::Rate(out) = reply(&request(4, 3), now, now, true) else {
            panic!("no kiss")
        };
        assert_eq!(out[1], 0, "stratum 0");
        assert_eq!(&out[12..16], b"RATE");
        assert_eq!(&out[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
        // Only a well-formed request is kissed.
        assert_eq!(reply(&[0x23; 20], now, now, true), Reply::Drop);
    }

    proptest! {
        #[test]
        fn a_reply_is_never_larger_than_its_request(request in proptest::collection::vec(any::<u8>(), 0..200), limited: bool) {
            let now = at(1_764_165_789, 0);
            match reply(&request, now, now, limited) {
                Reply::Drop => {}
                Reply::Time(out) | Reply::Rate(out) => {
                    prop_assert!(out.len() <= request.len());
                    prop_assert_eq!(&out[24..32], &request[40..48]);
                }
            }
        }
    }
}
