//! The upload page's BLAKE3 (`src/server/http/assets/blake3.js`) against
//! the Rust crate, run by node: every length around a block, a chunk and
//! the tree's levels, and input fed in pieces that cut blocks anywhere, as
//! the page feeds a file. A wrong hash in the browser would make every
//! upload fail its check, so it is held to the crate here, apart from the
//! browser test. Without node the test says SKIPPED (and fails under
//! `FERRY_REQUIRE_ALL_TESTS=1`).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::outside_tool;

const SCRIPT: &str = include_str!("../../src/server/http/assets/blake3.js");

/// The official test vectors' input: byte i is i mod 251.
fn input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn the_pages_blake3_matches_the_crate() {
    let Some(node) = outside_tool::program("node", "apt install nodejs") else {
        return;
    };
    let lengths = [
        0usize,
        1,
        63,
        64,
        65,
        127,
        128,
        1023,
        1024,
        1025,
        2047,
        2048,
        2049,
        3072,
        3073,
        4096,
        4097,
        5120,
        8192,
        8193,
        16384,
        31744,
        102_400,
        1 << 20,
        (1 << 20) + 7,
    ];
    // Each length hashed whole, then fed in pieces of 1, 63 and 1000 bytes.
    let harness = format!(
        "{SCRIPT}\nconst lengths = {lengths:?};\n\
         for (const n of lengths) {{\n\
           const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = i % 251;\n\
           const pieces = [1, 63, 1000].map((step) => {{\n\
             const h = new FerryBlake3.Hasher();\n\
             for (let at = 0; at < n && n <= 8193; at += step) h.update(b.subarray(at, at + step));\n\
             return n <= 8193 ? h.hex() : FerryBlake3.hex(b);\n\
           }});\n\
           console.log(n, FerryBlake3.hex(b), pieces.join(' '));\n\
         }}\n"
    );
    let mut child = Command::new(node)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(harness.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), lengths.len(), "{text}");
    for (line, len) in lines.iter().zip(lengths) {
        let want = blake3::hash(&input(len)).to_hex().to_string();
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], len.to_string());
        for got in &fields[1..] {
            assert_eq!(*got, want, "length {len}");
        }
    }
}
