//! `cargo test` on a machine with only Rust and python3: four interop tests
//! failed there, as they needed chronyd, rdate and the Python modules
//! ntplib and blake3, which only `.ci/run` installed.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::outside_tool::{PRETEND_MISSING, REQUIRE_ALL};
use crate::util::Process;

/// The tests that needed a tool cargo cannot fetch.
const INTEROP_TESTS: &[&str] = &[
    "udp::sntp::chrony_accepts_the_server_as_a_source",
    "udp::sntp::rdate_reads_the_time",
    "udp::sntp::ntplib_measures_an_offset_under_10_ms",
    "compat::python_client::the_python_client_passes_its_tests_over_tls_and_plaintext",
    "compat::python_client::the_pure_python_blake3_agrees_with_the_blake3_module",
];

/// Long enough for the Python client's suite on a loaded machine.
const SUITE_DEADLINE: Duration = Duration::from_secs(180);

/// This test binary running [`INTEROP_TESTS`] as on a machine without the
/// tools; `require_all` sets `FERRY_REQUIRE_ALL_TESTS=1`, as `.ci/run` does.
fn run_without_the_tools(require_all: bool) -> (i32, String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(INTEROP_TESTS)
        .arg("--exact")
        .env(PRETEND_MISSING, "chronyd,rdate,ntplib,blake3")
        .env_remove(REQUIRE_ALL)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if require_all {
        cmd.env(REQUIRE_ALL, "1");
    }
    let run = Process::spawn(&mut cmd)
        .collect_within(SUITE_DEADLINE)
        .expect("the interop tests finish");
    (run.status.code().unwrap_or(-1), run.stdout, run.stderr)
}

#[test]
fn interop_tests_skip_without_their_tools_unless_all_are_required() {
    let (code, stdout, stderr) = run_without_the_tools(false);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("test result: ok. 5 passed"), "{stdout}");
    for (test, missing) in [
        ("chrony_accepts_the_server_as_a_source", "chronyd not found"),
        ("rdate_reads_the_time", "rdate not found"),
        (
            "ntplib_measures_an_offset_under_10_ms",
            "Python module ntplib not found",
        ),
        (
            "the_pure_python_blake3_agrees_with_the_blake3_module",
            "Python module blake3 not found",
        ),
    ] {
        let skipped = stderr
            .lines()
            .filter(|l| l.starts_with("SKIPPED ") && l.contains(test))
            .collect::<Vec<_>>();
        assert_eq!(skipped.len(), 1, "one line for {test}:\n{stderr}");
        assert!(skipped[0].contains(missing), "{}", skipped[0]);
    }

    let (code, stdout, _) = run_without_the_tools(true);
    assert_eq!(code, 101, "{stdout}");
    assert!(
        stdout.contains("test result: FAILED. 1 passed; 4 failed"),
        "{stdout}"
    );
}
