//! Both directions make the trees the same: content, modes, mtimes,
//! symlinks and empty directories; a second sync sends nothing; rsync's
//! trailing-slash rule; `--dry-run` and `--checksum`.

use std::fs;
use std::os::unix::fs::symlink;

use super::{changed, local, remote, slash, summary, sync, T1};
use crate::files::{arg, assert_no_partials, random_bytes, set_mtime, shape, tree, write_file};
use crate::util::Server;

/// A source tree with a bit of everything.
fn source(server: &Server) -> std::path::PathBuf {
    let src = local(server, "src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    write_file(&src.join("a.txt"), b"alpha", 0o640, T1);
    write_file(&src.join("sub/b.bin"), &random_bytes(1, 300_000), 0o600, T1);
    write_file(&src.join("sub/deeper/c"), b"", 0o755, T1);
    symlink("sub/b.bin", src.join("link")).unwrap();
    symlink("../a.txt", src.join("sub/up")).unwrap();
    set_mtime(&src.join("sub"), T1);
    src
}

#[test]
fn a_push_and_a_pull_make_the_trees_the_same_and_a_second_sync_sends_nothing() {
    let server = Server::start(&[]);
    let src = source(&server);
    let want = tree(&src);

    sync(&server, &[&slash(&src), &remote(&server, "mirror")]).assert_ok();
    let pushed = server.root().join("mirror");
    assert_eq!(tree(&pushed), want, "push: content, modes, mtimes, links");
    assert_no_partials(server.root());

    let again = sync(
        &server,
        &["--json", &slash(&src), &remote(&server, "mirror")],
    );
    again.assert_ok();
    let s = summary(&again);
    assert_eq!(
        (s["files"].as_u64(), s["deltas"].as_u64()),
        (Some(0), Some(0)),
        "{again:?}"
    );
    assert_eq!(tree(&pushed), want);

    let back = local(&server, "back");
    sync(
        &server,
        &[&remote(&server, "mirror/"), super::super::files::arg(&back)],
    )
    .assert_ok();
    assert_eq!(
        shape(&tree(&back)),
        shape(&want),
        "pull: names, content, links"
    );
    let pulled = tree(&back);
    assert_eq!(
        pulled[std::path::Path::new("a.txt")].mtime,
        want[std::path::Path::new("a.txt")].mtime
    );
    let again = sync(
        &server,
        &["--json", &remote(&server, "mirror/"), arg(&back)],
    );
    assert_eq!(summary(&again)["files"], 0, "{again:?}");
}

#[test]
fn a_trailing_slash_syncs_the_contents_and_none_the_directory_itself() {
    let server = Server::start(&[]);
    let src = source(&server);
    sync(&server, &[arg(&src), &remote(&server, "into")]).assert_ok();
    assert!(server.root().join("into/src/a.txt").is_file());
    sync(&server, &[&slash(&src), &remote(&server, "contents")]).assert_ok();
    assert!(server.root().join("contents/a.txt").is_file());

    let dest = local(&server, "dest");
    sync(&server, &[&remote(&server, "contents"), arg(&dest)]).assert_ok();
    assert!(dest.join("contents/a.txt").is_file());
    sync(&server, &[&remote(&server, "contents/"), arg(&dest)]).assert_ok();
    assert!(dest.join("a.txt").is_file());

    // One file: into the destination directory, under its own name.
    sync(&server, &[arg(&src.join("a.txt")), &remote(&server, "one")]).assert_ok();
    assert_eq!(fs::read(server.root().join("one/a.txt")).unwrap(), b"alpha");
}

#[test]
fn a_dry_run_lists_the_changes_and_changes_nothing_either_way() {
    let server = Server::start(&[]);
    let src = source(&server);
    fs::create_dir_all(server.root().join("m")).unwrap();
    fs::write(server.root().join("m/stale"), b"old").unwrap();
    let before = tree(server.root());

    let run = sync(
        &server,
        &[
            "-n",
            "--json",
            "--delete",
            &slash(&src),
            &remote(&server, "m"),
        ],
    );
    run.assert_ok();
    assert_eq!(tree(server.root()), before, "a dry run wrote nothing");
    assert!(
        changed(&run, "new").contains(&"a.txt".to_string()),
        "{run:?}"
    );
    assert_eq!(changed(&run, "delete"), ["stale"]);
    assert_eq!(summary(&run)["dry_run"], true);

    let dest = local(&server, "dest");
    fs::write(dest.join("mine"), b"kept").unwrap();
    let local_before = tree(&dest);
    let run = sync(
        &server,
        &[
            "-n",
            "--json",
            "--delete",
            &remote(&server, "m/"),
            arg(&dest),
        ],
    );
    run.assert_ok();
    assert_eq!(tree(&dest), local_before);
    assert_eq!(changed(&run, "delete"), ["mine"]);
    assert_eq!(changed(&run, "new"), ["stale"]);
}

#[test]
fn checksum_catches_a_change_that_kept_size_and_mtime() {
    let server = Server::start(&[]);
    let src = local(&server, "src");
    write_file(&src.join("f"), b"version one", 0o644, T1);
    sync(&server, &[&slash(&src), &remote(&server, "m")]).assert_ok();
    // Same length, same mtime, other bytes: the quick check cannot see it.
    write_file(&src.join("f"), b"version two", 0o644, T1);
    let run = sync(&server, &["--json", &slash(&src), &remote(&server, "m")]);
    run.assert_ok();
    assert_eq!(fs::read(server.root().join("m/f")).unwrap(), b"version one");
    let run = sync(
        &server,
        &["--json", "-c", &slash(&src), &remote(&server, "m")],
    );
    run.assert_ok();
    assert_eq!(changed(&run, "update"), ["f"], "{run:?}");
    assert_eq!(fs::read(server.root().join("m/f")).unwrap(), b"version two");
    // And only metadata differing is set in place, without data.
    write_file(&src.join("f"), b"version two", 0o600, T1 + 5);
    let run = sync(
        &server,
        &["--json", "-c", &slash(&src), &remote(&server, "m")],
    );
    assert_eq!(changed(&run, "meta"), ["f"], "{run:?}");
    assert_eq!(summary(&run)["bytes"], 0);
    assert_eq!(tree(&server.root().join("m")), tree(&src));
}

#[test]
fn bwlimit_paces_the_sender() {
    let server = Server::start(&[]);
    let src = local(&server, "src");
    write_file(&src.join("f"), &random_bytes(2, 1024 * 1024), 0o644, T1);
    let started = std::time::Instant::now();
    sync(
        &server,
        &["--bwlimit", "2M", &slash(&src), &remote(&server, "m")],
    )
    .assert_ok();
    // 1 MiB at 2 MiB/s, less the first tenth of a second's credit.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(tree(&server.root().join("m")), tree(&src));
    let bad = sync(
        &server,
        &["--bwlimit", "fast", &slash(&src), &remote(&server, "m")],
    );
    bad.assert_code(2);
}
