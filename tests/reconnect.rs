//! Transfers that survive a dropped or stalled connection (issue #15): a
//! `get` or `put` through a proxy that cuts or stalls its connection
//! reconnects by itself, goes on from the verified prefix, and says so
//! with `-v` and `--json`; one that keeps failing gives up after
//! `--retries` reconnects naming what it did not deliver. Over TCP
//! ([`crate::util::Proxy`]) and QUIC ([`crate::util::UdpRelay`]).

mod quic;
mod tcp;

use serde_json::Value;

use crate::util::Run;

/// The `--json` records of a run with `"event": event`.
fn records(run: &Run, event: &str) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .filter(|record| record["event"] == event)
        .collect()
}

/// The offsets of the `resumed NAME at BYTES` lines for `name` on stderr.
fn resumed_at(run: &Run, name: &str) -> Vec<u64> {
    let prefix = format!("ferry: resumed {name} at ");
    run.stderr
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        .collect()
}

/// How many `reconnected (attempt ...)` lines a run printed.
fn reconnects(run: &Run) -> usize {
    run.stderr
        .lines()
        .filter(|line| line.starts_with("ferry: reconnected (attempt "))
        .count()
}
