//! Hostile extra connections, frame by frame: a range outside the file, a
//! second copy of a verified range with other bytes, a range whose hash
//! does not match, and a ticket replayed once its transfer is done. Each is
//! refused, nothing is published, and the range verified before it stays
//! recorded beside the partial, so the next run sends only the rest.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::files::{arg, client, random_bytes, write_file, MIB};
use crate::util::{Raw, Server};

/// The grid ranges are cut on (`engine::ranges::RANGE_BYTES`).
const RANGE: usize = 4 * MIB as usize;

/// The mtime the test file is given and listed with.
const MTIME: u64 = 1_000_000_000;

/// A put of one 3-range file, `up/big.bin`, asked for over two streams,
/// spoken frame by frame: its first connection and one extra connection.
struct StripedPut {
    first: Raw,
    extra: Raw,
    ticket: String,
    data: Vec<u8>,
}

impl StripedPut {
    fn start(server: &Server) -> StripedPut {
        let data = random_bytes(7, 3 * RANGE);
        let line = json!({
            "kind": "file", "path": "big.bin", "file_size": data.len(),
            "mode": 0o644, "mtime": MTIME, "mtime_ns": 123_456_789,
        });
        let manifest = format!("{line}\n");
        let mut first = Raw::hello(server);
        let put = json!({
            "cmd": "put", "path": "up", "resume": true, "preserve": true, "streams": 2,
            "size": manifest.len(),
        });
        first.send_frame(&put, manifest.as_bytes());
        let wants = first.read_frame();
        assert!(wants.is_ok(), "{wants:?}");
        let body = String::from_utf8(wants.body.clone()).unwrap();
        assert!(body.contains("\"action\":\"stripe\""), "{body}");
        let ticket = wants.header["ticket"]
            .as_str()
            .expect("a ticket")
            .to_string();
        let extra = join(server, &ticket);
        StripedPut {
            first,
            extra,
            ticket,
            data,
        }
    }

    /// Sends the range at `offset` with `bytes` and says their hash is
    /// `hash`.
    fn send_range(&mut self, offset: usize, bytes: &[u8], hash: &str) {
        let head = json!({"range": 0, "offset": offset, "size": bytes.len()});
        self.extra.send_frame(&head, bytes);
        let end = json!({"range_end": 0, "offset": offset, "blake3": hash});
        self.extra.send_frame(&end, b"");
    }

    /// Sends the range at `offset` as it is.
    fn send_true_range(&mut self, offset: usize) {
        let bytes = self.data[offset..offset + RANGE].to_vec();
        let hash = blake3::hash(&bytes).to_hex().to_string();
        self.send_range(offset, &bytes, &hash);
    }

    /// Ends the first connection's data and reads the put's result.
    fn finish(self) -> Value {
        finish(self.first, &self.data)
    }
}

/// Ends a striped put's first connection's data (the file's whole hash,
/// then the end) and reads the put's result.
fn finish(mut first: Raw, data: &[u8]) -> Value {
    let whole = blake3::hash(data).to_hex().to_string();
    first.send_frame(&json!({"file_end": 0, "blake3": whole}), b"");
    first.send_frame(&json!({"end": true}), b"");
    let result = first.read_frame();
    assert!(result.is_ok(), "{result:?}");
    Value::Object(result.header)
}

/// An extra connection that says hello with `ticket`, welcomed.
fn join(server: &Server, ticket: &str) -> Raw {
    let mut raw = Raw::connect(server.addr());
    raw.send_frame(
        &json!({"cmd": "hello", "version": 1, "ticket": ticket}),
        b"",
    );
    let welcome = raw.read_frame();
    assert!(welcome.is_ok(), "{welcome:?}");
    raw
}

/// The record of verified ranges beside the partial in `dir`: their offsets.
fn recorded_offsets(dir: &Path) -> Vec<u64> {
    let record: PathBuf = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".ranges"))
        .expect("a record of verified ranges");
    let record: Value = serde_json::from_slice(&fs::read(record).unwrap()).unwrap();
    record["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|range| range[0].as_u64().unwrap())
        .collect()
}

/// Runs a hostile range after a good one and checks what must hold: the
/// range refused, nothing published, the good range kept, the ticket dead.
fn refused_after_a_good_range(hostile: impl FnOnce(&mut StripedPut), why: &str) {
    let server = Server::start(&["--plaintext"]);
    let mut put = StripedPut::start(&server);
    put.send_true_range(0);
    hostile(&mut put);
    let message = put.extra.expect_error("bad_request");
    assert!(message.contains(why), "{message}");
    put.extra.expect_closed();
    let ticket = put.ticket.clone();
    let data = put.data.clone();
    let result = put.finish();
    assert_eq!(result["failed"], 1, "{result}");
    assert_eq!(result["files"], 0, "{result}");
    let up = server.root().join("up");
    assert!(!up.join("big.bin").exists(), "nothing published");
    assert_eq!(recorded_offsets(&up), [0], "the verified range is kept");

    // The transfer is done: its ticket lets no one else in.
    let mut replay = Raw::connect(server.addr());
    replay.send_frame(
        &json!({"cmd": "hello", "version": 1, "ticket": ticket}),
        b"",
    );
    replay.expect_error("bad_token");

    // A rerun sends only the two ranges that were not verified.
    let local = server.sandbox.path().join("big.bin");
    write_file(&local, &data, 0o644, MTIME);
    let rerun = client(
        &server,
        &["put", "--json", "--streams", "2", arg(&local), "--to", "up"],
    )
    .run();
    rerun.assert_ok();
    let summary = rerun.stdout.lines().last().unwrap_or_default();
    let summary: Value = serde_json::from_str(summary).unwrap();
    assert_eq!(summary["bytes"], 2 * RANGE, "{summary}");
    assert_eq!(fs::read(up.join("big.bin")).unwrap(), data);
}

#[test]
fn a_range_outside_the_file_is_refused_and_the_verified_ones_kept() {
    refused_after_a_good_range(
        |put| {
            let past_the_end = 3 * RANGE;
            put.send_range(past_the_end, b"x", &blake3::hash(b"x").to_hex());
        },
        "is not a range of this",
    );
}

#[test]
fn a_verified_range_sent_again_with_other_bytes_is_refused() {
    refused_after_a_good_range(
        |put| {
            let other = vec![0x55u8; RANGE];
            put.send_range(0, &other, &blake3::hash(&other).to_hex());
        },
        "overlaps one already verified with different bytes",
    );
}

#[test]
fn a_range_whose_hash_does_not_match_is_refused() {
    refused_after_a_good_range(
        |put| {
            let bytes = put.data[RANGE..2 * RANGE].to_vec();
            put.send_range(RANGE, &bytes, &blake3::hash(b"other").to_hex());
        },
        "does not match its BLAKE3",
    );
}

#[test]
fn a_made_up_ticket_is_refused_like_a_wrong_token_and_penalised() {
    let server = Server::start(&["--plaintext", "--penalize-loopback"]);
    let mut raw = Raw::connect(server.addr());
    let made_up = "ab".repeat(32);
    raw.send_frame(
        &json!({"cmd": "hello", "version": 1, "ticket": made_up}),
        b"",
    );
    let message = raw.expect_error("bad_token");
    assert!(message.contains("is now refused for"), "{message}");
    server.wait_for_log("refused: unknown or used-up ticket");
}

#[test]
fn a_ticket_admits_one_connection_per_stream_and_a_replay_past_them_is_refused() {
    let server = Server::start(&["--plaintext"]);
    let put = StripedPut::start(&server);
    // Two streams were granted: the start's connection and this one.
    let second = join(&server, &put.ticket);
    let mut replay = Raw::connect(server.addr());
    replay.send_frame(
        &json!({"cmd": "hello", "version": 1, "ticket": put.ticket}),
        b"",
    );
    replay.expect_error("bad_token");
    replay.expect_closed();
    // Both streams end without a range: the file cannot be finished.
    let StripedPut {
        first, extra, data, ..
    } = put;
    drop((extra, second));
    let result = finish(first, &data);
    assert_eq!(result["failed"], 1, "{result}");
    assert!(
        !server.root().join("up/big.bin").exists(),
        "nothing published"
    );
}
