//! The small operations: `ls` (plain, `-l`, `--json`), `stat` (plain,
//! `--json`, `--blake3`), `mkdir` and `rm`, each against what the test laid
//! out in the root itself.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use base64::Engine;
use serde_json::{json, Value};

use super::{assert_failed, assert_transferred, names_in, random_bytes, run, write_file};
use crate::util::{Raw, Server};

/// 2020-09-13 12:26:40 UTC.
const T1: u64 = 1_600_000_000;

/// Asserts a run succeeded with exactly `stdout`.
#[track_caller]
fn assert_prints(run: &crate::util::Run, stdout: &str) {
    run.assert_ok().assert_stdout(stdout);
}

#[test]
fn ls_lists_names_sorted_and_hides_partial_files() {
    let server = Server::start(&[]);
    let root = server.root();
    for name in [
        "b.txt",
        "a.txt",
        "ünï",
        ".hidden",
        ".ferry-partial-0123abcd",
    ] {
        fs::write(root.join(name), name).unwrap();
    }
    fs::create_dir(root.join("z dir")).unwrap();
    fs::write(root.join("z dir/inner"), b"").unwrap();

    assert_prints(
        &run(&server, &["ls"]),
        ".hidden\na.txt\nb.txt\nz dir\nünï\n",
    );
    assert_prints(&run(&server, &["ls", "z dir"]), "inner\n");
    assert_prints(&run(&server, &["ls", "a.txt"]), "a.txt\n");
    assert_failed(&run(&server, &["ls", "missing"]), 1, &["no such file"]);
}

#[test]
fn ls_l_shows_kind_mode_size_mtime_and_name() {
    let server = Server::start(&[]);
    write_file(&server.root().join("f"), b"12345", 0o640, T1);
    fs::create_dir(server.root().join("d")).unwrap();
    fs::set_permissions(
        server.root().join("d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    super::set_mtime(&server.root().join("d"), 1_000_000_000);

    assert_prints(
        &run(&server, &["ls", "-l"]),
        "drwxr-x---            0 2001-09-09 01:46:40 d\n\
         -rw-r-----            5 2020-09-13 12:26:40 f\n",
    );
}

#[test]
fn ls_json_prints_one_object_per_line_with_integer_size_and_mtime() {
    let server = Server::start(&[]);
    write_file(&server.root().join("f"), b"12345", 0o640, T1);
    write_file(
        &server.root().join(OsStr::from_bytes(b"bad\xffname")),
        b"",
        0o600,
        T1,
    );
    fs::create_dir(server.root().join("d")).unwrap();

    let run = run(&server, &["ls", "--json"]);
    run.assert_ok();
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    let names: Vec<Vec<u8>> = lines
        .iter()
        .map(|l| match (l["path"].as_str(), l["path_b64"].as_str()) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            _ => panic!("a name as text or as base64: {l}"),
        })
        .collect();
    assert_eq!(names, [&b"bad\xffname"[..], b"d", b"f"]);
    let f = &lines[2];
    assert_eq!(f["kind"], "file");
    assert!(f["size"].is_u64() && f["mtime"].is_i64(), "{f}");
    assert_eq!(f["size"], 5);
    assert_eq!(f["mode"], 0o640);
    assert_eq!(f["mtime"], T1);
    assert_eq!(f["mtime_ns"], 123_456_789);
    assert_eq!(lines[1]["kind"], "dir");
}

#[test]
fn stat_describes_a_path_and_its_blake3_matches_one_computed_here() {
    let server = Server::start(&[]);
    let content = random_bytes(5, 1_500_000);
    write_file(&server.root().join("f"), &content, 0o640, T1);
    let expected = blake3::hash(&content).to_hex().to_string();

    assert_prints(
        &run(&server, &["stat", "f"]),
        "path:   f\nkind:   file\nsize:   1500000 bytes\nmode:   0640 (-rw-r-----)\n\
         mtime:  2020-09-13 12:26:40 (1600000000.123456789)\n",
    );
    let plain = run(&server, &["stat", "--blake3", "f"]);
    plain.assert_ok();
    assert!(
        plain.stdout.ends_with(&format!("\nblake3: {expected}\n")),
        "{plain:?}"
    );

    let json = run(&server, &["stat", "--blake3", "--json", "f"]);
    json.assert_ok();
    assert_eq!(json.stdout.lines().count(), 1, "one document: {json:?}");
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["path"], "f");
    assert_eq!(doc["kind"], "file");
    assert_eq!(doc["size"], 1_500_000);
    assert_eq!(doc["mode"], 0o640);
    assert_eq!(doc["mtime"], T1);
    assert_eq!(doc["blake3"], expected.as_str());

    let doc: Value = serde_json::from_str(&run(&server, &["stat", "--json", "f"]).stdout).unwrap();
    assert!(doc.get("blake3").is_none(), "only when asked: {doc}");
    fs::create_dir(server.root().join("d")).unwrap();
    let dir = run(&server, &["stat", "d"]);
    dir.assert_stdout_contains("kind:   dir\n");
    assert_failed(&run(&server, &["stat", "missing"]), 1, &["no such file"]);
}

#[test]
fn mkdir_p_creates_parents_and_accepts_an_existing_directory() {
    let server = Server::start(&[]);
    for _ in 0..2 {
        assert_transferred(&run(&server, &["mkdir", "-p", "a/b/c"]));
    }
    assert!(server.root().join("a/b/c").is_dir());
    assert_transferred(&run(&server, &["mkdir", "top"]));
    assert!(server.root().join("top").is_dir());
}

#[test]
fn mkdir_without_p_fails_on_an_existing_directory_or_a_missing_parent() {
    let server = Server::start(&[]);
    fs::create_dir(server.root().join("there")).unwrap();
    fs::write(server.root().join("file"), b"").unwrap();

    assert_failed(&run(&server, &["mkdir", "there"]), 1, &["exists"]);
    assert_failed(
        &run(&server, &["mkdir", "missing/child"]),
        1,
        &["no such file"],
    );
    assert_failed(&run(&server, &["mkdir", "-p", "file/child"]), 1, &[]);
    assert_eq!(names_in(server.root()), ["file", "there"]);
    assert!(names_in(&server.root().join("there")).is_empty());
}

#[test]
fn rm_removes_a_file_and_with_r_a_tree_but_not_a_directory_without_r() {
    let server = Server::start(&[]);
    let root = server.root();
    fs::write(root.join("f"), b"").unwrap();
    fs::create_dir_all(root.join("t/u/v")).unwrap();
    fs::write(root.join("t/u/v/w"), b"deep").unwrap();
    fs::write(root.join("t/x"), b"").unwrap();

    assert_transferred(&run(&server, &["rm", "f"]));
    assert_failed(&run(&server, &["rm", "t"]), 1, &["-r"]);
    assert!(root.join("t/u/v/w").exists(), "refused means untouched");
    assert_transferred(&run(&server, &["rm", "-r", "t"]));
    assert!(names_in(root).is_empty());
}

#[test]
fn rm_of_several_paths_removes_the_others_when_one_fails() {
    let server = Server::start(&[]);
    let root = server.root();
    for name in ["a", "c"] {
        fs::write(root.join(name), name).unwrap();
    }
    fs::create_dir(root.join("keep")).unwrap();

    let run = run(&server, &["rm", "a", "missing", "keep", "c"]);
    assert_failed(&run, 1, &["\"missing\"", "\"keep\" is a directory"]);
    assert_eq!(names_in(root), ["keep"]);
}

#[test]
fn a_file_where_a_directory_is_needed_is_not_a_directory() {
    let server = Server::start(&["--plaintext"]);
    fs::write(server.root().join("file"), b"x").unwrap();
    let mut raw = Raw::hello(&server);

    // ls already says so, through the kernel's ENOTDIR.
    raw.send_frame(&json!({"cmd": "ls", "path": "file/x"}), b"");
    raw.expect_error("not_a_directory");
    for path in ["file", "file/x"] {
        raw.send_frame(&json!({"cmd": "mkdir", "path": path, "parents": true}), b"");
        raw.expect_error("not_a_directory");
    }
    let manifest = b"{\"kind\":\"file\",\"path\":\"f\",\"file_size\":1,\"mode\":420,\"mtime\":0}\n";
    let put = json!({"cmd": "put", "path": "file", "size": manifest.len()});
    raw.send_frame(&put, manifest);
    raw.expect_error("not_a_directory");
    assert_eq!(fs::read(server.root().join("file")).unwrap(), b"x");
}
