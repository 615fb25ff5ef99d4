//! A detachable command whose connection is cut mid-output: the client
//! reconnects by itself and its output arrives whole, nothing lost or
//! repeated. The test's own TCP proxy stands between client and server so
//! that it can cut every connection through it at a chosen moment.

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use super::{open_gate, wait_for};
use crate::exec::{exec_server, RUN_DEADLINE};
use crate::util::{poll_until, read_all_in_background, DEADLINE};

/// A loopback TCP proxy to `upstream` whose connections can all be cut.
struct Proxy {
    addr: String,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let upstream = upstream.to_string();
        let sockets = open.clone();
        thread::spawn(move || {
            for downstream in listener.incoming() {
                let Ok(downstream) = downstream else { break };
                let Ok(up) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut held = sockets.lock().unwrap();
                held.push(downstream.try_clone().unwrap());
                held.push(up.try_clone().unwrap());
                pipe(downstream.try_clone().unwrap(), up.try_clone().unwrap());
                pipe(up, downstream);
            }
        });
        Proxy { addr, open }
    }

    /// Cuts every connection through the proxy, both ways; new ones are
    /// still taken.
    fn cut(&self) {
        for socket in self.open.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` on a thread of its own until either end closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[test]
fn a_cut_connection_is_reconnected_and_the_output_arrives_exactly_once() {
    let server = exec_server(&[]);
    let proxy = Proxy::start(server.addr());
    let pins = format!(
        "{} {}\n{} {}\n",
        server.addr(),
        server.fingerprint(),
        proxy.addr,
        server.fingerprint()
    );
    server.sandbox.write_known_hosts(&pins);
    // Half the output, a wait for the gate, the rest (with stderr mixed
    // in) while the client is away.
    let line = format!(
        "seq 1 3000; echo half; {}; seq 3001 60000; echo err >&2; seq 60001 90000",
        wait_for("go")
    );
    let mut client = server
        .client(&["--server", &proxy.addr, "exec", "--detachable", "--", &line])
        .spawn_piped();
    drop(client.take_stdin());
    let stdout = client.take_stdout().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        thread::spawn(move || {
            let mut stdout = stdout;
            let mut buf = [0u8; 65536];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        })
    };
    let stderr = read_all_in_background(client.take_stderr().unwrap());
    poll_until("the first half of the output", DEADLINE, || {
        seen.lock().unwrap().ends_with(b"half\n").then_some(())
    });
    proxy.cut();
    open_gate(&server, "go");
    let status = client.wait_within(RUN_DEADLINE).expect("the client ended");
    reader.join().unwrap();
    let stderr = String::from_utf8(stderr.join().unwrap()).unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(stderr, "err\n");
    let mut want = String::new();
    for n in 1..=3000 {
        want.push_str(&format!("{n}\n"));
    }
    want.push_str("half\n");
    for n in 3001..=90000 {
        want.push_str(&format!("{n}\n"));
    }
    let got = seen.lock().unwrap().clone();
    crate::exec::assert_bytes("stdout", &got, want.as_bytes());
}
