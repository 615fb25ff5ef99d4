//! Tools that cargo cannot fetch (chronyd, rdate, Python modules), which
//! interop tests drive to check ferry against software nobody here wrote.
//!
//! `cargo test` must pass on a machine with only Rust and python3, so a test
//! whose tool is missing says so in one line on stderr and passes:
//!
//! ```text
//! SKIPPED udp::sntp::rdate_reads_the_time: rdate not found (apt install rdate; .ci/run installs it)
//! ```
//!
//! `.ci/run` installs every such tool and sets [`REQUIRE_ALL`], under which
//! the same line fails the test instead, so CI runs them all. The variable
//! is read by the test process itself: the harness clears `FERRY_*` only
//! for the processes it starts. [`PRETEND_MISSING`] shows a test what a
//! machine without some tools would, where they are installed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Set to `1` (by `.ci/run`), a missing tool fails its test.
pub const REQUIRE_ALL: &str = "FERRY_REQUIRE_ALL_TESTS";

/// Tools and Python modules to treat as missing, comma-separated: how a
/// regression test runs the suite as on a machine without them.
pub const PRETEND_MISSING: &str = "FERRY_TEST_PRETEND_MISSING";

/// Said of every tool a test can skip without: CI runs the test.
const CI_INSTALLS: &str = ".ci/run installs it";

/// Directories searched besides `PATH`: chronyd and rdate live in sbin,
/// which is not on every user's `PATH`.
const SBIN: &[&str] = &["/usr/sbin", "/sbin"];

/// The program `name` from `PATH` or sbin; `None` after reporting the
/// running test skipped (or failing it, under [`REQUIRE_ALL`]), with
/// `install` as the way to get it.
#[track_caller]
pub fn program(name: &str, install: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .filter(|_| !pretended_missing(name));
    if found.is_none() {
        skip(
            &format!("{name} not found"),
            &format!("{install}; {CI_INSTALLS}"),
        );
    }
    found
}

/// Whether python3 can import `module`; `false` after reporting the running
/// test skipped (or failing it, under [`REQUIRE_ALL`]).
#[track_caller]
pub fn python_module(module: &str, install: &str) -> bool {
    let found = python_has(module);
    if !found {
        skip(
            &format!("Python module {module} not found"),
            &format!("{install}; {CI_INSTALLS}"),
        );
    }
    found
}

/// Whether python3 can import `module`, reporting nothing: for a test that
/// runs either way and only expects less of Python without it.
pub fn python_has(module: &str) -> bool {
    !pretended_missing(module)
        && Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run python3 (cargo test needs it: apt install python3)")
            .success()
}

fn pretended_missing(name: &str) -> bool {
    std::env::var(PRETEND_MISSING).is_ok_and(|names| names.split(',').any(|n| n == name))
}

/// A directory to put first on `PYTHONPATH` so that python3 cannot import
/// the modules [`PRETEND_MISSING`] names (each is a module that raises
/// `ImportError`); `None` when it names none. Removed when dropped.
pub fn python_path_hiding_modules() -> Option<tempfile::TempDir> {
    let names = std::env::var(PRETEND_MISSING).ok()?;
    let dir = tempfile::Builder::new()
        .prefix("ferry-hidden-modules-")
        .tempdir()
        .unwrap();
    for module in names.split(',').filter(|n| !n.is_empty()) {
        let hider = format!("raise ImportError('{module} is hidden by {PRETEND_MISSING}')\n");
        std::fs::write(dir.path().join(format!("{module}.py")), hider).unwrap();
    }
    Some(dir)
}

/// Reports the running test skipped because `missing`, in one line on
/// stderr that ends with `how` to get it to run, or fails it under
/// [`REQUIRE_ALL`].
#[track_caller]
pub fn skip(missing: &str, how: &str) {
    let line = skip_line(&running_test(), missing, how);
    let required = std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1");
    // Straight to stderr: libtest captures `eprintln!` of a passing test,
    // and this line must be seen.
    skip_or_fail(required, &line, &mut std::io::stderr());
}

/// The test's path as libtest names its thread, e.g.
/// `udp::sntp::rdate_reads_the_time`.
fn running_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this test".to_string(),
    }
}

fn skip_line(test: &str, missing: &str, how: &str) -> String {
    format!("SKIPPED {test}: {missing} ({how})")
}

/// Writes `line` to `out`, or fails the test with it when `required`.
#[track_caller]
fn skip_or_fail(required: bool, line: &str, out: &mut impl Write) {
    if required {
        panic!("{line}, and {REQUIRE_ALL}=1 requires every test to run");
    }
    // One write, so no other test's output splits the line.
    let _ = out.write_all(format!("{line}\n").as_bytes());
}

#[test]
fn a_missing_tool_is_one_skipped_line_or_a_failure_when_all_are_required() {
    let line = skip_line(
        "udp::sntp::rdate_reads_the_time",
        "rdate not found",
        "apt install rdate; .ci/run installs it",
    );
    assert_eq!(
        line,
        "SKIPPED udp::sntp::rdate_reads_the_time: rdate not found \
         (apt install rdate; .ci/run installs it)"
    );
    let mut stderr = Vec::new();
    skip_or_fail(false, &line, &mut stderr);
    assert_eq!(String::from_utf8(stderr).unwrap(), format!("{line}\n"));
    let failure =
        std::panic::catch_unwind(|| skip_or_fail(true, &line, &mut Vec::new())).unwrap_err();
    let message = failure.downcast_ref::<String>().expect("a formatted panic");
    assert!(message.starts_with(&line), "{message}");
    assert!(message.contains("FERRY_REQUIRE_ALL_TESTS=1"), "{message}");
}

#[test]
fn the_skipped_line_names_the_running_test() {
    assert_eq!(
        running_test(),
        "util::outside_tool::the_skipped_line_names_the_running_test"
    );
}

#[test]
fn a_tool_that_is_present_is_found_and_reports_nothing() {
    // `sh` is on every machine that can run this suite.
    let sh = program("sh", "apt install dash").expect("sh is found");
    assert!(sh.ends_with("sh") && sh.is_file());
    assert!(python_module("json", "it comes with Python"));
}
