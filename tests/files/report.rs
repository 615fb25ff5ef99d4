//! What a transfer reports: with `-v` a line per file (what happened to
//! it), with `--json` a record per failed file with its side, with
//! `--json -v` a record per other file too, and a summary last; each
//! failure names the side it happened on.

use std::fs;

use serde_json::{json, Value};

use super::{arg, local_dir, run, write_file};
use crate::util::fake::{file_entry, json_lines, parse_lines, Fake};
use crate::util::{Sandbox, Server};

const T1: u64 = 1_700_000_000;

/// The records of a `--json` run, by event.
fn records(stdout: &str, event: &str) -> Vec<Value> {
    parse_lines(stdout.as_bytes())
        .into_iter()
        .filter(|r| r["event"] == event)
        .collect()
}

#[test]
fn verbose_transfers_print_a_line_per_file_saying_what_happened_to_it() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    fs::create_dir_all(local.join("t/sub")).unwrap();
    write_file(&local.join("t/a"), b"alpha", 0o644, T1);
    write_file(&local.join("t/sub/b"), b"", 0o644, T1);
    let tree = local.join("t");

    let quiet = run(&server, &["put", "-r", arg(&tree)]);
    quiet.assert_ok();
    assert!(!quiet.stderr.contains("ferry: sent t/a"), "{quiet:?}");
    fs::remove_dir_all(server.root().join("t")).unwrap();

    let sent = run(&server, &["put", "-r", "-v", arg(&tree)]);
    assert_eq!((sent.code, sent.stdout.as_str()), (0, ""), "{sent:?}");
    let lines: Vec<&str> = sent.stderr.lines().collect();
    assert_eq!(
        &lines[..2],
        ["ferry: sent t/a (5 B)", "ferry: sent t/sub/b (0 B)"]
    );

    let skipped = run(&server, &["put", "-r", "-v", arg(&tree)]);
    skipped.assert_ok();
    assert!(
        skipped.stderr.contains(
            "ferry: skipped t/a (5 B, up to date)\nferry: skipped t/sub/b (0 B, up to date)\n"
        ),
        "{skipped:?}"
    );

    let dl = local_dir(&server, "dl");
    let got = run(&server, &["get", "-r", "-v", "t", "--to", arg(&dl)]);
    got.assert_ok();
    assert!(
        got.stderr
            .contains("ferry: sent t/a (5 B)\nferry: sent t/sub/b (0 B)\n"),
        "{got:?}"
    );
    // -q keeps stderr for errors only.
    let hushed = run(&server, &["get", "-q", "-r", "-v", "t", "--to", arg(&dl)]);
    assert_eq!((hushed.code, hushed.stderr.as_str()), (0, ""), "{hushed:?}");
}

#[test]
fn json_with_v_has_a_record_per_file_and_failures_name_their_side() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    fs::create_dir_all(local.join("t")).unwrap();
    write_file(&local.join("t/a"), b"alpha", 0o644, T1);
    write_file(&local.join("t/b"), b"beta", 0o644, T1);
    let tree = local.join("t");

    // Without -v, nothing per file but failures.
    let plain = run(&server, &["put", "-r", "--json", arg(&tree)]);
    plain.assert_ok();
    assert_eq!(records(&plain.stdout, "file"), Vec::<Value>::new());
    let summary = parse_lines(plain.stdout.as_bytes()).pop().unwrap();
    assert_eq!(summary["event"], "summary", "the summary comes last");
    assert_eq!(
        (
            &summary["files"],
            &summary["bytes"],
            &summary["resumed_bytes"]
        ),
        (&json!(2), &json!(9), &json!(0))
    );

    // b now differs from the server's copy: refused there, a skipped.
    write_file(&local.join("t/b"), b"BETA!", 0o644, T1 + 1);
    let run = run(&server, &["put", "-r", "-v", "--json", arg(&tree)]);
    run.assert_code(1);
    assert_eq!(
        records(&run.stdout, "file"),
        [json!({"event": "file", "path": "t/a", "size": 5, "action": "skipped"})]
    );
    let failed = records(&run.stdout, "failed");
    assert_eq!(failed.len(), 1, "{run:?}");
    assert_eq!(
        (&failed[0]["path"], &failed[0]["code"], &failed[0]["side"]),
        (&json!("t/b"), &json!("exists"), &json!("server"))
    );
    assert!(
        run.stderr
            .contains("ferry: server: \"t/b\" exists and differs"),
        "{run:?}"
    );
    let summary = parse_lines(run.stdout.as_bytes()).pop().unwrap();
    assert_eq!(
        (&summary["skipped"], &summary["failed"]),
        (&json!(1), &json!(1))
    );
}

/// A local file that vanishes after the listing fails on the local side,
/// though it is the server that reports it in the put's result.
#[test]
fn a_put_whose_local_file_vanishes_fails_it_on_the_local_side() {
    let sandbox = Sandbox::new();
    let local = sandbox.path().join("local");
    fs::create_dir_all(&local).unwrap();
    let doomed = local.join("doomed");
    fs::write(&doomed, b"here, then gone").unwrap();
    let gone = doomed.clone();
    let fake = Fake::start(1, move |peer| {
        peer.hello();
        let (request, manifest) = peer.expect();
        assert_eq!(request["cmd"], "put", "{request:?}");
        assert_eq!(parse_lines(&manifest).len(), 1);
        fs::remove_file(&gone).unwrap();
        let wants = [json!({"i": 0, "action": "send", "offset": 0})];
        peer.send(json!({"ok": true}), &json_lines(&wants));
        let (end, _) = peer.expect();
        assert_eq!(end["file_end"], 0, "a failed end frame: {end:?}");
        assert_eq!(end["code"], "not_found", "{end:?}");
        let (done, _) = peer.expect();
        assert_eq!(done["end"], true, "{done:?}");
        let errors = [json!({"i": 0, "code": "not_found", "message": end["error"]})];
        peer.send(
            json!({"ok": true, "files": 0, "bytes": 0, "skipped": 0, "failed": 1}),
            &json_lines(&errors),
        );
    });
    let run = fake.client(&sandbox, &["put", "--json", doomed.to_str().unwrap()]);
    fake.join();
    run.assert_code(1);
    let failed = records(&run.stdout, "failed");
    assert_eq!(failed.len(), 1, "{run:?}");
    assert_eq!(
        (&failed[0]["path"], &failed[0]["side"]),
        (&json!("doomed"), &json!("local"))
    );
    run.assert_stderr_contains("ferry: local: doomed: ");
}

/// A file the server ends with a failure fails on the server's side; one
/// that cannot be written here fails on the local side.
#[test]
fn a_get_names_the_side_of_each_failed_file() {
    let sandbox = Sandbox::new();
    let dl = sandbox.path().join("dl");
    // `blocked` cannot be written here: its directory is a file.
    fs::create_dir_all(&dl).unwrap();
    fs::write(dl.join("blocked"), b"a file where a directory must go").unwrap();
    let entries = [
        file_entry("sick", 4, T1 as i64),
        json!({"kind": "file", "path": "blocked/x", "file_size": 1, "mode": 0o644, "mtime": 0}),
    ];
    let fake = Fake::start(1, move |peer| {
        peer.hello();
        peer.manifest(&entries);
        let wants = peer.wants();
        assert_eq!(wants.len(), 2, "{wants:?}");
        peer.send(
            json!({"file_end": 0, "code": "permission_denied", "error": "cannot read"}),
            b"",
        );
        peer.end();
    });
    let run = fake.client(
        &sandbox,
        &["get", "-r", "--json", "", "--to", dl.to_str().unwrap()],
    );
    fake.join();
    run.assert_code(1);
    let mut sides: Vec<(String, String)> = records(&run.stdout, "failed")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().into(),
                f["side"].as_str().unwrap().into(),
            )
        })
        .collect();
    sides.sort();
    assert_eq!(
        sides,
        [
            ("blocked/x".into(), "local".into()),
            ("sick".into(), "server".into())
        ]
    );
}
