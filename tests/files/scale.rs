//! Sizes and crowds: a sparse file past 4 GiB (sizes and offsets are u64 on
//! the wire, holes stay holes), and twenty clients at once.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::thread;
use std::time::Instant;

use super::{arg, assert_transferred, hash_file, local_dir, run, write_random_file, MIB};
use crate::util::Server;

// About 30 s on a busy two-core machine: 4 GiB through loopback, then
// hashed on both ends.
#[test]
#[ignore = "slow: run with --ignored"]
fn a_sparse_file_over_4_gib_arrives_whole_and_still_sparse() {
    let server = Server::start(&["--plaintext"]);
    let size = 4096 * MIB + MIB;
    let source = server.root().join("sparse");
    let file = File::create(&source).unwrap();
    file.set_len(size).unwrap();
    let marks: [(u64, &[u8]); 4] = [
        (0, b"start"),
        (1_000_003, b"unaligned"),
        ((1 << 32) - 4, b"across 4 GiB"),
        (size - 4, b"end!"),
    ];
    for (offset, bytes) in marks {
        file.write_all_at(bytes, offset).unwrap();
    }
    drop(file);
    let dl = local_dir(&server, "dl");

    let started = Instant::now();
    let run = run(&server, &["get", "sparse", "--to", arg(&dl)]);
    eprintln!("4 GiB sparse get took {:?}", started.elapsed());
    assert_transferred(&run);

    let got = dl.join("sparse");
    let md = fs::metadata(&got).unwrap();
    assert_eq!(md.len(), size);
    let file = File::open(&got).unwrap();
    for (offset, bytes) in marks {
        let mut read = vec![0u8; bytes.len()];
        file.read_exact_at(&mut read, offset).unwrap();
        assert_eq!(read, bytes, "at {offset}");
    }
    let allocated = md.blocks() * 512;
    assert!(
        allocated < 64 * MIB,
        "the copy takes {allocated} bytes on disk: its holes were filled"
    );
    assert_eq!(hash_file(&got), hash_file(&source));
}

#[test]
fn twenty_clients_put_and_get_their_own_files_at_once() {
    let server = Server::start(&[]);
    // Pin the certificate once, so twenty first connections do not all
    // write known_hosts.
    assert_eq!(run(&server, &["ls"]).code, 0);
    let clients = 20;

    thread::scope(|scope| {
        for i in 0..clients {
            let server = &server;
            scope.spawn(move || {
                let local = local_dir(server, &format!("client{i}"));
                let hash = write_random_file(&local.join("f"), 100 + i, MIB);
                let to = format!("c{i}");
                assert_transferred(&run(server, &["put", arg(&local.join("f")), "--to", &to]));
                let back = local.join("back");
                let remote = format!("c{i}/f");
                assert_transferred(&run(server, &["get", &remote, "--to", arg(&back)]));
                assert_eq!(hash_file(&back.join("f")), hash, "client {i} got back");
                assert_eq!(
                    hash_file(&server.root().join(&remote)),
                    hash,
                    "client {i} stored"
                );
            });
        }
    });
    // One connection each, all closed by their clients.
    let closed = server.wait_for_log_lines("connection closed", 1 + 2 * clients as usize);
    assert!(
        closed.iter().all(|l| l.contains("end=peer closed")),
        "{closed:#?}"
    );
}
