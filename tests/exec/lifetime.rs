//! When commands run at all, and when they stop: `--allow-exec`,
//! `--max-commands`, `--timeout`, a client that goes away, a server that
//! shuts down. Whatever ends a command ends everything it started.

use std::io::Read;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::{
    arg, assert_all_die, assert_bytes, assert_ferry_failed, assert_output, exec, exec_server,
    output, read_all_in_background, read_pids,
};
use crate::util::{Raw, Server, DEADLINE};

/// A command that records its shell's PID and two background sleepers'
/// in `pids`, then waits for them: three processes that a kill of the
/// shell alone would not end.
fn sleepers(pids: &std::path::Path) -> String {
    let pids = arg(pids);
    format!("echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; sleep 300 & echo $! >> {pids}; wait")
}

#[test]
fn exec_is_refused_without_allow_exec_and_nothing_runs() {
    let server = Server::start(&[]);
    super::pin(&server);
    let marker = server.root().join("marker");
    for command in [&["touch marker"][..], &["touch", "marker"][..]] {
        let mut args = vec!["--"];
        args.extend_from_slice(command);
        let refused = output(exec(&server, &args));
        assert_ferry_failed(&refused, &["--allow-exec"]);
    }
    let refused = output(exec(&server, &[]).stdin("touch marker\n"));
    assert_ferry_failed(&refused, &["--allow-exec"]);
    assert!(!marker.exists(), "a refused command ran");
}

#[test]
fn max_commands_refuses_one_command_too_many_until_a_slot_frees() {
    let server = exec_server(&["--plaintext", "--max-commands", "1"]);
    let started = server.root().join("started");
    // The first holds the only slot until the test closes its stdin.
    let mut first = exec(&server, &["--", "touch started; cat"]).spawn_piped();
    let first_stdin = first.take_stdin();
    let mut first_stdout = first.take_stdout().unwrap();
    super::poll_until("the first command to start", DEADLINE, || {
        started.exists().then_some(())
    });

    let refused = output(exec(&server, &["--", "touch second"]));
    assert_ferry_failed(&refused, &["maximum of commands"]);
    let mut raw = Raw::hello(&server);
    raw.send_frame(
        &serde_json::json!({"cmd": "exec", "shell": "touch third"}),
        b"",
    );
    raw.expect_error("exec_limit");
    raw.echo("the connection goes on");
    assert!(!server.root().join("second").exists());
    assert!(!server.root().join("third").exists());

    drop(first_stdin);
    assert_eq!(first.wait_within(DEADLINE).and_then(|s| s.code()), Some(0));
    let mut echoed = Vec::new();
    first_stdout.read_to_end(&mut echoed).unwrap();
    assert_bytes("stdout", &echoed, b"");
    let out = output(exec(&server, &["--", "echo the slot is free"]));
    assert_output(&out, 0, "the slot is free\n", "");
}

#[test]
fn a_timeout_exits_124_and_kills_everything_the_command_started() {
    let server = exec_server(&[]);
    let pids = server.sandbox.path().join("pids");
    let started = Instant::now();
    let mut client = exec(&server, &["--timeout", "1", "--", &sleepers(&pids)]).spawn_piped();
    drop(client.take_stdin());
    let stdout = read_all_in_background(client.take_stdout().unwrap());
    let stderr = read_all_in_background(client.take_stderr().unwrap());
    let remotes = read_pids(&pids, 3);
    let status = client.wait_within(DEADLINE);
    let took = started.elapsed();
    assert_eq!(status.and_then(|s| s.code()), Some(124));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "exited after {took:?}"
    );
    assert_bytes("stdout", &stdout.join().unwrap(), b"");
    assert_bytes("stderr", &stderr.join().unwrap(), b"");
    assert_all_die(&remotes);
}

#[test]
fn a_command_that_ends_before_its_timeout_keeps_its_status() {
    let server = exec_server(&[]);
    let started = Instant::now();
    let out = output(exec(
        &server,
        &["--timeout", "30", "--", "echo quick; exit 5"],
    ));
    assert_output(&out, 5, "quick\n", "");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn killing_the_client_kills_the_command_and_all_it_started() {
    let server = exec_server(&[]);
    let pids = server.sandbox.path().join("pids");
    // stdin stays open, as at a terminal: the server is still reading it.
    let mut client = exec(&server, &["--", &sleepers(&pids)]).spawn_piped();
    let _stdin = client.take_stdin();
    let remotes = read_pids(&pids, 3);
    client.signal(Signal::KILL);
    assert!(client.wait_within(DEADLINE).is_some());
    assert_all_die(&remotes);
}

#[test]
fn killing_a_client_whose_stdin_had_ended_kills_the_command_too() {
    let server = exec_server(&[]);
    let pids = server.sandbox.path().join("pids");
    // stdin is /dev/null: the client sends its end of stdin at once, and
    // the command prints nothing, so no write to the client fails either.
    let mut client = exec(&server, &["--", &sleepers(&pids)]).spawn();
    let remotes = read_pids(&pids, 3);
    client.signal(Signal::KILL);
    assert!(client.wait_within(DEADLINE).is_some());
    assert_all_die(&remotes);
}

#[test]
fn a_client_whose_stdout_closes_ends_the_command() {
    // `ferry exec -- yes | head -c 5`: once head has had enough, the
    // client cannot deliver more and must not leave `yes` running.
    let server = exec_server(&[]);
    let pids = server.sandbox.path().join("pids");
    let command = format!("echo $$ > {}; exec yes", arg(&pids));
    let mut client = exec(&server, &["--", &command]).spawn_piped();
    let _stdin = client.take_stdin();
    let mut stdout = client.take_stdout().unwrap();
    let mut first = [0u8; 5];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\ny\ny");
    let remotes = read_pids(&pids, 1);
    drop(stdout);
    assert!(
        client.wait_within(DEADLINE).is_some(),
        "the client outlived its stdout"
    );
    assert_all_die(&remotes);
}

#[test]
fn a_server_that_shuts_down_leaves_no_command_running() {
    let mut server = exec_server(&["--plaintext", "--drain-timeout", "0.5"]);
    let pids = server.sandbox.path().join("pids");
    let mut client = exec(&server, &["--", &sleepers(&pids)]).spawn_piped();
    let _stdin = client.take_stdin();
    let remotes = read_pids(&pids, 3);
    server.stop();
    assert!(client.wait_within(DEADLINE).is_some());
    assert_all_die(&remotes);
}

#[test]
fn a_command_may_run_longer_than_the_request_and_idle_timeouts() {
    // The deadlines are for a silent peer inside a request or between
    // requests; a command that takes its time while the client waits (its
    // stdin open and silent, or already ended) is neither.
    let server = exec_server(&["--request-timeout", "1", "--idle-timeout", "1"]);
    let command = "sleep 2; echo done";
    let mut open = exec(&server, &["--", command]).spawn_piped();
    let _stdin = open.take_stdin();
    let open_out = read_all_in_background(open.take_stdout().unwrap());
    let ended = output(exec(&server, &["--", command]));
    assert_output(&ended, 0, "done\n", "");
    assert_eq!(open.wait_within(DEADLINE).and_then(|s| s.code()), Some(0));
    assert_bytes("stdout", &open_out.join().unwrap(), b"done\n");
}
