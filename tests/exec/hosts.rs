//! `ferry exec --hosts`: one command on several servers at once, each line
//! prefixed by its host, a summary, and an exit status that says whether
//! all succeeded.

use std::sync::Arc;

use super::{output, pin};
use crate::util::{Sandbox, Server};

/// Two servers in one sandbox (so one token and one pinned certificate
/// serve both), each with its own root holding a file named after it.
fn two_servers() -> (Arc<Sandbox>, Server, Server) {
    let sandbox = Sandbox::new();
    let a = Server::start_in(&sandbox, &["--allow-exec", "--root", "root-a"]);
    let b = Server::start_in(&sandbox, &["--allow-exec", "--root", "root-b"]);
    std::fs::write(a.root().join("name"), "alpha\n").unwrap();
    std::fs::write(b.root().join("name"), "beta\n").unwrap();
    pin(&a);
    let known = format!(
        "{} {}\n{} {}\n",
        a.addr(),
        a.fingerprint(),
        b.addr(),
        b.fingerprint()
    );
    sandbox.write_known_hosts(&known);
    (sandbox, a, b)
}

#[test]
fn every_host_runs_the_command_and_its_lines_are_prefixed_by_its_host() {
    let (_sandbox, a, b) = two_servers();
    let hosts = format!("{},{}", a.addr(), b.addr());
    let out = output(a.client(&["exec", "--hosts", &hosts, "--", "cat name; echo oops >&2"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.code, 0, "{stdout}{stderr}");
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    let mut expected = vec![
        format!("{}: alpha", a.addr()),
        format!("{}: beta", b.addr()),
    ];
    expected.sort();
    assert_eq!(lines, expected);
    assert!(stderr.contains(&format!("{}: oops", a.addr())), "{stderr}");
    assert!(stderr.contains(&format!("{}: oops", b.addr())), "{stderr}");
    assert!(
        stderr.contains("2 hosts: 2 succeeded, 0 failed, 0 timed out, 0 unreachable"),
        "{stderr}"
    );
}

#[test]
fn the_summary_names_failed_timed_out_and_unreachable_hosts_and_the_status_says_so() {
    let (sandbox, a, b) = two_servers();
    // A port nobody listens on: bound and closed at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = closed.local_addr().unwrap().to_string();
    drop(closed);
    let hosts_file = sandbox.path().join("fleet");
    std::fs::write(
        &hosts_file,
        format!("# the fleet\n{}\n{}\n\n{unreachable}\n", a.addr(), b.addr()),
    )
    .unwrap();
    let file = hosts_file.display().to_string();
    // alpha fails, beta sleeps past the timeout.
    let command = "grep -q beta name && sleep 5; grep -q beta name || exit 4";
    let out = output(a.client(&[
        "exec",
        "--hosts-file",
        &file,
        "--timeout",
        "0.5",
        "--",
        command,
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.code, 3, "an unreachable host makes it 3: {stderr}");
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(summary.contains("3 hosts: 0 succeeded"), "{summary}");
    assert!(
        summary.contains(&format!("1 failed ({} exit 4)", a.addr())),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("1 timed out ({})", b.addr())),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("1 unreachable ({unreachable}")),
        "{summary}"
    );

    // Without the unreachable host, a failure alone is status 1.
    let hosts = format!("{},{}", a.addr(), b.addr());
    let out = output(a.client(&["exec", "--hosts", &hosts, "--", "grep -q beta name"]));
    assert_eq!(out.code, 1, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn json_gives_one_record_per_host_and_keeps_output_off_stdout() {
    let (_sandbox, a, b) = two_servers();
    let hosts = format!("{},{}", a.addr(), b.addr());
    let out = output(a.client(&[
        "-q",
        "exec",
        "--hosts",
        &hosts,
        "--json",
        "--",
        "cat name; grep -q alpha name",
    ]));
    assert_eq!(out.code, 1);
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON record per line"))
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    let of = |host: &str| {
        records
            .iter()
            .find(|r| r["host"] == host)
            .unwrap_or_else(|| panic!("no record for {host}: {records:?}"))
    };
    assert_eq!(of(a.addr())["status"], "succeeded");
    assert_eq!(of(a.addr())["exit_code"], 0);
    assert_eq!(of(b.addr())["status"], "failed");
    assert_eq!(of(b.addr())["exit_code"], 1);
    assert!(of(b.addr())["duration_ms"].is_u64());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}: beta", b.addr())), "{stderr}");
}
