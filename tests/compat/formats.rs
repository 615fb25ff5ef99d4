//! The three formats, driven by the tutorial's own clients: shell commands
//! with a header, `get NAME` with the file's real md5 (over 2 GiB too),
//! and the socketserver client's put frame, one after another on one
//! connection.

use std::fs;
use std::io::{Seek, SeekFrom, Write};

use super::{b64, compat_server, md5_hex, tutorial};

#[test]
fn the_ssh_client_runs_commands_one_after_another() {
    let server = compat_server(&["--allow-exec"]);
    fs::write(server.root().join("a.txt"), "x").unwrap();
    let results = tutorial(
        &server,
        server.sandbox.path(),
        &[
            // Two bytes: the server must not wait for four.
            "ssh:ls",
            "ssh:echo out; echo err >&2; echo out2",
            // Far more than the client's recv(1024).
            "ssh:seq 1 20000",
            "ssh:pwd",
        ],
    );
    assert_eq!(results.len(), 4, "{results:?}");
    let output = |i: usize| b64(&results[i]["output"]);
    assert_eq!(output(0), b"a.txt\n", "ls runs in the root");
    assert_eq!(output(1), b"out\nout2\nerr\n", "stdout, then stderr");
    let seq: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    assert!(seq.len() > 100 * 1024);
    assert_eq!(output(2), seq.as_bytes());
    assert_eq!(results[2]["header"]["total_size"], seq.len());
    assert_eq!(
        String::from_utf8(output(3)).unwrap().trim_end(),
        fs::canonicalize(server.root()).unwrap().to_str().unwrap()
    );
    for result in &results {
        let header = &result["header"];
        assert_eq!(header["md5"], result["md5"], "a real md5: {header}");
        assert!(header.get("error").is_none(), "{header}");
    }
    server.wait_for_log_lines("seed-compat command", 4);
    server.wait_for_log("seed-compat connection closed");
}

#[test]
fn the_get_client_downloads_files_with_their_real_md5() {
    let server = compat_server(&[]);
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(server.root().join("a.txt"), &content).unwrap();
    fs::create_dir(server.root().join("sub")).unwrap();
    fs::write(server.root().join("sub/b.txt"), b"hello").unwrap();
    let dl = server.sandbox.path().join("download");
    fs::create_dir_all(dl.join("sub")).unwrap();
    let results = tutorial(
        &server,
        server.sandbox.path(),
        &[
            "--download",
            dl.to_str().unwrap(),
            "get:a.txt",
            "get:sub/b.txt",
        ],
    );
    assert_eq!(results[0]["header"]["file_size"], content.len());
    assert_eq!(results[0]["header"]["filename"], "a.txt");
    assert_eq!(results[0]["header"]["md5"], md5_hex(&content));
    assert_eq!(results[0]["md5"], md5_hex(&content));
    assert_eq!(fs::read(dl.join("a.txt")).unwrap(), content);
    // md5("hello") from coreutils' md5sum.
    assert_eq!(
        results[1]["header"]["md5"],
        "5d41402abc4b2a76b9719d911017c592"
    );
    assert_eq!(fs::read(dl.join("sub/b.txt")).unwrap(), b"hello");
    server.wait_for_log_lines("seed-compat get", 2);
}

#[test]
fn a_file_over_2_gib_arrives_with_its_size_as_a_json_number() {
    let server = compat_server(&[]);
    // Sparse: 2 GiB of hole, then data the md5 must cover.
    let size: u64 = (2 << 30) + 4096 + 17;
    let tail = b"the end of a big file";
    let mut file = fs::File::create(server.root().join("big")).unwrap();
    file.set_len(size - tail.len() as u64).unwrap();
    file.seek(SeekFrom::End(0)).unwrap();
    file.write_all(tail).unwrap();
    drop(file);
    assert!(size > i32::MAX as u64, "past what struct 'i' could say");

    let results = tutorial(
        &server,
        server.sandbox.path(),
        &["--recv", "1048576", "--download", "-", "get:big"],
    );
    let header = &results[0]["header"];
    assert_eq!(header["file_size"].as_u64(), Some(size), "{header}");
    assert_eq!(results[0]["received"].as_u64(), Some(size));
    let md5 = header["md5"].as_str().unwrap();
    assert!(
        md5.len() == 32
            && md5
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{md5}"
    );
    assert_eq!(
        results[0]["md5"], md5,
        "the client's md5 matches the header's"
    );
    assert!(b64(&results[0]["tail"]).ends_with(&tail[tail.len() - 16..]));
}

#[test]
fn the_socketserver_client_puts_files_and_the_connection_goes_on() {
    let server = compat_server(&["--allow-exec"]);
    let local = server.sandbox.path().join("local");
    fs::create_dir(&local).unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(local.join("big.bin"), &big).unwrap();
    fs::write(local.join("notes.txt"), "line one\nline two\n").unwrap();
    fs::write(server.root().join("notes.txt"), "old").unwrap();
    let results = tutorial(
        &server,
        &local,
        &[
            "put:big.bin",
            "put:notes.txt",
            // The next requests on the same connection still parse.
            "ssh:cat notes.txt",
            "--download",
            "-",
            "get:big.bin",
        ],
    );
    assert_eq!(results[0]["sent"], big.len());
    assert_eq!(b64(&results[2]["output"]), b"line one\nline two\n");
    assert_eq!(results[3]["header"]["md5"], md5_hex(&big));
    assert_eq!(fs::read(server.root().join("big.bin")).unwrap(), big);
    let mut names: Vec<String> = fs::read_dir(server.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["big.bin", "notes.txt"], "no partial file left");
    server.wait_for_log_lines("seed-compat put", 2);
}
