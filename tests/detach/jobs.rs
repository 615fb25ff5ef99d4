//! A detachable command outlives a killed client: `ferry jobs` lists it,
//! `ferry attach` follows it from another process, its linger ends it, its
//! output bound drops the oldest with a note, and only its own client
//! identity sees it.

use rustix::process::Signal;

use super::{arg, client, jobs, one_job, open_gate, wait_for};
use crate::exec::{assert_all_die, exec, exec_server, output, read_pids};
use crate::util::{poll_until, Server, DEADLINE};

/// Starts `line` with `--detachable` (and `extra` flags) and kills the
/// client once the server lists the job; returns the job's id.
fn start_and_kill_client(server: &Server, extra: &[&str], line: &str) -> String {
    let mut args = vec!["--detachable"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", line]);
    let mut client = exec(server, &args).spawn();
    let id = one_job(server, "attached");
    client.signal(Signal::KILL);
    assert!(client.wait_within(DEADLINE).is_some());
    id
}

#[test]
fn a_killed_client_leaves_the_command_running_and_attach_gets_all_its_output() {
    let server = exec_server(&[]);
    let line = format!(
        "echo one; echo err >&2; {}; echo two; exit 7",
        wait_for("go")
    );
    let id = start_and_kill_client(&server, &[], &line);
    assert_eq!(one_job(&server, "detached"), id);
    assert!(jobs(&server).stdout.contains("running"));
    open_gate(&server, "go");
    let out = output(client(&server, &["attach", &id]));
    assert_eq!(
        (out.code, out.stdout.as_slice(), out.stderr.as_slice()),
        (7, &b"one\ntwo\n"[..], &b"err\n"[..])
    );
    // Its end delivered, the job is gone.
    assert_eq!(jobs(&server).stdout, "");
}

#[test]
fn without_a_client_the_linger_ends_the_command_and_everything_it_started() {
    let server = exec_server(&[]);
    let pids = server.sandbox.path().join("pids");
    let pids = arg(&pids);
    let line = format!("echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; wait");
    start_and_kill_client(&server, &["--linger", "1"], &line);
    let remotes = read_pids(server.sandbox.path().join("pids").as_path(), 2);
    // Alive past the kill of its client, dead once the linger passed.
    assert!(remotes.iter().all(|r| r.is_alive()));
    poll_until("the linger to end the command", DEADLINE, || {
        remotes.iter().all(|r| !r.is_alive()).then_some(())
    });
    assert_all_die(&remotes);
    poll_until("the job to be gone", DEADLINE, || {
        jobs(&server).stdout.is_empty().then_some(())
    });
}

#[test]
fn another_client_identity_neither_sees_nor_attaches_to_the_job() {
    let server = exec_server(&[]);
    let token = crate::tokens::add_client(&server, "other", &[]);
    let id = start_and_kill_client(&server, &[], &wait_for("go"));
    let as_other = |args: &[&str]| {
        let mut full = vec!["--token-file", token.as_str()];
        full.extend_from_slice(args);
        server.client(&full).env_remove("FERRY_STATE").run()
    };
    let listed = as_other(&["jobs"]);
    listed.assert_ok();
    assert_eq!(listed.stdout, "");
    let attached = as_other(&["attach", &id]);
    attached
        .assert_code(3)
        .assert_stderr_contains("no such job of yours");
    // The owner still has it, untouched.
    assert_eq!(one_job(&server, "detached"), id);
    open_gate(&server, "go");
    let out = output(client(&server, &["attach", &id]));
    assert_eq!(out.code, 0);
}

#[test]
fn past_the_buffer_the_oldest_output_is_dropped_and_the_client_says_how_much() {
    let server = exec_server(&["--job-buffer", "4096"]);
    let line = format!("{}; seq 1 200000; echo end", wait_for("go"));
    let id = start_and_kill_client(&server, &[], &line);
    open_gate(&server, "go");
    one_job(&server, "exited 0");
    let out = output(client(&server, &["attach", &id]));
    let full: String = (1..=200000).map(|n| format!("{n}\n")).collect::<String>() + "end\n";
    let got = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.code, 0);
    // What is kept: the bound, or the newest read of the pipe (at most
    // 64 KiB), which is never dropped.
    assert!(got.len() <= 64 * 1024, "{} bytes kept", got.len());
    assert!(full.ends_with(&got), "the newest output is kept whole");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let note = format!(
        "\n[ferry: {} bytes of stdout dropped: more than the server keeps for a detached job]\n",
        full.len() - got.len()
    );
    assert_eq!(stderr, note);
}

#[test]
fn an_attach_from_another_terminal_takes_the_job_over_from_a_live_client() {
    let server = exec_server(&[]);
    let line = format!("echo one; {}; echo two", wait_for("go"));
    let mut first = exec(&server, &["--detachable", "--", &line]).spawn_piped();
    let _stdin = first.take_stdin();
    let id = one_job(&server, "attached");
    let mut second = client(&server, &["attach", &id]).spawn_piped();
    let _second_stdin = second.take_stdin();
    // The first client is told and ends as ferry fails, not as the command.
    let first = first
        .collect_within(DEADLINE)
        .expect("the first client ended");
    assert_eq!(first.status.code(), Some(3), "{}", first.stderr);
    assert!(
        first.stderr.contains("attached from another connection"),
        "{}",
        first.stderr
    );
    open_gate(&server, "go");
    let second = second.collect_within(DEADLINE).expect("the attach ended");
    assert_eq!(
        (second.status.code(), second.stdout.as_str()),
        (Some(0), "one\ntwo\n")
    );
}

#[test]
fn a_client_may_hold_only_so_many_detachable_jobs() {
    let server = exec_server(&[]);
    let max = ferry::limits::MAX_JOBS_PER_CLIENT;
    let mut clients: Vec<_> = (0..max)
        .map(|_| exec(&server, &["--detachable", "--", &wait_for("go")]).spawn())
        .collect();
    poll_until(&format!("{max} jobs"), DEADLINE, || {
        (jobs(&server).stdout.lines().count() == max).then_some(())
    });
    let refused = output(exec(&server, &["--detachable", "--", "touch never"]));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.code, 3, "{stderr}");
    assert!(stderr.contains("too many detachable jobs"), "{stderr}");
    assert!(
        !server.root().join("never").exists(),
        "the refused command ran"
    );
    open_gate(&server, "go");
    for client in &mut clients {
        let status = client.wait_within(DEADLINE).expect("the client ended");
        assert!(status.success());
    }
}

#[test]
fn with_detachable_default_every_command_outlives_its_client() {
    let server = exec_server(&["--detachable-default"]);
    let line = format!("echo one; {}; echo two", wait_for("go"));
    let mut started = exec(&server, &["--", &line]).spawn();
    let id = one_job(&server, "attached");
    started.signal(Signal::KILL);
    assert!(started.wait_within(DEADLINE).is_some());
    one_job(&server, "detached");
    open_gate(&server, "go");
    let out = output(client(&server, &["attach", &id]));
    assert_eq!((out.code, out.stdout.as_slice()), (0, &b"one\ntwo\n"[..]));
}

#[test]
fn a_server_that_shuts_down_leaves_no_detached_command_running() {
    let mut server = exec_server(&["--drain-timeout", "0.5"]);
    let pids = server.sandbox.path().join("pids");
    let line = {
        let pids = arg(&pids);
        format!("echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; wait")
    };
    start_and_kill_client(&server, &[], &line);
    let remotes = read_pids(&pids, 2);
    one_job(&server, "detached");
    server.stop();
    assert_all_die(&remotes);
}
