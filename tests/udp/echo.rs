//! UDP echo and raw TCP echo (RFC 862), as the tutorial's servers answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::ask;
use crate::util::{Server, DEADLINE};

#[test]
fn udp_echo_returns_each_datagram_whole_and_upper_cased_on_request() {
    let plain = Server::start(&["--udp-echo", "127.0.0.1:0"]);
    let addr = plain.service_addr("udp echo");
    assert_eq!(ask(addr, b"hello \xff"), b"hello \xff");
    let big: Vec<u8> = (0..65_507u32).map(|i| i as u8).collect();
    assert_eq!(ask(addr, &big), big, "the largest IPv4 datagram, not cut");
    let run = plain
        .client(&["udp-echo", "--server", addr, "hi", "there"])
        .run();
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "hi there\n"),
        "{run:?}"
    );

    let upper = Server::start(&["--udp-echo", "127.0.0.1:0", "--echo-upper"]);
    let addr = upper.service_addr("udp echo");
    assert_eq!(ask(addr, b"hello, ferry"), b"HELLO, FERRY");
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

#[test]
fn tcp_echo_serves_many_clients_at_once_beside_silent_and_vanishing_ones() {
    let server = Server::start(&["--tcp-echo", "127.0.0.1:0", "--echo-upper"]);
    let addr = server.service_addr("tcp echo").to_string();
    // One that never sends, and one that leaves mid-stream.
    let _silent = connect(&addr);
    let mut leaving = connect(&addr);
    leaving.write_all(b"half").unwrap();
    drop(leaving);

    let clients: Vec<_> = (0..50)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut stream = connect(&addr);
                let message: Vec<u8> = format!("client {i} says hi; ").repeat(3000).into_bytes();
                let sent = message.clone();
                let mut writer = stream.try_clone().unwrap();
                let send = std::thread::spawn(move || {
                    writer.write_all(&sent).unwrap();
                    writer.shutdown(std::net::Shutdown::Write).unwrap();
                });
                let mut back = Vec::new();
                stream.read_to_end(&mut back).unwrap();
                send.join().unwrap();
                assert_eq!(back, message.to_ascii_uppercase(), "client {i}");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    server.wait_for_log("tcp echo connection ended: closed by the peer");
}

#[test]
fn a_silent_tcp_echo_client_is_closed_after_the_idle_timeout() {
    let server = Server::start(&["--tcp-echo", "127.0.0.1:0", "--idle-timeout", "0.5"]);
    let mut silent = connect(server.service_addr("tcp echo"));
    let started = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(silent.read(&mut buf).unwrap(), 0, "closed by the server");
    assert!(started.elapsed() >= Duration::from_millis(400));
    server.wait_for_log("idle past the idle timeout");
}

#[test]
fn settings_come_from_the_config_file() {
    let sandbox = crate::util::Sandbox::new();
    let config = sandbox.path().join("ferry.toml");
    std::fs::write(&config, "idle-timeout = 0.5\necho-upper = true\n").unwrap();
    let server = Server::start_in(
        &sandbox,
        &[
            "--config",
            config.to_str().unwrap(),
            "--tcp-echo",
            "127.0.0.1:0",
        ],
    );
    let mut stream = connect(server.service_addr("tcp echo"));
    stream.write_all(b"from the file").unwrap();
    let mut back = [0u8; 13];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"FROM THE FILE", "echo-upper came from the file");
    let mut buf = [0u8; 1];
    assert_eq!(
        stream.read(&mut buf).unwrap(),
        0,
        "idle-timeout came from the file"
    );
    server.wait_for_log("idle past the idle timeout");
}
