//! `clients/python/ferry_client.py` against real servers: its unittest
//! suite runs with the machine's python3 against a TLS server and a
//! plaintext one, and this test fails if any Python test fails or skips,
//! but for the one that needs the blake3 module when it is missing. The
//! pure-Python BLAKE3 is always checked against the Rust blake3 crate; the
//! check against the module is a test of its own, skipped without it.

use std::path::{Path, PathBuf};

use super::python;
use crate::util::{outside_tool, Server};

/// The Python test that needs the blake3 module, and skips without it.
const MODULE_TEST: &str =
    "test_ferry_client.PureBlake3.test_agrees_with_the_module_across_block_chunk_and_tree_edges";

/// Lengths around BLAKE3's block (64), chunk (1024) and tree edges, as the
/// Python test's `PureBlake3.EDGES` lists them.
const BLAKE3_EDGES: &[usize] = &[
    1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3072, 4097, 8193, 16384, 31745,
];

/// `LENGTH=HEX` pairs: the Rust crate's BLAKE3 of the Python test's
/// `edge_data(LENGTH)` at each edge.
fn blake3_vectors() -> String {
    BLAKE3_EDGES
        .iter()
        .map(|&n| {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            format!("{n}={}", blake3::hash(&data).to_hex())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python")
}

/// unittest's count of tests run, from its `Ran N tests` line.
fn tests_ran(stderr: &str) -> u32 {
    stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .expect("a `Ran N tests` line")
}

#[test]
fn the_python_client_passes_its_tests_over_tls_and_plaintext() {
    let tls = Server::start(&["--allow-exec"]);
    let plain = Server::start(&["--plaintext", "--allow-exec"]);
    assert_eq!(tls.listening()[0].mode, "TLS");
    assert_eq!(plain.listening()[0].mode, "plaintext");
    let port = |server: &Server| server.addr().rsplit_once(':').unwrap().1.to_string();
    let client_dir = client_dir();
    let (tls_port, plain_port) = (port(&tls), port(&plain));
    let (tls_token, plain_token) = (tls.token(), plain.token());
    let tls_root = tls.root().display().to_string();
    let plain_root = plain.root().display().to_string();
    let vectors = blake3_vectors();
    let run = python(
        &client_dir,
        &["-m", "unittest", "discover", "-v", "-s", "tests"],
        &[
            ("PYTHONPATH", client_dir.to_str().unwrap()),
            ("FERRY_TEST_HOST", "127.0.0.1"),
            ("FERRY_TEST_TLS_PORT", &tls_port),
            ("FERRY_TEST_TOKEN", &tls_token),
            ("FERRY_TEST_FINGERPRINT", tls.fingerprint()),
            ("FERRY_TEST_TLS_ROOT", &tls_root),
            ("FERRY_TEST_PLAIN_PORT", &plain_port),
            ("FERRY_TEST_PLAIN_TOKEN", &plain_token),
            ("FERRY_TEST_PLAIN_ROOT", &plain_root),
            ("FERRY_TEST_BLAKE3_VECTORS", &vectors),
        ],
    );
    assert_eq!(
        run.code, 0,
        "the Python client's tests failed:\n{}",
        run.stderr
    );
    // unittest reports on stderr: every test ran, and none was skipped but
    // the one that needs the blake3 module, when it is missing (the test
    // below reports that skip).
    let last = run.stderr.lines().rev().find(|l| !l.trim().is_empty());
    let skips: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" ... skipped"))
        .collect();
    if outside_tool::python_has("blake3") {
        assert_eq!(last, Some("OK"), "{}", run.stderr);
    } else {
        assert_eq!(last, Some("OK (skipped=1)"), "{}", run.stderr);
        let method = MODULE_TEST.rsplit('.').next().unwrap();
        assert!(
            skips.len() == 1 && skips[0].starts_with(method),
            "{skips:?}"
        );
    }
    let ran = tests_ran(&run.stderr);
    assert!(ran >= 29, "only {ran} Python tests ran:\n{}", run.stderr);
    // The client with the wrong pin never sent its token: the only bad
    // token the TLS server saw is the one a test sent on purpose.
    tls.wait_for_log("wrong access token");
    let refused = tls
        .log()
        .iter()
        .filter(|l| l.contains("wrong access token"))
        .count();
    assert_eq!(refused, 1);
}

#[test]
fn the_pure_python_blake3_agrees_with_the_blake3_module() {
    if !outside_tool::python_module("blake3", "pip install blake3") {
        return;
    }
    let client_dir = client_dir();
    let run = python(
        &client_dir.join("tests"),
        &["-m", "unittest", "-v", MODULE_TEST],
        &[("PYTHONPATH", client_dir.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let last = run.stderr.lines().rev().find(|l| !l.trim().is_empty());
    assert_eq!(last, Some("OK"), "{}", run.stderr);
    assert_eq!(tests_ran(&run.stderr), 1, "{}", run.stderr);
}
