//! The behaviour users of the command line rely on: how connections end,
//! what errors say, what each command prints and its exit status.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::compat::python;
use crate::shell::{shell_command, Terminal};
use crate::util::{Process, Sandbox, Server, DEADLINE};

/// Every "connection closed" line a server has logged so far, waiting for
/// `count` of them.
fn closed_lines(server: &Server, count: usize) -> Vec<String> {
    server.wait_for_log_lines("connection closed", count)
}

/// A refused request is normal use: the client that got it must end TLS
/// properly, so the server logs the connection as closed by its peer, not
/// as failed with rustls's link to its manual.
#[test]
fn a_refused_request_still_ends_tls_cleanly_in_the_servers_log() {
    let server = Server::start(&[]);
    std::fs::create_dir_all(server.root().join("there")).unwrap();
    let runs = [
        vec!["echo", "hi"],
        vec!["get", "missing"],
        vec!["ls", "missing"],
        vec!["stat", "missing"],
        vec!["mkdir", "there"],
        vec!["rm", "missing"],
    ];
    for args in &runs {
        let run = server.client(args).run();
        let expected = if args[0] == "echo" { 0 } else { 1 };
        assert_eq!(run.code, expected, "{args:?}: {run:?}");
    }
    let lines = closed_lines(&server, runs.len());
    for line in &lines {
        assert!(line.ends_with("end=peer closed"), "{line}");
    }
}

/// A client that cuts TLS short (Python's `ssl` closes without
/// `close_notify`) is logged in plain words, without rustls's link.
#[test]
fn a_client_that_cuts_tls_short_is_logged_in_plain_words() {
    let server = Server::start(&[]);
    let client_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let (host, port) = server.addr().rsplit_once(':').unwrap();
    let script = "import sys\nfrom ferry_client import Client\n\
                  host, port, token, pin = sys.argv[1:]\n\
                  with Client.connect(host, int(port), token=token, fingerprint=pin) as ferry:\n\
                  \x20   ferry.echo(b'hi')\n";
    let token = server.token();
    let run = python(
        &client_dir,
        &["-c", script, host, port, &token, server.fingerprint()],
        &[("PYTHONPATH", client_dir.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = closed_lines(&server, 1).remove(0);
    assert!(
        line.contains("end=peer closed without TLS close_notify"),
        "{line}"
    );
    assert!(!line.contains("://"), "{line}");
}

/// `exec --hosts` pins each new host as a single `exec` does, and must say
/// so for each: a pin made silently is a trust decision the user never saw.
#[test]
fn exec_hosts_says_which_certificates_it_pinned() {
    let sandbox = Sandbox::new();
    let a = Server::start_in(&sandbox, &["--allow-exec", "--root", "root-a"]);
    let b = Server::start_in(&sandbox, &["--allow-exec", "--root", "root-b"]);
    let hosts = format!("{},{}", a.addr(), b.addr());
    let run = a.client(&["exec", "--hosts", &hosts, "--", "true"]).run();
    run.assert_ok();
    for server in [&a, &b] {
        let notice = format!(
            "ferry: pinned the certificate of {} ({}) in ",
            server.addr(),
            server.fingerprint()
        );
        assert!(run.stderr.contains(&notice), "{notice:?} missing: {run:?}");
    }
    let known = sandbox.read_known_hosts();
    assert!(
        known.contains(a.addr()) && known.contains(b.addr()),
        "{known}"
    );
    // Pinned once: the next run has nothing to say.
    let again = a.client(&["exec", "--hosts", &hosts, "--", "true"]).run();
    assert!(!again.stderr.contains("pinned"), "{again:?}");
}

/// `ferry shell < script` runs the script and ends at its end, as
/// `ssh host < script` does: without a terminal on stdin there is no
/// pseudo-terminal (which never sees an end of input), and the exit status
/// and stderr are the script's.
#[test]
fn a_shell_without_a_terminal_runs_its_stdin_as_a_script_and_ends() {
    let server = Server::start(&["--allow-exec"]);
    let run = server
        .client(&["-q", "shell"])
        .stdin("echo hi\necho oops >&2\n(exit 3)\n")
        .output_within(DEADLINE);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert_eq!(
        (run.code, text(&run.stdout), text(&run.stderr)),
        (3, "hi\n".to_string(), "oops\n".to_string())
    );
}

/// A shell whose server starts shutting down is told so at once, and the
/// client says so, instead of sitting silent until the drain deadline cuts
/// the connection (and then printing rustls's link).
#[test]
fn a_shell_whose_server_shuts_down_says_so_at_once() {
    let sandbox = Sandbox::new();
    let mut server = Server::start_in(&sandbox, &["--allow-exec", "--drain-timeout", "60"]);
    let (mut terminal, device) = Terminal::open(24, 80);
    let mut client = Process::spawn(&mut shell_command(&sandbox, &server, &device));
    terminal.type_text("echo ready=$((20+22))\n");
    terminal.expect("ready=42");

    server.terminate();
    terminal.expect("ferry: the server is shutting down and ended the shell");
    let status = client.wait_within(DEADLINE).expect("the client ends");
    assert_eq!(
        status.code(),
        Some(3),
        "ferry's own failure, not the shell's"
    );
    server.assert_exits_0_within(Duration::from_secs(5));
}

/// A command cut off by its server (the drain deadline passed) says so in
/// plain words: no rustls link, and no hint about --plaintext or login
/// penalties, which have nothing to do with it.
#[test]
fn a_command_cut_off_by_its_server_says_so_in_plain_words() {
    use std::io::{BufRead, BufReader, Read};
    let mut server = Server::start(&["--allow-exec", "--drain-timeout", "1"]);
    let mut client = server
        .client(&["-q", "exec", "--", "echo started; exec sleep 30"])
        .spawn_piped();
    let stdout = client.take_stdout().unwrap();
    let (tx, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    assert_eq!(started.recv_timeout(DEADLINE).unwrap(), "started\n");
    server.terminate();
    server.assert_exits_0_within(DEADLINE);
    let status = client.wait_within(DEADLINE).expect("the client ends");
    let mut stderr = String::new();
    client
        .take_stderr()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.starts_with("ferry: the server closed the connection before the command ended\n"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("://") && !stderr.contains("plaintext"),
        "{stderr}"
    );
}

/// `ls --json` and the Python client's `ls()` describe an entry with the
/// same names, so a script moves between them unchanged (they were
/// `name`/`size` and `path`/`file_size`).
#[test]
fn ls_json_and_the_python_client_use_the_same_field_names() {
    let server = Server::start(&[]);
    std::fs::create_dir_all(server.root()).unwrap();
    std::fs::write(server.root().join("a.txt"), b"hello").unwrap();
    let cli = server.client(&["-q", "ls", "--json"]).run();
    cli.assert_ok();
    let cli: serde_json::Value = serde_json::from_str(cli.stdout.trim()).unwrap();

    let client_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let (host, port) = server.addr().rsplit_once(':').unwrap();
    let script = "import json, sys\nfrom ferry_client import Client\n\
                  host, port, token, pin = sys.argv[1:]\n\
                  with Client.connect(host, int(port), token=token, fingerprint=pin) as ferry:\n\
                  \x20   print(json.dumps(ferry.ls('')[0]))\n";
    let token = server.token();
    let python = python(
        &client_dir,
        &["-c", script, host, port, &token, server.fingerprint()],
        &[("PYTHONPATH", client_dir.to_str().unwrap())],
    );
    assert_eq!(python.code, 0, "{}", python.stderr);
    let python: serde_json::Value = serde_json::from_str(python.stdout.trim()).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&cli), keys(&python), "{cli} vs {python}");
    assert_eq!(
        (&cli["path"], &cli["size"]),
        (&python["path"], &python["size"])
    );
    assert_eq!((&cli["path"], &cli["size"]), (&"a.txt".into(), &5.into()));
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `get --md5` prints a line for every file asked for, also one already
/// up to date and so skipped: a script checking the lines must not find
/// one missing because an earlier run fetched the file.
#[test]
fn get_md5_prints_the_md5_of_a_file_skipped_as_up_to_date() {
    let server = Server::start(&[]);
    std::fs::create_dir_all(server.root().join("d")).unwrap();
    std::fs::write(server.root().join("d/a"), b"alpha\n").unwrap();
    std::fs::write(server.root().join("d/b"), b"").unwrap();
    let expected = format!("{}  d/a\n{}  d/b\n", md5_hex(b"alpha\n"), md5_hex(b""));
    let first = server.client(&["-q", "get", "-r", "--md5", "d"]).run();
    assert_eq!((first.code, first.stdout.as_str()), (0, expected.as_str()));
    let again = server.client(&["get", "-r", "--md5", "d"]).run();
    again
        .assert_ok()
        .assert_stderr_contains("2 already up to date")
        .assert_stdout(&expected);
}

/// A transfer that fails says on which side: a local file that is not
/// there is this machine's failure, a remote one the server's. Both are
/// transfer failures, exit 1.
#[test]
fn a_failed_transfer_says_which_side_failed() {
    let server = Server::start(&[]);
    let put = server.client(&["put", "nothere"]).run();
    put.assert_code(1);
    assert!(
        put.stderr
            .contains("ferry: local: \"nothere\": no such file or directory"),
        "{put:?}"
    );
    let get = server.client(&["get", "missing"]).run();
    get.assert_code(1);
    assert!(
        get.stderr
            .contains("ferry: server: missing: no such file or directory (not_found)"),
        "{get:?}"
    );
}

/// A get onto a local disk that fills up fails the file, exit 1, and says
/// the local side failed (the client runs in its own mount namespace with
/// its destination on a 1 MiB tmpfs, as `files::space` runs the server).
#[test]
fn a_get_onto_a_full_local_disk_says_the_local_side_failed() {
    use std::process::Command;
    let server = Server::start(&["--plaintext"]);
    std::fs::create_dir_all(server.root()).unwrap();
    std::fs::write(server.root().join("big.bin"), vec![7u8; 3 << 20]).unwrap();
    let dest = server.sandbox.path().join("tiny");
    std::fs::create_dir_all(&dest).unwrap();
    let script = r#"mount -t tmpfs -o size=1m ferry-test "$1" && shift && exec "$@""#;
    let mut command = Command::new("unshare");
    command.args(["--map-root-user", "--mount", "sh", "-c", script, "sh"]);
    command.arg(&dest).arg(crate::util::FERRY).args([
        "--plaintext",
        "--server",
        server.addr(),
        "get",
        "big.bin",
        "--to",
    ]);
    command
        .arg(&dest)
        .env_clear()
        .env("HOME", server.sandbox.path())
        .env("FERRY_STATE", server.state_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = Process::spawn(&mut command);
    let status = client.wait_within(DEADLINE).expect("the get ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut client.take_stderr().unwrap(), &mut stderr).unwrap();
    assert!(
        !stderr.contains("mount:"),
        "unshare and tmpfs must work here: {stderr}"
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ferry: local: big.bin: ") && stderr.contains("No space left on device"),
        "{stderr}"
    );
}

/// A local failure outside any transfer (stdout is a full disk) is not
/// "the server answered with an error": it exits 3, as ferry's own
/// failures do, and says it was local.
#[test]
fn a_local_failure_outside_a_transfer_exits_3_and_says_so() {
    let server = Server::start(&[]);
    std::fs::create_dir_all(server.root()).unwrap();
    std::fs::write(server.root().join("a"), b"").unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut client = server
        .client(&["-q", "ls"])
        .spawn_with(Stdio::null(), Stdio::from(full));
    let status = client.wait_within(DEADLINE).expect("ls ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut client.take_stderr().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.starts_with("ferry: local: cannot write to stdout: No space left on device"),
        "{stderr}"
    );
}
