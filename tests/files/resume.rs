//! Interrupted transfers continue from what arrived, `--no-resume` starts
//! over, and a final name only ever holds the old file or the whole new one.
//! The client is killed with SIGKILL, so nothing on its side gets to tidy
//! up; the files are large enough (and sent in plaintext) that loopback
//! takes a moment, and every wait is on the partial file's size.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::Signal;
use serde_json::json;

use super::{
    arg, assert_no_partials, assert_transferred, bytes_moved, client, hash_file, local_dir,
    names_in, poll_until, run, write_file, write_random_file, MIB, PARTIAL_PREFIX,
};
use crate::util::fake::parse_lines;
use crate::util::{Process, Run, Server, DEADLINE};

/// Big enough that a plaintext transfer on loopback takes a second or two.
const BIG: u64 = 192 * MIB;

/// How long a big transfer may take on a slow, busy machine.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(60);

/// The partial file directly in `dir` and its length, if there is one.
/// Cheap enough to call every millisecond: no hashing, one directory.
fn partial_in(dir: &Path) -> Option<(PathBuf, u64)> {
    fs::read_dir(dir).ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PARTIAL_PREFIX) {
            return None;
        }
        Some((entry.path(), entry.metadata().ok()?.len()))
    })
}

/// What a watcher may see under a transfer's final name: `old` bytes, or a
/// complete file of `new_len` bytes once it is published.
#[track_caller]
fn check_final_name(path: &Path, old: Option<&[u8]>, new_len: u64) {
    // One handle for the length and the bytes, so a rename in between
    // cannot mix two files.
    let Ok(mut file) = File::open(path) else {
        assert!(
            old.is_none(),
            "{path:?} vanished while the old file was there"
        );
        return;
    };
    let len = file.metadata().unwrap().len();
    if len == new_len {
        return; // published; its content is checked at the end
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    assert_eq!(
        Some(&bytes[..]),
        old,
        "{path:?} held {len} bytes that are neither the old file nor the whole new one"
    );
}

/// Starts `args` and SIGKILLs the client once the partial file in `dir` has
/// grown past a third of `size`, checking all along that `final_name` does
/// not exist. Returns the partial file's path.
fn interrupt(server: &Server, args: &[&str], dir: &Path, final_name: &Path) -> PathBuf {
    let mut process: Process = client(server, args).spawn();
    let partial = poll_until("a partial past a third", TRANSFER_DEADLINE, || {
        if let Some(status) = process.wait_within(Duration::ZERO) {
            panic!("the transfer ended ({status}) before it could be interrupted");
        }
        check_final_name(final_name, None, u64::MAX);
        partial_in(dir).filter(|(_, len)| *len > BIG / 3)
    });
    process.signal(Signal::KILL);
    assert!(
        process.wait_within(DEADLINE).is_some(),
        "the client outlived SIGKILL"
    );
    assert!(
        !final_name.exists(),
        "{final_name:?} appeared after the kill"
    );
    partial.0
}

/// Asserts a resumed run moved only what the first left: no more than the
/// rest (plus the summary's rounding) and well under the whole.
#[track_caller]
fn assert_moved_only_the_rest(moved: u64, kept: u64) {
    assert!(
        kept > BIG / 3 && kept < BIG,
        "the partial kept {kept} of {BIG} bytes"
    );
    assert!(
        moved <= BIG - kept + MIB,
        "moved {moved} bytes though {kept} of {BIG} were kept"
    );
    assert!(moved < BIG * 7 / 10, "moved {moved} of {BIG} bytes");
}

/// Asserts a `-v --json` run resumed `path` from `kept` bytes, and says so
/// on stderr, in its file record and in its summary.
#[track_caller]
fn assert_resumed(run: &Run, path: &str, kept: u64) {
    run.assert_ok();
    let records = parse_lines(run.stdout.as_bytes());
    let file = json!({"event": "file", "path": path, "size": BIG, "action": "resumed",
                      "resumed_bytes": kept});
    assert_eq!(records[0], file, "{run:?}");
    assert_eq!(records[1]["event"], "summary", "{run:?}");
    assert_eq!(records[1]["resumed_bytes"], kept, "{run:?}");
    let line = format!("ferry: resumed {path} (192.0 MiB, ");
    run.assert_stderr_contains(&line)
        .assert_stderr_contains(" resumed from an earlier attempt");
}

#[test]
fn an_interrupted_put_resumes_and_sends_only_the_rest() {
    let server = Server::start(&["--plaintext"]);
    let local = local_dir(&server, "local");
    let source = local.join("big");
    let hash = write_random_file(&source, 7, BIG);
    let stored = server.root().join("big");
    let args = ["put", arg(&source)];

    let partial = interrupt(&server, &args, server.root(), &stored);
    // The server lets go of the partial when it sees the connection end.
    server.wait_for_log("connection closed");
    let kept = fs::metadata(&partial).unwrap().len();

    let run = run(&server, &["put", "-v", "--json", arg(&source)]);
    assert_resumed(&run, "big", kept);
    assert_moved_only_the_rest(bytes_moved(&run), kept);
    assert_eq!(hash_file(&stored), hash);
    assert_eq!(names_in(server.root()), ["big"], "no partial left");
    assert_eq!(names_in(&local), ["big"], "nothing new beside the source");
}

#[test]
fn an_interrupted_get_resumes_from_the_local_partial() {
    let server = Server::start(&["--plaintext"]);
    let hash = write_random_file(&server.root().join("big"), 8, BIG);
    let dl = local_dir(&server, "dl");
    let got = dl.join("big");
    let args = ["get", "big", "--to", arg(&dl)];

    let partial = interrupt(&server, &args, &dl, &got);
    let kept = fs::metadata(&partial).unwrap().len();

    let run = run(&server, &["get", "-v", "--json", "big", "--to", arg(&dl)]);
    assert_resumed(&run, "big", kept);
    assert_moved_only_the_rest(bytes_moved(&run), kept);
    assert_eq!(hash_file(&got), hash);
    assert_eq!(names_in(&dl), ["big"], "no partial left");
    assert_eq!(names_in(server.root()), ["big"]);
}

#[test]
fn no_resume_starts_over_and_sends_the_whole_file() {
    let server = Server::start(&["--plaintext"]);
    let local = local_dir(&server, "local");
    let source = local.join("big");
    let hash = write_random_file(&source, 9, BIG);
    let stored = server.root().join("big");

    interrupt(&server, &["put", arg(&source)], server.root(), &stored);
    server.wait_for_log("connection closed");

    let run = run(&server, &["put", "--no-resume", arg(&source)]);
    assert_transferred(&run);
    let moved = bytes_moved(&run);
    assert!(moved >= BIG - MIB / 10, "moved only {moved} of {BIG} bytes");
    assert_eq!(hash_file(&stored), hash);
    assert_no_partials(server.root());
}

#[test]
fn a_transfer_of_a_changed_source_leaves_no_stale_partial_behind() {
    let server = Server::start(&["--plaintext"]);
    let local = local_dir(&server, "local");
    let source = local.join("big");
    write_random_file(&source, 12, BIG);
    let stored = server.root().join("big");
    interrupt(&server, &["put", arg(&source)], server.root(), &stored);
    server.wait_for_log("connection closed");

    // The source changes before the user tries again.
    let hash = write_random_file(&source, 13, BIG / 4);
    let run = run(&server, &["put", arg(&source)]);
    assert_transferred(&run);
    assert_eq!(hash_file(&stored), hash);
    assert_eq!(names_in(server.root()), ["big"], "a stale partial was left");
}

/// Runs `args` to its end while watching `final_name`, which holds `old`
/// before and must hold it, or the whole new file of `new_len` bytes, at
/// every look. Asserts the watch saw a partial file half written.
fn watch_a_transfer(server: &Server, args: &[&str], dir: &Path, final_name: &Path, old: &[u8]) {
    let new_len = BIG / 2;
    let mut process = client(server, args).spawn();
    let mut saw_half_written = false;
    let status = poll_until("the transfer to finish", TRANSFER_DEADLINE, || {
        let status = process.wait_within(Duration::ZERO);
        check_final_name(final_name, Some(old), new_len);
        if let Some((_, len)) = partial_in(dir) {
            saw_half_written |= len > 0 && len < new_len;
        }
        status
    });
    assert!(status.success(), "{status}");
    assert!(saw_half_written, "never saw the transfer in flight");
}

#[test]
fn while_a_put_is_in_flight_the_final_name_holds_the_old_file() {
    let server = Server::start(&["--plaintext"]);
    let local = local_dir(&server, "local");
    let source = local.join("f");
    let hash = write_random_file(&source, 10, BIG / 2);
    let stored = server.root().join("f");
    write_file(&stored, b"the old file", 0o644, 1_000_000_000);

    let args = ["put", "--force", arg(&source)];
    watch_a_transfer(&server, &args, server.root(), &stored, b"the old file");
    assert_eq!(hash_file(&stored), hash);
    assert_eq!(names_in(server.root()), ["f"]);
}

#[test]
fn while_a_get_is_in_flight_the_final_name_holds_the_old_file() {
    let server = Server::start(&["--plaintext"]);
    let hash = write_random_file(&server.root().join("f"), 11, BIG / 2);
    let dl = local_dir(&server, "dl");
    let got = dl.join("f");
    write_file(&got, b"the old file", 0o644, 1_000_000_000);

    let args = ["get", "--force", "f", "--to", arg(&dl)];
    watch_a_transfer(&server, &args, &dl, &got, b"the old file");
    assert_eq!(hash_file(&got), hash);
    assert_eq!(names_in(&dl), ["f"]);
}
