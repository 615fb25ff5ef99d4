//! The datagram services and the UDP chat gateway: no loops, no
//! amplification, no impostors, nothing raw into a terminal.
//!
//! Silence is shown without waiting out a window: a service answers its
//! datagrams in order, so once it has answered a later one, a reply to an
//! earlier one would already sit in the receiving socket's queue (loopback
//! delivers during `sendto`). Low ports on 127.0.0.x stand in for other
//! services; binding them and forging datagrams needs root, as CI runs the
//! tests: those two report a skip for anyone else.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use crate::util::outside_tool;
use crate::util::{Server, DEADLINE};

/// Whether the test runs as root; reported as a skip, saying that `what`
/// needs root, where it does not (a developer's own account).
fn root_for(what: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        outside_tool::skip(
            &format!("{what} needs root"),
            "run cargo test as root; CI does",
        );
    }
    root
}

fn addr(text: &str) -> SocketAddrV4 {
    text.parse().unwrap()
}

/// A socket at `ip:port`, as another service on this machine would be;
/// port 0 picks one below the ephemeral range ([`bind_below_ephemeral`]).
fn bind(ip: &str, port: u16) -> UdpSocket {
    if port == 0 {
        return bind_below_ephemeral(ip);
    }
    let socket = UdpSocket::bind((ip, port))
        .unwrap_or_else(|err| panic!("bind {ip}:{port} (tests run as root): {err}"));
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket
}

/// A socket at `ip` on a port below the kernel's ephemeral range. The
/// server's own ports come from that range, and a datagram from a loopback
/// address at one of them is (rightly) taken for the server's own and not
/// answered: a control socket given such a port by chance went unanswered.
fn bind_below_ephemeral(ip: &str) -> UdpSocket {
    let start = 20_000 + (std::process::id() as u16 % 10_000);
    (0..10_000u16)
        .map(|k| 20_000 + (start - 20_000 + k) % 10_000)
        .find_map(|port| UdpSocket::bind((ip, port)).ok())
        .inspect(|socket| socket.set_read_timeout(Some(DEADLINE)).unwrap())
        .unwrap_or_else(|| panic!("no free port on {ip} between 20000 and 29999"))
}

/// The datagrams queued on `socket` now, without waiting.
fn queued(socket: &UdpSocket) -> Vec<Vec<u8>> {
    socket.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut got = Vec::new();
    while let Ok(len) = socket.recv(&mut buf) {
        got.push(buf[..len].to_vec());
    }
    socket.set_nonblocking(false).unwrap();
    got
}

/// Waits until `service` has answered a datagram sent after everything
/// before this call, from a socket of its own on `control_ip`.
fn answered_everything_before(service: &str, control_ip: &str, request: &[u8]) {
    let control = bind(control_ip, 0);
    control.send_to(request, service).unwrap();
    let mut buf = vec![0u8; 70_000];
    control
        .recv_from(&mut buf)
        .unwrap_or_else(|err| panic!("{service} answered no control datagram: {err}"));
}

/// Asserts that `service` did not answer `socket` for what it sent so far.
#[track_caller]
fn assert_unanswered(socket: &UdpSocket, service: &str, control_request: &[u8]) {
    answered_everything_before(service, "127.0.0.1", control_request);
    let got = queued(socket);
    let from = socket.local_addr().unwrap();
    assert!(got.is_empty(), "{service} answered {from}: {got:?}");
}

fn ntp_client_request() -> [u8; 48] {
    let mut request = [0u8; 48];
    request[0] = 0x23; // VN 4, mode 3 (client)
    request[40..48].copy_from_slice(b"origin!!");
    request
}

#[test]
fn udp_services_never_answer_the_servers_own_ports() {
    let server = Server::start(&[
        "--udp-time",
        "127.0.0.1:0",
        "--udp-echo",
        "127.0.0.1:0",
        "--udp-chat",
        "127.0.0.1:0",
    ]);
    let time = server.service_addr("udp time");
    let echo = server.service_addr("udp echo");
    let chat = server.service_addr("udp chat");
    // 127.0.0.2 at each of the server's own ports (UDP and TCP): what a
    // datagram forged to come from the server itself claims.
    let own_ports = [echo, time, chat, server.addr()].map(|a| addr(a).port());
    for port in own_ports {
        let forged = bind("127.0.0.2", port);
        for service in [time, echo] {
            forged.send_to(b"%Y", service).unwrap();
            assert_unanswered(&forged, service, b"");
        }
        // The gateway answers a bad line with an error at once.
        forged.send_to(b"/dance", chat).unwrap();
        assert_unanswered(&forged, chat, b"/dance");
    }
}

#[test]
fn udp_services_never_answer_well_known_service_ports() {
    if !root_for("binding ports below 1024") {
        return;
    }
    let server = Server::start(&[
        "--udp-time",
        "127.0.0.1:0",
        "--udp-echo",
        "127.0.0.1:0",
        "--sntp",
        "127.0.0.1:0",
        "--udp-chat",
        "127.0.0.1:0",
    ]);
    let time = server.service_addr("udp time");
    let echo = server.service_addr("udp echo");
    let sntp = server.service_addr("sntp");
    let chat = server.service_addr("udp chat");
    for port in [7, 13, 19, 37, 123] {
        let peer = bind("127.0.0.3", port);
        for service in [time, echo] {
            peer.send_to(b"%Y", service).unwrap();
            assert_unanswered(&peer, service, b"");
        }
        peer.send_to(b"/dance", chat).unwrap();
        assert_unanswered(&peer, chat, b"/dance");
        if port != 123 {
            peer.send_to(&ntp_client_request(), sntp).unwrap();
            assert_unanswered(&peer, sntp, &ntp_client_request());
        }
    }
    // An NTP client on port 123 is still answered, as NTP servers are.
    let ntp_client = bind("127.0.0.3", 123);
    ntp_client.send_to(&ntp_client_request(), sntp).unwrap();
    let mut reply = [0u8; 100];
    let (len, from) = ntp_client.recv_from(&mut reply).expect("a time reply");
    assert_eq!((len, from.to_string().as_str()), (48, sntp));
    assert_eq!(&reply[24..32], b"origin!!");
    // But not a server's reply (mode 4) from there.
    let mut server_reply = ntp_client_request();
    server_reply[0] = 0x24;
    ntp_client.send_to(&server_reply, sntp).unwrap();
    assert_unanswered(&ntp_client, sntp, &ntp_client_request());
}

/// A UDP datagram from `from` to `to` with `payload`, sent through a raw
/// socket so that its source is whatever the test says.
fn send_forged(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))) // IPPROTO_RAW
        .expect("a raw socket (tests run as root)");
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut packet = Vec::with_capacity(total);
    // IPv4 header; the kernel fills in the id and checksum.
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    // UDP header; checksum 0 is "none" over IPv4.
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    raw.send_to(&packet, &SocketAddr::V4(to).into())
        .expect("send a forged datagram");
}

/// The (source, destination) ports of every UDP datagram the host
/// received since `sniffer` was opened.
fn ports_seen(sniffer: &Socket) -> Vec<(u16, u16)> {
    sniffer.set_nonblocking(true).unwrap();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    let mut seen = Vec::new();
    while let Ok(len) = sniffer.recv(&mut buf) {
        // SAFETY: `recv` initialised the first `len` bytes.
        let packet: Vec<u8> = buf[..len]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let header = usize::from(packet[0] & 0x0f) * 4;
        let port = |at: usize| u16::from_be_bytes([packet[header + at], packet[header + at + 1]]);
        seen.push((port(0), port(2)));
    }
    seen
}

#[test]
fn a_forged_datagram_starts_no_loop_between_time_and_echo() {
    if !root_for("a raw socket") {
        return;
    }
    let server = Server::start(&["--udp-time", "127.0.0.1:0", "--udp-echo", "127.0.0.1:0"]);
    let time = addr(server.service_addr("udp time"));
    let echo = addr(server.service_addr("udp echo"));
    // Every UDP datagram the host receives, to see the services' traffic,
    // with room for other tests' traffic meanwhile.
    let sniffer = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
        .expect("a raw socket (tests run as root)");
    sniffer.set_recv_buffer_size(8 << 20).unwrap();
    // From the echo service to the time service: the time service's reply
    // would go to echo, echo's back to time, and so on without end.
    send_forged(echo, time, b"plain text");
    answered_everything_before(&time.to_string(), "127.0.0.1", b"");
    answered_everything_before(&echo.to_string(), "127.0.0.1", b"");
    let seen = ports_seen(&sniffer);
    let count = |from: u16, to: u16| seen.iter().filter(|&&p| p == (from, to)).count();
    // The forged datagram once, and nothing either way after it.
    assert_eq!(
        (
            count(echo.port(), time.port()),
            count(time.port(), echo.port())
        ),
        (1, 0),
        "datagrams echo -> time and time -> echo"
    );
}

/// A datagram's size on the wire over IPv4: IP and UDP headers, payload.
fn wire_bytes(payload: usize) -> usize {
    20 + 8 + payload
}

#[track_caller]
fn assert_within_four_times(request: &[u8], reply: &[u8]) {
    assert!(
        wire_bytes(reply.len()) <= 4 * wire_bytes(request.len()),
        "{} bytes answered with {}: {:?}",
        request.len(),
        reply.len(),
        String::from_utf8_lossy(reply)
    );
}

/// Sends `request` from `socket` and returns the reply: the next datagram
/// from `service`. Others are dropped: the socket's port, below the
/// ephemeral range, may have been another test's a moment ago, and a late
/// reply from that test's server may still come to it.
fn ask_from(socket: &UdpSocket, service: &str, request: &[u8]) -> Vec<u8> {
    socket.send_to(request, service).unwrap();
    let service: std::net::SocketAddr = service.parse().expect("a service address");
    let mut buf = vec![0u8; 70_000];
    loop {
        let (len, from) = socket.recv_from(&mut buf).expect("a reply");
        if from == service {
            buf.truncate(len);
            return buf;
        }
    }
}

#[test]
fn udp_replies_are_never_over_four_times_their_request() {
    let server = Server::start(&[
        "--udp-time",
        "127.0.0.1:0",
        "--udp-echo",
        "127.0.0.1:0",
        "--udp-chat",
        "127.0.0.1:0",
    ]);
    let time = server.service_addr("udp time");
    let client = bind("127.0.0.1", 0);
    // The tutorial's empty request still gets its date.
    let date = ask_from(&client, time, b"");
    assert_within_four_times(b"", &date);
    assert_eq!(date.len(), "2026-11-26 14:03:09".len(), "{date:?}");
    let expanding = "%+".repeat(8);
    let long_error = format!("{}%", "\u{1}".repeat(40));
    for format in ["%c", "%+", &expanding, &"%c".repeat(200), "%", &long_error] {
        let reply = ask_from(&client, time, format.as_bytes());
        assert_within_four_times(format.as_bytes(), &reply);
    }
    let refused = ask_from(&client, time, expanding.as_bytes());
    assert!(refused.starts_with(b"error: "), "{refused:?}");

    // Echo still echoes: its reply is the size of its request.
    let echo = server.service_addr("udp echo");
    assert_eq!(ask_from(&client, echo, b"x"), b"x");
    let big = vec![b'e'; 60_000];
    assert_eq!(ask_from(&client, echo, &big), big);

    // The chat gateway's answers too: a /who of a full room is long.
    let chat = server.service_addr("udp chat");
    let members: Vec<UdpSocket> = (0..6).map(|_| bind("127.0.0.1", 0)).collect();
    for (i, member) in members.iter().enumerate() {
        let nick = format!("/nick member-with-a-long-name-{i}");
        assert!(ask_from(member, chat, nick.as_bytes()).starts_with(b"* you are now"));
    }
    // Notices of the joins may come first: skip them.
    let who = |request: &[u8]| {
        members[0].send_to(request, chat).unwrap();
        let mut buf = vec![0u8; 70_000];
        loop {
            let len = members[0].recv(&mut buf).expect("an answer to /who");
            if buf.starts_with(b"* in ") || buf.starts_with(b"error: ") {
                return buf[..len].to_vec();
            }
        }
    };
    let short = who(b"/who");
    assert_within_four_times(b"/who", &short);
    assert!(short.starts_with(b"error: "), "{short:?}");
    // Trailing spaces are trimmed from a line: room for the whole answer.
    let padded = format!("/who{}", " ".repeat(100));
    let long = who(padded.as_bytes());
    assert!(long.starts_with(b"* in lobby: "), "{long:?}");
    assert_within_four_times(padded.as_bytes(), &long);
}

/// Whether `reply` is an SNTP Kiss-o'-Death `RATE`.
fn is_rate_kiss(reply: &[u8]) -> bool {
    reply.len() == 48 && reply[1] == 0 && &reply[12..16] == b"RATE"
}

#[test]
fn udp_services_share_one_rate_limit_per_source() {
    let server = Server::start(&[
        "--penalize-loopback",
        "--udp-time",
        "127.0.0.1:0",
        "--udp-echo",
        "127.0.0.1:0",
        "--udp-chat",
        "127.0.0.1:0",
        "--sntp",
        "127.0.0.1:0",
    ]);
    let time = server.service_addr("udp time");
    let echo = server.service_addr("udp echo");
    let chat = server.service_addr("udp chat");
    let sntp = server.service_addr("sntp");
    let started = std::time::Instant::now();
    // One source, 40 datagrams at once, ten to each service.
    let source = bind("127.0.0.4", 0);
    for _ in 0..10 {
        source.send_to(b"%Y", time).unwrap();
        source.send_to(b"echo", echo).unwrap();
        source.send_to(b"/dance", chat).unwrap();
        source.send_to(&ntp_client_request(), sntp).unwrap();
    }
    // Another source has a bucket of its own.
    answered_everything_before(time, "127.0.0.5", b"");
    answered_everything_before(echo, "127.0.0.5", b"");
    answered_everything_before(chat, "127.0.0.5", b"/dance");
    answered_everything_before(sntp, "127.0.0.5", &ntp_client_request());
    let elapsed = started.elapsed().as_secs_f64().ceil() as usize;
    let replies = queued(&source);
    let kisses = replies.iter().filter(|r| is_rate_kiss(r)).count();
    let answered = replies.len() - kisses;
    // A burst of 8, then one a second, across all four services.
    assert!(
        (8..=8 + elapsed + 1).contains(&answered),
        "{answered} answered in {elapsed} s (and {kisses} kisses)"
    );
    let sntp_replies = replies.iter().filter(|r| r.len() == 48).count();
    assert_eq!(sntp_replies, 10, "SNTP kisses what it does not answer");
    assert!(kisses >= 1, "{answered} answered, no kiss");
}

#[test]
fn loopback_sources_are_exempt_from_the_datagram_rate_limit() {
    let server = Server::start(&["--sntp", "127.0.0.1:0", "--udp-echo", "127.0.0.1:0"]);
    let sntp = server.service_addr("sntp");
    let echo = server.service_addr("udp echo");
    let client = bind("127.0.0.1", 0);
    for i in 0..20 {
        let reply = ask_from(&client, sntp, &ntp_client_request());
        assert!(!is_rate_kiss(&reply), "request {i} was kissed");
        assert_eq!(ask_from(&client, echo, b"again"), b"again");
    }
}

#[test]
fn terminal_escaper_shows_unicode_format_characters() {
    let server = crate::chat::chat_server(&[]);
    let bob = crate::chat::Listener::start(&server, "bob", &[]);
    // A right-to-left override turns what follows around on the screen,
    // and zero-width characters hide inside words.
    let sneaky = "invoice\u{202e}fdp.exe\u{200b} \u{2066}x\u{2069}\u{feff}\u{ad}";
    let run = crate::chat::chat(&server, &["--name", "mallory", "--send", sneaky]);
    run.assert_ok();
    let line = bob.expect(|l| l.starts_with("[lobby] mallory:"));
    assert_eq!(
        line,
        "[lobby] mallory: invoice\\u{202e}fdp.exe\\u{200b} \\u{2066}x\\u{2069}\\u{feff}\\u{ad}"
    );
}

#[test]
fn chat_names_refuse_unicode_format_characters() {
    let server = crate::chat::chat_server(&["--udp-chat", "127.0.0.1:0"]);
    for name in [
        "ali\u{202e}ce",
        "\u{200b}bob",
        "carol\u{2066}",
        "dave\u{feff}",
    ] {
        let run = crate::chat::chat(&server, &["--name", name, "--send", "hi"]);
        assert_eq!(run.code, 1, "{name:?} was taken: {run:?}");
        run.assert_stderr_contains("format");
        let run = crate::chat::chat(&server, &["--name", "erin", "--room", name, "--send", "hi"]);
        assert_eq!(run.code, 1, "room {name:?} was taken: {run:?}");
    }
    let udp = bind("127.0.0.1", 0);
    let chat = server.service_addr("udp chat");
    let answer = ask_from(&udp, chat, "/nick ali\u{202e}ce".as_bytes());
    assert!(
        answer.starts_with(b"error: "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn udp_chat_gateway_escapes_every_line_it_sends() {
    let server = crate::chat::chat_server(&["--udp-chat", "127.0.0.1:0"]);
    let chat = server.service_addr("udp chat");
    let qq = bind("127.0.0.1", 0);
    qq.connect(chat).unwrap();
    qq.send(b"/nick qq").unwrap();
    let nick = crate::chat::gateway::expect(&qq, |t| t.starts_with("* you are now"));
    let qq_name = nick.trim_start_matches("* you are now ").to_string();

    let forged = "hi\n[lobby] admin: fake \u{1b}[2J\u{202e}";
    let run = crate::chat::chat(&server, &["--name", "mallory", "--send", forged]);
    run.assert_ok();
    let line = crate::chat::gateway::expect(&qq, |t| t.contains("mallory:"));
    assert_eq!(
        line,
        "[lobby] mallory: hi\\n[lobby] admin: fake \\u{1b}[2J\\u{202e}"
    );
    let run = crate::chat::chat(
        &server,
        &["--name", "mallory", "--send", "a\rb\u{7}", "--to", &qq_name],
    );
    run.assert_ok();
    let line = crate::chat::gateway::expect(&qq, |t| t.starts_with("[private]"));
    assert_eq!(line, "[private] mallory: a\\rb\\u{7}");
    // What the gateway answers itself, too: here the line's own word.
    qq.send("/\u{1b}]0;owned\u{7}".as_bytes()).unwrap();
    let error = crate::chat::gateway::expect(&qq, |t| t.starts_with("error: unknown command"));
    assert!(error.contains("/\\u{1b}]0;owned\\u{7}"), "{error:?}");
}

#[test]
fn udp_chat_gateway_cannot_take_a_token_holders_name() {
    let server = crate::chat::chat_server(&["--udp-chat", "127.0.0.1:0"]);
    let chat = server.service_addr("udp chat");
    let impostor = bind("127.0.0.1", 0);
    impostor.connect(chat).unwrap();
    impostor.send(b"/nick alice").unwrap();
    let nick = crate::chat::gateway::expect(&impostor, |t| {
        t.starts_with("* you are now") || t.starts_with("error")
    });
    assert_eq!(nick, "* you are now ~alice");
    // The real alice, with the token, still gets her name, and reaches
    // the gateway member by his.
    let run = crate::chat::chat(
        &server,
        &[
            "--name",
            "alice",
            "--send",
            "who are you?",
            "--to",
            "~alice",
        ],
    );
    run.assert_ok();
    crate::chat::gateway::expect(&impostor, |t| t == "[private] alice: who are you?");
    // Nobody with the token can take a gateway name either.
    let run = crate::chat::chat(&server, &["--name", "~bob", "--send", "hi"]);
    run.assert_code(1).assert_stderr_contains("~");
    // A gateway member without a nick has the prefix too, and another
    // reaches him with /msg.
    let other = bind("127.0.0.1", 0);
    other.connect(chat).unwrap();
    other.send(b"/who").unwrap();
    let who = crate::chat::gateway::expect(&other, |t| t.starts_with("* in lobby"));
    let own = format!("~udp-{}", other.local_addr().unwrap());
    assert!(who.contains(&own), "{who}");
    impostor
        .send(format!("/msg {own} psst").as_bytes())
        .unwrap();
    crate::chat::gateway::expect(&other, |t| t == "[private] ~alice: psst");
}
