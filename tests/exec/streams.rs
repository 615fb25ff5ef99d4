//! What flows through a command: stdout and stderr back, each on its own
//! and in its order, stdin up, bytes untouched, while the command runs,
//! and in bounded memory however much there is.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{
    arg, assert_all_die, assert_bytes, assert_output, exec, exec_server, output, random_bytes,
    read_all_in_background, read_pids, MIB,
};
use crate::util::DEADLINE;

#[test]
fn stdout_and_stderr_come_back_separately_each_in_its_order() {
    let server = exec_server(&[]);
    let script = "i=1; while [ $i -le 1000 ]; do \
                  echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done";
    let out = output(exec(&server, &["--", script]));

    let (mut stdout, mut stderr) = (String::new(), String::new());
    for i in 1..=1000 {
        writeln!(stdout, "out {i}").unwrap();
        writeln!(stderr, "err {i}").unwrap();
    }
    assert_output(&out, 0, &stdout, &stderr);
}

#[test]
fn output_bytes_pass_untouched_nul_invalid_utf8_and_escapes_included() {
    let server = exec_server(&[]);
    // Every byte value, then what a text-minded client would mangle: a
    // lone continuation byte, a truncated sequence, CR LF, an escape.
    let mut blob: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    blob.extend_from_slice(b"\x80\xe2\x82\r\n\x1b[31mred\x1b[0m\x00");
    std::fs::write(server.root().join("blob"), &blob).unwrap();

    // Shell mode, both channels at once, and printf's own octal escapes.
    let out = output(exec(
        &server,
        &[
            "--",
            r"cat blob; cat blob >&2; printf '\000\377\033]0;title\007'",
        ],
    ));
    let mut stdout = blob.clone();
    stdout.extend_from_slice(b"\x00\xff\x1b]0;title\x07");
    assert_eq!(out.code, 0);
    assert_bytes("stdout", &out.stdout, &stdout);
    assert_bytes("stderr", &out.stderr, &blob);

    // Argv mode: the same bytes, cut anywhere.
    let out = output(exec(&server, &["--", "head", "-c", "4099", "blob"]));
    assert_eq!(out.code, 0);
    assert_bytes("stdout", &out.stdout, &blob[..4099]);
    assert_bytes("stderr", &out.stderr, b"");
}

#[test]
fn stdin_is_forwarded_byte_for_byte() {
    let server = exec_server(&[]);
    let input = random_bytes(1, MIB + 17);
    let out = output(exec(&server, &["--", "cat"]).stdin(input.clone()));
    assert_eq!(out.code, 0);
    assert_bytes("what cat gave back", &out.stdout, &input);
    assert_bytes("stderr", &out.stderr, b"");
}

#[test]
fn a_large_stdin_reaches_the_command_whole() {
    let server = exec_server(&["--plaintext"]);
    let input = random_bytes(2, 20 * MIB);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();

    let out = output(exec(&server, &["--", "wc", "-c"]).stdin(input.clone()));
    assert_output(&out, 0, &format!("{}\n", 20 * MIB), "");
    let out = output(exec(&server, &["--", "sha256sum"]).stdin(input));
    assert_output(&out, 0, &format!("{hex}  -\n"), "");
}

#[test]
fn a_large_stdin_through_cat_comes_back_whole() {
    // A command that answers as it reads: output and stdin flow at once,
    // both ways, more than the sockets and pipes between can hold.
    let server = exec_server(&["--plaintext"]);
    let input = random_bytes(3, 64 * MIB);
    let out = exec(&server, &["--", "cat"])
        .stdin(input.clone())
        .output_within(Duration::from_secs(20));
    assert_eq!(out.code, 0);
    assert_bytes("what cat gave back", &out.stdout, &input);
}

#[test]
fn the_end_of_stdin_closes_the_commands_stdin() {
    let server = exec_server(&[]);
    // cat ends only at EOF; what follows it runs only then.
    let out = output(exec(&server, &["--", "cat; echo after-eof"]).stdin("last line\n"));
    assert_output(&out, 0, "last line\nafter-eof\n", "");
    // No input at all is an immediate EOF.
    let out = output(exec(&server, &["--", "wc", "-c"]));
    assert_output(&out, 0, "0\n", "");
}

#[test]
fn a_command_that_ignores_stdin_ends_while_the_clients_stdin_stays_open() {
    // As at a terminal where the user types nothing: the command's end is
    // the client's end, whatever its stdin does.
    let server = exec_server(&[]);
    let mut client = exec(&server, &["--", "echo done"]).spawn_piped();
    let _stdin_held_open = client.take_stdin();
    let stdout = read_all_in_background(client.take_stdout().unwrap());
    let stderr = read_all_in_background(client.take_stderr().unwrap());
    let status = client.wait_within(DEADLINE);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert_bytes("stdout", &stdout.join().unwrap(), b"done\n");
    assert_bytes("stderr", &stderr.join().unwrap(), b"");
}

#[test]
fn output_streams_while_the_command_runs_and_stdin_reaches_it_as_typed() {
    // The command prints, then waits for a line only the test can give
    // after it has seen that print: this finishes only if both directions
    // flow while the command runs.
    let server = exec_server(&[]);
    let mut client = exec(
        &server,
        &[
            "--",
            "echo ready; read line; echo \"got $line\"; echo to-stderr >&2",
        ],
    )
    .spawn_piped();
    let mut stdin = client.take_stdin().unwrap();
    let mut stdout = client.take_stdout().unwrap();
    let stderr = read_all_in_background(client.take_stderr().unwrap());

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while seen != b"ready\n" {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("no `ready` while the command runs; stdout so far {seen:?}")
        });
        seen.extend_from_slice(&chunk);
        assert!(b"ready\n".starts_with(&seen), "stdout {seen:?}");
    }
    stdin.write_all(b"go\n").unwrap();

    let status = client.wait_within(DEADLINE);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let rest: Vec<u8> = rx.iter().flatten().collect();
    assert_eq!(String::from_utf8_lossy(&rest), "got go\n");
    assert_bytes("stderr", &stderr.join().unwrap(), b"to-stderr\n");
}

#[test]
fn a_chatty_stderr_cannot_deadlock_the_command() {
    // 10 MiB to each channel in turns of 128 KiB, twice what a pipe holds:
    // a server that drained one channel before the other would leave the
    // command blocked on the other forever.
    let server = exec_server(&["--plaintext"]);
    let chunk = 128 * 1024;
    let turns = 10 * MIB / chunk;
    let out_chunk = random_bytes(4, chunk);
    let err_chunk = random_bytes(5, chunk);
    std::fs::write(server.root().join("out.bin"), &out_chunk).unwrap();
    std::fs::write(server.root().join("err.bin"), &err_chunk).unwrap();
    let script =
        format!("i=0; while [ $i -lt {turns} ]; do cat err.bin >&2; cat out.bin; i=$((i+1)); done");

    let out = output(exec(&server, &["--", &script]));
    assert_eq!(out.code, 0);
    assert_bytes("stdout", &out.stdout, &out_chunk.repeat(turns));
    assert_bytes("stderr", &out.stderr, &err_chunk.repeat(turns));
}

#[test]
fn a_gibibyte_of_output_streams_through_a_server_of_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let server = exec_server(&["--plaintext"]);
    let started = Instant::now();
    let mut client = exec(&server, &["--", &format!("head -c {GIB} /dev/zero")]).spawn_piped();
    drop(client.take_stdin());
    let stderr = read_all_in_background(client.take_stderr().unwrap());
    let mut stdout = client.take_stdout().unwrap();
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; MIB];
        let (mut total, mut nonzero) = (0u64, 0u64);
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return (total, nonzero),
                Ok(n) => {
                    total += n as u64;
                    nonzero += buf[..n].iter().filter(|b| **b != 0).count() as u64;
                }
            }
        }
    });
    let status = client.wait_within(super::RUN_DEADLINE);
    let (total, nonzero) = counter.join().unwrap();
    let took = started.elapsed();
    eprintln!("1 GiB through exec in {took:?}");
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert_eq!((total, nonzero), (GIB, 0), "bytes, and bytes not zero");
    assert_bytes("stderr", &stderr.join().unwrap(), b"");
    let peak = server.peak_rss_bytes();
    assert!(
        peak < 100 * MIB as u64,
        "the server peaked at {} MiB",
        peak / MIB as u64
    );
}

#[test]
fn a_client_that_stops_reading_stalls_the_command_not_the_servers_memory() {
    // Raw protocol: the exec is sent, its ok read, and then nothing more.
    // `yes` writes as fast as it can; once every buffer between is full it
    // must block, and the server must not keep reading it into memory.
    let server = exec_server(&["--plaintext"]);
    let pids = server.sandbox.path().join("pids");
    let mut raw = crate::util::Raw::hello(&server);
    let shell = format!("echo $$ > {}; exec yes", arg(&pids));
    raw.send_frame(&serde_json::json!({"cmd": "exec", "shell": shell}), b"");
    let ok = raw.read_frame();
    assert!(ok.is_ok(), "{ok:?}");
    let remotes = read_pids(&pids, 1);
    let yes = &remotes[0];

    // Stalled: what yes has written stays the same for half a second.
    let mut last = (yes.bytes_written(), Instant::now());
    super::poll_until("yes to stall", DEADLINE, || {
        let written = yes.bytes_written();
        assert!(written.is_some(), "yes died while the client was away");
        if written != last.0 {
            last = (written, Instant::now());
        }
        (last.0.is_some() && last.1.elapsed() > Duration::from_millis(500)).then_some(())
    });
    assert!(yes.is_alive(), "yes is blocked, not gone");
    assert_eq!(yes.state(), Some('S'), "yes sleeps on its full pipe");
    let rss = server.rss_bytes();
    let written = last.0.unwrap();
    eprintln!(
        "yes stalled after {} MiB; server RSS {} MiB",
        written / MIB as u64,
        rss / MIB as u64
    );
    assert!(
        rss < 100 * MIB as u64,
        "server RSS {} MiB",
        rss / MIB as u64
    );
    assert!(
        written < 100 * MIB as u64,
        "yes wrote {} MiB before stalling",
        written / MIB as u64
    );

    // The client leaves: the command must not outlive it.
    drop(raw);
    assert_all_die(&remotes);
}
