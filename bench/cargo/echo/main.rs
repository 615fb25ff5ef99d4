//! The echo benchmark: request/response round trips per second for a 64-byte
//! echo over ferry, plaintext and TLS, at 1 and 64 connections, measured in
//! the same run as a raw-TCP ping-pong baseline of the same size; then the
//! resident memory a server spends per authenticated idle connection.
//!
//! Every server is its own process, started the same way: the real
//! `ferry serve` binary, and for the baseline this benchmark re-executed with
//! `--raw-echo-server` (see `servers.rs`). Clients run in this process on a
//! Tokio multi-thread runtime. `--help` lists the knobs; `bench/echo.sh`
//! runs it.
//!
//! It is a measurement, not a test: it exits 0 whatever the numbers, and
//! marks each target PASS or FAIL.

mod memory;
mod servers;
mod throughput;

use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context as _};

use servers::{Kind, ServerProcess, RAW_SERVER_ARG};

/// The size of every request and reply body.
const MESSAGE_BYTES: usize = 64;
/// Past this, a round trip, a connect or a server start counts as hung.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Connection counts measured for throughput unless `--connections` says.
const CONNECTION_COUNTS: [usize; 2] = [1, 64];
/// Throughput targets, as a fraction of the raw baseline's rate.
const PLAINTEXT_TARGET: f64 = 0.8;
const TLS_TARGET: f64 = 0.6;
/// Idle-memory target per connection.
const IDLE_TARGET_BYTES: f64 = 32.0 * 1024.0;

const USAGE: &str = "\
usage: cargo bench --bench echo -- [OPTIONS]

  --duration SECS        measured time per configuration [env FERRY_BENCH_SECS; 3]
  --warmup SECS          unmeasured time per server before measuring [0.5]
  --connections N,N..    connection counts for throughput [1,64]
  --idle-connections N   idle connections for the memory section; 0 skips it
                         [env FERRY_BENCH_IDLE; 10000]
  --settle SECS          idle time before VmRSS is read; the server frees an
                         idle connection's buffers after ~200 ms [2]
  --server-flag FLAG     pass FLAG to every `ferry serve` (repeatable), e.g.
                         `--server-flag -q` to measure it without info logs";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(RAW_SERVER_ARG) {
        if let Err(err) = servers::raw_echo_server() {
            eprintln!("raw echo server: {err:#}");
            std::process::exit(1);
        }
        return;
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("echo bench: {err:#}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    // A measurement, not a test: what failed is printed, and the exit
    // status stays 0.
    if let Err(err) = run(&options) {
        println!("\nBENCH ERROR: {err:#}");
    }
}

#[derive(Debug)]
struct Options {
    duration: Duration,
    warmup: Duration,
    connections: Vec<usize>,
    idle_connections: usize,
    settle: Duration,
    server_flags: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut options = Options {
            duration: seconds(env("FERRY_BENCH_SECS").as_deref().unwrap_or("3"))?,
            warmup: Duration::from_millis(500),
            connections: CONNECTION_COUNTS.to_vec(),
            idle_connections: env("FERRY_BENCH_IDLE")
                .as_deref()
                .unwrap_or("10000")
                .parse()
                .context("FERRY_BENCH_IDLE")?,
            settle: Duration::from_secs(2),
            server_flags: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| anyhow!("{arg} needs a value"));
            match arg.as_str() {
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                "--duration" => options.duration = seconds(value()?)?,
                "--warmup" => options.warmup = seconds(value()?)?,
                "--settle" => options.settle = seconds(value()?)?,
                "--connections" => {
                    options.connections = value()?
                        .split(',')
                        .map(|n| n.trim().parse::<usize>().context("--connections"))
                        .collect::<anyhow::Result<_>>()?;
                    ensure!(
                        options.connections.iter().all(|n| (1..=1000).contains(n)),
                        "--connections takes counts from 1 to 1000"
                    );
                }
                "--idle-connections" => {
                    options.idle_connections = value()?.parse().context("--idle-connections")?
                }
                "--server-flag" => options.server_flags.push(value()?.clone()),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}"),
            }
        }
        ensure!(
            options.duration > Duration::ZERO,
            "--duration must be positive"
        );
        Ok(options)
    }
}

fn seconds(text: &str) -> anyhow::Result<Duration> {
    let secs: f64 = text
        .parse()
        .with_context(|| format!("{text:?} is not a number of seconds"))?;
    ensure!((0.0..=3600.0).contains(&secs), "{secs} s is out of range");
    Ok(Duration::from_secs_f64(secs))
}

struct Verdict {
    pass: bool,
    what: String,
}

fn run(options: &Options) -> anyhow::Result<()> {
    let idle_connections = memory::raise_open_file_limit(options.idle_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "ferry echo benchmark: {MESSAGE_BYTES}-byte request/response round trips on 127.0.0.1"
    );
    println!(
        "{:.1} s measured per configuration, in ~0.5 s slices taking turns, after {:.1} s of \
         warm-up;\n{cpus} CPUs shared by the clients (this process) and the server (its own process)",
        options.duration.as_secs_f64(),
        options.warmup.as_secs_f64(),
    );
    if !options.server_flags.is_empty() {
        println!(
            "ferry serve flags added: {}",
            options.server_flags.join(" ")
        );
    }
    println!();

    let mut verdicts = runtime.block_on(throughput_section(options))?;
    if idle_connections > 0 {
        verdicts.extend(runtime.block_on(memory_section(options, idle_connections)));
    }

    println!("\nVerdicts");
    for verdict in &verdicts {
        println!(
            "  {}  {}",
            if verdict.pass { "PASS" } else { "FAIL" },
            verdict.what
        );
    }
    let failed = verdicts.iter().filter(|v| !v.pass).count();
    println!(
        "\nRESULT: {} of {} targets met{}",
        verdicts.len() - failed,
        verdicts.len(),
        if failed == 0 {
            ""
        } else {
            "; see the FAIL lines"
        }
    );
    Ok(())
}

/// Measures and prints the throughput table; one verdict per target.
async fn throughput_section(options: &Options) -> anyhow::Result<Vec<Verdict>> {
    let servers = [
        ServerProcess::raw()?,
        ServerProcess::ferry(false, &options.server_flags)?,
        ServerProcess::ferry(true, &options.server_flags)?,
    ];
    println!(
        "  {:<17} {:>5} {:>10} {:>7} {:>11}  {:>13} {:>7}",
        "", "", "", "", "per-round", "CPU us/rt", "CPU"
    );
    println!(
        "  {:<17} {:>5} {:>10} {:>7} {:>11}  {:>13} {:>7}  target",
        "", "conns", "round/s", "vs raw", "vs raw", "client+server", "vs raw"
    );
    let mut verdicts = Vec::new();
    let mut errors = Vec::new();
    for &connections in &options.connections {
        let rates =
            throughput::measure(&servers, connections, options.warmup, options.duration).await;
        let raw = rates
            .iter()
            .find(|r| r.kind == Kind::Raw)
            .expect("raw is measured");
        let raw_cpu = raw.client_cpu_per_round_trip + raw.server_cpu_per_round_trip;
        for rate in &rates {
            let ratio = match (&rate.per_second, &raw.per_second) {
                (Ok(r), Ok(b)) => Some(r / b),
                _ => None,
            };
            let round_ratios: Vec<f64> = rate
                .per_round
                .iter()
                .zip(&raw.per_round)
                .map(|(r, b)| r / b)
                .collect();
            let (low, high) = round_ratios
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            let range = match (rate.kind, round_ratios.is_empty()) {
                (Kind::Raw, _) | (_, true) => String::new(),
                _ => format!("{low:.2}-{high:.2}"),
            };
            let cpu = rate.client_cpu_per_round_trip + rate.server_cpu_per_round_trip;
            let cpu_text = format!(
                "{:.1}+{:.1}",
                micros(rate.client_cpu_per_round_trip),
                micros(rate.server_cpu_per_round_trip)
            );
            let target = match rate.kind {
                Kind::Raw => None,
                Kind::Plaintext => Some(PLAINTEXT_TARGET),
                Kind::Tls => Some(TLS_TARGET),
            };
            let pass = target.map(|t| ratio.is_some_and(|r| r >= t));
            println!(
                "  {:<17} {connections:>5} {:>10} {:>7} {range:>11}  {cpu_text:>13} {:>7}  {}",
                rate.kind.name(),
                rate.per_second
                    .as_ref()
                    .map_or("error".into(), |r| group(r.round() as u64)),
                ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                format!("{:.2}x", micros(raw_cpu) / micros(cpu)),
                match (target, pass) {
                    (Some(t), Some(true)) => format!(">={t:.1}x  PASS"),
                    (Some(t), _) => format!(">={t:.1}x  FAIL"),
                    _ => String::new(),
                },
            );
            if let (Some(target), Some(pass)) = (target, pass) {
                let what = match ratio {
                    Some(r) => format!(
                        "{}, {connections} conn: {r:.2}x raw (target >= {target:.1}x)",
                        rate.kind.name()
                    ),
                    None => format!("{}, {connections} conn: no measurement", rate.kind.name()),
                };
                verdicts.push(Verdict { pass, what });
            }
            if let Err(err) = &rate.per_second {
                errors.push(format!("{err:#}"));
            }
        }
    }
    println!(
        "  per-round vs raw: the lowest and highest ratio in one round of slices (how noisy the run\n  \
         was). CPU us/rt: CPU time per round trip in the clients' process + in the server's;\n  \
         CPU vs raw: raw's CPU per round trip over this one (what the rate ratio tends to when\n  \
         the CPUs are the limit and nothing else runs)."
    );
    for error in errors {
        println!("  error: {error}");
    }
    Ok(verdicts)
}

/// Measures and prints idle memory for plaintext and TLS; one verdict each.
async fn memory_section(options: &Options, idle_connections: usize) -> Vec<Verdict> {
    println!(
        "\nIdle memory: server VmRSS with {} authenticated idle connections (each said hello and \
         did one echo,\nthen sat idle {:.1} s) minus VmRSS before them; peak is VmHWM",
        group(idle_connections as u64),
        options.settle.as_secs_f64()
    );
    println!(
        "  {:<19} {:>10} {:>10} {:>10} {:>9} {:>15} {:>9}",
        "", "before", "after", "peak", "opened in", "per connection", "target"
    );
    let mut verdicts = Vec::new();
    for tls in [false, true] {
        let name = if tls { Kind::Tls } else { Kind::Plaintext }.name();
        let target = format!("<{:.0} KiB", IDLE_TARGET_BYTES / 1024.0);
        let measured =
            memory::measure(tls, idle_connections, options.settle, &options.server_flags).await;
        match measured {
            Ok(memory) => {
                let per = memory.per_connection_bytes();
                let pass = per < IDLE_TARGET_BYTES;
                println!(
                    "  {name:<19} {:>10} {:>10} {:>10} {:>9} {:>15} {target:>9}  {}",
                    mib(memory.before_bytes),
                    mib(memory.after_bytes),
                    mib(memory.peak_bytes),
                    format!("{:.1} s", memory.opened_in.as_secs_f64()),
                    format!("{:.1} KiB", per / 1024.0),
                    if pass { "PASS" } else { "FAIL" }
                );
                verdicts.push(Verdict {
                    pass,
                    what: format!(
                        "{name}, idle memory: {:.1} KiB per connection (target < {:.0} KiB)",
                        per / 1024.0,
                        IDLE_TARGET_BYTES / 1024.0
                    ),
                });
            }
            Err(err) => {
                println!("  {name:<19} error: {err:#}");
                verdicts.push(Verdict {
                    pass: false,
                    what: format!("{name}, idle memory: error: {err:#}"),
                });
            }
        }
    }
    verdicts
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn micros(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
