//! The client trusts the server no more than the server trusts it. A fake
//! server, written here from PROTOCOL.md on a plain TCP socket, answers the
//! real client with what a hostile or broken server might send: files named
//! outside the request, data that does not match its hash, data nobody
//! asked for, and control characters in names and messages.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use serde_json::{json, Map, Value};

use super::{arg, assert_failed, names_in, partials_under, tree, Outside};
use crate::util::{frame_bytes, Invocation, Run, Sandbox, DEADLINE};

/// One connection to the fake server, from its side.
struct Peer {
    stream: TcpStream,
}

impl Peer {
    /// Reads one frame; `None` when the client has closed the connection.
    fn read(&mut self) -> Option<(Map<String, Value>, Vec<u8>)> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
        self.stream.read_exact(&mut header).ok()?;
        let header: Map<String, Value> = serde_json::from_slice(&header).ok()?;
        let size = header.get("size").and_then(Value::as_u64).unwrap_or(0);
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some((header, body))
    }

    /// Reads one frame; panics if the client closed instead.
    #[track_caller]
    fn expect(&mut self) -> (Map<String, Value>, Vec<u8>) {
        self.read().expect("the client closed the connection early")
    }

    /// Sends one frame, with `size` set from `body`. Errors are ignored: the
    /// test judges the client by what it did, not by whether it listened.
    fn send(&mut self, mut header: Value, body: &[u8]) {
        if !body.is_empty() {
            header["size"] = json!(body.len());
        }
        let _ = self.stream.write_all(&frame_bytes(&header, body));
    }

    /// Answers the client's hello with a welcome.
    fn hello(&mut self) {
        let (hello, _) = self.expect();
        assert_eq!(hello["cmd"], "hello", "{hello:?}");
        self.send(
            json!({"ok": true, "version": 1, "server": "fake",
                   "services": ["echo", "get", "put", "ls", "stat", "mkdir", "rm"]}),
            b"",
        );
    }

    /// Answers a `get` with `entries` as its manifest; returns the request.
    fn manifest(&mut self, entries: &[Value]) -> Map<String, Value> {
        let (request, _) = self.expect();
        assert_eq!(request["cmd"], "get", "{request:?}");
        let total: u64 = entries
            .iter()
            .map(|e| e["file_size"].as_u64().unwrap_or(0))
            .sum();
        let header = json!({"ok": true, "entries": entries.len(), "total_bytes": total,
                            "skipped": 0});
        self.send(header, &json_lines(entries));
        request
    }

    /// Reads the client's wants, one JSON object per entry.
    fn wants(&mut self) -> Vec<Value> {
        let (header, body) = self.expect();
        assert_eq!(header["wants"], true, "{header:?}");
        parse_lines(&body)
    }

    /// Sends file `i` with `data`, claiming BLAKE3 `claimed`.
    fn file(&mut self, i: usize, data: &[u8], claimed: &blake3::Hash) {
        self.send(json!({"file": i, "offset": 0, "size": data.len()}), data);
        self.send(
            json!({"file_end": i, "blake3": claimed.to_hex().as_str()}),
            b"",
        );
    }

    /// Ends the data phase.
    fn end(&mut self) {
        self.send(json!({"end": true}), b"");
    }
}

fn json_lines(items: &[Value]) -> Vec<u8> {
    items
        .iter()
        .flat_map(|item| {
            let mut line = serde_json::to_vec(item).unwrap();
            line.push(b'\n');
            line
        })
        .collect()
}

fn parse_lines(body: &[u8]) -> Vec<Value> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A manifest line for a file.
fn file_entry(path: &str, size: usize, mtime: i64) -> Value {
    json!({"kind": "file", "path": path, "file_size": size, "mode": 0o644, "mtime": mtime})
}

/// A fake server on 127.0.0.1 that serves `connections` connections one
/// after another, each with `script`, then waits for the client to close.
struct Fake {
    addr: String,
    thread: JoinHandle<()>,
}

impl Fake {
    fn start(connections: usize, script: impl Fn(&mut Peer) + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let script = Arc::new(script);
        let thread = thread::spawn(move || {
            for _ in 0..connections {
                let (stream, _) = listener.accept().unwrap();
                stream.set_read_timeout(Some(DEADLINE)).unwrap();
                let mut peer = Peer { stream };
                script(&mut peer);
                while peer.read().is_some() {}
            }
        });
        Fake { addr, thread }
    }

    /// The real client against this fake, in `sandbox`, with any token.
    fn client(&self, sandbox: &Sandbox, args: &[&str]) -> Run {
        let mut full = vec!["--plaintext", "--server", &self.addr, "--token", "x"];
        full.extend_from_slice(args);
        Invocation::new(sandbox, &full).run()
    }

    /// Waits for the script to finish, failing the test if it panicked.
    fn join(self) {
        self.thread.join().expect("the fake server's script failed");
    }
}

/// A sandbox with an empty `dl/` for the client and victims beside it.
fn sandbox() -> (Arc<Sandbox>, PathBuf, Outside) {
    let sandbox = Sandbox::new();
    let dl = sandbox.path().join("dl");
    fs::create_dir(&dl).unwrap();
    let outside = Outside::create_in(sandbox.path());
    (sandbox, dl, outside)
}

#[test]
fn a_get_manifest_naming_anything_but_the_requested_name_is_a_protocol_error() {
    let (sandbox, dl, outside) = sandbox();
    let victim = arg(&outside.victim()).to_string();
    for name in [
        "../escape",
        "../outside/victim",
        &victim,
        "other-name",
        "namex",
        ".bashrc",
    ] {
        let entries = [file_entry(name, 4, 0)];
        let shown = name.to_string();
        let fake = Fake::start(1, move |peer| {
            peer.hello();
            peer.manifest(&entries);
            // A client that went on would send its wants now; this one
            // must hang up instead.
            assert!(peer.read().is_none(), "the client went on with {shown:?}");
        });
        let run = fake.client(&sandbox, &["get", "name", "--to", arg(&dl)]);
        fake.join();
        assert_failed(&run, 3, &["broke the protocol"]);
        assert!(names_in(&dl).is_empty(), "{name:?}: {:?}", tree(&dl));
        outside.assert_untouched();
    }
}

#[test]
fn manifest_entries_that_climb_out_of_the_destination_are_refused_even_when_sent() {
    let (sandbox, dl, outside) = sandbox();
    for requested in ["name", "."] {
        let prefix = if requested == "." { "" } else { "name/" };
        let mut entries = vec![
            file_entry(&format!("{prefix}../../escape"), 4, 0),
            file_entry(&format!("{prefix}ok"), 4, 0),
        ];
        if requested == "." {
            entries.push(file_entry("/abs-escape", 4, 0));
            entries.push(file_entry(arg(&outside.victim()), 4, 0));
        } else {
            entries.insert(
                0,
                json!({"kind": "dir", "path": "name", "mode": 0o755, "mtime": 0}),
            );
        }
        let fake = Fake::start(1, move |peer| {
            peer.hello();
            peer.manifest(&entries);
            let wants = peer.wants();
            let files = entries.iter().filter(|e| e["kind"] == "file").count();
            assert_eq!(wants.len(), files, "one answer per file: {wants:?}");
            for want in &wants {
                let i = want["i"].as_u64().unwrap() as usize;
                let wanted = entries[i]["path"].as_str().unwrap().ends_with("ok");
                let action = if wanted { "send" } else { "refuse" };
                assert_eq!(want["action"], action, "{want} for {}", entries[i]);
            }
            // Every file, the refused ones too.
            for (i, entry) in entries.iter().enumerate() {
                if entry["kind"] == "file" {
                    peer.file(i, b"evil", &blake3::hash(b"evil"));
                }
            }
            peer.end();
        });
        let run = fake.client(&sandbox, &["get", "-r", requested, "--to", arg(&dl)]);
        fake.join();
        assert_failed(&run, 1, &[]);
        let ok = if requested == "." {
            dl.join("ok")
        } else {
            dl.join("name/ok")
        };
        assert_eq!(
            fs::read(&ok).unwrap(),
            b"evil",
            "the one good entry arrived"
        );
        fs::remove_file(&ok).unwrap();
        outside.assert_untouched();
    }
}

#[test]
fn a_file_whose_data_does_not_hash_to_its_claimed_blake3_is_not_kept() {
    let (sandbox, dl, outside) = sandbox();
    let data = b"tampered in transit";
    let claimed = blake3::hash(b"what the server hashed");
    let entries = [file_entry("name", data.len(), 1_600_000_000)];
    let fake = Fake::start(2, move |peer| {
        peer.hello();
        peer.manifest(&entries);
        peer.wants();
        peer.file(0, data, &claimed);
        peer.end();
    });

    let run = fake.client(&sandbox, &["get", "name", "--to", arg(&dl)]);
    assert_failed(&run, 1, &["checksum"]);
    assert!(names_in(&dl).is_empty(), "{:?}", tree(&dl));

    // Over an existing file, with --force: the old file stays.
    fs::write(dl.join("name"), b"old").unwrap();
    let run = fake.client(&sandbox, &["get", "--force", "name", "--to", arg(&dl)]);
    fake.join();
    assert_failed(&run, 1, &["checksum"]);
    assert_eq!(
        names_in(&dl),
        ["name"],
        "no partial left: {:?}",
        partials_under(&dl)
    );
    assert_eq!(fs::read(dl.join("name")).unwrap(), b"old");
    outside.assert_untouched();
}

#[test]
fn a_file_the_client_did_not_ask_for_is_not_written() {
    let (sandbox, dl, outside) = sandbox();
    fs::write(dl.join("name"), b"mine").unwrap();
    super::set_mtime(&dl.join("name"), 1_600_000_000);
    let mtime = 1_600_000_000;
    let entries = [
        json!({"kind": "file", "path": "name", "file_size": 4, "mode": 0o644,
                          "mtime": mtime, "mtime_ns": 123_456_789}),
    ];
    let fake = Fake::start(1, move |peer| {
        peer.hello();
        peer.manifest(&entries);
        let wants = peer.wants();
        assert_eq!(wants, [json!({"i": 0, "action": "skip"})]);
        peer.file(0, b"evil", &blake3::hash(b"evil"));
        peer.end();
    });
    let run = fake.client(&sandbox, &["get", "name", "--to", arg(&dl)]);
    fake.join();
    assert_eq!(fs::read(dl.join("name")).unwrap(), b"mine", "{run:?}");
    assert_ne!(run.code, 0, "{run:?}");
    outside.assert_untouched();
}

#[test]
fn control_characters_from_the_server_never_reach_the_terminal_raw() {
    let sandbox = Sandbox::new();
    let names = ["\u{1b}[31mred", "bell\u{7}", "two\nlines", "csi\u{9b}2J"];
    let entries: Vec<Value> = names
        .iter()
        .map(|n| json!({"path": n, "kind": "file", "file_size": 1, "mode": 0o644, "mtime": 0}))
        .collect();
    let fake = Fake::start(4, move |peer| {
        peer.hello();
        let (request, _) = peer.expect();
        if request["cmd"] == "ls" {
            peer.send(
                json!({"ok": true, "entries": entries.len()}),
                &json_lines(&entries),
            );
        } else {
            peer.send(
                json!({"ok": false, "code": "not_found",
                       "message": "\u{1b}]0;pwned\u{7}\u{1b}[2J gone"}),
                b"",
            );
        }
    });
    let raw_control = |text: &str| text.chars().any(|c| c.is_control() && c != '\n');

    for args in [vec!["ls"], vec!["ls", "-l"]] {
        let run = fake.client(&sandbox, &args);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(!raw_control(&run.stdout), "{args:?}: {:?}", run.stdout);
        assert_eq!(
            run.stdout.lines().count(),
            names.len(),
            "no forged lines: {run:?}"
        );
    }
    // JSON escapes C0 controls and keeps every name exactly.
    let run = fake.client(&sandbox, &["ls", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !run.stdout.contains(['\u{1b}', '\u{7}']),
        "{:?}",
        run.stdout
    );
    let listed: Vec<Value> = parse_lines(run.stdout.as_bytes());
    let listed: Vec<&str> = listed.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(listed, names);

    let run = fake.client(&sandbox, &["stat", "x"]);
    fake.join();
    assert_failed(&run, 1, &["gone"]);
    assert!(!raw_control(&run.stderr), "{:?}", run.stderr);
}
