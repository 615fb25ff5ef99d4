//! Nothing leaves the served root, and nothing outside it changes: `..`,
//! absolute paths, NUL bytes and symlinks that lead out are refused, through
//! the real client and through raw frames the client would never send. The
//! client holds its own destination to the same rules. `rm` never takes the
//! root or follows a link, and special files are never served.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Instant;

use serde_json::{json, Value};

use super::{
    arg, assert_failed, assert_transferred, local_dir, names_in, run, tree, write_file, Kind,
    Outside,
};
use crate::util::{frame_bytes, Raw, Server, DEADLINE};

/// Links in the root that lead out of it: `link` to the victim file
/// (absolute), `rel-link` to it (relative), `dirlink` to the victim
/// directory.
fn links_out(server: &Server, outside: &Outside) {
    let root = server.root();
    symlink(outside.victim(), root.join("link")).unwrap();
    symlink("../outside/victim", root.join("rel-link")).unwrap();
    symlink(outside.dir(), root.join("dirlink")).unwrap();
}

#[test]
fn get_refuses_dotdot_and_absolute_paths_before_asking() {
    let server = Server::start(&[]);
    let dl = local_dir(&server, "dl");
    let outside = Outside::create(&server);
    let victim = outside.victim();

    for path in ["../outside/victim", "a/../../outside/victim", arg(&victim)] {
        let run = run(&server, &["get", path, "--to", arg(&dl)]);
        assert_failed(&run, 2, &["not allowed"]);
    }
    assert!(names_in(&dl).is_empty());
    outside.assert_untouched();
}

#[test]
fn get_refuses_symlinks_that_lead_out_of_the_root_and_a_tree_leaves_them_out() {
    let server = Server::start(&[]);
    fs::write(server.root().join("inside"), b"fine").unwrap();
    let dl = local_dir(&server, "dl");
    let whole = local_dir(&server, "whole");
    let outside = Outside::create(&server);
    links_out(&server, &outside);

    for args in [
        vec!["get", "link"],
        vec!["get", "rel-link"],
        vec!["get", "-r", "dirlink"],
        vec!["get", "dirlink/inner"],
        vec!["ls", "dirlink"],
        vec!["stat", "link"],
    ] {
        let mut args = args;
        if args[0] == "get" {
            args.extend(["--to", arg(&dl)]);
        }
        let run = run(&server, &args);
        assert_failed(&run, 1, &["leads out of the served root"]);
    }
    assert!(names_in(&dl).is_empty(), "{:?}", tree(&dl));

    // The whole root: the links are left out, with a note, not followed.
    let run = run(&server, &["get", "-r", ".", "--to", arg(&whole)]);
    assert_transferred(&run);
    run.assert_stderr_contains("3 left out");
    assert_eq!(names_in(&whole), ["inside"]);
    outside.assert_untouched();
}

#[test]
fn put_refuses_a_destination_outside_the_root() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    write_file(&local.join("f"), b"payload", 0o644, 1_600_000_000);
    let outside = Outside::create(&server);

    // An absolute path inside the sandbox, so a server that took it would
    // write where the test looks.
    let absolute = server.sandbox.path().join("escaped");
    for to in ["../x", "../outside", "a/../../x", arg(&absolute)] {
        let run = run(&server, &["put", arg(&local.join("f")), "--to", to]);
        assert_failed(&run, 1, &["not allowed"]);
    }
    assert!(names_in(server.root()).is_empty());
    assert!(!absolute.exists());
    outside.assert_untouched();
}

#[test]
fn put_never_writes_through_a_symlink_that_leads_out() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    write_file(&local.join("f"), b"payload", 0o644, 1_600_000_000);
    // A local tree and a local file named like the links in the root.
    fs::create_dir(local.join("dirlink")).unwrap();
    write_file(
        &local.join("dirlink/inner"),
        b"overwrite?",
        0o644,
        1_600_000_000,
    );
    write_file(&local.join("link"), b"overwrite?", 0o644, 1_600_000_000);
    let outside = Outside::create(&server);
    links_out(&server, &outside);

    for to in ["dirlink", "dirlink/sub"] {
        let run = run(&server, &["put", arg(&local.join("f")), "--to", to]);
        assert_failed(&run, 1, &["leads out of the served root"]);
    }
    let tree_run = run(&server, &["put", "-r", arg(&local.join("dirlink"))]);
    assert_failed(&tree_run, 1, &["not a directory"]);
    // A file over a link: refused as an existing file, and with --force the
    // link itself is replaced, never written through.
    let run1 = run(&server, &["put", arg(&local.join("link"))]);
    assert_failed(&run1, 1, &["exists"]);
    outside.assert_untouched();
    assert_transferred(&run(&server, &["put", "--force", arg(&local.join("link"))]));
    let stored = tree(server.root());
    assert!(
        matches!(stored[std::path::Path::new("link")].kind, Kind::File(10, _)),
        "{stored:?}"
    );
    assert_eq!(fs::read(server.root().join("link")).unwrap(), b"overwrite?");
    outside.assert_untouched();
}

#[test]
fn get_never_writes_through_a_symlink_in_the_local_destination() {
    let server = Server::start(&[]);
    fs::write(server.root().join("f"), b"from the server").unwrap();
    fs::create_dir(server.root().join("d")).unwrap();
    fs::write(server.root().join("d/inner"), b"from the server").unwrap();
    let dl = local_dir(&server, "dl");
    let outside = Outside::create(&server);
    symlink(outside.victim(), dl.join("f")).unwrap();
    symlink(outside.dir(), dl.join("d")).unwrap();

    let run1 = run(&server, &["get", "f", "--to", arg(&dl)]);
    assert_failed(&run1, 1, &["exists"]);
    let run2 = run(&server, &["get", "-r", "d", "--to", arg(&dl)]);
    assert_failed(&run2, 1, &["not a directory"]);
    outside.assert_untouched();

    assert_transferred(&run(&server, &["get", "--force", "f", "--to", arg(&dl)]));
    assert_eq!(fs::read(dl.join("f")).unwrap(), b"from the server");
    assert!(!fs::symlink_metadata(dl.join("f")).unwrap().is_symlink());
    outside.assert_untouched();
}

/// A path field: text, or base64 bytes under `path_b64`.
fn path_field(path: &str) -> (&'static str, Value) {
    if let Some(b64) = path.strip_prefix("b64:") {
        ("path_b64", json!(b64))
    } else {
        ("path", json!(path))
    }
}

#[test]
fn raw_requests_naming_paths_outside_the_root_get_bad_path() {
    let server = Server::start(&["--plaintext"]);
    let outside = Outside::create(&server);
    links_out(&server, &outside);
    let mut raw = Raw::hello(&server);

    let hostile = [
        "a\u{0}b",
        "../x",
        "a/../../x",
        "/etc/passwd",
        "link",
        "rel-link",
        "dirlink",
        "dirlink/inner",
        ".ferry-partial-0123",
        // "../x" as bytes, where the server must check the decoded path.
        "b64:Li4veA==",
    ];
    for path in hostile {
        let (key, value) = path_field(path);
        for cmd in ["get", "ls", "stat", "mkdir", "rm"] {
            // Removing a link is allowed (the link goes, not its target).
            if cmd == "rm" && path.ends_with("link") {
                continue;
            }
            let mut header = json!({"cmd": cmd, "recursive": true, "parents": true});
            header[key] = value.clone();
            raw.send_frame(&header, b"");
            let message = raw.expect_error("bad_path");
            assert!(!message.contains('\0'), "{message:?}");
        }
    }
    for target in ["dirlink/new", "dirlink/new/deeper"] {
        raw.send_frame(
            &json!({"cmd": "mkdir", "path": target, "parents": true}),
            b"",
        );
        raw.expect_error("bad_path");
    }

    // A put whose destination is outside: its manifest body is read and
    // dropped, and the connection goes on.
    let manifest = b"{\"kind\":\"file\",\"path\":\"f\",\"file_size\":1,\"mode\":420,\"mtime\":0}\n";
    for to in ["../x", "/abs", "dirlink", "a\u{0}b"] {
        let header = json!({"cmd": "put", "path": to, "size": manifest.len()});
        raw.send_frame(&header, manifest);
        raw.expect_error("bad_path");
    }
    raw.echo("still here");
    outside.assert_untouched();
    assert_eq!(names_in(server.root()), ["dirlink", "link", "rel-link"]);
}

#[test]
fn a_raw_put_with_hostile_manifest_entries_writes_nothing_even_when_sent_their_data() {
    let server = Server::start(&["--plaintext"]);
    let outside = Outside::create(&server);
    links_out(&server, &outside);
    let mut raw = Raw::hello(&server);

    let names = [
        "../escape",
        "/abs",
        "a\u{0}b",
        ".ferry-partial-x",
        "",
        "d/../../escape",
        "dirlink/inner",
        "link",
        "ok",
    ];
    let data = b"evil!";
    let manifest: Vec<u8> = names
        .iter()
        .flat_map(|name| {
            let entry = json!({"kind": "file", "path": name, "file_size": data.len(),
                               "mode": 0o644, "mtime": 1_600_000_000});
            let mut line = serde_json::to_vec(&entry).unwrap();
            line.push(b'\n');
            line
        })
        .collect();
    raw.send_frame(
        &json!({"cmd": "put", "path": "", "size": manifest.len()}),
        &manifest,
    );
    let wants = raw.read_frame();
    assert!(wants.is_ok(), "{wants:?}");
    let wants: Vec<Value> = String::from_utf8(wants.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(wants.len(), names.len(), "{wants:?}");
    for (i, want) in wants.iter().enumerate() {
        assert_eq!(want["i"], i, "{wants:?}");
        let expected = match names[i] {
            "ok" => "send",
            _ => "refuse",
        };
        assert_eq!(want["action"], expected, "{}: {want}", names[i]);
        if expected == "refuse" {
            let code = if names[i] == "link" {
                "exists"
            } else {
                "bad_path"
            };
            assert_eq!(want["code"], code, "{}: {want}", names[i]);
        }
    }

    // A hostile client sends every file anyway.
    let hash = blake3::hash(data).to_hex().to_string();
    let mut stream = Vec::new();
    for i in 0..names.len() {
        let head = json!({"file": i, "offset": 0, "size": data.len()});
        stream.extend(frame_bytes(&head, data));
        stream.extend(frame_bytes(&json!({"file_end": i, "blake3": hash}), b""));
    }
    stream.extend(frame_bytes(&json!({"end": true}), b""));
    raw.send(&stream);
    let result = raw.read_frame();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(result.header["files"], 1, "{result:?}");
    assert_eq!(result.header["failed"], names.len() - 1, "{result:?}");

    raw.echo("still here");
    assert_eq!(fs::read(server.root().join("ok")).unwrap(), data);
    assert_eq!(
        names_in(server.root()),
        ["dirlink", "link", "ok", "rel-link"]
    );
    assert!(fs::symlink_metadata(server.root().join("link"))
        .unwrap()
        .is_symlink());
    outside.assert_untouched();
}

#[test]
fn rm_refuses_the_root_itself() {
    let server = Server::start(&[]);
    fs::write(server.root().join("keep"), b"keep").unwrap();
    for args in [
        vec!["rm", "-r", "."],
        vec!["rm", "-r", ""],
        vec!["rm", ""],
        vec!["rm", "-r", "./"],
        vec!["rm", "-r", "//"],
    ] {
        let run = run(&server, &args);
        assert_failed(&run, 1, &["root"]);
    }
    assert_eq!(names_in(server.root()), ["keep"]);
}

#[test]
fn rm_of_a_symlink_removes_the_link_not_its_target() {
    let server = Server::start(&[]);
    let outside = Outside::create(&server);
    links_out(&server, &outside);
    symlink(outside.dir(), server.root().join("dirlink2")).unwrap();

    assert_transferred(&run(&server, &["rm", "link", "rel-link"]));
    assert_transferred(&run(&server, &["rm", "-r", "dirlink"]));
    assert_transferred(&run(&server, &["rm", "dirlink2"]));
    assert!(names_in(server.root()).is_empty());
    outside.assert_untouched();
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

#[test]
fn a_fifo_is_refused_by_get_and_left_out_of_trees_with_a_note() {
    let server = Server::start(&[]);
    fs::create_dir(server.root().join("d")).unwrap();
    fs::write(server.root().join("d/file"), b"regular").unwrap();
    mkfifo(&server.root().join("d/fifo"));
    let local = local_dir(&server, "local");
    fs::create_dir(local.join("up")).unwrap();
    fs::write(local.join("up/file"), b"regular").unwrap();
    mkfifo(&local.join("up/fifo"));
    let dl = local_dir(&server, "dl");

    // Nobody ever writes to these FIFOs: opening one to read would hang.
    let started = Instant::now();
    let run1 = run(&server, &["get", "d/fifo", "--to", arg(&dl)]);
    assert_failed(&run1, 1, &["not a regular file"]);
    assert!(names_in(&dl).is_empty());

    let run2 = run(&server, &["get", "-r", "d", "--to", arg(&dl)]);
    assert_transferred(&run2);
    run2.assert_stderr_contains("1 left out");
    assert_eq!(names_in(&dl.join("d")), ["file"]);

    let run3 = run(&server, &["put", "-r", arg(&local.join("up"))]);
    assert_transferred(&run3);
    run3.assert_stderr_contains("1 left out");
    assert_eq!(names_in(&server.root().join("up")), ["file"]);
    assert!(started.elapsed() < DEADLINE, "took {:?}", started.elapsed());
}
