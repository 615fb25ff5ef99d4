//! A TCP proxy on loopback that fails on purpose, between a client and a
//! server: once `after_bytes` have crossed a connection (both directions
//! counted), it cuts it (closes both sides) or stalls it (forwards nothing
//! more and closes nothing), for the first `times` connections to get that
//! far; the others pass untouched. After a fault it can send the next
//! connections to another server, as a man in the middle would.
//!
//! It runs on its own small tokio runtime, so the tests that use it stay
//! plain `#[test]`s running the real binary; dropping it ends every
//! connection it holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// What a faulty connection does once its bytes are spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Both sides are closed at once, mid-stream.
    Cut,
    /// Nothing more is forwarded either way and nothing is closed, as a
    /// network that goes quiet; the proxy only notices the client leave,
    /// and then lets the server go too.
    Stall,
    /// As `Stall`, but the server's side stays open after the client
    /// leaves, until the server gives up on it: a network gone dark, where
    /// neither end hears the other leave.
    Dark,
}

/// A running proxy; see the module docs.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    fault: Fault,
    after_bytes: u64,
    times: u32,
    /// Faults done so far.
    faults: AtomicU32,
    /// Connections accepted so far.
    accepted: AtomicU32,
    /// Where connections go once a fault has happened, if elsewhere.
    redirect: Mutex<Option<SocketAddr>>,
}

impl Proxy {
    /// A proxy to `upstream` (`127.0.0.1:PORT`) that applies `fault` to the
    /// first `times` connections once `after_bytes` crossed each.
    pub fn start(upstream: &str, fault: Fault, after_bytes: u64, times: u32) -> Proxy {
        let upstream: SocketAddr = upstream.parse().expect("a loopback socket address");
        assert!(upstream.ip().is_loopback(), "tests stay on loopback");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the proxy");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            fault,
            after_bytes,
            times,
            faults: AtomicU32::new(0),
            accepted: AtomicU32::new(0),
            redirect: Mutex::new(None),
        });
        let accepting = shared.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(client, accepting.clone()));
            }
        });
        Proxy {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// Sends every connection after the first fault to `upstream` instead.
    pub fn then_redirect_to(&self, upstream: &str) {
        *self.shared.redirect.lock().unwrap() = Some(upstream.parse().unwrap());
    }

    /// The proxy's address, as `FERRY_SERVER` takes it.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Connections the proxy accepted.
    pub fn connections(&self) -> u32 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections it cut or stalled.
    pub fn faults(&self) -> u32 {
        self.shared.faults.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Bytes one connection may still pass before its fault; `None` once it
/// passes freely (its fault done, or no fault left for it).
struct Budget {
    left: Mutex<Option<u64>>,
}

/// How a pump ended.
enum Ended {
    /// One side closed or failed.
    Closed,
    /// The budget ran out and this connection drew a fault.
    Fault,
}

async fn relay(mut client: TcpStream, shared: Arc<Shared>) {
    let upstream = *shared.upstream.lock().unwrap();
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let budget = Budget {
        left: Mutex::new(Some(shared.after_bytes)),
    };
    let ended = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let up = pump(&mut client_read, &mut server_write, &budget, &shared);
        let down = pump(&mut server_read, &mut client_write, &budget, &shared);
        tokio::select! {
            ended = up => ended,
            ended = down => ended,
        }
    };
    let (Ended::Fault, Fault::Stall | Fault::Dark) = (ended, shared.fault) else {
        return;
    };
    // Quiet both ways; what the client still sends goes nowhere.
    let mut sink = vec![0u8; 64 * 1024];
    while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    if shared.fault == Fault::Dark {
        // The server hears nothing either, until it gives up: its close
        // is the only thing read from it.
        drop(client);
        while matches!(server.read(&mut sink).await, Ok(n) if n > 0) {}
    }
}

async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    budget: &Budget,
    shared: &Shared,
) -> Ended {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return Ended::Closed,
            Ok(n) => n,
        };
        let passing = {
            let mut left = budget.left.lock().unwrap();
            match *left {
                Some(bytes) if (n as u64) >= bytes => {
                    *left = None;
                    let faults = shared.faults.fetch_add(1, Ordering::SeqCst);
                    if faults < shared.times {
                        if let Some(to) = *shared.redirect.lock().unwrap() {
                            *shared.upstream.lock().unwrap() = to;
                        }
                        Some(bytes as usize)
                    } else {
                        // No fault left for this one: it passes freely.
                        shared.faults.fetch_sub(1, Ordering::SeqCst);
                        None
                    }
                }
                Some(bytes) => {
                    *left = Some(bytes - n as u64);
                    None
                }
                None => None,
            }
        };
        match passing {
            Some(last) => {
                let _ = to.write_all(&buf[..last]).await;
                return Ended::Fault;
            }
            None => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return Ended::Closed;
                }
            }
        }
    }
}
