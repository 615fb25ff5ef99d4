//! The datagram services and raw TCP echo, against the real binary: the
//! tutorial's time protocol, SNTP checked by NTP clients nobody here wrote,
//! UDP and TCP echo.

mod echo;
mod sntp;
mod time;

use std::net::UdpSocket;
use std::time::Duration;

use crate::util::DEADLINE;

/// Sends one datagram to `addr` and returns the reply, from a plain socket
/// as the tutorial's clients use.
pub fn ask(addr: &str, request: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket.send_to(request, addr).unwrap();
    let mut buf = vec![0u8; 70_000];
    let (len, from) = socket.recv_from(&mut buf).expect("a reply");
    assert_eq!(from.to_string(), addr, "the reply comes from the service");
    buf.truncate(len);
    buf
}

/// Sends one datagram and expects no reply within `quiet`.
pub fn expect_silence(addr: &str, request: &[u8], quiet: Duration) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(quiet)).unwrap();
    socket.send_to(request, addr).unwrap();
    let mut buf = [0u8; 100];
    if let Ok((len, _)) = socket.recv_from(&mut buf) {
        panic!("expected no reply, got {:?}", &buf[..len]);
    }
}
