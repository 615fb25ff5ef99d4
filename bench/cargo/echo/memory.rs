//! Resident memory per idle connection: a fresh server's VmRSS with N
//! authenticated idle connections, minus its VmRSS before them, over N.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context as _};
use bytes::Bytes;
use ferry::client::Client;

use crate::servers::ServerProcess;
use crate::{MESSAGE_BYTES, STEP_TIMEOUT};

/// Connections opened at once while filling the server; below the server's
/// `--max-handshakes`, so none waits long in the accept queue.
const CONNECT_CONCURRENCY: usize = 128;

/// One in this many idle connections is checked to still be served.
const CHECK_EVERY: usize = 100;

pub struct IdleMemory {
    pub connections: usize,
    pub before_bytes: u64,
    pub after_bytes: u64,
    /// VmHWM: the most the server held at any time, opening included.
    pub peak_bytes: u64,
    pub opened_in: Duration,
}

impl IdleMemory {
    pub fn per_connection_bytes(&self) -> f64 {
        (self.after_bytes as f64 - self.before_bytes as f64) / self.connections as f64
    }
}

/// Starts a fresh server, opens `count` connections that each say hello and
/// do one echo, leaves them idle for `settle`, and reads the server's VmRSS.
pub async fn measure(
    tls: bool,
    count: usize,
    settle: Duration,
    server_flags: &[String],
) -> anyhow::Result<IdleMemory> {
    let server = ServerProcess::ferry(tls, server_flags)?;
    let options = Arc::new(server.client_options());
    let message = Bytes::from_static(&[b'z'; MESSAGE_BYTES]);

    // One connection first, so that the runtime's threads and one-time
    // allocations count in "before", not against the idle connections.
    let mut first = Client::connect(&options).await?;
    first.echo(message.clone(), false).await?;
    first.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_bytes = proc_status_bytes(server.pid(), "VmRSS")?;

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONNECT_CONCURRENCY.min(count) {
        let (options, next, message) = (options.clone(), next.clone(), message.clone());
        workers.spawn(async move {
            let mut clients = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let mut client = tokio::time::timeout(STEP_TIMEOUT, Client::connect(&options))
                    .await
                    .map_err(|_| anyhow!("connecting took over {STEP_TIMEOUT:?}"))??;
                client.echo(message.clone(), false).await?;
                clients.push(client);
            }
            anyhow::Ok(clients)
        });
    }
    let mut clients = Vec::with_capacity(count);
    while let Some(result) = workers.join_next().await {
        let opened = result.context("a connecting task panicked")?;
        clients.extend(opened.with_context(|| {
            let tried = next.load(Ordering::Relaxed).min(count);
            format!("opening idle connections (about {tried} tried)")
        })?);
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(settle).await;
    let after_bytes = proc_status_bytes(server.pid(), "VmRSS")?;
    let peak_bytes = proc_status_bytes(server.pid(), "VmHWM")?;

    // The connections must still be served, or the number means nothing.
    for client in clients.iter_mut().step_by(CHECK_EVERY) {
        let reply = tokio::time::timeout(STEP_TIMEOUT, client.echo(message.clone(), false))
            .await
            .map_err(|_| anyhow!("an idle connection did not answer within {STEP_TIMEOUT:?}"))??;
        ensure!(reply == message, "an idle connection echoed other bytes");
    }
    // The server goes first, so that 10,000 closing clients cost it nothing.
    drop(server);
    drop(clients);
    Ok(IdleMemory {
        connections: count,
        before_bytes,
        after_bytes,
        peak_bytes,
        opened_in,
    })
}

/// A `kB` field of `/proc/PID/status`, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .ok_or_else(|| anyhow!("no {field} in {path}"))?;
    let kib: u64 = value.trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024)
}

/// Raises this process's soft open-file limit, which the servers inherit,
/// so that `idle` connections fit on both ends; returns how many fit.
pub fn raise_open_file_limit(idle: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // Room for the throughput connections, the runtime and the log files.
    const SPARE: u64 = 1024;
    let wanted = idle as u64 + SPARE;
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current.is_some_and(|soft| soft < wanted) {
        limit.current = Some(wanted.min(hard));
        if let Err(err) = setrlimit(Resource::Nofile, limit) {
            println!("note: cannot raise the open-file limit: {err}");
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return idle;
    }
    let fits = soft.saturating_sub(SPARE) as usize;
    println!(
        "note: the open-file limit is {soft}; measuring idle memory with {fits} connections \
         instead of {idle}\n"
    );
    fits
}
