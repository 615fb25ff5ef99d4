//! Stdin and stdout as files: `ferry put - HOST:FILE` stores stdin
//! atomically with its BLAKE3 checked; `ferry get HOST:FILE -` writes the
//! file to stdout and fails if the bytes did not hash as the server said.

use std::time::Duration;

use super::{assert_exit, client, configure_nas, put_remote, remote_file, run, server};
use crate::util::fake::{file_entry, Fake};
use crate::util::Sandbox;

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn stdin_is_stored_whole_under_the_name_given() {
    let server = server(&[]);
    configure_nas(&server, "");
    let data = pseudo_random(3 * 1024 * 1024 + 17);
    let put = client(&server, &["put", "-", "nas:backup/dir.tar"])
        .stdin(data.clone())
        .run();
    assert_exit(&put, 0, &[]);
    assert_eq!(remote_file(&server, "backup/dir.tar"), data);
    let names: Vec<_> = std::fs::read_dir(server.root().join("backup"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["dir.tar"], "no partial file left beside it");
    // Empty stdin is an empty file.
    let empty = client(&server, &["put", "-", "nas:empty"]).run();
    assert_exit(&empty, 0, &[]);
    assert_eq!(remote_file(&server, "empty"), b"");
    // Without a host, `put - NAME` names a file on the default server.
    let token = server.state_dir().join("token").display().to_string();
    let plain = client(&server, &["--token-file", &token, "put", "-", "plain.bin"])
        .env("FERRY_SERVER", server.addr())
        .stdin(b"plain".to_vec())
        .run();
    assert_exit(&plain, 0, &[]);
    assert_eq!(remote_file(&server, "plain.bin"), b"plain");
}

#[test]
fn stdin_needs_a_file_name() {
    let server = server(&[]);
    configure_nas(&server, "");
    std::fs::create_dir_all(server.root().join("d")).unwrap();
    let into_dir = client(&server, &["put", "-", "nas:d"])
        .stdin(b"x".to_vec())
        .run();
    assert_exit(&into_dir, 2, &["is a directory", "d/NAME"]);
    for dest in ["nas:d/", "nas:"] {
        let run = client(&server, &["put", "-", dest])
            .stdin(b"x".to_vec())
            .run();
        assert_exit(&run, 2, &["file name"]);
    }
    assert_exit(
        &run(&server, &["put", "-", "a", "nas:x"]),
        2,
        &["only source"],
    );
    assert_eq!(
        std::fs::read_dir(server.root().join("d")).unwrap().count(),
        0
    );
}

#[test]
fn stdout_gets_the_files_bytes_and_nothing_else() {
    let server = server(&[]);
    configure_nas(&server, "");
    let data = pseudo_random(2 * 1024 * 1024 + 3);
    put_remote(&server, "big.bin", &data);
    let got = client(&server, &["get", "nas:big.bin", "-"]).output_within(Duration::from_secs(30));
    assert_eq!(got.code, 0, "{}", String::from_utf8_lossy(&got.stderr));
    assert!(got.stdout == data, "stdout is not the file");
    // `--to -` is stdout too, and neither makes a directory named `-`.
    let to = client(&server, &["get", "nas:big.bin", "--to", "-"])
        .output_within(Duration::from_secs(30));
    assert!(to.code == 0 && to.stdout == data);
    assert!(!server.sandbox.path().join("-").exists());
    // A pattern that matches one file is that file.
    let one = client(&server, &["get", "nas:b?g.bin", "-"]).output_within(Duration::from_secs(30));
    assert!(one.code == 0 && one.stdout == data);
}

#[test]
fn stdout_refuses_what_it_cannot_hold() {
    let server = server(&[]);
    configure_nas(&server, "");
    put_remote(&server, "d/a", b"a");
    put_remote(&server, "d/b", b"b");
    for (args, needle) in [
        (&["get", "-r", "nas:d", "-"][..], "-r"),
        (&["get", "nas:d/a", "nas:d/b", "-"], "one source"),
        (&["get", "--md5", "nas:d/a", "-"], "--md5"),
        (&["get", "nas:d/*", "-"], "matches 2 paths"),
    ] {
        let run = run(&server, args);
        assert_exit(&run, 2, &[needle]);
        run.assert_stdout("");
    }
    // A directory is the server's refusal, before any byte.
    let dir = run(&server, &["get", "nas:d", "-"]);
    assert_exit(&dir, 1, &["is a directory"]);
    dir.assert_stdout("");
}

#[test]
fn a_server_that_lies_about_the_hash_fails_a_get_to_stdout() {
    let fake = Fake::start(1, |peer| {
        peer.hello();
        peer.manifest(&[file_entry("a.txt", 5, 1)]);
        let wants = peer.wants();
        assert_eq!(wants.len(), 1, "{wants:?}");
        assert_eq!(wants[0]["action"], "send");
        peer.file(0, b"evil!", &blake3::hash(b"good!"));
        peer.end();
    });
    let sandbox = Sandbox::new();
    let run = fake.client(&sandbox, &["get", "a.txt", "-"]);
    fake.join();
    run.assert_code(1);
    assert_eq!(run.stdout, "evil!", "the bytes were written as they came");
    run.assert_stderr_contains("do not hash")
        .assert_stderr_contains("discard them");
}

#[test]
fn a_server_that_sends_another_file_fails_a_get_to_stdout_before_writing() {
    let fake = Fake::start(1, |peer| {
        peer.hello();
        peer.manifest(&[file_entry(".bashrc", 5, 1)]);
    });
    let sandbox = Sandbox::new();
    let run = fake.client(&sandbox, &["get", "a.txt", "-"]);
    fake.join();
    run.assert_code(3)
        .assert_stdout("")
        .assert_stderr_contains(".bashrc");
}
