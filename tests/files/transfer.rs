//! `put` and `get` of files and trees: where they land, what they keep, and
//! when a file already there is skipped, refused or replaced.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use md5::Digest;

use super::{
    arg, assert_failed, assert_no_partials, assert_transferred, local_dir, mode_of, mtime_of,
    names_in, random_bytes, run, set_mtime, tree, write_file, Kind,
};
use crate::util::Server;

/// 2020-09-13 12:26:40 UTC.
const T1: u64 = 1_600_000_000;
/// 2001-09-09 01:46:40 UTC.
const T0: u64 = 1_000_000_000;

#[test]
fn put_stores_a_file_in_the_root_with_its_content_mode_and_mtime() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    let content = random_bytes(1, 100_000);
    write_file(&local.join("report.pdf"), &content, 0o640, T1);
    let before = tree(&local);

    let run = run(&server, &["put", arg(&local.join("report.pdf"))]);
    assert_transferred(&run);
    run.assert_stderr_contains("sent 1 file");

    let stored = server.root().join("report.pdf");
    assert_eq!(fs::read(&stored).unwrap(), content);
    assert_eq!(mode_of(&stored), 0o640);
    assert_eq!(mtime_of(&stored), (T1 as i64, 123_456_789));
    assert_eq!(names_in(server.root()), ["report.pdf"], "nothing else");
    assert_eq!(tree(&local), before, "the source is untouched");
}

#[test]
fn put_to_a_directory_creates_it_with_its_parents() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    write_file(&local.join("f"), b"nested", 0o644, T1);

    assert_transferred(&run(
        &server,
        &["put", arg(&local.join("f")), "--to", "a/b"],
    ));

    let stored = tree(server.root());
    let paths: Vec<_> = stored.keys().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(paths, ["a", "a/b", "a/b/f"]);
    assert_eq!(stored[Path::new("a")].kind, Kind::Dir);
    assert_eq!(fs::read(server.root().join("a/b/f")).unwrap(), b"nested");
}

#[test]
fn get_lands_in_the_to_directory_or_the_current_one_with_content_mode_and_mtime() {
    let server = Server::start(&[]);
    fs::create_dir(server.root().join("docs")).unwrap();
    let content = random_bytes(2, 70_000);
    write_file(&server.root().join("docs/note.txt"), &content, 0o600, T1);
    let served = tree(server.root());

    // --to a directory that does not exist yet: it is created.
    let to = server.sandbox.path().join("dl/new");
    assert_transferred(&run(&server, &["get", "docs/note.txt", "--to", arg(&to)]));
    // Without --to: the current directory.
    let cwd = local_dir(&server, "cwd");
    let run = super::client(&server, &["get", "docs/note.txt"])
        .current_dir(&cwd)
        .run();
    assert_transferred(&run);
    run.assert_stderr_contains("received 1 file");

    for dir in [&to, &cwd] {
        assert_eq!(names_in(dir), ["note.txt"], "only the file, in {dir:?}");
        let got = dir.join("note.txt");
        assert_eq!(fs::read(&got).unwrap(), content);
        assert_eq!(mode_of(&got), 0o600);
        assert_eq!(mtime_of(&got), (T1 as i64, 123_456_789));
    }
    assert_eq!(tree(server.root()), served, "the served copy is untouched");
}

#[test]
fn no_preserve_keeps_neither_mode_nor_mtime_in_either_direction() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    write_file(&local.join("up"), b"up", 0o751, T0);
    write_file(&server.root().join("down"), b"down", 0o700, T0);

    assert_transferred(&run(
        &server,
        &["put", "--no-preserve", arg(&local.join("up"))],
    ));
    let dl = local_dir(&server, "dl");
    assert_transferred(&run(
        &server,
        &["get", "--no-preserve", "down", "--to", arg(&dl)],
    ));

    for (got, content) in [(server.root().join("up"), "up"), (dl.join("down"), "down")] {
        assert_eq!(fs::read_to_string(&got).unwrap(), content);
        assert_eq!(mode_of(&got), 0o644, "{got:?} takes the default mode");
        let (secs, _) = mtime_of(&got);
        assert!(
            secs > T1 as i64,
            "{got:?} kept the source's mtime {secs} though --no-preserve"
        );
    }
}

#[test]
fn setuid_setgid_and_sticky_bits_are_never_kept() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    write_file(&local.join("suid"), b"#!/bin/sh\n", 0o6755, T1);
    fs::create_dir(local.join("sgid-dir")).unwrap();
    fs::set_permissions(
        local.join("sgid-dir"),
        std::os::unix::fs::PermissionsExt::from_mode(0o2775),
    )
    .unwrap();
    write_file(&server.root().join("sticky"), b"x", 0o7750, T1);

    assert_transferred(&run(&server, &["put", arg(&local.join("suid"))]));
    assert_transferred(&run(&server, &["put", "-r", arg(&local.join("sgid-dir"))]));
    let dl = local_dir(&server, "dl");
    assert_transferred(&run(&server, &["get", "sticky", "--to", arg(&dl)]));

    assert_eq!(mode_of(&server.root().join("suid")), 0o755);
    assert_eq!(mode_of(&server.root().join("sgid-dir")), 0o775);
    assert_eq!(mode_of(&dl.join("sticky")), 0o750);
}

/// A tree with nested directories, an empty file, an empty directory, and
/// names with spaces, non-ASCII and non-UTF-8 bytes; modes and mtimes of
/// its own.
fn odd_tree(dir: &Path) {
    fs::create_dir_all(dir.join("a/b/c")).unwrap();
    fs::create_dir_all(dir.join("empty dir")).unwrap();
    fs::create_dir_all(dir.join("ünïcödé")).unwrap();
    write_file(
        &dir.join("a/b/c/deep.bin"),
        &random_bytes(3, 300_000),
        0o600,
        T0,
    );
    write_file(&dir.join("a/top"), b"top", 0o644, T1);
    write_file(&dir.join("with space.txt"), b"spaced out", 0o640, T1);
    write_file(
        &dir.join("ünïcödé/日本語.txt"),
        "こんにちは".as_bytes(),
        0o644,
        T1,
    );
    write_file(
        &dir.join(OsStr::from_bytes(b"bad\xffname")),
        b"not utf-8",
        0o644,
        T0,
    );
    write_file(&dir.join("empty"), b"", 0o444, T1);
    fs::set_permissions(
        dir.join("a/b"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // Directories last and deepest first, or writing into them moves them.
    let mut dirs: Vec<_> = tree(dir)
        .into_iter()
        .filter(|(_, node)| node.kind == Kind::Dir)
        .map(|(path, _)| path)
        .collect();
    dirs.reverse();
    for (i, path) in dirs.iter().enumerate() {
        set_mtime(&dir.join(path), T0 + i as u64);
    }
    set_mtime(dir, T0);
}

#[test]
fn put_r_creates_the_directory_by_its_last_component_inside_the_destination() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    odd_tree(&local.join("photos"));
    let source = tree(&local.join("photos"));

    let run1 = run(
        &server,
        &[
            "put",
            "-r",
            arg(&local.join("photos")),
            "--to",
            "backup/2026",
        ],
    );
    assert_transferred(&run1);
    // A trailing slash changes nothing, as with scp -r.
    let slashed = format!("{}/", arg(&local.join("photos")));
    assert_transferred(&run(&server, &["put", "-r", &slashed, "--to", "again"]));

    for dest in ["backup/2026", "again"] {
        let dest = server.root().join(dest);
        assert_eq!(names_in(&dest), ["photos"]);
        assert_eq!(
            tree(&dest.join("photos")),
            source,
            "names, bytes, modes, mtimes"
        );
    }
    assert_no_partials(server.root());
    assert_eq!(
        tree(&local.join("photos")),
        source,
        "the source is untouched"
    );
}

#[test]
fn get_r_creates_the_directory_inside_the_destination() {
    let server = Server::start(&[]);
    odd_tree(&server.root().join("backup/photos"));
    let served = tree(&server.root().join("backup/photos"));

    let restore = server.sandbox.path().join("restore");
    let run = run(
        &server,
        &["get", "-r", "backup/photos", "--to", arg(&restore)],
    );
    assert_transferred(&run);
    run.assert_stderr_contains("received 6 files");

    assert_eq!(names_in(&restore), ["photos"]);
    assert_eq!(
        tree(&restore.join("photos")),
        served,
        "names, bytes, modes, mtimes"
    );
    assert_no_partials(&restore);
    assert_eq!(tree(&server.root().join("backup/photos")), served);
}

#[test]
fn a_tree_with_odd_names_round_trips_exactly_through_put_and_get() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    odd_tree(&local.join("odd"));
    let source = tree(&local.join("odd"));
    assert!(
        source.contains_key(Path::new(OsStr::from_bytes(b"bad\xffname"))),
        "the tree holds a non-UTF-8 name"
    );

    assert_transferred(&run(&server, &["put", "-r", arg(&local.join("odd"))]));
    let back = local_dir(&server, "back");
    assert_transferred(&run(&server, &["get", "-r", "odd", "--to", arg(&back)]));

    // Exactly the tree on both ends: no partial or temporary file anywhere.
    assert_eq!(names_in(server.root()), ["odd"]);
    assert_eq!(tree(&server.root().join("odd")), source);
    assert_eq!(names_in(&back), ["odd"]);
    assert_eq!(tree(&back.join("odd")), source);
    assert_eq!(tree(&local.join("odd")), source);
}

#[test]
fn get_of_a_directory_without_r_fails_mentioning_r_and_writes_nothing() {
    let server = Server::start(&[]);
    fs::create_dir(server.root().join("d")).unwrap();
    fs::write(server.root().join("d/f"), b"f").unwrap();
    let dl = server.sandbox.path().join("dl");

    let run = run(&server, &["get", "d", "--to", arg(&dl)]);
    assert_failed(&run, 1, &["-r"]);
    assert!(
        !dl.exists() || names_in(&dl).is_empty(),
        "something was written: {:?}",
        tree(&dl)
    );
}

#[test]
fn put_skips_an_identical_file_refuses_a_different_one_and_force_replaces_it() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    let source = local.join("f");
    let stored = server.root().join("f");
    write_file(&source, b"first", 0o644, T0);
    assert_transferred(&run(&server, &["put", arg(&source)]));

    // Same size and mtime: skipped, and said so.
    let again = run(&server, &["put", arg(&source)]);
    assert_transferred(&again);
    again.assert_stderr_contains("1 already up to date");

    // Another size, or the same size with another mtime: refused.
    for (content, secs) in [(&b"second!"[..], T0), (&b"third"[..], T1)] {
        write_file(&source, content, 0o644, secs);
        let refused = run(&server, &["put", arg(&source)]);
        assert_failed(&refused, 1, &["exists", "--force"]);
        assert_eq!(fs::read(&stored).unwrap(), b"first", "old content kept");
        assert_eq!(mtime_of(&stored), (T0 as i64, 123_456_789));
    }

    assert_transferred(&run(&server, &["put", "--force", arg(&source)]));
    assert_eq!(fs::read(&stored).unwrap(), b"third");
    assert_eq!(mtime_of(&stored), (T1 as i64, 123_456_789));
    assert_no_partials(server.root());
}

#[test]
fn get_skips_an_identical_file_refuses_a_different_one_and_force_replaces_it() {
    let server = Server::start(&[]);
    let served = server.root().join("f");
    let dl = local_dir(&server, "dl");
    let got = dl.join("f");
    write_file(&served, b"first", 0o644, T0);
    assert_transferred(&run(&server, &["get", "f", "--to", arg(&dl)]));

    let again = run(&server, &["get", "f", "--to", arg(&dl)]);
    assert_transferred(&again);
    again.assert_stderr_contains("1 already up to date");

    for (content, secs) in [(&b"second!"[..], T0), (&b"third"[..], T1)] {
        write_file(&served, content, 0o644, secs);
        let refused = run(&server, &["get", "f", "--to", arg(&dl)]);
        assert_failed(&refused, 1, &["exists", "--force"]);
        assert_eq!(fs::read(&got).unwrap(), b"first", "old content kept");
    }

    assert_transferred(&run(&server, &["get", "--force", "f", "--to", arg(&dl)]));
    assert_eq!(fs::read(&got).unwrap(), b"third");
    assert_eq!(mtime_of(&got), (T1 as i64, 123_456_789));
    assert_no_partials(&dl);
}

#[test]
fn put_and_get_print_nothing_on_stdout_and_with_q_nothing_but_errors() {
    let server = Server::start(&[]);
    let local = local_dir(&server, "local");
    odd_tree(&local.join("t"));
    let dl = local_dir(&server, "dl");
    let tree_dir = local.join("t");
    let put = ["put", "-r", arg(&tree_dir)];
    let get = ["get", "-r", "t", "--to", arg(&dl)];

    // The summary goes to stderr, the first time and when all is skipped.
    for (args, summary) in [
        (&put[..], "ferry: sent 6 files"),
        (&get[..], "ferry: received 6 files"),
        (&put[..], "6 already up to date"),
        (&get[..], "6 already up to date"),
    ] {
        let run = run(&server, args);
        assert_transferred(&run);
        run.assert_stderr_contains(summary);
    }
    // With -q, before or after the command: nothing at all.
    for args in [
        vec!["-q", "put", "-r", arg(&tree_dir)],
        vec!["get", "-r", "t", "--to", arg(&dl), "-q"],
    ] {
        let run = run(&server, &args);
        assert_transferred(&run);
        assert_eq!(run.stderr, "", "-q: {run:?}");
    }
    // A refusal still says why, on stderr only.
    write_file(&local.join("t/a/top"), b"changed", 0o644, T1);
    let refused = run(&server, &["-q", "put", "-r", arg(&tree_dir)]);
    assert_failed(&refused, 1, &["--force"]);
}

fn md5_hex(bytes: &[u8]) -> String {
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn get_md5_prints_md5sum_lines_that_match_the_files() {
    let server = Server::start(&[]);
    let one = random_bytes(4, 50_000);
    fs::write(server.root().join("one.bin"), &one).unwrap();
    fs::create_dir(server.root().join("d")).unwrap();
    fs::write(server.root().join("d/x"), b"hello\n").unwrap();
    fs::write(server.root().join("d/y"), b"").unwrap();
    let cwd = local_dir(&server, "cwd");

    let run = super::client(&server, &["get", "--md5", "one.bin"])
        .current_dir(&cwd)
        .run();
    run.assert_ok();
    assert_eq!(run.stdout, format!("{}  one.bin\n", md5_hex(&one)));

    let run = super::client(&server, &["get", "--md5", "-r", "d"])
        .current_dir(&cwd)
        .run();
    run.assert_ok();
    // md5sum's own answers for "hello\n" and "".
    assert_eq!(md5_hex(b"hello\n"), "b1946ac92492d2347c6235b4d2611184");
    run.assert_stdout(
        "b1946ac92492d2347c6235b4d2611184  d/x\nd41d8cd98f00b204e9800998ecf8427e  d/y\n",
    );
    assert_eq!(fs::read(cwd.join("d/x")).unwrap(), b"hello\n");
}
