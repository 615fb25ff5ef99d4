//! `ferry sync` end to end: the real client against a real server, both
//! directions, with the tree snapshots of the file tests so a lost mode,
//! mtime, link or stray partial file shows up.

mod basics;
mod delete;
mod delta;
mod filter;
mod hostile;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::files::{arg, client, local_dir};
use crate::util::{Run, Server};

/// 2020-09-13 12:26:40 UTC.
pub(crate) const T1: u64 = 1_600_000_000;

/// Runs `ferry sync ARGS...` against `server`.
pub(crate) fn sync(server: &Server, args: &[&str]) -> Run {
    let mut full = vec!["sync"];
    full.extend_from_slice(args);
    client(server, &full).run()
}

/// `HOST:PATH` for `path` on `server`.
pub(crate) fn remote(server: &Server, path: &str) -> String {
    format!("{}:{path}", server.addr())
}

/// A local directory beside the server's root, and its path as an
/// argument.
pub(crate) fn local(server: &Server, name: &str) -> PathBuf {
    local_dir(server, name)
}

/// The path as an argument, with a trailing slash (`DIR/`).
pub(crate) fn slash(path: &Path) -> String {
    format!("{}/", arg(path))
}

/// The JSON records a `--json` run printed.
#[track_caller]
pub(crate) fn records(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The summary record of a `--json` run.
#[track_caller]
pub(crate) fn summary(run: &Run) -> Value {
    records(run)
        .into_iter()
        .find(|r| r["summary"] == true)
        .unwrap_or_else(|| panic!("no summary: {run:?}"))
}

/// The changes of kind `change` a `--json` run reported, by path.
pub(crate) fn changed(run: &Run, change: &str) -> Vec<String> {
    let mut paths: Vec<String> = records(run)
        .into_iter()
        .filter(|r| r["change"] == change)
        .map(|r| r["path"].as_str().unwrap_or_default().to_string())
        .collect();
    paths.sort();
    paths
}
