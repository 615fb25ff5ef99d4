//! A striped get killed part way, run again, continues from the ranges
//! that were verified, whichever connection carried them. The client is
//! killed with SIGKILL once its record of verified ranges names a few, so
//! nothing on its side tidies up.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value;

use crate::files::{arg, client, hash_file, local_dir, poll_until, write_random_file, MIB};
use crate::util::fake::parse_lines;
use crate::util::Server;

/// Big enough that a plaintext get on loopback takes a moment.
const BIG: u64 = 192 * MIB;

/// The grid ranges are cut on (`engine::ranges::RANGE_BYTES`).
const RANGE: u64 = 4 * MIB;

/// The record of verified ranges in `dir` and how many it names, once it
/// names at least one.
fn recorded(dir: &Path) -> Option<(PathBuf, usize)> {
    let path = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".ranges"))?;
    let record: Value = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
    let count = record["ranges"].as_array()?.len();
    (count > 0).then_some((path, count))
}

#[test]
fn a_killed_striped_get_continues_from_the_ranges_it_verified() {
    let server = Server::start(&["--plaintext"]);
    let hash = write_random_file(&server.root().join("big.bin"), 9, BIG);
    let dl = local_dir(&server, "dl");
    let args = [
        "get",
        "--streams",
        "4",
        "--json",
        "big.bin",
        "--to",
        arg(&dl),
    ];
    let mut process = client(&server, &args).spawn();
    poll_until(
        "a record of verified ranges",
        Duration::from_secs(60),
        || recorded(&dl),
    );
    process.signal(Signal::KILL);
    process
        .wait_within(Duration::from_secs(10))
        .expect("the killed client exits");
    assert!(!dl.join("big.bin").exists(), "nothing published");
    let (_, kept) = recorded(&dl).expect("the record is kept");
    assert!((kept as u64) < BIG / RANGE, "killed before the end");

    let rerun = client(&server, &args).run();
    rerun.assert_ok();
    let summary = parse_lines(rerun.stdout.as_bytes()).pop().unwrap();
    assert_eq!(summary["event"], "summary", "{rerun:?}");
    let resumed = summary["resumed_bytes"].as_u64().unwrap();
    let moved = summary["bytes"].as_u64().unwrap();
    assert!(
        resumed >= kept as u64 * RANGE,
        "{summary}: {kept} ranges were recorded"
    );
    assert_eq!(resumed + moved, BIG, "{summary}");
    assert_eq!(hash_file(&dl.join("big.bin")), hash);
    assert!(recorded(&dl).is_none(), "the record went with the partial");
}
