//! The client trusts the server no more than the server trusts it. A fake
//! server (`util::fake`) answers the real client with what a hostile or
//! broken server might send: files named outside the request, data that
//! does not match its hash, data nobody asked for, and control characters
//! in names and messages.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{arg, assert_failed, names_in, partials_under, tree, Outside};
use crate::util::fake::{file_entry, json_lines, parse_lines, Fake};
use crate::util::Sandbox;

/// A sandbox with an empty `dl/` for the client and victims beside it.
fn sandbox() -> (Arc<Sandbox>, PathBuf, Outside) {
    let sandbox = Sandbox::new();
    let dl = sandbox.path().join("dl");
    fs::create_dir(&dl).unwrap();
    let outside = Outside::create_in(sandbox.path());
    (sandbox, dl, outside)
}

#[test]
fn a_get_manifest_naming_anything_but_the_requested_name_is_a_protocol_error() {
    let (sandbox, dl, outside) = sandbox();
    let victim = arg(&outside.victim()).to_string();
    for name in [
        "../escape",
        "../outside/victim",
        &victim,
        "other-name",
        "namex",
        ".bashrc",
    ] {
        let entries = [file_entry(name, 4, 0)];
        let shown = name.to_string();
        let fake = Fake::start(1, move |peer| {
            peer.hello();
            peer.manifest(&entries);
            // A client that went on would send its wants now; this one
            // must hang up instead.
            assert!(peer.read().is_none(), "the client went on with {shown:?}");
        });
        let run = fake.client(&sandbox, &["get", "name", "--to", arg(&dl)]);
        fake.join();
        assert_failed(&run, 3, &["broke the protocol"]);
        assert!(names_in(&dl).is_empty(), "{name:?}: {:?}", tree(&dl));
        outside.assert_untouched();
    }
}

#[test]
fn manifest_entries_that_climb_out_of_the_destination_are_refused_even_when_sent() {
    let (sandbox, dl, outside) = sandbox();
    for requested in ["name", "."] {
        let prefix = if requested == "." { "" } else { "name/" };
        let mut entries = vec![
            file_entry(&format!("{prefix}../../escape"), 4, 0),
            file_entry(&format!("{prefix}ok"), 4, 0),
        ];
        if requested == "." {
            entries.push(file_entry("/abs-escape", 4, 0));
            entries.push(file_entry(arg(&outside.victim()), 4, 0));
        } else {
            entries.insert(
                0,
                json!({"kind": "dir", "path": "name", "mode": 0o755, "mtime": 0}),
            );
        }
        let fake = Fake::start(1, move |peer| {
            peer.hello();
            peer.manifest(&entries);
            let wants = peer.wants();
            let files = entries.iter().filter(|e| e["kind"] == "file").count();
            assert_eq!(wants.len(), files, "one answer per file: {wants:?}");
            for want in &wants {
                let i = want["i"].as_u64().unwrap() as usize;
                let wanted = entries[i]["path"].as_str().unwrap().ends_with("ok");
                let action = if wanted { "send" } else { "refuse" };
                assert_eq!(want["action"], action, "{want} for {}", entries[i]);
            }
            // Every file, the refused ones too.
            for (i, entry) in entries.iter().enumerate() {
                if entry["kind"] == "file" {
                    peer.file(i, b"evil", &blake3::hash(b"evil"));
                }
            }
            peer.end();
        });
        let run = fake.client(&sandbox, &["get", "-r", requested, "--to", arg(&dl)]);
        fake.join();
        assert_failed(&run, 1, &[]);
        let ok = if requested == "." {
            dl.join("ok")
        } else {
            dl.join("name/ok")
        };
        assert_eq!(
            fs::read(&ok).unwrap(),
            b"evil",
            "the one good entry arrived"
        );
        fs::remove_file(&ok).unwrap();
        outside.assert_untouched();
    }
}

#[test]
fn a_file_whose_data_does_not_hash_to_its_claimed_blake3_is_not_kept() {
    let (sandbox, dl, outside) = sandbox();
    let data = b"tampered in transit";
    let claimed = blake3::hash(b"what the server hashed");
    let entries = [file_entry("name", data.len(), 1_600_000_000)];
    let fake = Fake::start(2, move |peer| {
        peer.hello();
        peer.manifest(&entries);
        peer.wants();
        peer.file(0, data, &claimed);
        peer.end();
    });

    let run = fake.client(&sandbox, &["get", "name", "--to", arg(&dl)]);
    assert_failed(&run, 1, &["checksum"]);
    assert!(names_in(&dl).is_empty(), "{:?}", tree(&dl));

    // Over an existing file, with --force: the old file stays.
    fs::write(dl.join("name"), b"old").unwrap();
    let run = fake.client(&sandbox, &["get", "--force", "name", "--to", arg(&dl)]);
    fake.join();
    assert_failed(&run, 1, &["checksum"]);
    assert_eq!(
        names_in(&dl),
        ["name"],
        "no partial left: {:?}",
        partials_under(&dl)
    );
    assert_eq!(fs::read(dl.join("name")).unwrap(), b"old");
    outside.assert_untouched();
}

#[test]
fn a_file_the_client_did_not_ask_for_is_not_written() {
    let (sandbox, dl, outside) = sandbox();
    fs::write(dl.join("name"), b"mine").unwrap();
    super::set_mtime(&dl.join("name"), 1_600_000_000);
    let mtime = 1_600_000_000;
    let entries = [
        json!({"kind": "file", "path": "name", "file_size": 4, "mode": 0o644,
                          "mtime": mtime, "mtime_ns": 123_456_789}),
    ];
    let fake = Fake::start(1, move |peer| {
        peer.hello();
        peer.manifest(&entries);
        let wants = peer.wants();
        assert_eq!(wants, [json!({"i": 0, "action": "skip"})]);
        peer.file(0, b"evil", &blake3::hash(b"evil"));
        peer.end();
    });
    let run = fake.client(&sandbox, &["get", "name", "--to", arg(&dl)]);
    fake.join();
    assert_eq!(fs::read(dl.join("name")).unwrap(), b"mine", "{run:?}");
    run.assert_err();
    outside.assert_untouched();
}

#[test]
fn control_characters_from_the_server_never_reach_the_terminal_raw() {
    let sandbox = Sandbox::new();
    let names = ["\u{1b}[31mred", "bell\u{7}", "two\nlines", "csi\u{9b}2J"];
    let entries: Vec<Value> = names
        .iter()
        .map(|n| json!({"path": n, "kind": "file", "file_size": 1, "mode": 0o644, "mtime": 0}))
        .collect();
    let fake = Fake::start(4, move |peer| {
        peer.hello();
        let (request, _) = peer.expect();
        if request["cmd"] == "ls" {
            peer.send(
                json!({"ok": true, "entries": entries.len()}),
                &json_lines(&entries),
            );
        } else {
            peer.send(
                json!({"ok": false, "code": "not_found",
                       "message": "\u{1b}]0;pwned\u{7}\u{1b}[2J gone"}),
                b"",
            );
        }
    });
    let raw_control = |text: &str| text.chars().any(|c| c.is_control() && c != '\n');

    for args in [vec!["ls"], vec!["ls", "-l"]] {
        let run = fake.client(&sandbox, &args);
        run.assert_ok();
        assert!(!raw_control(&run.stdout), "{args:?}: {:?}", run.stdout);
        assert_eq!(
            run.stdout.lines().count(),
            names.len(),
            "no forged lines: {run:?}"
        );
    }
    // JSON escapes C0 controls and keeps every name exactly.
    let run = fake.client(&sandbox, &["ls", "--json"]);
    run.assert_ok();
    assert!(
        !run.stdout.contains(['\u{1b}', '\u{7}']),
        "{:?}",
        run.stdout
    );
    let listed: Vec<Value> = parse_lines(run.stdout.as_bytes());
    let listed: Vec<&str> = listed.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(listed, names);

    let run = fake.client(&sandbox, &["stat", "x"]);
    fake.join();
    assert_failed(&run, 1, &["gone"]);
    assert!(!raw_control(&run.stderr), "{:?}", run.stderr);
}
