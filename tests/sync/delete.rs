//! `--delete`: extras go, after everything else and only when nothing
//! failed; what the filter protects stays; an empty source cannot empty
//! the destination without `--force`; a sync cut short deletes nothing.

use std::fs;
use std::time::Duration;

use super::{changed, local, remote, slash, sync, T1};
use crate::files::{arg, client, random_bytes, tree, write_file};
use crate::util::{poll_until, Server};

#[test]
fn delete_removes_what_the_source_lacks_but_not_what_an_exclude_protects() {
    let server = Server::start(&[]);
    let src = local(&server, "src");
    fs::create_dir_all(src.join("keep")).unwrap();
    write_file(&src.join("keep/f"), b"f", 0o644, T1);
    let m = server.root().join("m");
    fs::create_dir_all(m.join("gone-dir/inner")).unwrap();
    fs::write(m.join("gone-dir/inner/x"), b"x").unwrap();
    fs::write(m.join("keep/extra"), b"").unwrap_or_else(|_| {
        fs::create_dir_all(m.join("keep")).unwrap();
        fs::write(m.join("keep/extra"), b"").unwrap();
    });
    fs::write(m.join("notes.local"), b"mine").unwrap();

    let run = sync(
        &server,
        &[
            "--json",
            "--delete",
            "--exclude",
            "*.local",
            &slash(&src),
            &remote(&server, "m"),
        ],
    );
    run.assert_ok();
    assert_eq!(
        changed(&run, "delete"),
        [
            "gone-dir",
            "gone-dir/inner",
            "gone-dir/inner/x",
            "keep/extra"
        ]
    );
    assert_eq!(
        fs::read(m.join("notes.local")).unwrap(),
        b"mine",
        "protected"
    );
    assert!(!m.join("gone-dir").exists());
    assert!(m.join("keep/f").is_file());
    // Without --delete nothing is ever removed.
    fs::write(m.join("keep/another"), b"").unwrap();
    sync(&server, &[&slash(&src), &remote(&server, "m")]).assert_ok();
    assert!(m.join("keep/another").exists());
}

#[test]
fn delete_refuses_to_empty_the_destination_unless_forced() {
    let server = Server::start(&[]);
    let empty = local(&server, "empty");
    let m = server.root().join("m");
    fs::create_dir_all(&m).unwrap();
    fs::write(m.join("precious"), b"p").unwrap();
    let run = sync(
        &server,
        &["--delete", &slash(&empty), &remote(&server, "m")],
    );
    run.assert_code(1).assert_stderr_contains("--force");
    assert!(m.join("precious").exists());
    // The same from the client's side of a pull.
    let dest = local(&server, "dest");
    fs::write(dest.join("mine"), b"m").unwrap();
    fs::create_dir_all(server.root().join("nothing")).unwrap();
    let run = sync(
        &server,
        &["--delete", &remote(&server, "nothing/"), arg(&dest)],
    );
    run.assert_code(1).assert_stderr_contains("--force");
    assert!(dest.join("mine").exists());

    sync(
        &server,
        &["--delete", "--force", &slash(&empty), &remote(&server, "m")],
    )
    .assert_ok();
    assert!(!m.join("precious").exists());
    sync(&server, &["--force", &slash(&empty), &remote(&server, "m")]).assert_code(2);
}

#[test]
fn nothing_is_deleted_when_a_file_failed() {
    let server = Server::start(&[]);
    let src = local(&server, "src");
    write_file(&src.join("blocked"), b"a file", 0o644, T1);
    write_file(&src.join("ok"), b"fine", 0o644, T1);
    let m = server.root().join("m");
    // A directory where the source has a file: that file fails.
    fs::create_dir_all(m.join("blocked/inside")).unwrap();
    fs::write(m.join("extra"), b"would be deleted").unwrap();
    let run = sync(&server, &["--delete", &slash(&src), &remote(&server, "m")]);
    run.assert_code(1).assert_stderr_contains("blocked");
    assert!(m.join("extra").exists(), "no delete after a failure");
    assert_eq!(fs::read(m.join("ok")).unwrap(), b"fine", "the rest arrived");
}

#[test]
fn a_sync_killed_midway_leaves_the_destination_with_at_least_what_it_had() {
    let server = Server::start(&[]);
    let src = local(&server, "src");
    write_file(
        &src.join("big"),
        &random_bytes(3, 4 * 1024 * 1024),
        0o644,
        T1,
    );
    let m = server.root().join("m");
    fs::create_dir_all(&m).unwrap();
    fs::write(m.join("old"), b"was here").unwrap();
    let before = tree(&m);
    let src_arg = slash(&src);
    let dest_arg = remote(&server, "m");
    let mut process = client(
        &server,
        &["sync", "--delete", "--bwlimit", "1M", &src_arg, &dest_arg],
    )
    .spawn();
    // Kill it while the big file is on its way (a partial file exists).
    poll_until(
        "a partial file of the big one",
        Duration::from_secs(20),
        || {
            fs::read_dir(&m)
                .unwrap()
                .any(|e| {
                    e.unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(".ferry-partial-")
                })
                .then_some(())
        },
    );
    process.signal(rustix::process::Signal::KILL);
    process
        .wait_within(Duration::from_secs(10))
        .expect("killed");
    assert_eq!(fs::read(m.join("old")).unwrap(), b"was here");
    for (path, node) in &before {
        assert!(tree(&m).get(path) == Some(node), "{path:?} changed");
    }
    assert!(!m.join("big").exists(), "nothing half-written is published");
}
