//! The servers under test, each in its own process: `ferry serve` from the
//! real binary, and the raw baseline, which is this benchmark re-executed
//! with [`RAW_SERVER_ARG`]. A [`ServerProcess`] kills its child by PID when
//! it drops, so an error or a panic leaves nothing running.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use ferry::client::ClientOptions;
use ferry::transport::{Endpoint, Fingerprint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{MESSAGE_BYTES, STEP_TIMEOUT};

/// The argument that turns this binary into the raw baseline server.
pub const RAW_SERVER_ARG: &str = "--raw-echo-server";

/// Flags every `ferry serve` gets, so that 10,000 idle connections fit and
/// open quickly.
const SERVER_LIMIT_FLAGS: [&str; 4] = ["--max-connections", "10100", "--max-handshakes", "1024"];

/// The raw server gives up after this long even if nobody stops it.
const RAW_SERVER_LIFETIME: Duration = Duration::from_secs(3600);

/// Which server, and so which client protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Raw,
    Plaintext,
    Tls,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw TCP ping-pong",
            Kind::Plaintext => "ferry plaintext",
            Kind::Tls => "ferry TLS",
        }
    }
}

/// A server in its own process, killed by PID when dropped.
pub struct ServerProcess {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
    fingerprint: Option<Fingerprint>,
    token: Option<String>,
    /// Holds the server's state, root and log until it is gone.
    dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the raw baseline server.
    pub fn raw() -> anyhow::Result<ServerProcess> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg(RAW_SERVER_ARG);
        ServerProcess::start(Kind::Raw, command, tempfile::tempdir()?)
    }

    /// Starts `ferry serve` on a free loopback port with fresh state, plus
    /// `extra_flags`.
    pub fn ferry(tls: bool, extra_flags: &[String]) -> anyhow::Result<ServerProcess> {
        let dir = tempfile::tempdir()?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["serve", "--no-udp-time"])
            .args(["--listen", "127.0.0.1:0"])
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .args(SERVER_LIMIT_FLAGS)
            .args(extra_flags)
            // The server logs at its default level whatever the caller's
            // environment says; `--server-flag -q` measures it quiet.
            .env_remove("RUST_LOG");
        if !tls {
            command.arg("--plaintext");
        }
        let kind = if tls { Kind::Tls } else { Kind::Plaintext };
        ServerProcess::start(kind, command, dir)
    }

    /// Spawns the server with its stderr in a log file, and reads its stdout
    /// up to the `listening ADDR` line.
    fn start(
        kind: Kind,
        mut command: Command,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<ServerProcess> {
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        // Our end of the server's stdin is the raw server's lifeline: it
        // exits when that closes, even if this process dies without Drop.
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut server = ServerProcess {
            kind,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            fingerprint: None,
            token: None,
            dir,
        };
        let (lines, received) = mpsc::channel();
        // Ends when the server's stdout closes; nothing is printed there
        // after the listening line.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = received.recv_timeout(wait).map_err(|_| {
                anyhow!(
                    "{} did not say `listening` within {STEP_TIMEOUT:?}; the end of its log:\n{}",
                    kind.name(),
                    server.log_tail()
                )
            })?;
            if let Some(fingerprint) = line.strip_prefix("fingerprint ") {
                let parsed = fingerprint.trim().parse().map_err(|e: String| anyhow!(e))?;
                server.fingerprint = Some(parsed);
            } else if let Some(path) = line.strip_prefix("token in ") {
                server.token = Some(std::fs::read_to_string(path.trim())?.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("listening ") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                server.addr = addr
                    .parse()
                    .with_context(|| format!("bad address in {line:?}"))?;
                return Ok(server);
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Options for a ferry client of this server that read and write
    /// nothing in the user's configuration.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            token: self.token.clone(),
            plaintext: self.kind != Kind::Tls,
            fingerprint: self.fingerprint,
            known_hosts: None,
            state_dir: None,
            connect_timeout: STEP_TIMEOUT,
            request_timeout: STEP_TIMEOUT,
            ..ClientOptions::new(Endpoint::from(self.addr))
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // `Child::kill` signals this child's PID; `wait` reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The baseline: a Tokio multi-thread server, as `ferry serve` is, that on
/// every connection reads exactly `MESSAGE_BYTES` and writes them back.
pub fn raw_echo_server() -> anyhow::Result<()> {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening {} (raw)", listener.local_addr()?)?;
        stdout.flush()?;
        drop(stdout);
        match tokio::time::timeout(RAW_SERVER_LIFETIME, raw_accept_loop(listener)).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    })
}

async fn raw_accept_loop(listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut buf = [0u8; MESSAGE_BYTES];
            while stream.read_exact(&mut buf).await.is_ok() {
                if stream.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
    }
}
