//! Transfers: every file accounted for, partials nobody else can plant,
//! modes the receiver can trust, no debris, and trees that cost linear time.

use std::fs;

use serde_json::{json, Value};

use crate::util::fake::{file_entry, parse_lines, Fake};
use crate::util::{Raw, Sandbox, Server};

/// A manifest line for a directory.
fn dir_entry(path: &str) -> Value {
    json!({"kind": "dir", "path": path, "mode": 0o755, "mtime": 0})
}

/// A JSON-lines body.
fn lines(items: &[Value]) -> Vec<u8> {
    items
        .iter()
        .flat_map(|item| {
            let mut line = serde_json::to_vec(item).unwrap();
            line.push(b'\n');
            line
        })
        .collect()
}

#[test]
fn get_fails_each_wanted_file_the_server_ends_without_data_or_never_sends() {
    let sandbox = Sandbox::new();
    let dl = sandbox.path().join("dl");
    let entries = [
        dir_entry("t"),
        file_entry("t/a", 4, 0),
        file_entry("t/b", 4, 0),
        file_entry("t/c", 4, 0),
    ];
    let fake = Fake::start(2, move |peer| {
        peer.hello();
        peer.manifest(&entries);
        let wants = peer.wants();
        assert_eq!(wants.len(), 3, "{wants:?}");
        peer.file(1, b"aaaa", &blake3::hash(b"aaaa"));
        // b vanished after the listing: an end frame with no data.
        peer.send(
            json!({"file_end": 2, "code": "not_found", "error": "vanished"}),
            b"",
        );
        // c is never mentioned at all.
        peer.end();
    });
    for json in [false, true] {
        let mut args = vec!["get", "-r", "t", "--to", dl.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let run = fake.client(&sandbox, &args);
        assert_eq!(run.code, 1, "{run:?}");
        for name in ["t/b", "t/c"] {
            assert!(run.stderr.contains(name), "{name} not named: {run:?}");
        }
        assert!(!run.stderr.contains("t/a"), "{run:?}");
        assert_eq!(fs::read(dl.join("t/a")).unwrap(), b"aaaa");
        assert!(!dl.join("t/b").exists() && !dl.join("t/c").exists());
        if json {
            let records = parse_lines(run.stdout.as_bytes());
            let failed: Vec<(&str, &str)> = records
                .iter()
                .filter(|r| r["event"] == "failed")
                .map(|r| (r["path"].as_str().unwrap(), r["code"].as_str().unwrap()))
                .collect();
            assert_eq!(failed, [("t/b", "not_found"), ("t/c", "not_sent")]);
            let summary = records.last().unwrap();
            assert_eq!(summary["event"], "summary", "{records:?}");
            assert_eq!(
                (summary["files"].as_u64(), summary["failed"].as_u64()),
                (Some(1), Some(2))
            );
        }
        fs::remove_dir_all(&dl).unwrap();
    }
    fake.join();
}

#[test]
fn put_result_fails_each_file_the_client_ends_without_data_or_never_sends() {
    let server = Server::start(&["--plaintext"]);
    let mut raw = Raw::hello(&server);
    let manifest = lines(&[
        dir_entry("t"),
        file_entry("t/a", 4, 0),
        file_entry("t/b", 4, 0),
        file_entry("t/c", 4, 0),
    ]);
    raw.send_frame(
        &json!({"cmd": "put", "path": "", "size": manifest.len()}),
        &manifest,
    );
    let wants = raw.read_frame();
    assert!(wants.is_ok(), "{wants:?}");
    assert_eq!(parse_lines(&wants.body).len(), 3);
    raw.send_frame(&json!({"file": 1, "offset": 0, "size": 4}), b"aaaa");
    raw.send_frame(
        &json!({"file_end": 1, "blake3": blake3::hash(b"aaaa").to_hex().as_str()}),
        b"",
    );
    raw.send_frame(
        &json!({"file_end": 2, "code": "permission_denied", "error": "cannot open"}),
        b"",
    );
    raw.send_frame(&json!({"end": true}), b"");
    let result = raw.read_frame();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(result.header["files"], 1, "{result:?}");
    assert_eq!(result.header["failed"], 2, "{result:?}");
    let failures: Vec<(u64, String)> = parse_lines(&result.body)
        .iter()
        .map(|f| {
            (
                f["i"].as_u64().unwrap(),
                f["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        failures,
        [
            (2, "permission_denied".to_string()),
            (3, "not_sent".to_string())
        ]
    );
    assert_eq!(fs::read(server.root().join("t/a")).unwrap(), b"aaaa");
    raw.echo("still here");
}

#[test]
fn a_file_removed_between_listing_and_data_is_sent_as_a_coded_failure() {
    let server = Server::start(&["--plaintext"]);
    fs::create_dir(server.root().join("t")).unwrap();
    for name in ["a", "b"] {
        fs::write(server.root().join("t").join(name), b"data").unwrap();
    }
    let mut raw = Raw::hello(&server);
    raw.send_frame(&json!({"cmd": "get", "path": "t", "recursive": true}), b"");
    let manifest = raw.read_frame();
    assert!(manifest.is_ok(), "{manifest:?}");
    fs::remove_file(server.root().join("t/a")).unwrap();
    let wants = lines(&[
        json!({"i": 1, "action": "send", "offset": 0}),
        json!({"i": 2, "action": "send", "offset": 0}),
    ]);
    raw.send_frame(&json!({"wants": true, "size": wants.len()}), &wants);
    let end_of_a = raw.read_frame();
    assert_eq!(end_of_a.header["file_end"], 1, "{end_of_a:?}");
    assert_eq!(end_of_a.header["code"], "not_found", "{end_of_a:?}");
    let head_of_b = raw.read_frame();
    assert_eq!(head_of_b.header["file"], 2, "{head_of_b:?}");
    assert_eq!(raw.read_frame().header["file_end"], 2);
    assert_eq!(raw.read_frame().header["end"], true);
}
