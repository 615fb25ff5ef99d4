//! The command line: clap structs (doc comments are the `--help`), turned
//! into validated library options, then run. Exit codes: 0 success, 1 the
//! server answered with an error or a transfer failed, 2 usage, 3 ferry
//! could not do its part (connect, TLS, fingerprint, authentication, or a
//! local failure outside a transfer); see [`ferry::client::Error`].

mod address;
mod chat;
mod copy;
mod datagram;
mod echo;
mod exec;
mod exec_hosts;
mod files;
mod hosts;
mod install;
mod jobs;
mod link;
mod output;
mod pair;
mod progress;
mod prompt;
mod serve;
mod shell;
mod sync;
mod tokens;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ferry::client::address::Target;
use ferry::client::known_hosts::{self, KnownHosts};
use ferry::client::Error;
use ferry::client::{Client, ClientOptions, Notice};
use ferry::client::{Endpoint, Fingerprint};
use ferry::server::StderrLog;

/// Move files and run commands between your own machines.
///
/// Start a server with `ferry serve`, then talk to it with any other command.
/// Connections use TLS 1.3; the client pins the server's certificate on first
/// use, as ssh does, and authenticates with the server's access token.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `ferry --version`: the program's version and the wire protocol's, which
/// is what decides whether two ferries can talk (checked against
/// `ferry::client::PROTOCOL_VERSION` by a test below).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (protocol 1)");

/// Options every command accepts, before or after its name.
#[derive(Debug, Clone, Args)]
struct GlobalArgs {
    /// The config file. For `ferry serve`, its flags as TOML, one key per
    /// flag (`idle-timeout = 60`, `listen = ["127.0.0.1:9001"]`; flags on
    /// the command line and FERRY_* variables win). For every other
    /// command, the client's named hosts ([hosts.NAME] tables) [default:
    /// $XDG_CONFIG_HOME/ferry/config.toml]. One file may hold both.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "FERRY_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// Server to talk to: HOST:PORT, [IPV6]:PORT, unix:PATH or
    /// quic://HOST:PORT [default:
    /// 127.0.0.1:9001; `time` asks 127.0.0.1:9000 and `udp-echo`
    /// 127.0.0.1:7, and they take --server from the command line only].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "FERRY_SERVER",
        value_name = "ADDR"
    )]
    server: Option<Endpoint>,

    /// Whether `--server` came from the command line (not FERRY_SERVER),
    /// which the datagram commands need to know.
    #[arg(skip)]
    server_on_command_line: bool,

    /// Access token [default: the token file of a server on this machine].
    /// Other users see it in `ps`: prefer --token-file.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "FERRY_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,

    /// Read the access token from this file (a copy of the server's
    /// `token` file, mode 0600).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "FERRY_TOKEN_FILE",
        value_name = "PATH"
    )]
    token_file: Option<PathBuf>,

    /// Which of `--token` and `--token-file` came from the command line
    /// (not the environment): a flag beats the other's variable.
    #[arg(skip)]
    token_on_command_line: (bool, bool),

    /// Require this server certificate fingerprint (and re-pin to it).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "FERRY_FINGERPRINT",
        value_name = "SHA256:..."
    )]
    fingerprint: Option<Fingerprint>,

    /// Whether `--fingerprint` came from the command line, where it beats
    /// a configured host's.
    #[arg(skip)]
    fingerprint_on_command_line: bool,

    /// Speak plain TCP instead of TLS (loopback only, unless
    /// --allow-remote-plaintext).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "FERRY_PLAINTEXT"
    )]
    plaintext: bool,

    /// Connect over QUIC (UDP, always encrypted) to the same host and port,
    /// as `--server quic://HOST:PORT` does; the server needs `--quic`.
    // Text, not a bool: `serve` has a `--quic ADDR` of its own, whose
    // values clap hands up under this same name, and a bool cannot hold
    // them. Any value here means yes.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        num_args = 0,
        default_missing_value = "",
        value_name = ""
    )]
    quic: Option<String>,

    /// Allow plaintext off loopback: a client's --plaintext to a server on
    /// another machine, and a server's --plaintext listener and token-less
    /// listeners (--seed-compat, --seed-compat-udp, --tcp-echo, --udp-echo,
    /// --udp-chat, --udp-time) on non-loopback addresses. Anyone on the path can then
    /// read and change the traffic.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "FERRY_ALLOW_REMOTE_PLAINTEXT"
    )]
    allow_remote_plaintext: bool,

    /// Say more: put and get print a line per file (-v) and the
    /// protocol's steps (-vv); the server logs each request (-v). RUST_LOG
    /// overrides.
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    verbose: u8,

    /// Print nothing but the requested output and errors.
    #[arg(short, long, global = true, help_heading = "Global options")]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the server.
    Serve(Box<serve::ServeArgs>),
    /// Send text to the echo service and print the answer.
    Echo(echo::EchoArgs),
    /// Upload files (and with -r, directories): ferry put LOCAL... [HOST:DEST]
    Put(files::PutArgs),
    /// Download files (and with -r, directories): ferry get [HOST:]REMOTE... [LOCAL]
    Get(files::GetArgs),
    /// List a remote directory.
    Ls(files::LsArgs),
    /// Describe a remote path: kind, size, mode, mtime, and BLAKE3 on request.
    Stat(files::StatArgs),
    /// Create a remote directory.
    Mkdir(files::MkdirArgs),
    /// Remove remote files (and with -r, directories).
    Rm(files::RmArgs),
    /// Keep a tree the same on both ends, sending only what changed:
    /// ferry sync SRC DST (one side HOST:PATH)
    Sync(sync::SyncArgs),
    /// Run a command on the server: ferry exec [OPTIONS] [HOST] -- COMMAND [ARGS...]
    Exec(exec::ExecArgs),
    /// Open an interactive login shell on the server, like `ssh host`: ferry shell [HOST]
    ///
    /// Without a terminal on stdin (`ferry shell < script`), the login
    /// shell runs the script without a pseudo-terminal and ends at its end,
    /// as `ssh host < script` does; stdout and stderr stay apart and the
    /// exit status is the script's.
    Shell(shell::ShellArgs),
    /// List this client's detachable commands on the server (`exec
    /// --detachable`, `shell --detachable`).
    Jobs(jobs::JobsArgs),
    /// Follow a detachable command again, from another terminal: ferry attach ID [HOST]
    Attach(jobs::AttachArgs),
    /// Chat with others on the server: interactively, or --send / --listen.
    Chat(chat::ChatArgs),
    /// Ask the UDP time service for the time, in a strftime format.
    Time(datagram::TimeArgs),
    /// Send text to a UDP echo service and print the answer.
    UdpEcho(datagram::UdpEchoArgs),
    /// On the server's machine: list, add or revoke per-client tokens.
    Tokens(tokens::TokensArgs),
    /// On the server's machine: make a share link (a URL granting one file
    /// or folder over `serve --http`), list or revoke them.
    Link(link::LinkArgs),
    /// On the server's machine: print a one-time code for `ferry pair`.
    Invite(pair::InviteArgs),
    /// Pair this machine with a server: its fingerprint and a token of this
    /// machine's own, from the code `ferry invite` printed (or over ssh).
    Pair(pair::PairArgs),
    /// List the hosts of the client's config file.
    Hosts(hosts::HostsArgs),
    /// Print a shell completion script: ferry completions bash > FILE.
    Completions(install::CompletionsArgs),
    /// Print the manual page (roff) of ferry, or of one command.
    Man(install::ManArgs),
}

/// Parses, runs, and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    let mut matches = <Cli as clap::CommandFactory>::command().get_matches();
    let config = matches
        .subcommand_matches("serve")
        .and_then(|serve| Some((serve.clone(), serve.get_one::<PathBuf>("config")?.clone())));
    if let Some((serve, file)) = config {
        // Stage one and a half: settings from the config file become flags
        // for whatever the command line and environment left unset.
        let argv = match serve::with_config_file(std::env::args_os().collect(), &serve, &file) {
            Ok(argv) => argv,
            Err(err) => return report(&err),
        };
        matches = <Cli as clap::CommandFactory>::command().get_matches_from(argv);
    }
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    cli.global.server_on_command_line = on_command_line(&matches, "server");
    cli.global.token_on_command_line = (
        on_command_line(&matches, "token"),
        on_command_line(&matches, "token_file"),
    );
    cli.global.fingerprint_on_command_line = on_command_line(&matches, "fingerprint");
    let serving = matches!(&cli.command, Command::Serve(args) if !args.systemd_unit);
    let log = init_logging(&cli.global, serving);
    let global = &cli.global;
    // Each client command aims the global options at its host (if it
    // names one) and reads the token file once: file commands in
    // `files.rs`, where their arguments are read; the rest here.
    let result = match cli.command {
        Command::Serve(args) if args.systemd_unit => {
            let serve = matches.subcommand_matches("serve").expect("serve matches");
            serve::systemd_unit::print(&args, global, serve)
        }
        Command::Serve(args) => serve::run(*args, global, log.as_ref()),
        Command::Echo(args) => global
            .for_target(None)
            .and_then(|global| run_client(echo::run(args, &global))),
        Command::Put(args) => run_client(files::put(args, global)),
        Command::Get(args) => run_client(files::get(args, global)),
        Command::Ls(args) => run_client(files::ls(args, global)),
        Command::Stat(args) => run_client(files::stat(args, global)),
        Command::Mkdir(args) => run_client(files::mkdir(args, global)),
        Command::Rm(args) => run_client(files::rm(args, global)),
        Command::Sync(args) => {
            let positions = |name: &str| -> Vec<usize> {
                matches
                    .subcommand_matches("sync")
                    .and_then(|m| m.indices_of(name))
                    .map(|i| i.collect())
                    .unwrap_or_default()
            };
            let (exclude, include, from) = (
                positions("exclude"),
                positions("include"),
                positions("exclude_from"),
            );
            sync::ordered_rules(&args, (&exclude, &include, &from))
                .and_then(|rules| run_client(sync::run(args, rules, global)))
        }
        Command::Exec(mut args) => {
            return exit_with_status(global.for_host(args.host.as_deref()).and_then(
                |(global, target)| {
                    // A host's remote directory is where its commands start.
                    if let Some(dir) = target.filter(|t| !t.remote_dir.is_empty()) {
                        args.default_cwd(&dir.remote_dir);
                    }
                    run_client(exec::run(args, &global))
                },
            ));
        }
        Command::Shell(args) => {
            return exit_with_status(
                global
                    .for_host(args.host.as_deref())
                    .and_then(|(global, _)| run_client(shell::run(args, &global))),
            )
        }
        Command::Jobs(args) => global
            .for_host(args.host.as_deref())
            .and_then(|(global, _)| run_client(jobs::list(args, &global))),
        Command::Attach(args) => {
            return exit_with_status(
                global
                    .for_host(args.host.as_deref())
                    .and_then(|(global, _)| run_client(jobs::attach(args, &global))),
            )
        }
        Command::Chat(args) => global
            .for_target(None)
            .and_then(|global| run_client(chat::run(args, &global))),
        Command::Time(args) => run_client(datagram::time(args, global)),
        Command::UdpEcho(args) => run_client(datagram::udp_echo(args, global)),
        Command::Tokens(args) => tokens::run(args),
        Command::Link(args) => link::run(args),
        Command::Invite(args) => pair::invite(args, global),
        Command::Pair(args) => run_client(pair::pair(args, global)),
        Command::Hosts(args) => hosts::run(args, global),
        Command::Completions(args) => install::completions(&args),
        Command::Man(args) => install::man(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Whether the global option `id` was given on the command line, before or
/// after the command name (a global option is recorded on the command's
/// matches), rather than through its environment variable.
fn on_command_line(matches: &clap::ArgMatches, id: &str) -> bool {
    let given =
        |m: &clap::ArgMatches| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    given(matches) || matches.subcommand().is_some_and(|(_, sub)| given(sub))
}

/// For commands that exit with a remote command's status (0-255), every
/// failure of ferry's own is 3, whatever its kind: a wrapper reads any
/// other status as the command's, and `ferry:` on stderr says which it is.
fn exit_with_status(result: Result<u8, Error>) -> ExitCode {
    match result {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            let code = report(&err);
            if code == ExitCode::SUCCESS || err.exit_code() == ferry::client::EXIT_USAGE {
                code
            } else {
                ExitCode::from(ferry::client::EXIT_CONNECT)
            }
        }
    }
}

/// Prints `ferry: error` and its hint to stderr and returns the exit code.
/// A closed stdout (`ferry ... | head`) is not an error, and a closed
/// stderr does not change the exit code (`eprintln!` would panic).
fn report(err: &Error) -> ExitCode {
    use std::io::Write;
    if let Error::Io(io) = err {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
    }
    let mut text = format!(
        "ferry: {}\n",
        output::escape_for_terminal(err.to_string().as_bytes())
    );
    if let Some(hint) = err.hint() {
        text += &format!("  hint: {}\n", output::escape_line(&hint));
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
    ExitCode::from(err.exit_code())
}

/// Sends `tracing` to stderr. Errors writing it are dropped, never
/// printed (tracing-subscriber's own report would be an `eprintln!`, which
/// panics on a closed stderr). The server logs through [`StderrLog`],
/// returned here so it can flush at exit: a stderr that is full or slow
/// must not hold a connection or the shutdown.
fn init_logging(global: &GlobalArgs, serving: bool) -> Option<StderrLog> {
    use tracing_subscriber::EnvFilter;
    let levels = ["error", "warn", "info", "debug", "trace"];
    let base = if global.quiet {
        0
    } else if serving {
        2
    } else {
        1
    };
    let level = levels[(base + global.verbose as usize).min(levels.len() - 1)];
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("ferry={level},warn")));
    let logging = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .log_internal_errors(false);
    if serving {
        if let Ok(log) = StderrLog::start() {
            logging.with_writer(log.clone()).init();
            return Some(log);
        }
    }
    logging.with_writer(std::io::stderr).init();
    None
}

/// Runs a client command. Clients start often and do their heavy file work
/// on blocking threads: one runtime thread starts fastest. The runtime is
/// not waited for on the way out: a read of stdin blocked on a terminal
/// (exec forwarding stdin to a command that never read it) must not keep
/// the process alive.
fn run_client<T>(command: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(command);
    runtime.shutdown_background();
    result
}

/// The state directory of a server on this machine: `FERRY_STATE`, else the
/// default.
fn local_state_dir() -> Option<PathBuf> {
    std::env::var_os("FERRY_STATE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(ferry::client::default_state_dir)
}

/// Reads `--token-file` into `--token`, once for the whole command, and
/// warns if others may read the file. Given both ways, a flag beats the
/// other's environment variable; two flags or two variables are a usage
/// error.
fn read_token_file(global: &mut GlobalArgs) -> Result<(), Error> {
    let Some(path) = &global.token_file else {
        return Ok(());
    };
    if global.token.is_some() {
        match global.token_on_command_line {
            (true, true) => {
                return Err(Error::Usage(
                    "--token and --token-file both name a token; keep --token-file (other users \
                     can see --token in `ps`)"
                        .into(),
                ))
            }
            (false, false) => {
                return Err(Error::Usage(
                    "FERRY_TOKEN and FERRY_TOKEN_FILE are both set; unset one (FERRY_TOKEN_FILE \
                     keeps the token out of the environment)"
                        .into(),
                ))
            }
            (true, false) => return Ok(()),
            (false, true) => {}
        }
    }
    let file = ferry::client::token_file::TokenFile::read(path)?;
    if let Some(warning) = file.warning().filter(|_| !global.quiet) {
        eprintln!("ferry: warning: {}", output::escape_line(&warning));
    }
    global.token = Some(file.token);
    Ok(())
}

impl GlobalArgs {
    /// The client's config file: `--config` or FERRY_CONFIG, else the
    /// default.
    fn client_config_path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(ferry::client::config::ClientConfig::default_path)
            .unwrap_or_else(|| PathBuf::from("$XDG_CONFIG_HOME/ferry/config.toml"))
    }

    /// The client's config file, read (empty if it does not exist).
    fn client_config(&self) -> Result<ferry::client::config::ClientConfig, Error> {
        ferry::client::config::ClientConfig::load(&self.client_config_path())
    }

    /// These options aimed at the host argument `host` (a configured name
    /// or an address with its port), or as given without one; and the
    /// host it named.
    fn for_host(&self, host: Option<&str>) -> Result<(GlobalArgs, Option<Target>), Error> {
        let target = match host {
            Some(host) => Some(ferry::client::address::parse_host(
                host,
                &self.client_config()?,
            )?),
            None => None,
        };
        Ok((self.for_target(target.as_ref())?, target))
    }

    /// These options aimed at `target`, with the token file read. A flag on
    /// the command line beats the host's setting, which beats the
    /// environment (`FERRY_SERVER`, `FERRY_TOKEN`...); `--server` and a
    /// host together are a usage error.
    fn for_target(&self, target: Option<&Target>) -> Result<GlobalArgs, Error> {
        let mut aimed = self.clone();
        if let Some(target) = target {
            if self.server_on_command_line {
                return Err(Error::Usage(format!(
                    "--server and `{}` both name the server; keep one",
                    target.name
                )));
            }
            aimed.server = Some(target.server.clone());
            let (token_flag, token_file_flag) = self.token_on_command_line;
            if let Some(file) = target
                .token_file
                .as_ref()
                .filter(|_| !token_flag && !token_file_flag)
            {
                aimed.token = None;
                aimed.token_file = Some(file.clone());
            }
            if let Some(fp) = target
                .fingerprint
                .filter(|_| !self.fingerprint_on_command_line)
            {
                aimed.fingerprint = Some(fp);
            }
        }
        read_token_file(&mut aimed)?;
        Ok(aimed)
    }
}

/// Client options from the global flags.
fn client_options(global: &GlobalArgs) -> ClientOptions {
    ClientOptions {
        token: global.token.clone(),
        fingerprint: global.fingerprint,
        plaintext: global.plaintext,
        allow_remote_plaintext: global.allow_remote_plaintext,
        known_hosts: known_hosts::default_path().map(KnownHosts::new),
        state_dir: local_state_dir(),
        ..ClientOptions::new(framed_server(global))
    }
}

/// The framed server: `--server` or FERRY_SERVER, else the default; over
/// QUIC with `--quic`.
fn framed_server(global: &GlobalArgs) -> Endpoint {
    let server = global.server.clone().unwrap_or_else(|| {
        ferry::server::DEFAULT_LISTEN
            .parse()
            .expect("the default address parses")
    });
    with_transport(global, server)
}

/// `server` over QUIC when `--quic` asks for it.
fn with_transport(global: &GlobalArgs, server: Endpoint) -> Endpoint {
    match global.quic {
        Some(_) => server.into_quic(),
        None => server,
    }
}

/// Connects and reports notices (a new pin) on stderr.
async fn connect(global: &GlobalArgs) -> Result<Client, Error> {
    let mut client = Client::connect(&client_options(global)).await?;
    report_notices(&mut client, global.quiet);
    Ok(client)
}

/// Prints what connecting did that the user must hear of (a new pin) on
/// stderr, unless `quiet`: every command that connects says it the same way.
fn report_notices(client: &mut Client, quiet: bool) {
    for notice in client.take_notices() {
        if quiet {
            continue;
        }
        match notice {
            Notice::Pinned {
                endpoint,
                fingerprint,
                known_hosts,
            } => eprintln!(
                "ferry: pinned the certificate of {endpoint} ({fingerprint}) in {}",
                known_hosts.display()
            ),
            Notice::Repinned {
                endpoint,
                fingerprint,
                known_hosts,
            } => eprintln!(
                "ferry: re-pinned the certificate of {endpoint} to {fingerprint} in {}",
                known_hosts.display()
            ),
        }
    }
}

/// Parses a number of seconds, fractions and an `s` allowed: `10`, `0.5`,
/// `15s`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .strip_suffix('s')
        .unwrap_or(text)
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{text}` is not a sensible number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_version_names_the_protocol_version() {
        let protocol = format!("(protocol {})", ferry::client::PROTOCOL_VERSION);
        assert_eq!(VERSION, format!("{} {protocol}", env!("CARGO_PKG_VERSION")));
        let long = Cli::command().render_version();
        assert_eq!(long, format!("ferry {VERSION}\n"));
    }

    #[test]
    fn quic_is_a_switch_for_clients_and_takes_addresses_for_serve() {
        let client = Cli::try_parse_from(["ferry", "echo", "x", "--quic"]).unwrap();
        let server: Endpoint = "[::1]:7".parse().unwrap();
        assert_eq!(
            with_transport(&client.global, server.clone()).to_string(),
            "quic://[::1]:7"
        );
        let plain = Cli::try_parse_from(["ferry", "echo", "x"]).unwrap();
        assert_eq!(with_transport(&plain.global, server.clone()), server);
        // A switch: it never takes the next argument as its value.
        let before = Cli::try_parse_from(["ferry", "--quic", "echo", "x"]).unwrap();
        assert!(before.global.quic.is_some());
        assert!(matches!(before.command, Command::Echo(_)));
        let serve = [
            "ferry",
            "serve",
            "--quic",
            "127.0.0.1:1",
            "--quic",
            "[::1]:2",
        ];
        let serve = Cli::try_parse_from(serve).unwrap();
        let Command::Serve(args) = serve.command else {
            panic!("not serve")
        };
        let config = args.to_config(&serve.global).unwrap();
        let quic: Vec<String> = config.quic.iter().map(|e| e.to_string()).collect();
        assert_eq!(quic, ["127.0.0.1:1", "[::1]:2"]);
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let before =
            Cli::try_parse_from(["ferry", "--plaintext", "--server", "[::1]:7", "echo", "x"])
                .unwrap();
        let after =
            Cli::try_parse_from(["ferry", "echo", "x", "--server", "[::1]:7", "--plaintext"])
                .unwrap();
        for cli in [before, after] {
            assert!(cli.global.plaintext);
            assert_eq!(cli.global.server.unwrap().to_string(), "[::1]:7");
        }
    }

    #[test]
    fn a_token_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from(["ferry", "--token", "-kX3", "echo", "x"]).unwrap();
        assert_eq!(cli.global.token.as_deref(), Some("-kX3"));
    }

    #[test]
    fn seconds_parse_with_fractions_and_refuse_nonsense() {
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_seconds("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("s").is_err());
        assert!(parse_seconds("1m").is_err());
        for bad in ["-1", "x", "inf", "NaN", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
