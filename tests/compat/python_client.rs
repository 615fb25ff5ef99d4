//! `clients/python/ferry_client.py` against real servers: its unittest
//! suite runs with the machine's python3 against a TLS server and a
//! plaintext one, and this test fails if any Python test fails or skips.

use std::path::Path;

use super::python;
use crate::util::Server;

#[test]
fn the_python_client_passes_its_tests_over_tls_and_plaintext() {
    let tls = Server::start(&["--allow-exec"]);
    let plain = Server::start(&["--plaintext", "--allow-exec"]);
    assert_eq!(tls.listening()[0].mode, "TLS");
    assert_eq!(plain.listening()[0].mode, "plaintext");
    let port = |server: &Server| server.addr().rsplit_once(':').unwrap().1.to_string();
    let client_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let (tls_port, plain_port) = (port(&tls), port(&plain));
    let (tls_token, plain_token) = (tls.token(), plain.token());
    let tls_root = tls.root().display().to_string();
    let plain_root = plain.root().display().to_string();
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
        ],
    );
    assert_eq!(
        run.code, 0,
        "the Python client's tests failed:\n{}",
        run.stderr
    );
    // unittest reports on stderr: every test ran, none was skipped.
    let last = run.stderr.lines().rev().find(|l| !l.trim().is_empty());
    assert_eq!(last, Some("OK"), "{}", run.stderr);
    let ran = run
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .expect("a `Ran N tests` line");
    assert!(ran >= 28, "only {ran} Python tests ran:\n{}", run.stderr);
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
