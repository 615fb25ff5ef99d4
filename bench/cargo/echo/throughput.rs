//! Round trips per second: one ping-pong loop per connection, each waiting
//! for its reply before sending the next request.
//!
//! The machine this runs on is shared (other builds, a VM's neighbours), and
//! its speed drifts by several times within seconds. So the three servers are
//! not measured one after the other: each configuration's measured time is
//! cut into slices of about half a second, and the slices take turns (raw,
//! plaintext, TLS, raw, ...). Drift then touches all three alike, and the
//! spread of the per-round ratios shows how noisy the run was.
//!
//! The CPU time both processes spend per round trip is counted too (from
//! `/proc/PID/task/*/schedstat`). When the CPUs are saturated, as at 64
//! connections, it is what sets the rate, and it is steadier than the rate
//! when other work shares the machine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context as _};
use bytes::Bytes;
use ferry::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::servers::{Kind, ServerProcess};
use crate::{MESSAGE_BYTES, STEP_TIMEOUT};

/// About how long one slice of measurement lasts.
const SLICE: Duration = Duration::from_millis(500);

/// What one server did at one connection count.
pub struct Rate {
    pub kind: Kind,
    /// Round trips per second over all slices, or why there is none.
    pub per_second: anyhow::Result<f64>,
    /// This server's rate in each round, to compare with the raw server's in
    /// the same round.
    pub per_round: Vec<f64>,
    /// CPU time per round trip, in the client process and in the server.
    pub client_cpu_per_round_trip: Duration,
    pub server_cpu_per_round_trip: Duration,
}

/// Measures every server at `connections` connections: a warm-up for each,
/// then `duration` each, in alternating slices.
pub async fn measure(
    servers: &[ServerProcess],
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Vec<Rate> {
    let rounds = ((duration.as_secs_f64() / SLICE.as_secs_f64()).round() as u32).max(1);
    let slice = duration / rounds;
    let message = Bytes::from(
        (0..MESSAGE_BYTES)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );

    struct Lane<'a> {
        server: &'a ServerProcess,
        conns: anyhow::Result<Vec<Conn>>,
        round_trips: u64,
        elapsed: Duration,
        per_round: Vec<f64>,
        client_cpu: Duration,
        server_cpu: Duration,
    }
    let mut lanes = Vec::new();
    for server in servers {
        let mut conns = open(server, connections).await;
        if let Ok(open) = conns {
            conns = run_slice(open, server, &message, warmup)
                .await
                .map(|slice| slice.conns);
        }
        lanes.push(Lane {
            server,
            conns,
            round_trips: 0,
            elapsed: Duration::ZERO,
            per_round: Vec::new(),
            client_cpu: Duration::ZERO,
            server_cpu: Duration::ZERO,
        });
    }
    for _ in 0..rounds {
        for lane in &mut lanes {
            let Ok(conns) = std::mem::replace(&mut lane.conns, Ok(Vec::new())) else {
                continue;
            };
            lane.conns = match run_slice(conns, lane.server, &message, slice).await {
                Ok(done) => {
                    lane.round_trips += done.round_trips;
                    lane.elapsed += done.elapsed;
                    lane.client_cpu += done.client_cpu;
                    lane.server_cpu += done.server_cpu;
                    lane.per_round
                        .push(done.round_trips as f64 / done.elapsed.as_secs_f64());
                    Ok(done.conns)
                }
                Err(err) => Err(err),
            };
        }
    }
    lanes
        .into_iter()
        .map(|lane| {
            let round_trips = lane.round_trips.max(1) as u32;
            Rate {
                kind: lane.server.kind,
                per_second: lane
                    .conns
                    .map(|_| lane.round_trips as f64 / lane.elapsed.as_secs_f64())
                    .with_context(|| format!("{}, {connections} conn", lane.server.kind.name())),
                per_round: lane.per_round,
                client_cpu_per_round_trip: lane.client_cpu / round_trips,
                server_cpu_per_round_trip: lane.server_cpu / round_trips,
            }
        })
        .collect()
}

/// One client connection, raw or ferry.
enum Conn {
    Raw(TcpStream),
    Ferry(Box<Client>),
}

impl Conn {
    async fn open(server: &ServerProcess) -> anyhow::Result<Conn> {
        match server.kind {
            Kind::Raw => {
                let stream = TcpStream::connect(server.addr).await?;
                stream.set_nodelay(true)?;
                Ok(Conn::Raw(stream))
            }
            Kind::Plaintext | Kind::Tls => {
                let client = Client::connect(&server.client_options()).await?;
                Ok(Conn::Ferry(Box::new(client)))
            }
        }
    }

    async fn round_trip(&mut self, message: &Bytes) -> anyhow::Result<()> {
        match self {
            Conn::Raw(stream) => {
                stream.write_all(message).await?;
                let mut reply = [0u8; MESSAGE_BYTES];
                stream.read_exact(&mut reply).await?;
                ensure!(
                    reply[..] == message[..],
                    "the raw server echoed other bytes"
                );
            }
            Conn::Ferry(client) => {
                let reply = client.echo(message.clone(), false).await?;
                ensure!(reply == message, "ferry echoed other bytes");
            }
        }
        Ok(())
    }
}

async fn open(server: &ServerProcess, connections: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        let conn = tokio::time::timeout(STEP_TIMEOUT, Conn::open(server))
            .await
            .map_err(|_| anyhow!("connecting took over {STEP_TIMEOUT:?}"))??;
        conns.push(conn);
    }
    Ok(conns)
}

/// A round-trip counter on its own cache line, so that tasks on different
/// cores do not slow each other down by counting.
#[repr(align(64))]
#[derive(Default)]
struct Counter(AtomicU64);

/// What one slice did; the connections go on to the next.
struct Slice {
    conns: Vec<Conn>,
    round_trips: u64,
    elapsed: Duration,
    client_cpu: Duration,
    server_cpu: Duration,
}

/// Runs one ping-pong loop per connection for `length`.
async fn run_slice(
    conns: Vec<Conn>,
    server: &ServerProcess,
    message: &Bytes,
    length: Duration,
) -> anyhow::Result<Slice> {
    let counters: Arc<[Counter]> = (0..conns.len()).map(|_| Counter::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // No round trip takes under a microsecond, so this cap never binds; it
    // makes each loop bounded in count as well as in time.
    let max_round_trips = length.as_micros() as u64 + 1;
    let mut tasks = tokio::task::JoinSet::new();
    let (client_cpu, server_cpu) = (cpu_time(std::process::id())?, cpu_time(server.pid())?);
    let start = Instant::now();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (counters, stop, message) = (counters.clone(), stop.clone(), message.clone());
        tasks.spawn(async move {
            let count = &counters[i].0;
            for _ in 0..max_round_trips {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                conn.round_trip(&message).await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(conn)
        });
    }
    tokio::time::sleep(length).await;
    let round_trips = counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
    let elapsed = start.elapsed();
    let client_cpu = cpu_time(std::process::id())?.saturating_sub(client_cpu);
    let server_cpu = cpu_time(server.pid())?.saturating_sub(server_cpu);
    stop.store(true, Ordering::Relaxed);

    // Every loop ends within one round trip of `stop`; one that does not is
    // hung, and is aborted when `tasks` drops.
    let mut conns = Vec::with_capacity(counters.len());
    tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(result) = tasks.join_next().await {
            conns.push(result.context("a client task panicked")??);
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow!("a round trip took over {STEP_TIMEOUT:?}"))??;
    Ok(Slice {
        conns,
        round_trips,
        elapsed,
        client_cpu,
        server_cpu,
    })
}

/// The CPU time all threads of process `pid` have run: the first field of
/// each `/proc/PID/task/TID/schedstat`, in nanoseconds.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        // A thread that exits between the listing and the read is skipped.
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue;
        };
        let nanos = stat.split_whitespace().next().unwrap_or("0");
        total += nanos
            .parse::<u64>()
            .with_context(|| format!("schedstat {stat:?}"))?;
    }
    Ok(Duration::from_nanos(total))
}
