//! Whole striped transfers through the real client and server: a tree of
//! big and small files goes both ways over several streams (through TLS,
//! whose sessions the extra connections resume), one stream is the choice
//! on loopback, and the extra connections take connection slots.

use std::fs;

use crate::files::{
    arg, assert_no_partials, assert_transferred, hash_file, local_dir, partials_under, run,
    write_random_file, MIB,
};
use crate::util::Server;

/// The log line of an extra connection the server let in.
const JOINED: &str = "joined a striped transfer";

#[test]
fn a_tree_of_big_and_small_files_gets_and_puts_over_several_streams() {
    let server = Server::start(&[]);
    let tree = server.root().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    let big = write_random_file(&tree.join("big.bin"), 1, 20 * MIB + 3);
    let other = write_random_file(&tree.join("sub/other.bin"), 2, 9 * MIB);
    let small = write_random_file(&tree.join("sub/small.txt"), 3, 1000);
    let dl = local_dir(&server, "dl");

    assert_transferred(&run(
        &server,
        &["get", "-r", "--streams", "4", "tree", "--to", arg(&dl)],
    ));
    assert_eq!(hash_file(&dl.join("tree/big.bin")), big);
    assert_eq!(hash_file(&dl.join("tree/sub/other.bin")), other);
    assert_eq!(hash_file(&dl.join("tree/sub/small.txt")), small);
    assert_no_partials(&dl);
    // The client opened four extra connections, and all four were let in.
    server.wait_for_log_lines(JOINED, 4);

    let back = dl.join("tree");
    assert_transferred(&run(
        &server,
        &["put", "-r", "--streams", "3", arg(&back), "--to", "back"],
    ));
    let up = server.root().join("back/tree");
    assert_eq!(hash_file(&up.join("big.bin")), big);
    assert_eq!(hash_file(&up.join("sub/other.bin")), other);
    assert_eq!(hash_file(&up.join("sub/small.txt")), small);
    assert_no_partials(server.root());
    server.wait_for_log_lines(JOINED, 7);
}

#[test]
fn on_loopback_the_automatic_choice_is_one_stream() {
    let server = Server::start(&["--plaintext"]);
    let big = write_random_file(&server.root().join("big.bin"), 4, 12 * MIB);
    let dl = local_dir(&server, "dl");
    assert_transferred(&run(&server, &["get", "big.bin", "--to", arg(&dl)]));
    assert_eq!(hash_file(&dl.join("big.bin")), big);
    // Both ends are done with the connection before the client exits.
    server.wait_for_log_lines("connection closed", 1);
    assert!(
        !server.log().iter().any(|line| line.contains(JOINED)),
        "{:#?}",
        server.log()
    );
}

#[test]
fn extra_connections_take_connection_slots_and_are_refused_past_the_limit() {
    // One slot: the get's own connection holds it, so every extra one is
    // refused, and the big file's ranges cannot come.
    let server = Server::start(&["--plaintext", "--max-connections", "1"]);
    let big = write_random_file(&server.root().join("big.bin"), 5, 12 * MIB);
    let dl = local_dir(&server, "dl");
    let failed = run(
        &server,
        &["get", "--streams", "3", "big.bin", "--to", arg(&dl)],
    );
    failed
        .assert_code(1)
        .assert_stderr_contains("ranges did not arrive");
    server.wait_for_log_lines("refused: connection limit reached", 3);
    assert!(!dl.join("big.bin").exists(), "nothing published");
    assert_eq!(partials_under(&dl).len(), 1, "the partial is kept");
    // On one connection it goes through.
    assert_transferred(&run(
        &server,
        &["get", "--streams", "1", "big.bin", "--to", arg(&dl)],
    ));
    assert_eq!(hash_file(&dl.join("big.bin")), big);
    assert_no_partials(&dl);
}

#[test]
fn a_striped_get_with_nothing_left_to_stripe_lets_its_extra_connections_go() {
    let server = Server::start(&["--plaintext"]);
    write_random_file(&server.root().join("big.bin"), 6, 12 * MIB);
    let dl = local_dir(&server, "dl");
    let get = ["get", "--streams", "4", "big.bin", "--to", arg(&dl)];
    assert_transferred(&run(&server, &get));
    server.wait_for_log_lines("connection closed", 5);
    // Up to date now: the client opened its extra connections while it
    // planned, then had no ranges to ask for; the server ends them at once
    // instead of waiting for ranges that never come.
    assert_transferred(&run(&server, &get));
    server.wait_for_log_lines(JOINED, 8);
    server.wait_for_log_lines("connection closed", 10);
}
