//! `ferry serve`: flags → validated `server::Config` → a running server that
//! stops on SIGINT or SIGTERM; or, with `--systemd-unit`, the same flags as
//! a systemd service ([`systemd_unit`]).

pub mod systemd_unit;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use ferry::server::Endpoint;
use ferry::server::Error;
use ferry::server::StderrLog;
use ferry::server::{Config, Server};
use ferry::server::{Limits, BLOCKING_SHUTDOWN_TIMEOUT, LOG_FLUSH_TIMEOUT};
use tokio::signal::unix::{signal, SignalKind};

use super::{parse_seconds, GlobalArgs};

/// `ferry serve` flags. Each can also come from a `FERRY_*` variable, or
/// from the global `--config` file (FERRY_CONFIG), which for `serve` holds
/// these flags by name.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH. Repeat it
    /// to listen on several; port 0 picks a free port. Any --listen replaces
    /// the default.
    #[arg(long, value_name = "ADDR", env = "FERRY_LISTEN", value_delimiter = ',',
          default_value = ferry::server::DEFAULT_LISTEN)]
    listen: Vec<Endpoint>,

    /// Directory to serve (created if missing).
    #[arg(long, value_name = "DIR", env = "FERRY_ROOT", default_value = ferry::server::DEFAULT_ROOT)]
    root: PathBuf,

    /// Where the certificate, key and access token live
    /// [default: $XDG_STATE_HOME/ferry or ~/.local/state/ferry].
    #[arg(long, value_name = "DIR", env = "FERRY_STATE")]
    state: Option<PathBuf>,

    /// Most connections served at once; more are answered `busy`.
    #[arg(long, value_name = "N", env = "FERRY_MAX_CONNECTIONS",
          default_value_t = Limits::default().max_connections)]
    max_connections: usize,

    /// Most connections of --seed-compat and --tcp-echo served at once,
    /// apart from --max-connections; more wait in the kernel's accept queue.
    #[arg(long, value_name = "N", env = "FERRY_MAX_UNFRAMED_CONNECTIONS",
          default_value_t = Limits::default().max_unframed_connections)]
    max_unframed_connections: usize,

    /// Most connections still in their TLS handshake or hello; more wait in
    /// the kernel's accept queue.
    #[arg(long, value_name = "N", env = "FERRY_MAX_HANDSHAKES",
          default_value_t = Limits::default().max_handshakes)]
    max_handshakes: usize,

    /// Seconds a new connection has to finish TLS and hello.
    #[arg(long, value_name = "SECS", env = "FERRY_HELLO_TIMEOUT", value_parser = parse_seconds,
          default_value = "10")]
    hello_timeout: Duration,

    /// Seconds a connection may sit idle between requests.
    #[arg(long, value_name = "SECS", env = "FERRY_IDLE_TIMEOUT", value_parser = parse_seconds,
          default_value = "300")]
    idle_timeout: Duration,

    /// Seconds a request may go without progress (the peer sending the next
    /// part of a body, or taking the next part of a reply).
    #[arg(long, value_name = "SECS", env = "FERRY_REQUEST_TIMEOUT", value_parser = parse_seconds,
          default_value = "30")]
    request_timeout: Duration,

    /// On SIGINT or SIGTERM, seconds requests in flight get to finish.
    #[arg(long, value_name = "SECS", env = "FERRY_DRAIN_TIMEOUT", value_parser = parse_seconds,
          default_value = "10")]
    drain_timeout: Duration,

    /// Run commands for `ferry exec` (as this server's user, in the root).
    /// Off unless given: anyone with the token can then run anything.
    #[arg(long, env = "FERRY_ALLOW_EXEC")]
    allow_exec: bool,

    /// Run every command and shell as if the client had said
    /// --detachable: it outlives a dropped connection for its linger (60 s
    /// unless the client asks otherwise) and the client reconnects.
    #[arg(long, env = "FERRY_DETACHABLE_DEFAULT", requires = "allow_exec")]
    detachable_default: bool,

    /// Most commands `exec` runs at once; more are refused `exec_limit`.
    #[arg(long, value_name = "N", env = "FERRY_MAX_COMMANDS",
          default_value_t = Limits::default().max_commands)]
    max_commands: usize,

    /// Output a detachable job (`ferry exec --detachable`) keeps for a
    /// client that reconnects, in bytes; past it the oldest is dropped and
    /// the client says how much.
    #[arg(long, value_name = "BYTES", env = "FERRY_JOB_BUFFER",
          default_value_t = Limits::default().job_buffer_bytes)]
    job_buffer: usize,

    /// Also listen on ADDR for the socket tutorial's own clients: plaintext,
    /// no token, loopback only (unless --allow-remote-plaintext). Serves `get NAME`, put frames, and (with
    /// --allow-exec) shell commands, each logged. Repeatable.
    #[arg(
        long = "seed-compat",
        value_name = "ADDR",
        env = "FERRY_SEED_COMPAT",
        value_delimiter = ','
    )]
    seed_compat: Vec<Endpoint>,

    /// Also answer the socket tutorial's UDP ssh client on ADDR: each
    /// datagram is a shell command, run as this server's user in the root,
    /// and its stderr then stdout come back in datagrams of 1024 bytes. It
    /// trusts nothing: anyone who can send a datagram to the port runs
    /// commands, so it needs --allow-exec and listens on loopback only
    /// (unless --allow-remote-plaintext). One command per source at a time,
    /// --request-timeout each, at most 64 reply datagrams per source per
    /// 10 s. Repeatable.
    #[arg(
        long = "seed-compat-udp",
        value_name = "ADDR",
        env = "FERRY_SEED_COMPAT_UDP",
        value_delimiter = ','
    )]
    seed_compat_udp: Vec<Endpoint>,

    /// Also serve the framed services over QUIC on ADDR (UDP): the same
    /// certificate, token, per-client tokens and limits as TCP, ALPN
    /// `ferry/1`. Clients reach it with `--server quic://HOST:PORT` or
    /// `--quic`. Repeatable.
    // Text, not Endpoint: clap hands these values up to the global
    // `--quic` switch of the same name, which holds text.
    #[arg(
        long = "quic",
        value_name = "ADDR",
        env = "FERRY_QUIC",
        value_delimiter = ','
    )]
    quic: Vec<String>,

    /// Also serve the root to browsers on ADDR (HOST:PORT): HTTPS with the
    /// server's certificate, or plain HTTP with --plaintext (loopback only
    /// unless --allow-remote-plaintext). Needs the token (a login page or
    /// `Authorization: Bearer`) or a share link (`ferry link`). Repeatable.
    #[arg(
        long = "http",
        value_name = "ADDR",
        env = "FERRY_HTTP",
        value_delimiter = ','
    )]
    http: Vec<Endpoint>,

    /// Let the HTTP door take uploads (resumable, tus 1.0), from token
    /// holders that are not read-only and from links made with --upload.
    #[arg(long, env = "FERRY_HTTP_UPLOAD")]
    http_upload: bool,

    /// Threads of the async runtime (sockets, TLS, hashing); file IO runs
    /// on threads of its own [default: half the CPUs, at least 1].
    #[arg(long, value_name = "N", env = "FERRY_WORKERS",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,

    /// Apply per-source penalties and rate limits to loopback sources too
    /// (they are exempt by default, since every local user shares them).
    #[arg(long, env = "FERRY_PENALIZE_LOOPBACK")]
    penalize_loopback: bool,

    /// Seconds a source is refused after its first failed login (wrong
    /// token, garbage before hello, no hello in time); each failure in a
    /// row doubles it, up to --penalty-max.
    #[arg(long, value_name = "SECS", env = "FERRY_PENALTY_MIN", value_parser = parse_seconds,
          default_value = "5")]
    penalty_min: Duration,

    /// The longest a source is refused after failed logins; also how long
    /// its doubling is remembered once a penalty ends.
    #[arg(long, value_name = "SECS", env = "FERRY_PENALTY_MAX", value_parser = parse_seconds,
          default_value = "600")]
    penalty_max: Duration,

    /// Never refuse a source for its failed logins.
    #[arg(long, env = "FERRY_NO_PENALTIES")]
    no_penalties: bool,

    /// Largest frame header accepted, in bytes.
    #[arg(long, value_name = "BYTES", env = "FERRY_MAX_HEADER_BYTES",
          default_value_t = Limits::default().max_header_bytes)]
    max_header_bytes: usize,

    /// Print a systemd unit that runs this server with the other flags
    /// given, as a hardened service (user `ferry`, a read-only system, no
    /// privileges), and exit. Its root and state default to
    /// /var/lib/ferry/share and /var/lib/ferry/state.
    #[arg(long)]
    pub systemd_unit: bool,

    /// Last: its help heading applies to what follows it.
    #[command(flatten)]
    services: ServiceArgs,
}

/// The small services beside the framed one, like inetd's built-ins.
#[derive(Debug, Args)]
#[command(next_help_heading = "Datagram and echo services")]
struct ServiceArgs {
    /// The tutorial's UDP time service: a datagram holding a strftime
    /// format gets the local time in it (empty: `%Y-%m-%d %X`).
    #[arg(long, value_name = "ADDR", env = "FERRY_UDP_TIME",
          default_value = ferry::server::TIME_DEFAULT_ADDR)]
    udp_time: Endpoint,

    /// Do not run the UDP time service.
    #[arg(long, env = "FERRY_NO_UDP_TIME")]
    no_udp_time: bool,

    /// An SNTP server (RFC 4330) that NTP clients can ask for the time.
    #[arg(long, value_name = "ADDR", env = "FERRY_SNTP")]
    sntp: Option<Endpoint>,

    /// A UDP echo service (RFC 862): each datagram comes back.
    #[arg(long, value_name = "ADDR", env = "FERRY_UDP_ECHO")]
    udp_echo: Option<Endpoint>,

    /// A raw TCP echo service (RFC 862): no framing, no TLS, no token.
    #[arg(long, value_name = "ADDR", env = "FERRY_TCP_ECHO")]
    tcp_echo: Option<Endpoint>,

    /// A UDP gateway into the chat hub, for plain-UDP clients such as the
    /// tutorial's QQ client: each datagram is a chat line.
    #[arg(long, value_name = "ADDR", env = "FERRY_UDP_CHAT")]
    udp_chat: Option<Endpoint>,

    /// Upper-case what the echo services send back, as the tutorial's
    /// servers do.
    #[arg(long, env = "FERRY_ECHO_UPPER")]
    echo_upper: bool,
}

impl ServiceArgs {
    /// The UDP services the flags ask for, each with its address.
    fn udp(&self) -> Vec<(ferry::server::datagram::Service, Endpoint)> {
        use ferry::server::datagram::Service;
        let time = (!self.no_udp_time).then(|| (Service::Time, self.udp_time.clone()));
        let sntp = self.sntp.clone().map(|e| (Service::Sntp, e));
        let echo = self.udp_echo.clone().map(|e| {
            let upper = self.echo_upper;
            (Service::Echo { upper }, e)
        });
        time.into_iter().chain(sntp).chain(echo).collect()
    }
}

impl ServeArgs {
    /// Stage two: the flags as a server configuration.
    pub(super) fn to_config(&self, global: &GlobalArgs) -> Result<Config, Error> {
        let state_dir = match &self.state {
            Some(dir) => dir.clone(),
            None => ferry::server::default_state_dir().ok_or_else(|| {
                Error::Usage("HOME is not set; pass --state DIR for the server's state".into())
            })?,
        };
        Ok(Config {
            listen: self.listen.clone(),
            root: self.root.clone(),
            state_dir,
            plaintext: global.plaintext,
            allow_remote_plaintext: global.allow_remote_plaintext,
            penalties: !self.no_penalties,
            penalize_loopback: self.penalize_loopback,
            limits: Limits {
                max_header_bytes: self.max_header_bytes,
                max_connections: self.max_connections,
                max_unframed_connections: self.max_unframed_connections,
                max_handshakes: self.max_handshakes,
                hello_timeout: self.hello_timeout,
                idle_timeout: self.idle_timeout,
                request_timeout: self.request_timeout,
                drain_timeout: self.drain_timeout,
                max_commands: self.max_commands,
                job_buffer_bytes: self.job_buffer,
                penalty_min: self.penalty_min,
                penalty_max: self.penalty_max,
                ..Limits::default()
            },
            allow_exec: self.allow_exec,
            detachable_default: self.detachable_default,
            seed_compat: self.seed_compat.clone(),
            tcp_echo: self.services.tcp_echo.iter().cloned().collect(),
            udp: self.services.udp(),
            echo_upper: self.services.echo_upper,
            udp_chat: self.services.udp_chat.iter().cloned().collect(),
            seed_compat_udp: self.seed_compat_udp.clone(),
            quic: self
                .quic
                .iter()
                .map(|text| {
                    text.parse::<Endpoint>()
                        .map_err(|err| Error::Usage(format!("--quic: {err}")))
                })
                .collect::<Result<_, _>>()?,
            http: self.http.clone(),
            http_upload: self.http_upload,
        })
    }
}

/// The command line with the `--config` file's settings added for every
/// serve flag that neither the command line nor the environment gave.
/// `serve` is `ferry serve`'s matches, `argv` the whole command line.
pub fn with_config_file(
    argv: Vec<OsString>,
    serve: &ArgMatches,
    file: &Path,
) -> Result<Vec<OsString>, Error> {
    let text = std::fs::read_to_string(file).map_err(|err| {
        Error::Usage(format!(
            "cannot read the config file {}: {err}",
            file.display()
        ))
    })?;
    config_args(argv, serve, &text)
        .map_err(|err| Error::Usage(format!("{}: {err}", file.display())))
}

/// Flags that say what to do with the file, not how to serve.
const NOT_IN_CONFIG: &[&str] = &["config", "systemd-unit"];

fn config_args(
    mut argv: Vec<OsString>,
    serve: &ArgMatches,
    text: &str,
) -> Result<Vec<OsString>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|err| format!("not valid TOML: {err}"))?;
    let command = ServeArgs::augment_args(clap::Command::new("serve"));
    for (key, value) in &table {
        // The client's hosts, when one file serves both.
        if key == "hosts" {
            continue;
        }
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && !NOT_IN_CONFIG.contains(&key.as_str()))
            .ok_or_else(|| {
                format!("unknown setting `{key}`; settings are named as `ferry serve` flags, e.g. `idle-timeout`")
            })?;
        // The command line and the environment win over the file.
        if matches!(
            serve.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = OsString::from(format!("--{key}"));
        let takes_value = arg.get_action().takes_values();
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for value in values {
            match (value, takes_value) {
                (toml::Value::Boolean(true), false) => argv.push(flag.clone()),
                (toml::Value::Boolean(false), false) => {}
                (toml::Value::String(text), true) => argv.extend([flag.clone(), text.into()]),
                (toml::Value::Integer(n), true) => {
                    argv.extend([flag.clone(), n.to_string().into()])
                }
                (toml::Value::Float(x), true) => argv.extend([flag.clone(), x.to_string().into()]),
                _ => return Err(format!("`{key}` cannot be {value}")),
            }
        }
    }
    Ok(argv)
}

/// Runs the server until SIGINT or SIGTERM, then drains and returns
/// within `--drain-timeout` plus a second, whatever a blocking thread or
/// stderr is doing: the runtime waits [`BLOCKING_SHUTDOWN_TIMEOUT`] for
/// blocking threads and the log [`LOG_FLUSH_TIMEOUT`] for stderr.
pub fn run(args: ServeArgs, global: &GlobalArgs, log: Option<&StderrLog>) -> Result<(), Error> {
    let result = serve(args, global);
    if let Some(log) = log {
        log.flush(LOG_FLUSH_TIMEOUT);
    }
    result
}

fn serve(args: ServeArgs, global: &GlobalArgs) -> Result<(), Error> {
    let config = args.to_config(global)?;
    let workers = args
        .workers
        .map_or_else(ferry::server::default_workers, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        // Signals are hooked before the server says it is ready, so a
        // SIGTERM right after "ready" is never the default (fatal) one.
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let server = Server::bind(config).await?;
        match announce(&server) {
            // Whoever started the server stopped reading its stdout (say,
            // `ferry serve | head -1`): that is no reason to stop serving.
            Err(Error::Io(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
        server
            .run(async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            })
            .await;
        Ok(())
    });
    // Dropping the runtime would wait for every blocking thread, however
    // long it takes.
    runtime.shutdown_timeout(BLOCKING_SHUTDOWN_TIMEOUT);
    result
}

/// Prints what a user needs to connect, one `listening ADDR` line per
/// bound address, and last `ready`: whoever reads the lines (a script, the
/// tests) then knows it has seen every listener without knowing which flags
/// add one.
fn announce(server: &Server) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "ferry {} serving {}",
        env!("CARGO_PKG_VERSION"),
        server.root().display()
    )?;
    writeln!(out, "fingerprint {}", server.fingerprint())?;
    writeln!(out, "token in {}", server.token_path().display())?;
    for (endpoint, tls) in server.local_endpoints() {
        let mode = match (&endpoint, tls) {
            (Endpoint::Unix(_), _) => "unix socket, token required",
            (_, true) => "TLS",
            (_, false) => "plaintext",
        };
        writeln!(out, "listening {endpoint} ({mode})")?;
    }
    for (endpoint, tls) in server.http_endpoints() {
        let mode = if tls { "HTTPS" } else { "HTTP" };
        writeln!(out, "listening {endpoint} ({mode})")?;
    }
    for (endpoint, service) in server.service_endpoints() {
        writeln!(out, "listening {endpoint} ({service})")?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    /// `ServeArgs` from `argv` with the config file `text` applied.
    fn parse(argv: &[&str], text: &str) -> Result<ServeArgs, String> {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let matches = crate::cli::Cli::command()
            .try_get_matches_from(&argv)
            .unwrap();
        let serve = matches.subcommand_matches("serve").unwrap();
        let argv = config_args(argv, serve, text)?;
        let matches = crate::cli::Cli::command()
            .try_get_matches_from(argv)
            .map_err(|e| e.to_string())?;
        let cli = crate::cli::Cli::from_arg_matches(&matches).unwrap();
        match cli.command {
            crate::cli::Command::Serve(args) => Ok(*args),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_file_fills_in_flags_the_command_line_did_not_give() {
        let file = "idle-timeout = 60\nlisten = [\"127.0.0.1:0\", \"[::1]:0\"]\n\
                    allow-exec = true\nno-udp-time = true\ntcp-echo = \"127.0.0.1:7\"\n";
        let args = parse(&["ferry", "serve"], file).unwrap();
        assert_eq!(args.idle_timeout, Duration::from_secs(60));
        assert_eq!(args.listen.len(), 2);
        assert!(args.allow_exec && args.services.no_udp_time);
        assert_eq!(args.services.tcp_echo.unwrap().to_string(), "127.0.0.1:7");
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let args = parse(
            &["ferry", "serve", "--idle-timeout", "5"],
            "idle-timeout = 60\n",
        )
        .unwrap();
        assert_eq!(args.idle_timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        // Only this test reads FERRY_MAX_COMMANDS.
        std::env::set_var("FERRY_MAX_COMMANDS", "3");
        let args = parse(&["ferry", "serve"], "max-commands = 9\n");
        std::env::remove_var("FERRY_MAX_COMMANDS");
        assert_eq!(args.unwrap().max_commands, 3);
        assert_eq!(
            parse(&["ferry", "serve"], "max-commands = 9\n")
                .unwrap()
                .max_commands,
            9
        );
    }

    #[test]
    fn unknown_or_mistyped_settings_are_refused_by_name() {
        let err = parse(&["ferry", "serve"], "idle-timout = 60\n").unwrap_err();
        assert!(err.contains("unknown setting `idle-timout`"), "{err}");
        let err = parse(&["ferry", "serve"], "allow-exec = \"yes\"\n").unwrap_err();
        assert!(err.contains("`allow-exec` cannot be"), "{err}");
        let err = parse(&["ferry", "serve"], "config = \"other.toml\"\n").unwrap_err();
        assert!(err.contains("unknown setting `config`"), "{err}");
        // The client's hosts may share the file.
        let shared = "idle-timeout = 7\n[hosts.nas]\nserver = \"nas.lan:9001\"\n";
        assert_eq!(
            parse(&["ferry", "serve"], shared).unwrap().idle_timeout,
            Duration::from_secs(7)
        );
        let err = parse(&["ferry", "serve"], "systemd-unit = true\n").unwrap_err();
        assert!(err.contains("unknown setting `systemd-unit`"), "{err}");
        assert!(parse(&["ferry", "serve"], "not toml [").is_err());
    }
}
