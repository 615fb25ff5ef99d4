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
