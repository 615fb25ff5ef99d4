//! The UDP gateway: a plain socket, as the tutorial's QQ client uses, in
//! the same chat as framed clients.

use std::net::UdpSocket;

use super::{chat, chat_server, Listener};
use crate::util::DEADLINE;

fn udp_user(server: &crate::util::Server) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket.connect(server.service_addr("udp chat")).unwrap();
    socket
}

fn say(socket: &UdpSocket, text: &str) {
    socket.send(text.as_bytes()).unwrap();
}

/// Receives datagrams until one satisfies `matches`.
pub(crate) fn expect(socket: &UdpSocket, matches: impl Fn(&str) -> bool) -> String {
    let mut buf = [0u8; 70_000];
    let mut seen = Vec::new();
    loop {
        let len = socket
            .recv(&mut buf)
            .unwrap_or_else(|_| panic!("no such datagram; saw {seen:?}"));
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if matches(&text) {
            return text;
        }
        seen.push(text);
    }
}

#[test]
fn a_plain_udp_socket_chats_with_framed_clients_both_ways() {
    let server = chat_server(&["--udp-chat", "127.0.0.1:0"]);
    let bob = Listener::start(&server, "bob", &[]);
    let qq = udp_user(&server);
    // Gateway names carry a `~`, which framed names cannot.
    say(&qq, "/nick 狗哥alex");
    expect(&qq, |t| t == "* you are now ~狗哥alex");
    bob.expect(|l| l.contains("is now ~狗哥alex"));

    say(&qq, "hello room");
    bob.expect(|l| l == "[lobby] ~狗哥alex: hello room");
    say(&qq, "/msg bob just you");
    bob.expect(|l| l == "[private] ~狗哥alex: just you");

    let run = chat(
        &server,
        &["--name", "alice", "--send", "hi alex", "--to", "~狗哥alex"],
    );
    run.assert_ok();
    expect(&qq, |t| t == "[private] alice: hi alex");
    let run = chat(&server, &["--name", "alice", "--send", "hi room"]);
    run.assert_ok();
    expect(&qq, |t| t == "[lobby] alice: hi room");

    say(&qq, "/who");
    expect(&qq, |t| t == "* in lobby: bob, ~狗哥alex");
    let other = udp_user(&server);
    say(&other, "/nick 狗哥alex");
    expect(&other, |t| {
        t.starts_with("error: the name \"~狗哥alex\" is taken")
    });
}

#[test]
fn oversized_and_non_utf8_datagrams_are_refused() {
    let server = chat_server(&["--udp-chat", "127.0.0.1:0"]);
    let qq = udp_user(&server);
    qq.send(&vec![b'a'; 10_000]).unwrap();
    expect(&qq, |t| t.starts_with("error: the datagram is over"));
    qq.send(b"\xff\xfe").unwrap();
    expect(&qq, |t| t == "error: chat lines are UTF-8 text");
}
