//! A UDP relay on loopback for QUIC that goes quiet on purpose: it
//! forwards each client address (a flow) through its own socket to the
//! server, and once `stall_after_bytes` have come back on the first flow,
//! it drops every datagram of that flow both ways, for good. Later flows
//! (a client that connected again) pass untouched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::runtime::Runtime;

/// A running relay; see the module docs.
pub struct UdpRelay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
}

struct Shared {
    upstream: SocketAddr,
    stall_after_bytes: u64,
    flows: AtomicU32,
}

/// One client address and its way to the server.
struct Flow {
    upstream: UdpSocket,
    /// Whether this flow goes quiet once its bytes are spent.
    faulty: bool,
    returned: AtomicU64,
    quiet: AtomicBool,
}

impl UdpRelay {
    /// A relay to `upstream` whose first flow goes quiet after
    /// `stall_after_bytes` from the server.
    pub fn start(upstream: SocketAddr, stall_after_bytes: u64) -> UdpRelay {
        assert!(upstream.ip().is_loopback(), "tests stay on loopback");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the relay");
        let front = Arc::new(
            runtime
                .block_on(UdpSocket::bind("127.0.0.1:0"))
                .expect("bind the relay"),
        );
        let addr = front.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            stall_after_bytes,
            flows: AtomicU32::new(0),
        });
        runtime.spawn(forward(front, shared.clone()));
        UdpRelay {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Client addresses seen so far.
    pub fn flows(&self) -> u32 {
        self.shared.flows.load(Ordering::SeqCst)
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Client to server: each datagram through its flow's socket.
async fn forward(front: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut flows: HashMap<SocketAddr, Arc<Flow>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, from)) = front.recv_from(&mut buf).await {
        let flow = match flows.get(&from) {
            Some(flow) => flow.clone(),
            None => {
                let Some(flow) = open_flow(&shared).await else {
                    continue;
                };
                let flow = Arc::new(flow);
                flows.insert(from, flow.clone());
                tokio::spawn(back(front.clone(), flow.clone(), from, shared.clone()));
                flow
            }
        };
        if !flow.quiet.load(Ordering::SeqCst) {
            let _ = flow.upstream.send(&buf[..n]).await;
        }
    }
}

async fn open_flow(shared: &Shared) -> Option<Flow> {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    upstream.connect(shared.upstream).await.ok()?;
    let index = shared.flows.fetch_add(1, Ordering::SeqCst);
    Some(Flow {
        upstream,
        faulty: index == 0,
        returned: AtomicU64::new(0),
        quiet: AtomicBool::new(false),
    })
}

/// Server to client, for one flow, until it goes quiet.
async fn back(front: Arc<UdpSocket>, flow: Arc<Flow>, client: SocketAddr, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = flow.upstream.recv(&mut buf).await {
        let returned = flow.returned.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if flow.faulty && returned >= shared.stall_after_bytes {
            flow.quiet.store(true, Ordering::SeqCst);
        }
        if flow.quiet.load(Ordering::SeqCst) {
            continue;
        }
        let _ = front.send_to(&buf[..n], client).await;
    }
}
