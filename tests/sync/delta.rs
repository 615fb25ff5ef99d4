//! Only the changed parts of big files travel, both ways; a renamed file
//! costs no data; the index survives a server restart and, deleted, is
//! rebuilt without a wrong byte.

use std::fs;

use super::{changed, local, remote, slash, summary, sync, T1};
use crate::files::{arg, hash_file, random_bytes, write_file};
use crate::util::Server;

const MIB: usize = 1024 * 1024;

/// An 8 MiB file, and the same with 100 bytes inserted at 1 MiB and 4 KiB
/// overwritten at 6 MiB.
fn versions() -> (Vec<u8>, Vec<u8>) {
    let old = random_bytes(7, 8 * MIB);
    let mut new = old.clone();
    new.splice(MIB..MIB, random_bytes(8, 100));
    new[6 * MIB..6 * MIB + 4096].copy_from_slice(&random_bytes(9, 4096));
    (old, new)
}

#[test]
fn an_edited_big_file_travels_as_a_small_delta_both_ways() {
    let server = Server::start(&[]);
    let (old, new) = versions();
    let src = local(&server, "src");
    write_file(&src.join("big"), &old, 0o644, T1);
    sync(&server, &[&slash(&src), &remote(&server, "m")]).assert_ok();
    write_file(&src.join("big"), &new, 0o644, T1 + 1);

    let run = sync(&server, &["--json", &slash(&src), &remote(&server, "m")]);
    run.assert_ok();
    assert_eq!(changed(&run, "delta"), ["big"], "{run:?}");
    let s = summary(&run);
    let delta_bytes = s["delta_bytes"].as_u64().unwrap();
    // Two edits: a few chunks of at most 256 KiB, and some hashes.
    assert!(delta_bytes < 1_100_000, "{s}");
    assert!(s["reused_bytes"].as_u64().unwrap() > 6 * MIB as u64, "{s}");
    assert_eq!(hash_file(&server.root().join("m/big")), blake3::hash(&new));

    // A pull of the next edit into a local copy.
    let dest = local(&server, "dest");
    write_file(&dest.join("big"), &new, 0o644, T1 + 1);
    let mut newer = new.clone();
    newer[3 * MIB..3 * MIB + 10].copy_from_slice(b"0123456789");
    write_file(&server.root().join("m/big"), &newer, 0o644, T1 + 2);
    let run = sync(&server, &["--json", &remote(&server, "m/"), arg(&dest)]);
    run.assert_ok();
    assert_eq!(changed(&run, "delta"), ["big"]);
    assert!(summary(&run)["delta_bytes"].as_u64().unwrap() < 600_000);
    assert_eq!(fs::read(dest.join("big")).unwrap(), newer);
}

#[test]
fn a_renamed_file_is_rebuilt_from_chunks_the_receiver_already_has() {
    let server = Server::start(&[]);
    let src = local(&server, "src");
    let bytes = random_bytes(10, 3 * MIB);
    write_file(&src.join("before"), &bytes, 0o644, T1);
    sync(&server, &[&slash(&src), &remote(&server, "m")]).assert_ok();
    fs::rename(src.join("before"), src.join("after")).unwrap();

    let run = sync(
        &server,
        &["--json", "--delete", &slash(&src), &remote(&server, "m")],
    );
    run.assert_ok();
    assert_eq!(changed(&run, "delta"), ["after"], "{run:?}");
    assert_eq!(changed(&run, "delete"), ["before"]);
    let s = summary(&run);
    assert_eq!(s["reused_bytes"].as_u64(), Some(bytes.len() as u64), "{s}");
    assert!(s["delta_bytes"].as_u64().unwrap() < 20_000, "{s}");
    assert_eq!(fs::read(server.root().join("m/after")).unwrap(), bytes);
}

#[test]
fn the_index_survives_a_server_restart_and_is_rebuilt_when_deleted() {
    let mut server = Server::start(&[]);
    let (old, new) = versions();
    let src = local(&server, "src");
    write_file(&src.join("big"), &old, 0o644, T1);
    sync(&server, &[&slash(&src), &remote(&server, "m")]).assert_ok();
    let indexes = server.state_dir().join("sync");
    let count = || fs::read_dir(&indexes).map(|d| d.count()).unwrap_or(0);
    assert!(count() >= 1, "the receiver keeps an index");

    let sandbox = server.sandbox.clone();
    server.stop();
    let server = Server::start_in(&sandbox, &[]);
    write_file(&src.join("big"), &new, 0o644, T1 + 1);
    let run = sync(&server, &["--json", &slash(&src), &remote(&server, "m")]);
    run.assert_ok();
    assert_eq!(changed(&run, "delta"), ["big"]);
    assert_eq!(fs::read(server.root().join("m/big")).unwrap(), new);

    // Without any index, the next sync still sends only a delta, and
    // builds the index again.
    fs::remove_dir_all(&indexes).unwrap();
    write_file(&src.join("big"), &old, 0o644, T1 + 2);
    let run = sync(&server, &["--json", &slash(&src), &remote(&server, "m")]);
    run.assert_ok();
    assert_eq!(changed(&run, "delta"), ["big"]);
    assert_eq!(fs::read(server.root().join("m/big")).unwrap(), old);
    assert!(count() >= 1, "rebuilt");
    // A corrupt index is a cache miss, not a wrong file.
    for entry in fs::read_dir(&indexes).unwrap() {
        fs::write(entry.unwrap().path(), b"ferryix\x01garbage").unwrap();
    }
    write_file(&src.join("big"), &new, 0o644, T1 + 3);
    sync(&server, &[&slash(&src), &remote(&server, "m")]).assert_ok();
    assert_eq!(fs::read(server.root().join("m/big")).unwrap(), new);
}
