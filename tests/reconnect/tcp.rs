//! Cuts and stalls over TCP (and TLS), through [`Proxy`]: every transfer
//! moves a few MiB, and the proxy counts bytes, so each fault lands in the
//! middle of the data whatever the machine's speed.

use std::fs;
use std::os::unix::fs::DirBuilderExt;

use super::{reconnects, records, resumed_at};
use crate::files::{
    arg, hash_file, local_dir, partials_under, shape, tree, write_random_file, MIB,
};
use crate::util::{Fault, Invocation, Proxy, Server};

/// The file most tests move.
const SIZE: u64 = 4 * MIB;

/// `ferry ARGS` against `server`, through `proxy`.
fn through(server: &Server, proxy: &Proxy, args: &[&str]) -> Invocation {
    server.client(args).env("FERRY_SERVER", proxy.addr())
}

/// A server with `big.bin` of [`SIZE`] in its root, and its BLAKE3.
fn serving_big() -> (Server, blake3::Hash) {
    let server = Server::start(&[]);
    let hash = write_random_file(&server.root().join("big.bin"), 15, SIZE);
    (server, hash)
}

#[test]
fn a_get_cut_once_reconnects_and_resumes_to_an_exact_file() {
    let (server, hash) = serving_big();
    let proxy = Proxy::start(server.addr(), Fault::Cut, MIB, 1);
    let dl = local_dir(&server, "dl");
    let run = through(
        &server,
        &proxy,
        &["get", "-v", "--json", "big.bin", "--to", arg(&dl)],
    )
    .run();
    run.assert_ok()
        .assert_stderr_contains("ferry: reconnected (attempt 1 of 5)");
    assert_eq!(
        hash_file(&dl.join("big.bin")),
        hash,
        "the file is not exact"
    );
    assert!(partials_under(&dl).is_empty(), "a partial was left");
    assert_eq!((proxy.faults(), proxy.connections()), (1, 2));
    let at = resumed_at(&run, "big.bin");
    assert!(
        matches!(at[..], [offset] if offset > 0 && offset < SIZE),
        "{at:?}"
    );
    let resumed = records(&run, "resumed");
    assert_eq!(resumed.len(), 1, "{}", run.stdout);
    assert_eq!(resumed[0]["path"], "big.bin");
    assert_eq!(resumed[0]["offset"], at[0]);
    let reconnected = records(&run, "reconnected");
    assert_eq!(reconnected.len(), 1, "{}", run.stdout);
    assert_eq!(
        (&reconnected[0]["attempt"], &reconnected[0]["of"]),
        (&1.into(), &5.into())
    );
    // The bytes kept were not sent again.
    let summary = &records(&run, "summary")[0];
    assert_eq!(summary["resumed_bytes"], at[0]);
    assert_eq!(summary["bytes"], SIZE - at[0]);
}

#[test]
fn a_put_cut_once_reconnects_and_resumes_to_an_exact_file() {
    let server = Server::start(&[]);
    let proxy = Proxy::start(server.addr(), Fault::Cut, MIB, 1);
    let local = local_dir(&server, "up");
    let hash = write_random_file(&local.join("big.bin"), 16, SIZE);
    let run = through(
        &server,
        &proxy,
        &["put", "-v", "--json", arg(&local.join("big.bin"))],
    )
    .run();
    run.assert_ok()
        .assert_stderr_contains("ferry: reconnected (attempt 1 of 5)");
    assert_eq!(hash_file(&server.root().join("big.bin")), hash);
    assert!(
        partials_under(server.root()).is_empty(),
        "a partial was left"
    );
    let at = resumed_at(&run, "big.bin");
    assert!(
        matches!(at[..], [offset] if offset > 0 && offset < SIZE),
        "{at:?}"
    );
    assert_eq!(records(&run, "resumed")[0]["offset"], at[0]);
    assert_eq!(records(&run, "summary")[0]["resumed_bytes"], at[0]);
}

#[test]
fn a_stalled_get_is_dropped_after_the_stall_timeout_and_resumes() {
    let (server, hash) = serving_big();
    let proxy = Proxy::start(server.addr(), Fault::Stall, MIB, 1);
    let dl = local_dir(&server, "dl");
    let run = through(
        &server,
        &proxy,
        &[
            "get",
            "-v",
            "--json",
            "--stall-timeout",
            "1s",
            "big.bin",
            "--to",
            arg(&dl),
        ],
    )
    .run();
    run.assert_ok()
        .assert_stderr_contains("ferry: stalled: no progress for 1s")
        .assert_stderr_contains("ferry: reconnected (attempt 1 of 5)");
    assert_eq!(
        hash_file(&dl.join("big.bin")),
        hash,
        "the file is not exact"
    );
    let stalled = records(&run, "stalled");
    assert_eq!(stalled.len(), 1, "{}", run.stdout);
    assert_eq!(stalled[0]["seconds"], 1.0);
    let at = resumed_at(&run, "big.bin");
    assert!(
        matches!(at[..], [offset] if offset > 0 && offset < SIZE),
        "{at:?}"
    );
}

#[test]
fn a_connection_cut_every_time_gives_up_after_the_retries_naming_the_file() {
    let (server, _) = serving_big();
    // Each connection gets the hello and a little data through, never the
    // whole file.
    let proxy = Proxy::start(server.addr(), Fault::Cut, 64 * 1024, u32::MAX);
    let dl = local_dir(&server, "dl");
    let run = through(
        &server,
        &proxy,
        &["get", "-v", "--retries", "2", "big.bin", "--to", arg(&dl)],
    )
    .run();
    run.assert_code(1)
        .assert_stderr_contains("big.bin: not delivered")
        .assert_stderr_contains("2 reconnects");
    assert_eq!(reconnects(&run), 2, "{}", run.stderr);
    assert_eq!(proxy.connections(), 3);
    assert!(!dl.join("big.bin").exists());
    // What arrived is kept for the next run.
    assert_eq!(partials_under(&dl).len(), 1);
}

#[test]
fn with_no_retries_a_cut_ends_the_get_as_before() {
    let (server, hash) = serving_big();
    let proxy = Proxy::start(server.addr(), Fault::Cut, MIB, 1);
    let dl = local_dir(&server, "dl");
    let args = ["get", "-v", "big.bin", "--to", arg(&dl)];
    let mut once = args.to_vec();
    once.extend(["--retries", "0"]);
    let run = through(&server, &proxy, &once).run();
    run.assert_code(3)
        .assert_stderr_contains("connection to the server failed");
    assert_eq!(reconnects(&run), 0, "{}", run.stderr);
    assert_eq!(proxy.connections(), 1);
    assert!(!dl.join("big.bin").exists());
    // Run again, it resumes, as it always did.
    let again = through(&server, &proxy, &args).run();
    again
        .assert_ok()
        .assert_stderr_contains("resumed from an earlier attempt");
    assert_eq!(hash_file(&dl.join("big.bin")), hash);
}

#[test]
fn a_tree_get_cut_midway_delivers_every_file() {
    let server = Server::start(&[]);
    let root = server.root().join("tree");
    fs::create_dir_all(root.join("deeper")).unwrap();
    for i in 0..6u64 {
        let dir = if i % 2 == 0 {
            root.clone()
        } else {
            root.join("deeper")
        };
        write_random_file(&dir.join(format!("f{i}.bin")), 100 + i, 512 * 1024 + i);
    }
    let proxy = Proxy::start(server.addr(), Fault::Cut, 3 * MIB / 2, 1);
    let dl = local_dir(&server, "dl");
    let run = through(
        &server,
        &proxy,
        &["get", "-r", "-v", "--json", "tree", "--to", arg(&dl)],
    )
    .run();
    run.assert_ok()
        .assert_stderr_contains("ferry: reconnected (attempt 1 of 5)");
    assert_eq!(proxy.faults(), 1);
    assert_eq!(shape(&tree(&dl.join("tree"))), shape(&tree(&root)));
    // The files the first connection delivered count as delivered, not
    // as found up to date.
    let summary = &records(&run, "summary")[0];
    assert_eq!(
        (&summary["files"], &summary["skipped"]),
        (&6.into(), &0.into())
    );
    assert!(records(&run, "file")
        .iter()
        .all(|f| f["action"] != "skipped"));
    assert!(partials_under(&dl).is_empty(), "a partial was left");
}

#[test]
fn a_changed_certificate_on_reconnect_is_not_retried() {
    let (server, _) = serving_big();
    let impostor = Server::start(&[]);
    let proxy = Proxy::start(server.addr(), Fault::Cut, MIB, 1);
    proxy.then_redirect_to(impostor.addr());
    let dl = local_dir(&server, "dl");
    let run = through(&server, &proxy, &["get", "-v", "big.bin", "--to", arg(&dl)]).run();
    run.assert_code(3).assert_stderr_contains("has changed");
    assert_eq!(reconnects(&run), 0, "{}", run.stderr);
    // One reconnect, refused at the certificate: never another.
    assert_eq!(proxy.connections(), 2);
    assert!(!dl.join("big.bin").exists());
}

#[test]
fn a_striped_get_whose_streams_are_cut_goes_on_from_the_verified_ranges() {
    let server = Server::start(&[]);
    let size = 16 * MIB;
    let hash = write_random_file(&server.root().join("big.bin"), 18, size);
    // The first connection carries no range: an extra stream is cut once
    // it has moved 6 MiB, after a whole 4 MiB range. Whether both are cut
    // depends on how the four ranges fall between the two streams.
    let proxy = Proxy::start(server.addr(), Fault::Cut, 6 * MIB, 2);
    let dl = local_dir(&server, "dl");
    let run = through(
        &server,
        &proxy,
        &[
            "get",
            "-v",
            "--json",
            "--streams",
            "2",
            "big.bin",
            "--to",
            arg(&dl),
        ],
    )
    .run();
    run.assert_ok()
        .assert_stderr_contains("ferry: reconnected (attempt 1 of 5)");
    assert!(proxy.faults() >= 1, "no stream was cut");
    assert_eq!(
        hash_file(&dl.join("big.bin")),
        hash,
        "the file is not exact"
    );
    assert!(partials_under(&dl).is_empty(), "a partial was left");
    let summary = &records(&run, "summary")[0];
    let kept = summary["resumed_bytes"].as_u64().unwrap();
    assert!(kept > 0 && kept < size, "{summary}");
}

#[test]
fn a_striped_put_whose_streams_are_cut_goes_on_from_the_verified_ranges() {
    let server = Server::start(&[]);
    let size = 16 * MIB;
    let local = local_dir(&server, "up");
    let hash = write_random_file(&local.join("big.bin"), 19, size);
    let proxy = Proxy::start(server.addr(), Fault::Cut, 6 * MIB, 2);
    let run = through(
        &server,
        &proxy,
        &[
            "put",
            "--json",
            "--streams",
            "2",
            arg(&local.join("big.bin")),
        ],
    )
    .run();
    run.assert_ok();
    // As for the get: one stream or both, as the ranges fall, and the two
    // cuts may land in one attempt or in two.
    assert!(proxy.faults() >= 1, "no stream was cut");
    let reconnects = records(&run, "reconnected").len();
    assert!(
        (1..=proxy.faults() as usize).contains(&reconnects),
        "{reconnects} reconnects for {} cuts: {}",
        proxy.faults(),
        run.stdout
    );
    // The ranges that arrived whole were not sent again (a striped put's
    // summary counts them as neither sent nor resumed).
    let moved = records(&run, "summary")[0]["bytes"].as_u64().unwrap();
    assert!(moved > 0 && moved < size, "{moved}");
    assert_eq!(hash_file(&server.root().join("big.bin")), hash);
    assert!(
        partials_under(server.root()).is_empty(),
        "a partial was left"
    );
}

#[test]
fn a_tree_get_without_preserve_cut_midway_takes_its_own_files_for_delivered() {
    // Files delivered before the cut carry this machine's mtime, so the
    // retry's quick check sees them "differ"; they are this command's.
    let server = Server::start(&[]);
    let root = server.root().join("tree");
    fs::create_dir_all(&root).unwrap();
    for i in 0..6u64 {
        write_random_file(&root.join(format!("f{i}.bin")), 200 + i, 512 * 1024);
    }
    let proxy = Proxy::start(server.addr(), Fault::Cut, 3 * MIB / 2, 1);
    let dl = local_dir(&server, "dl");
    let run = through(
        &server,
        &proxy,
        &["get", "-r", "-v", "--no-preserve", "tree", "--to", arg(&dl)],
    )
    .run();
    run.assert_ok()
        .assert_stderr_contains("ferry: reconnected (attempt 1 of 5)");
    assert_eq!(shape(&tree(&dl.join("tree"))), shape(&tree(&root)));
}

#[test]
fn a_put_stalled_in_the_dark_recovers_though_the_server_still_holds_its_partial() {
    // The server's session of the dark connection holds the partial file
    // (locked) until its request deadline passes, well after the client
    // reconnected: the file is sent again whole, into a partial of its own,
    // and arrives exact.
    let server = Server::start(&["--request-timeout", "5"]);
    let proxy = Proxy::start(server.addr(), Fault::Dark, MIB, 1);
    let local = local_dir(&server, "up");
    let hash = write_random_file(&local.join("big.bin"), 20, SIZE);
    let run = through(
        &server,
        &proxy,
        &[
            "put",
            "-v",
            "--stall-timeout",
            "1",
            arg(&local.join("big.bin")),
        ],
    )
    .run();
    run.assert_ok()
        .assert_stderr_contains("ferry: stalled: no progress for 1s")
        .assert_stderr_contains("ferry: reconnected (attempt 1 of 5)");
    assert_eq!(hash_file(&server.root().join("big.bin")), hash);
    assert_eq!(proxy.connections(), 2);
}

#[test]
fn a_token_refused_on_reconnect_is_not_retried() {
    let (server, _) = serving_big();
    // The same certificate (so the pin holds), another token.
    let state = server.sandbox.path().join("other-state");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&state)
        .unwrap();
    for file in ["cert.pem", "key.pem"] {
        fs::copy(server.state_dir().join(file), state.join(file)).unwrap();
    }
    let other = Server::start(&["--state", arg(&state)]);
    assert_eq!(other.fingerprint(), server.fingerprint());
    let proxy = Proxy::start(server.addr(), Fault::Cut, MIB, 1);
    proxy.then_redirect_to(other.addr());
    let dl = local_dir(&server, "dl");
    let run = through(&server, &proxy, &["get", "-v", "big.bin", "--to", arg(&dl)]).run();
    run.assert_code(3)
        .assert_stderr_contains("the server refused the connection");
    assert_eq!(reconnects(&run), 0, "{}", run.stderr);
    assert_eq!(proxy.connections(), 2);
    assert!(!dl.join("big.bin").exists());
}
