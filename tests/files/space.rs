//! A disk that fills up: the transfer fails with `no_space`, and the partial
//! file is removed so the space comes back. The server runs in its own
//! mount namespace (`unshare --map-root-user --mount`) with its root on a
//! 1 MiB tmpfs, so no mount can outlive it, whatever happens to the test.
//! Where user namespaces are not allowed (Docker's default seccomp
//! profile, Ubuntu's AppArmor from 24.04), these tests report a skip.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::{assert_failed, assert_transferred, write_random_file};
use crate::util::outside_tool;
use crate::util::{Invocation, Process, Run, Sandbox, FERRY};

/// `ferry serve --allow-exec` on a 1 MiB (256-page) root, and its address;
/// `None`, reported as a skip, where this machine allows no user namespace.
pub(crate) fn serve_on_a_tiny_disk(sandbox: &Sandbox) -> Option<(Process, String)> {
    let allowed = Command::new("unshare")
        .args(["--map-root-user", "--mount", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !allowed {
        outside_tool::skip(
            "`unshare --map-root-user --mount` fails: no user namespaces here",
            "allow them: on Ubuntu sysctl kernel.apparmor_restrict_unprivileged_userns=0, \
             in Docker --security-opt seccomp=unconfined; CI has them",
        );
        return None;
    }
    let root = sandbox.path().join("tiny-root");
    let state = sandbox.path().join("state");
    std::fs::create_dir_all(&root).unwrap();
    let script = r#"mount -t tmpfs -o size=1m ferry-test "$1" && exec "$2" serve --plaintext --allow-exec --no-udp-time --listen 127.0.0.1:0 --root "$1" --state "$3""#;
    let mut command = Command::new("unshare");
    command
        .args(["--map-root-user", "--mount", "sh", "-c", script, "sh"])
        .arg(&root)
        .arg(FERRY)
        .arg(&state)
        .env("HOME", sandbox.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = Process::spawn(&mut command);
    let stdout = BufReader::new(server.take_stdout().expect("piped stdout"));
    let addr = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("listening ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        })
        .expect("the server in its namespace started (unshare and tmpfs must work here)");
    Some((server, addr))
}

pub(crate) fn client(sandbox: &Sandbox, addr: &str, args: &[&str]) -> Run {
    let mut full = vec!["--plaintext"];
    full.extend_from_slice(args);
    Invocation::new(sandbox, &full)
        .env("FERRY_SERVER", addr)
        .env("FERRY_STATE", sandbox.path().join("state"))
        .run()
}

#[test]
fn a_disk_that_fills_up_fails_the_put_and_leaves_no_partial_behind() {
    let sandbox = Sandbox::new();
    let Some((_server, addr)) = serve_on_a_tiny_disk(&sandbox) else {
        return;
    };
    let big = sandbox.path().join("big.bin");
    write_random_file(&big, 7, 3 * 1024 * 1024);

    let run = client(&sandbox, &addr, &["put", big.to_str().unwrap()]);
    assert_failed(&run, 1, &["big.bin", "No space left on device"]);

    // Inside the server's namespace, the root holds nothing: no final
    // file, no partial.
    let listing = client(
        &sandbox,
        &addr,
        &["-q", "exec", "--", "ls -A; df -k . | tail -1"],
    );
    listing.assert_ok();
    let mut lines = listing.stdout.lines();
    let df = lines.next_back().unwrap_or_default().to_string();
    let left: Vec<&str> = lines.collect();
    assert!(left.is_empty(), "left in the root: {left:?}");
    let used_kib: u64 = df
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(used_kib < 64, "the space was not given back: {df}");

    // And the space is usable again.
    let small = sandbox.path().join("small.bin");
    write_random_file(&small, 8, 100 * 1024);
    assert_transferred(&client(
        &sandbox,
        &addr,
        &["-q", "put", small.to_str().unwrap()],
    ));
}
