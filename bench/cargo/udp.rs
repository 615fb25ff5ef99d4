//! Requests per second of ferry's datagram services against a raw UDP echo
//! server, all measured in one run on 127.0.0.1.
//!
//! The baseline is the least a UDP service can do: one thread that receives
//! a datagram and sends it back, with nothing in between. Against it run
//! `ferry serve --udp-echo` and `--udp-time`, started as a separate process.
//! Each is driven by 16 senders, each with one request in flight (send,
//! wait for the reply, send the next), for a fixed time. Lost datagrams
//! (none expected on loopback) are counted, not retried. Target: each ferry
//! service at >= 0.7x the baseline's rate.
//!
//! `bench/udp.sh` runs this; `--duration SECS` (default 3) and `--senders N`
//! (default 16) change the run.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

struct Outcome {
    replies: u64,
    lost: u64,
    seconds: f64,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.replies as f64 / self.seconds
    }
}

/// Drives `addr` with `senders` request/reply loops for `duration`.
fn drive(addr: &str, request: &[u8], senders: usize, duration: Duration) -> Outcome {
    let start = Instant::now();
    let handles: Vec<_> = (0..senders)
        .map(|_| {
            let addr = addr.to_string();
            let request = request.to_vec();
            thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.connect(&addr).unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = [0u8; 2048];
                let (mut replies, mut lost) = (0u64, 0u64);
                while start.elapsed() < duration {
                    socket.send(&request).unwrap();
                    match socket.recv(&mut buf) {
                        Ok(_) => replies += 1,
                        Err(_) => lost += 1,
                    }
                }
                (replies, lost)
            })
        })
        .collect();
    let (mut replies, mut lost) = (0, 0);
    for handle in handles {
        let (r, l) = handle.join().unwrap();
        replies += r;
        lost += l;
    }
    Outcome {
        replies,
        lost,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// The baseline: receive, send back, nothing else.
fn raw_echo() -> (String, Arc<AtomicBool>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !stopping.load(Ordering::Relaxed) {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..len], from);
            }
        }
    });
    (addr, stop)
}

/// `ferry serve` with the time and echo services; their addresses.
fn ferry_serve(dir: &std::path::Path) -> (Child, String, String) {
    let mut child = Command::new(FERRY)
        .args(["serve", "--plaintext", "--listen", "127.0.0.1:0"])
        .args(["--udp-time", "127.0.0.1:0", "--udp-echo", "127.0.0.1:0"])
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("-q")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferry serve");
    let (mut time, mut echo) = (None, None);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let addr = || line.split_whitespace().nth(1).unwrap().to_string();
        if line.ends_with("(udp time)") {
            time = Some(addr());
        } else if line.ends_with("(udp echo)") {
            echo = Some(addr());
        }
        if time.is_some() && echo.is_some() {
            break;
        }
    }
    (
        child,
        time.expect("a time line"),
        echo.expect("an echo line"),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut duration, mut senders) = (Duration::from_secs(3), 16usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                duration = Duration::from_secs_f64(args.next().unwrap().parse().unwrap())
            }
            "--senders" => senders = args.next().unwrap().parse().unwrap(),
            "--bench" => {}
            other => {
                eprintln!("usage: bench/udp.sh [--duration SECS] [--senders N] (not {other})");
                std::process::exit(2);
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("ferry-udp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (raw_addr, stop_raw) = raw_echo();
    let (mut ferry, time_addr, echo_addr) = ferry_serve(&dir);

    let request = b"%Y-%m-%d %H:%M:%S"; // what the time service gets; echo gets the same bytes
    let raw = drive(&raw_addr, request, senders, duration);
    let echo = drive(&echo_addr, request, senders, duration);
    let time = drive(&time_addr, request, senders, duration);
    stop_raw.store(true, Ordering::Relaxed);
    let _ = ferry.kill();
    let _ = ferry.wait();
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "{senders} senders, one request in flight each, {duration:?} per server, on 127.0.0.1"
    );
    println!(
        "{:<28} {:>12} {:>8} {:>8}",
        "server", "requests/s", "lost", "ratio"
    );
    let row = |name: &str, o: &Outcome| {
        println!(
            "{name:<28} {:>12.0} {:>8} {:>7.2}x",
            o.rate(),
            o.lost,
            o.rate() / raw.rate()
        )
    };
    row("raw UDP echo (baseline)", &raw);
    row("ferry --udp-echo", &echo);
    row("ferry --udp-time", &time);
    for (name, o) in [("udp echo", &echo), ("udp time", &time)] {
        let ratio = o.rate() / raw.rate();
        let verdict = if ratio >= 0.7 { "PASS" } else { "FAIL" };
        println!("target: {name} >= 0.7x raw UDP echo: {ratio:.2}x {verdict}");
    }
}
