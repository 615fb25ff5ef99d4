//! Deadlines, connection limits, and the memory a busy, abused server holds.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use ferry::client::{Client, ClientOptions};
use serde_json::json;

use crate::framing::check_malformed_frames;
use crate::util::{
    ferry, frame_bytes, hello_header, LibraryServer, Raw, Sandbox, Server, WireClient, DEADLINE,
};

const MIB: u64 = 1024 * 1024;

// The deadlines run in-process on a paused clock: the server waits its
// full second while the test waits for nothing.

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_says_hello_is_closed_with_timeout() {
    let hello_timeout = Duration::from_secs(1);
    let server = LibraryServer::start(|config, dir| {
        config.limits.hello_timeout = hello_timeout;
        let socket = format!("unix:{}", dir.join("ferry.sock").display());
        config.listen.push(socket.parse().unwrap());
    })
    .await;
    let socket = &server.listening()[1];
    let started = tokio::time::Instant::now();
    let mut silent = WireClient::connect(socket).await;
    let mut half_hello = WireClient::connect(socket).await;
    half_hello
        .send(&frame_bytes(&hello_header(server.token()), b"")[..10])
        .await;
    // Over TCP the deadline covers the TLS handshake too.
    let mut no_tls = WireClient::connect(server.addr()).await;

    let message = silent.expect_error("timeout").await;
    assert!(message.contains("hello"), "{message}");
    silent.expect_closed().await;
    half_hello.expect_error("timeout").await;
    half_hello.expect_closed().await;
    no_tls.expect_closed().await;
    let waited = started.elapsed();
    assert!(waited >= hello_timeout, "closed after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_with_timeout() {
    let idle_timeout = Duration::from_secs(1);
    let server = LibraryServer::start(|config, _| {
        config.plaintext = true;
        config.limits.idle_timeout = idle_timeout;
    })
    .await;
    let mut raw = WireClient::hello(&server).await;
    raw.echo("then nothing").await;
    let started = tokio::time::Instant::now();
    let message = raw.expect_error("timeout").await;
    let waited = started.elapsed();
    assert!(message.contains("idle"), "{message}");
    assert!(waited >= idle_timeout, "closed after {waited:?}");
    raw.expect_closed().await;
}

/// Starts `clients` library clients that wait on a barrier, then all connect
/// over TLS and echo a text of their own; asserts every answer.
async fn echo_from_clients_at_once(server: &Server, clients: usize) {
    let options = ClientOptions {
        token: Some(server.token()),
        fingerprint: Some(server.fingerprint().parse().unwrap()),
        known_hosts: None,
        state_dir: None,
        ..ClientOptions::new(server.addr().parse().unwrap())
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(clients));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        let (options, barrier) = (options.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let mut client = Client::connect(&options).await?;
            let text = format!("client {i} says hello");
            let upper = i % 2 == 1;
            let answer = client.echo(Bytes::from(text.clone()), upper).await?;
            client.close().await;
            let expected = if upper { text.to_uppercase() } else { text };
            Ok::<_, ferry::Error>((answer, expected))
        });
    }
    let results = tokio::time::timeout(Duration::from_secs(60), tasks.join_all())
        .await
        .expect("all clients done within 60 s");
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok((answer, expected)) => assert_eq!(answer, expected.as_bytes()),
            Err(err) => failures.push(err.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {clients} failed: {failures:#?}",
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_connecting_at_once_all_get_their_echo() {
    let server = Server::start(&[]);
    echo_from_clients_at_once(&server, 200).await;
}

#[test]
fn workers_sets_the_runtime_threads_and_zero_is_refused() {
    let server = Server::start(&["--plaintext", "--workers", "5"]);
    ferry(&server, &["--plaintext", "echo", "hi"])
        .assert_ok()
        .assert_stdout("hi\n");
    let threads = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).unwrap_or_default().trim() == "tokio-rt-worker"
        })
        .count();
    // Five workers (the default is half the CPUs), plus any blocking
    // threads, which tokio names alike.
    assert!(threads >= 5, "{threads} runtime threads");

    let refused = std::process::Command::new(crate::util::FERRY)
        .args(["serve", "--workers", "0", "--plaintext", "--no-udp-time"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--workers"), "{stderr}");
}

#[test]
fn a_client_past_max_connections_is_told_busy_until_a_slot_frees() {
    let server = Server::start(&["--plaintext", "--max-connections", "2"]);
    let first = Raw::hello(&server);
    let _second = Raw::hello(&server);

    let mut third = Raw::connect(server.addr());
    third.send_frame(&hello_header(&server.token()), b"");
    let message = third.expect_error("busy");
    assert!(message.contains("2 connections"), "{message}");
    third.expect_closed();
    let run = ferry(&server, &["--plaintext", "echo", "hi"]);
    run.assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains("limit of 2 connections")
        .assert_stderr_contains("try again");

    drop(first);
    server.wait_for_log("end=peer closed");
    ferry(&server, &["--plaintext", "echo", "hi"])
        .assert_ok()
        .assert_stdout("hi\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_stays_under_100_mib_after_malformed_input_and_200_clients() {
    let sandbox = Sandbox::new();
    let socket = format!("unix:{}", sandbox.path().join("ferry.sock").display());
    let server = Server::start_in(&sandbox, &["--listen", "127.0.0.1:0", "--listen", &socket]);

    // Hostile and broken input first, raw over the Unix socket.
    check_malformed_frames(&server, &socket);
    // A refused frame that announces a 16 EiB body, then hangs up.
    let mut huge = Raw::hello_at(&server, &socket);
    huge.send_frame(&json!({"cmd": "launch", "size": u64::MAX}), &[0; 64 * 1024]);
    huge.expect_error("unknown_cmd");
    drop(huge);

    // A body more than twice the memory budget streams through: a server
    // that held it whole would blow the budget.
    let mut big = Raw::hello_at(&server, &socket);
    let (chunk, chunks) = (MIB as usize, 256);
    let mut writer = big.try_clone();
    let writer = thread::spawn(move || {
        writer.send_frame(&json!({"cmd": "echo", "size": chunk * chunks}), b"");
        for _ in 0..chunks {
            writer.send(&vec![b'm'; chunk]);
        }
    });
    let head = big.next_header(DEADLINE).expect("the echo reply's header");
    assert_eq!(head["size"], chunk * chunks, "{head:?}");
    for _ in 0..chunks {
        assert!(big.read_body(chunk).iter().all(|b| *b == b'm'));
    }
    writer.join().unwrap();

    echo_from_clients_at_once(&server, 200).await;

    let peak = server.peak_rss_bytes();
    eprintln!("server peak RSS: {:.1} MiB", peak as f64 / MIB as f64);
    assert!(peak < 100 * MIB, "server peak RSS {} MiB", peak / MIB);
}
