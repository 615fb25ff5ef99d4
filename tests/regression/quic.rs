//! The QUIC door.

use crate::util::DEADLINE;

/// The QUIC accept loop closed its endpoint at shutdown, which cut every
/// connection at once instead of letting requests in flight finish within
/// the drain deadline.
#[test]
fn quic_requests_in_flight_finish_when_the_server_drains() {
    let mut server = crate::quic::quic_server(&[]);
    server.sandbox.write_known_hosts(&format!(
        "{} {}\n",
        crate::quic::quic_addr(&server),
        server.fingerprint()
    ));
    let started = server.sandbox.path().join("started");
    let script = format!("touch {}; read _; echo done", started.display());
    let mut exec = crate::quic::over_quic(&server, &["exec", "--", "sh", "-c", &script])
        .spawn_with(std::process::Stdio::piped(), std::process::Stdio::piped());
    let mut stdin = exec.take_stdin().expect("piped stdin");
    crate::util::poll_until("the command started", DEADLINE, || {
        started.exists().then_some(())
    });
    server.terminate();
    server.wait_for_log("shutting down");
    std::io::Write::write_all(&mut stdin, b"go\n").unwrap();
    drop(stdin);
    let out = exec.collect_within(DEADLINE).expect("the exec ended");
    assert_eq!(out.stdout, "done\n", "{out:?}");
    assert!(out.status.success(), "{out:?}");
    server.assert_exits_0_within(DEADLINE);
}

/// A QUIC client's close waited until its endpoint was idle: QUIC's
/// draining period, three probe timeouts, at least 78 ms on loopback (each
/// is at least quinn's 25 ms ack delay and 1 ms) and about seven round
/// trips on a long link, added to every command. The close is one packet.
#[tokio::test]
async fn a_quic_client_closes_without_waiting_out_the_draining_period() {
    let server = crate::quic::quic_server(&[]);
    let mut fastest = std::time::Duration::MAX;
    for _ in 0..3 {
        let client = crate::quic::library_client(&server).await;
        let started = std::time::Instant::now();
        client.close().await;
        fastest = fastest.min(started.elapsed());
    }
    // The stream's end is still acknowledged first (up to one 25 ms ack
    // delay on loopback); the fastest of three keeps a busy machine's
    // scheduling out.
    assert!(
        fastest < std::time::Duration::from_millis(70),
        "the fastest close took {fastest:?}"
    );
    // And each close reached the server, which saw its peer end.
    let closed = server.wait_for_log_lines("QUIC connection closed", 3);
    assert!(closed.iter().all(|l| l.contains("end=Peer")), "{closed:?}");
}

/// Over QUIC a client waited, before closing, until the server had
/// acknowledged the last bytes of its stream, even once exec's exit status
/// had arrived and nothing it still sent mattered to the server: one more
/// round trip for every command, or the whole second of grace when the
/// server did not answer.
#[tokio::test]
async fn a_quic_exec_closes_at_once_once_its_exit_status_has_arrived() {
    let server = crate::quic::quic_server(&[]);
    let mut client = crate::quic::library_client(&server).await;
    let request = ferry::client::ExecRequest {
        argv: Some(vec!["true".into()]),
        ..ferry::client::ExecRequest::default()
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let end = client
        .exec(&request, None::<tokio::io::Empty>, &mut stdout, &mut stderr)
        .await
        .expect("the exec ran");
    assert_eq!(end.exit_code, Some(0), "{end:?}");
    // A server that acknowledges nothing from now on: the close must not
    // wait for it.
    server.signal(rustix::process::Signal::STOP);
    let started = std::time::Instant::now();
    client.close().await;
    let took = started.elapsed();
    server.signal(rustix::process::Signal::CONT);
    assert!(
        took < std::time::Duration::from_millis(500),
        "the close took {took:?}"
    );
    // The server reads the close as the session's end.
    let closed = server.wait_for_log("QUIC connection closed");
    assert!(closed.contains("end=Peer"), "{closed}");
}

/// A QUIC client that closed its connection right after exec's exit status,
/// before the server had read its end of stdin, was logged as a failed
/// request (the server waited for that frame to keep the stream in step),
/// though it had everything it needed.
#[tokio::test]
async fn a_quic_client_that_leaves_after_the_exit_status_is_no_failed_request() {
    let server = crate::quic::quic_server(&[]);
    let (endpoint, connection) = crate::quic::raw_connection(&server).await;
    let (mut send, mut recv) = crate::quic::hello_stream(&connection, &server.token()).await;
    let exec = serde_json::json!({"cmd": "exec", "argv": ["true"]});
    send.write_all(&crate::util::frame_bytes(&exec, b""))
        .await
        .expect("send the exec");
    let mut frames = Vec::new();
    while frames
        .last()
        .is_none_or(|f: &serde_json::Value| f.get("exit_code").is_none())
    {
        let frame = tokio::time::timeout(DEADLINE, crate::quic::read_header(&mut recv))
            .await
            .expect("the next frame");
        frames.push(frame);
    }
    assert_eq!(frames[0]["ok"], true, "the welcome: {frames:?}");
    assert_eq!(frames.last().unwrap()["exit_code"], 0, "{frames:?}");
    // Gone without the end of stdin, as a client that exits at once.
    connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    let session = server.wait_for_log("stream 1 requests=");
    assert!(session.contains("end=peer closed"), "{session}");
    let failed: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.contains("request failed"))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}
