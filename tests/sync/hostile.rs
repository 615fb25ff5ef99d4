//! A hostile peer, in both directions: names outside the destination,
//! links that lead out of it, and a delete it cannot name. Raw frames for
//! the hostile client; a pull from a server whose tree holds bad links for
//! the hostile server.

use std::fs;
use std::os::unix::fs::symlink;

use serde_json::json;

use super::{local, remote, sync, T1};
use crate::files::{arg, write_file, Outside};
use crate::util::{Raw, Server};

fn manifest(lines: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend(serde_json::to_vec(line).unwrap());
        out.push(b'\n');
    }
    out
}

#[test]
fn a_raw_push_naming_paths_and_links_outside_the_destination_writes_nothing_outside() {
    let server = Server::start(&["--plaintext"]);
    let outside = Outside::create(&server);
    let victim = outside.victim();
    let entries = [
        json!({"kind": "file", "path": "../escape", "file_size": 1, "mode": 420, "mtime": 0}),
        json!({"kind": "file", "path": "/abs", "file_size": 1, "mode": 420, "mtime": 0}),
        json!({"kind": "symlink", "path": "out", "mode": 511, "mtime": 0,
               "sync": {"target": {"path": victim.to_str().unwrap()}}}),
        json!({"kind": "symlink", "path": "up", "mode": 511, "mtime": 0,
               "sync": {"target": {"path": "../../outside/victim"}}}),
        json!({"kind": "symlink", "path": "fine", "mode": 511, "mtime": 0,
               "sync": {"target": {"path": "sub/../x"}}}),
    ];
    let body = manifest(&entries);
    let mut raw = Raw::hello(&server);
    raw.send_frame(
        &json!({"cmd": "sync", "path": "m", "push": true, "head": {"is_dir": true, "entries": 5, "total_bytes": 2}, "delete": true, "size": body.len()}),
        &body,
    );
    let wants = raw.read_frame();
    assert!(wants.is_ok(), "{:?}", wants.header);
    let text = String::from_utf8_lossy(&wants.body).to_string();
    assert_eq!(text.matches("\"refuse\"").count(), 2, "{text}");
    raw.send_frame(&json!({"end": true}), b"");
    let result = raw.read_frame();
    assert!(result.is_ok(), "{:?}", result.header);
    let report = String::from_utf8_lossy(&result.body).to_string();
    assert!(
        report.contains("\"out\"") && report.contains("leads out"),
        "{report}"
    );
    assert!(report.contains("\"up\""), "{report}");
    assert!(
        result.header["deletes_skipped"].is_string(),
        "{:?}",
        result.header
    );
    let m = server.root().join("m");
    assert_eq!(
        fs::read_link(m.join("fine")).unwrap().to_str(),
        Some("sub/../x")
    );
    assert!(fs::symlink_metadata(m.join("out")).is_err());
    assert!(fs::symlink_metadata(m.join("up")).is_err());
    raw.echo("still here");
    outside.assert_untouched();
}

#[test]
fn a_raw_push_with_an_empty_manifest_and_delete_cannot_empty_the_destination() {
    let server = Server::start(&["--plaintext"]);
    let m = server.root().join("m");
    fs::create_dir_all(&m).unwrap();
    fs::write(m.join("precious"), b"p").unwrap();
    let mut raw = Raw::hello(&server);
    raw.send_frame(
        &json!({"cmd": "sync", "path": "m", "push": true, "head": {"is_dir": true, "entries": 0, "total_bytes": 0}, "delete": true}),
        b"",
    );
    assert!(raw.read_frame().is_ok());
    raw.send_frame(&json!({"end": true}), b"");
    let result = raw.read_frame();
    assert!(result.header["deletes_skipped"]
        .as_str()
        .unwrap()
        .contains("--force"));
    assert!(m.join("precious").exists());
}

#[test]
fn a_pull_keeps_links_inside_the_destination_and_refuses_the_rest() {
    let server = Server::start(&[]);
    let tree = server.root().join("t");
    fs::create_dir_all(tree.join("d")).unwrap();
    write_file(&tree.join("d/f"), b"f", 0o644, T1);
    symlink("/etc/passwd", tree.join("abs")).unwrap();
    symlink("../../../x", tree.join("d/climb")).unwrap();
    symlink("f", tree.join("d/ok")).unwrap();
    let dest = local(&server, "dest");
    let run = sync(&server, &[&remote(&server, "t/"), arg(&dest)]);
    run.assert_code(1).assert_stderr_contains("leads out");
    assert_eq!(
        fs::read_link(dest.join("d/ok")).unwrap().to_str(),
        Some("f")
    );
    assert!(fs::symlink_metadata(dest.join("abs")).is_err());
    assert!(fs::symlink_metadata(dest.join("d/climb")).is_err());
    assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"f");
}

#[test]
fn a_read_only_token_can_pull_but_not_push() {
    let server = Server::start(&[]);
    let add = crate::util::Invocation::new(
        &server.sandbox,
        &[
            "tokens",
            "--state",
            server.state_dir().to_str().unwrap(),
            "add",
            "viewer",
            "--read-only",
            "--json",
        ],
    )
    .run();
    add.assert_ok();
    let added: serde_json::Value = serde_json::from_str(&add.stdout).unwrap();
    let token = added["token"].as_str().unwrap().to_string();
    let src = local(&server, "src");
    write_file(&src.join("f"), b"f", 0o644, T1);
    fs::create_dir_all(server.root().join("shared")).unwrap();
    fs::write(server.root().join("shared/s"), b"s").unwrap();
    let push = crate::files::client(
        &server,
        &["--token", &token, "sync", arg(&src), &remote(&server, "m")],
    )
    .run();
    push.assert_code(1).assert_stderr_contains("read-only");
    assert!(!server.root().join("m").exists());
    let dest = local(&server, "dest");
    crate::files::client(
        &server,
        &[
            "--token",
            &token,
            "sync",
            &remote(&server, "shared/"),
            arg(&dest),
        ],
    )
    .run()
    .assert_ok();
    assert_eq!(fs::read(dest.join("s")).unwrap(), b"s");
}

#[test]
fn a_hostile_server_naming_paths_and_links_outside_writes_nothing_outside_on_a_pull() {
    use crate::util::fake::{json_lines, parse_lines, Fake};
    let sandbox = crate::util::Sandbox::new();
    let dest = sandbox.path().join("dest");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("mine"), b"kept").unwrap();
    let outside = Outside::create_in(sandbox.path());
    let victim = outside.victim().to_str().unwrap().to_string();
    let entries = vec![
        json!({"kind": "file", "path": "../escape", "file_size": 4, "mode": 420, "mtime": 0}),
        json!({"kind": "file", "path": victim, "file_size": 4, "mode": 420, "mtime": 0}),
        json!({"kind": "dir", "path": "d", "mode": 493, "mtime": 0}),
        json!({"kind": "symlink", "path": "d/out", "mode": 511, "mtime": 0,
               "sync": {"target": {"path": "../../outside/victim"}}}),
        json!({"kind": "symlink", "path": "abs", "mode": 511, "mtime": 0,
               "sync": {"target": {"path": victim}}}),
        json!({"kind": "file", "path": "d/good", "file_size": 4, "mode": 420, "mtime": 0}),
    ];
    let fake = Fake::start(1, move |peer| {
        peer.hello();
        let (request, _) = peer.expect();
        assert_eq!(request["cmd"], "sync", "{request:?}");
        peer.send(
            json!({"ok": true, "is_dir": true, "entries": entries.len(), "total_bytes": 12}),
            &json_lines(&entries),
        );
        let (wants, body) = peer.expect();
        assert_eq!(wants["wants"], true);
        let wanted: Vec<u64> = parse_lines(&body)
            .iter()
            .filter(|w| w["action"] == "send")
            .map(|w| w["i"].as_u64().unwrap())
            .collect();
        assert_eq!(wanted, [5], "only d/good is asked for");
        // Data for every file, asked for or not.
        for i in [0, 1, 5] {
            peer.send(json!({"file": i, "offset": 0, "size": 4}), b"evil");
            peer.send(
                json!({"file_end": i, "blake3": blake3::hash(b"evil").to_hex().as_str()}),
                b"",
            );
        }
        peer.end();
    });
    let remote = format!("{}:src/", fake.addr());
    let run = crate::util::Invocation::new(
        &sandbox,
        &[
            "--plaintext",
            "--token",
            "x",
            "sync",
            "--delete",
            &remote,
            dest.to_str().unwrap(),
        ],
    )
    .run();
    fake.join();
    run.assert_code(1);
    outside.assert_untouched();
    assert_eq!(
        fs::read(dest.join("mine")).unwrap(),
        b"kept",
        "no delete after failures"
    );
    assert!(fs::symlink_metadata(dest.join("d/out")).is_err());
    assert!(fs::symlink_metadata(dest.join("abs")).is_err());
}
