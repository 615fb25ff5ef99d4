//! A fake ferry server, written from PROTOCOL.md on a plain TCP socket, so a
//! test can answer the real client with what a hostile or broken server
//! might send.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use serde_json::{json, Map, Value};

use super::{frame_bytes, Invocation, Run, Sandbox, DEADLINE};

/// One connection to the fake server, from its side.
pub struct Peer {
    stream: TcpStream,
}

impl Peer {
    /// Reads one frame; `None` when the client has closed the connection.
    pub fn read(&mut self) -> Option<(Map<String, Value>, Vec<u8>)> {
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
    pub fn expect(&mut self) -> (Map<String, Value>, Vec<u8>) {
        self.read().expect("the client closed the connection early")
    }

    /// Sends one frame, with `size` set from `body`. Errors are ignored: the
    /// test judges the client by what it did, not by whether it listened.
    pub fn send(&mut self, mut header: Value, body: &[u8]) {
        if !body.is_empty() {
            header["size"] = json!(body.len());
        }
        let _ = self.stream.write_all(&frame_bytes(&header, body));
    }

    /// Answers the client's hello with a welcome.
    pub fn hello(&mut self) {
        let (hello, _) = self.expect();
        assert_eq!(hello["cmd"], "hello", "{hello:?}");
        self.send(
            json!({"ok": true, "version": 1, "server": "fake",
                   "services": ["echo", "get", "put", "ls", "stat", "mkdir", "rm"]}),
            b"",
        );
    }

    /// Answers a `get` with `entries` as its manifest; returns the request.
    pub fn manifest(&mut self, entries: &[Value]) -> Map<String, Value> {
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
    pub fn wants(&mut self) -> Vec<Value> {
        let (header, body) = self.expect();
        assert_eq!(header["wants"], true, "{header:?}");
        parse_lines(&body)
    }

    /// Sends file `i` with `data`, claiming BLAKE3 `claimed`.
    pub fn file(&mut self, i: usize, data: &[u8], claimed: &blake3::Hash) {
        self.send(json!({"file": i, "offset": 0, "size": data.len()}), data);
        self.send(
            json!({"file_end": i, "blake3": claimed.to_hex().as_str()}),
            b"",
        );
    }

    /// Ends the data phase.
    pub fn end(&mut self) {
        self.send(json!({"end": true}), b"");
    }
}

pub fn json_lines(items: &[Value]) -> Vec<u8> {
    items
        .iter()
        .flat_map(|item| {
            let mut line = serde_json::to_vec(item).unwrap();
            line.push(b'\n');
            line
        })
        .collect()
}

pub fn parse_lines(body: &[u8]) -> Vec<Value> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A manifest line for a file.
pub fn file_entry(path: &str, size: usize, mtime: i64) -> Value {
    json!({"kind": "file", "path": path, "file_size": size, "mode": 0o644, "mtime": mtime})
}

/// A fake server on 127.0.0.1 that serves `connections` connections one
/// after another, each with `script`, then waits for the client to close.
pub struct Fake {
    addr: String,
    thread: JoinHandle<()>,
}

impl Fake {
    pub fn start(connections: usize, script: impl Fn(&mut Peer) + Send + Sync + 'static) -> Fake {
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

    /// Where it listens.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The real client against this fake, in `sandbox`, with any token.
    pub fn client(&self, sandbox: &Sandbox, args: &[&str]) -> Run {
        let mut full = vec!["--plaintext", "--server", &self.addr, "--token", "x"];
        full.extend_from_slice(args);
        Invocation::new(sandbox, &full).run()
    }

    /// Waits for the script to finish, failing the test if it panicked.
    pub fn join(self) {
        self.thread.join().expect("the fake server's script failed");
    }
}
