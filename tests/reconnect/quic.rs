//! A QUIC connection whose path goes quiet, through [`UdpRelay`]: the
//! client counts it stalled, connects again (a new UDP port, so a new
//! flow the relay lets through) and finishes the file exactly.

use std::fs;

use super::resumed_at;
use crate::files::{arg, hash_file, local_dir, write_random_file, MIB};
use crate::quic::{quic_addr, quic_server};
use crate::util::UdpRelay;

#[test]
fn a_get_over_quic_whose_path_goes_quiet_reconnects_and_completes() {
    const SIZE: u64 = 4 * MIB;
    let server = quic_server(&[]);
    let hash = write_random_file(&server.root().join("big.bin"), 17, SIZE);
    let relay = UdpRelay::start(quic_addr(&server), MIB);
    let dl = local_dir(&server, "dl");
    let run = server
        .client(&[
            "get",
            "-v",
            "--stall-timeout",
            "1s",
            "big.bin",
            "--to",
            arg(&dl),
        ])
        .env("FERRY_SERVER", format!("quic://{}", relay.addr()))
        .run();
    run.assert_ok()
        .assert_stderr_contains("ferry: stalled: no progress for 1s")
        .assert_stderr_contains("ferry: reconnected (attempt 1 of 5)");
    assert_eq!(
        hash_file(&dl.join("big.bin")),
        hash,
        "the file is not exact"
    );
    assert_eq!(relay.flows(), 2);
    let at = resumed_at(&run, "big.bin");
    assert!(
        matches!(at[..], [offset] if offset > 0 && offset < SIZE),
        "{at:?}"
    );
    assert!(
        fs::read_dir(&dl).unwrap().count() == 1,
        "a partial was left"
    );
}
