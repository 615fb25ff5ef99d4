//! The server's doors and lifetime: shutdown that always finishes, logging
//! that never stops the server, token-less listeners that cannot starve
//! token holders, and work that stops when its client leaves.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

use crate::util::{ferry, poll_until, Sandbox, Server, DEADLINE};

/// `--drain-timeout` for the shutdown tests, and the most their shutdown
/// may then take: the drain timeout plus a second.
const DRAIN_SECS: &str = "1";
const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);

#[test]
fn a_server_whose_stderr_reader_left_keeps_serving_and_stops_on_sigterm() {
    let (reader, writer) = std::io::pipe().unwrap();
    // A UDP service too: its thread must see the shutdown.
    let args = [
        "--plaintext",
        "--drain-timeout",
        DRAIN_SECS,
        "--udp-echo",
        "127.0.0.1:0",
    ];
    let mut server = Server::start_with_stderr(&Sandbox::new(), &args, writer.into());
    // `ferry serve 2>&1 | tee log`, and tee dies first: every log line
    // from now on meets EPIPE.
    drop(reader);
    let first = ferry(&server, &["--plaintext", "echo", "one"]);
    let second = ferry(&server, &["--plaintext", "echo", "two"]);
    for (run, text) in [(first, "one\n"), (second, "two\n")] {
        assert_eq!((run.code, run.stdout.as_str()), (0, text), "{run:?}");
    }
    server.terminate();
    server.assert_exits_0_within(SHUTDOWN_BOUND);
}

#[test]
fn a_stderr_nobody_reads_neither_stalls_the_server_nor_its_shutdown() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    // `ferry serve 2>&1 | less`, and nobody scrolls: the pipe is full
    // before the server writes a line. Filled without blocking, then made
    // blocking again, as the server would find it.
    let flags = fcntl_getfl(&writer).unwrap();
    fcntl_setfl(&writer, flags | OFlags::NONBLOCK).unwrap();
    while writer.write(&[b'.'; 4096]).is_ok() {}
    fcntl_setfl(&writer, flags).unwrap();
    let args = ["--plaintext", "--drain-timeout", DRAIN_SECS];
    let mut server = Server::start_with_stderr(&Sandbox::new(), &args, writer.into());
    let run = server
        .client(&["--plaintext", "echo", "still here"])
        .output_within(DEADLINE);
    assert_eq!(
        (run.code, run.stdout.as_slice()),
        (0, &b"still here\n"[..]),
        "{run:?}"
    );
    server.terminate();
    server.assert_exits_0_within(SHUTDOWN_BOUND);
    drop(reader);
}

/// The mode a seed-compat `listening` line names.
const COMPAT_MODE: &str = "seed-compat, plaintext, no token";

/// Connects to a token-less listener, with every read bounded.
fn connect_plain(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Reads a seed-compat reply's header: its 4-byte length, then the JSON.
fn compat_reply_header(stream: &mut TcpStream) -> serde_json::Value {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("a reply's length");
    let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut header).expect("a reply's header");
    serde_json::from_slice(&header).expect("a JSON header")
}

#[test]
fn idle_token_less_connections_never_take_token_holders_permits() {
    let server = Server::start(&[
        "--plaintext",
        "--max-connections",
        "4",
        "--max-unframed-connections",
        "4",
        "--seed-compat",
        "127.0.0.1:0",
        "--tcp-echo",
        "127.0.0.1:0",
    ]);
    let compat = server.service_addr(COMPAT_MODE).to_string();
    let echo = server.service_addr("tcp echo").to_string();
    // Idle token-less connections, as many as either limit: all served.
    let mut held = vec![connect_plain(&compat), connect_plain(&compat)];
    server.wait_for_log_lines("seed-compat connection opened", 2);
    for _ in 0..2 {
        let mut stream = connect_plain(&echo);
        stream.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        held.push(stream);
    }

    let run = ferry(&server, &["--plaintext", "echo", "token holder"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "token holder\n"),
        "{run:?}"
    );

    // One more token-less connection waits for a slot of its own kind.
    let mut late = connect_plain(&compat);
    late.write_all(b"get missing.txt").unwrap();
    late.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = late.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "served past --max-unframed-connections: {early:?}"
    );
    late.set_read_timeout(Some(DEADLINE)).unwrap();
    drop(held.remove(0));
    let header = compat_reply_header(&mut late);
    assert_eq!(header["file_size"], 0, "{header}");
    assert!(header["error"].is_string(), "{header}");
}

/// Reads a seed-compat reply: its header and the bytes it announces.
fn compat_reply(stream: &mut TcpStream) -> (serde_json::Value, Vec<u8>) {
    let header = compat_reply_header(stream);
    let size = header["total_size"]
        .as_u64()
        .or(header["file_size"].as_u64())
        .expect("a size in the header");
    let mut data = vec![0u8; size as usize];
    stream.read_exact(&mut data).expect("the reply's data");
    (header, data)
}

#[test]
fn a_seed_compat_command_split_across_sends_runs_whole() {
    let server = Server::start(&["--seed-compat", "127.0.0.1:0", "--allow-exec"]);
    let mut stream = connect_plain(server.service_addr(COMPAT_MODE));
    stream.set_nodelay(true).unwrap();
    // One command in two sends, a moment apart: what `rm -rf DIR/old`
    // sent as `rm -rf DIR/` and `old` would be.
    stream.write_all(b"echo one").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    stream.write_all(b"two").unwrap();
    let (header, output) = compat_reply(&mut stream);
    assert_eq!(header["filename"], "echo onetwo", "{header}");
    assert_eq!(String::from_utf8_lossy(&output), "onetwo\n");
    let ran = server.wait_for_log("seed-compat command ");
    assert!(ran.contains(r#"command="echo onetwo""#), "{ran}");
    assert!(!server.log().iter().any(|l| l.contains(r#""echo one""#)));
}

/// A sparse file of 64 GiB in `server`'s root: nothing on disk, minutes
/// to hash.
fn huge_sparse_file(server: &Server, name: &str) -> PathBuf {
    let path = server.root().join(name);
    std::fs::File::create(&path)
        .and_then(|file| file.set_len(HUGE_BYTES))
        .expect("create a sparse file");
    path
}

const HUGE_BYTES: u64 = 64 << 30;

/// Waits until the server process has `path` open and has read into it:
/// its hashing is under way.
fn wait_until_reading(server: &Server, path: &Path) {
    let pid = server.pid();
    poll_until("the server to read the file", DEADLINE, || {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten().find_map(|fd| {
            (std::fs::read_link(fd.path()).ok()? == path).then_some(())?;
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_str()?))
                    .ok()?;
            let pos: u64 = info
                .lines()
                .find_map(|l| l.strip_prefix("pos:"))?
                .trim()
                .parse()
                .ok()?;
            (pos > 0).then_some(())
        })
    });
}

/// The value of `key=` in a log line.
fn log_field(line: &str, key: &str) -> u64 {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    line[start + key.len() + 2..]
        .split(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number in {line}"))
}

#[test]
fn a_seed_compat_get_stops_hashing_when_its_client_leaves() {
    let server = Server::start(&["--seed-compat", "127.0.0.1:0"]);
    let path = huge_sparse_file(&server, "huge");
    let mut stream = connect_plain(server.service_addr(COMPAT_MODE));
    stream.write_all(b"get huge").unwrap();
    wait_until_reading(&server, &path);
    drop(stream);
    let line = server.wait_for_log("seed-compat get abandoned");
    let hashed = log_field(&line, "hashed");
    assert_eq!(log_field(&line, "size"), HUGE_BYTES, "{line}");
    assert!(hashed < HUGE_BYTES, "{line}");
}

#[test]
fn shutdown_is_not_held_by_a_blocking_thread_hashing_a_huge_file() {
    let mut server = Server::start(&[
        "--seed-compat",
        "127.0.0.1:0",
        "--drain-timeout",
        DRAIN_SECS,
    ]);
    let path = huge_sparse_file(&server, "huge");
    // The client stays: the request is in flight, past the drain.
    let mut stream = connect_plain(server.service_addr(COMPAT_MODE));
    stream.write_all(b"get huge").unwrap();
    wait_until_reading(&server, &path);
    server.terminate();
    server.assert_exits_0_within(SHUTDOWN_BOUND);
    drop(stream);
}

#[test]
fn exec_hosts_passes_a_line_over_the_cap_on_in_prefixed_pieces() {
    let server = Server::start(&["--plaintext", "--allow-exec"]);
    let line_bytes = 32 << 20;
    // One 32 MiB line and no newline: held whole, it took 32 s and 115 MB.
    let command = format!("head -c {line_bytes} /dev/zero | tr '\\0' x");
    let out = server
        .client(&[
            "--plaintext",
            "exec",
            "--hosts",
            server.addr(),
            "--",
            &command,
        ])
        .output_within(HOSTS_LINE_DEADLINE);
    assert_eq!(out.code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let prefix = format!("{}: ", server.addr());
    let mut arrived = 0;
    for piece in out.stdout.split(|&b| b == b'\n').filter(|p| !p.is_empty()) {
        let text = piece
            .strip_prefix(prefix.as_bytes())
            .expect("each piece prefixed");
        assert!(text.len() <= 64 * 1024, "a piece of {} bytes", text.len());
        assert!(text.iter().all(|&b| b == b'x'));
        arrived += text.len();
    }
    assert_eq!(arrived, line_bytes);
}

/// A bound on a hang, generous for 32 MiB through a debug build on a
/// loaded machine (20 s was not, with other builds running). The piece-size
/// assertion is what catches a line held whole.
const HOSTS_LINE_DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn peer_text_in_logs_is_escaped_and_capped() {
    let server = Server::start(&["--seed-compat", "127.0.0.1:0"]);
    let mut stream = connect_plain(server.service_addr(COMPAT_MODE));
    let forged = "echo hi\n2026-01-01T00:00:00.000000Z  WARN FORGED refused: wrong access token";
    let long = format!("echo {}", "y".repeat(60_000));
    let huge = format!("echo {}", "z".repeat(4 << 20));
    // Without --allow-exec each command is refused, with one log line.
    for command in [forged, &long, &huge] {
        stream.write_all(command.as_bytes()).unwrap();
        let (header, _) = compat_reply(&mut stream);
        assert!(header["error"].is_string(), "{header}");
    }
    let refused = server.wait_for_log_lines("seed-compat command refused", 3);
    assert_eq!(refused.len(), 3, "{refused:#?}");
    for line in &refused {
        assert!(line.len() < 1024, "a log line of {} bytes", line.len());
    }
    assert!(refused[0].contains(r#"hi\n2026"#), "{}", refused[0]);
    let log = server.log();
    assert!(!log.iter().any(|l| l.starts_with("2026-01-01")), "{log:#?}");
    let total: usize = log.iter().map(|l| l.len()).sum();
    assert!(total < 8 * 1024, "{total} bytes of log");
}
