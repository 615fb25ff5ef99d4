//! The SNTP server, checked by NTP clients nobody here wrote: the `sntpc`
//! crate (a strict client that checks replies as RFC 5905 A.5.1.1 says),
//! which runs everywhere; and, when installed (`.ci/run` installs them),
//! chrony (run so that it never touches the clock), rdate, and Python's
//! ntplib.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use super::{ask, expect_silence};
use crate::util::outside_tool;
use crate::util::{Server, DEADLINE};

fn sntp_server() -> (Server, String) {
    let server = Server::start(&["--sntp", "127.0.0.1:0"]);
    let port = server
        .service_addr("sntp")
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    (server, port)
}

/// One request from `sntpc` to `addr`, as its own strict checks judge the
/// reply.
fn sntpc_request(addr: &str) -> sntpc::Result<sntpc::NtpResult> {
    let server: SocketAddr = addr.parse().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let socket = sntpc_net_std::UdpSocketWrapper::new(socket);
    let context = sntpc::NtpContext::new(sntpc::StdTimestampGen::default());
    // sntpc is async; over a std socket its futures are ready at once.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(sntpc::get_time(server, &socket, context))
}

#[test]
fn sntpc_accepts_the_reply_and_measures_an_offset_under_10_ms() {
    let server = Server::start(&["--sntp", "127.0.0.1:0"]);
    let reply = sntpc_request(server.service_addr("sntp"))
        .unwrap_or_else(|err| panic!("sntpc refused the reply: {err:?}"));
    assert_eq!(reply.stratum, 1, "a primary server on its local clock");
    assert_eq!(reply.leap_indicator, 0);
    assert_eq!(&reply.reference_id, b"LOCL");
    // Microseconds; the server reads the same clock as the test.
    assert!(reply.offset.abs() < 10_000, "offset {} us", reply.offset);
}

#[test]
fn sntpc_reads_the_rate_kiss_of_a_burst() {
    // Loopback sources are exempt from the rate limit unless asked.
    let server = Server::start(&["--sntp", "127.0.0.1:0", "--penalize-loopback"]);
    let addr = server.service_addr("sntp");
    let kissed = (0..20).find_map(|_| sntpc_request(addr).err());
    assert_eq!(
        kissed,
        Some(sntpc::Error::KissOfDeath(sntpc::KissOfDeathCode::Rate)),
        "20 requests at once went past the burst without a RATE kiss"
    );
}

#[test]
fn chrony_accepts_the_server_as_a_source() {
    let Some(chronyd) = outside_tool::program("chronyd", "apt install chrony") else {
        return;
    };
    let (server, port) = sntp_server();
    let dir = server.sandbox.path().join("chrony");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "pidfile {0}/chronyd.pid\ndriftfile {0}/drift\ncmdport 0\n",
            dir.display()
        ),
    )
    .unwrap();
    // -Q: measure and print the offset, never set the clock; -t: give up
    // after 10 s.
    let output = Command::new(chronyd)
        .args(["-Q", "-t", "10", "-f"])
        .arg(&conf)
        .arg(format!("server 127.0.0.1 port {port} iburst maxsamples 1"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("System clock wrong by"),
        "chrony measured no offset, so it did not accept a reply:\n{text}"
    );
}

#[test]
fn rdate_reads_the_time() {
    let Some(rdate) = outside_tool::program("rdate", "apt install rdate") else {
        return;
    };
    let (_server, port) = sntp_server();
    let output = Command::new(rdate)
        .args(["-n", "-p", "-o", &port, "127.0.0.1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(!output.stdout.is_empty());
}

#[test]
fn ntplib_measures_an_offset_under_10_ms() {
    if !outside_tool::python_module("ntplib", "pip install ntplib") {
        return;
    }
    let (_server, port) = sntp_server();
    let script = format!(
        "import ntplib\n\
         r = ntplib.NTPClient().request('127.0.0.1', version=4, port={port}, timeout=5)\n\
         print(r.offset, r.stratum, r.leap, r.mode)\n"
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ntplib failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let offset: f64 = fields[0].parse().unwrap();
    assert!(offset.abs() < 0.010, "offset {offset} s");
    assert_eq!(
        &fields[1..],
        ["1", "0", "4"],
        "stratum 1, leap 0, server mode"
    );
}

#[test]
fn short_packets_get_no_reply_and_a_burst_gets_a_rate_kiss() {
    // Loopback sources are exempt from the rate limit unless asked.
    let server = Server::start(&["--sntp", "127.0.0.1:0", "--penalize-loopback"]);
    let addr = server.service_addr("sntp");
    expect_silence(addr, &[0x23; 47], Duration::from_millis(300));
    let mut request = [0u8; 48];
    request[0] = 0x23; // VN 4, client
    request[40..48].copy_from_slice(b"origin!!");
    let mut kissed = false;
    for _ in 0..20 {
        let reply = ask(addr, &request);
        assert_eq!(reply.len(), 48, "never larger than the request");
        assert_eq!(&reply[24..32], b"origin!!");
        if reply[1] == 0 {
            assert_eq!(&reply[12..16], b"RATE");
            kissed = true;
            break;
        }
    }
    assert!(kissed, "20 requests at once went past the burst");
}
