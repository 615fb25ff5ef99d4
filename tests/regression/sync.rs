//! `ferry sync` bugs, each test named after what it guards.

use std::fs;

use serde_json::json;

use crate::util::{Raw, Server};

/// A link's depth was counted from its path's raw names, so `a//up` (two
/// slashes, one directory) looked one level deeper than it is and a link
/// to `../../outside` was planted one level above the destination.
#[test]
fn a_symlink_path_with_empty_names_cannot_climb_out_of_the_destination() {
    let server = Server::start(&["--plaintext"]);
    let lines = [
        json!({"kind": "dir", "path": "a", "mode": 493, "mtime": 0}),
        json!({"kind": "symlink", "path": "a//up", "mode": 511, "mtime": 0,
               "sync": {"target": {"path": "../../outside"}}}),
        json!({"kind": "symlink", "path": "a/./up2", "mode": 511, "mtime": 0,
               "sync": {"target": {"path": "../../outside"}}}),
    ];
    let mut body = Vec::new();
    for line in lines {
        body.extend(serde_json::to_vec(&line).unwrap());
        body.push(b'\n');
    }
    let mut raw = Raw::hello(&server);
    raw.send_frame(
        &json!({"cmd": "sync", "path": "m", "push": true,
                "head": {"is_dir": true, "entries": 3, "total_bytes": 0},
                "size": body.len()}),
        &body,
    );
    assert!(raw.read_frame().is_ok());
    raw.send_frame(&json!({"end": true}), b"");
    let result = raw.read_frame();
    assert!(result.is_ok(), "{:?}", result.header);
    assert_eq!(result.header["failed"], 2, "{:?}", result.header);
    let a = server.root().join("m/a");
    assert!(
        fs::symlink_metadata(a.join("up")).is_err(),
        "planted a link out"
    );
    assert!(
        fs::symlink_metadata(a.join("up2")).is_err(),
        "planted a link out"
    );
}
