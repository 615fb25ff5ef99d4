//! `ferry exec`: run a command on the server. The client exits with the
//! command's status (128+N for a signal, 124 after `--timeout`), and with 3
//! when ferry itself failed, so a wrapper can tell the two apart. On
//! success it adds nothing to the command's stdout or stderr.

use std::io::IsTerminal;

use clap::Args;
use ferry::client::Endpoint;
use ferry::client::Error;
use ferry::client::ExecRequest;

use super::prompt::PromptedLines;
use super::{connect, parse_seconds, GlobalArgs};

/// `ferry exec` arguments.
#[derive(Debug, Args)]
#[command(override_usage = "ferry exec [OPTIONS] [HOST] -- COMMAND [ARGS...]")]
pub struct ExecArgs {
    /// The server: a host of the config file (`ferry hosts`) or an address
    /// with its port [default: --server]. The command goes after `--`.
    #[arg(value_name = "HOST", conflicts_with_all = ["hosts", "hosts_file"])]
    pub host: Option<String>,

    /// Working directory on the server, relative to its root (or absolute)
    /// [default: the root].
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,

    /// Set a variable for the command; repeat for more.
    #[arg(long, value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,

    /// Kill the command (and everything it started) after this many
    /// seconds; the client then exits 124.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<std::time::Duration>,

    /// Keep the command running on the server if the connection drops:
    /// the client reconnects by itself and the output goes on, nothing lost
    /// or repeated; `ferry jobs` lists such commands and `ferry attach ID`
    /// follows one from another terminal. Stdin sent into a dropped
    /// connection is lost.
    #[arg(long, conflicts_with_all = ["hosts", "hosts_file"])]
    detachable: bool,

    /// With --detachable: how long the command runs on without a
    /// connection before the server kills it.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout, default_value = "60",
          requires = "detachable")]
    linger: std::time::Duration,

    /// Run the command on each of these servers at once (HOST:PORT,...),
    /// each output line prefixed by its host, then a summary.
    #[arg(
        long,
        value_name = "ADDR,...",
        value_delimiter = ',',
        conflicts_with = "hosts_file"
    )]
    hosts: Vec<Endpoint>,

    /// Like --hosts, from a file of one address per line (# comments).
    #[arg(long, value_name = "FILE")]
    hosts_file: Option<std::path::PathBuf>,

    /// With --hosts: how many servers to run on at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    parallel: usize,

    /// With --hosts: print one JSON record per host on stdout (exit code,
    /// signal, duration); the command's output goes to stderr.
    #[arg(long)]
    json: bool,

    /// The command. One argument runs through the server's shell
    /// (`sh -c`); several run directly, without a shell. Without a
    /// command, each line of stdin is run (with a `>> ` prompt on a
    /// terminal) until EOF.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    match parse_seconds(text)? {
        zero if zero.is_zero() => Err("the timeout must be more than 0 seconds".into()),
        timeout => Ok(timeout),
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not K=V")),
    }
}

impl ExecArgs {
    /// Starts the command in `dir` unless `--cwd` says where.
    pub fn default_cwd(&mut self, dir: &[u8]) {
        if self.cwd.is_none() {
            self.cwd = Some(String::from_utf8_lossy(dir).into_owned());
        }
    }

    fn request(&self, command: &[String]) -> ExecRequest {
        let (shell, argv) = match command {
            [line] => (Some(line.clone()), None),
            argv => (None, Some(argv.to_vec())),
        };
        ExecRequest {
            shell,
            argv,
            cwd: self.cwd.clone(),
            env: self.env.iter().cloned().collect(),
            timeout_secs: self.timeout.map(|t| t.as_secs_f64()),
            detachable: self.detachable,
            linger_secs: self.detachable.then_some(self.linger.as_secs_f64()),
        }
    }
}

/// Runs `ferry exec`; returns the exit status to leave with.
pub async fn run(args: ExecArgs, global: &GlobalArgs) -> Result<u8, Error> {
    let hosts = match &args.hosts_file {
        Some(path) => super::exec_hosts::read_hosts_file(path)?,
        None => args.hosts.clone(),
    };
    if !hosts.is_empty() || args.hosts_file.is_some() {
        if args.command.is_empty() {
            return Err(Error::Usage("--hosts needs a command: -- COMMAND".into()));
        }
        let request = args.request(&args.command);
        return super::exec_hosts::run(hosts, request, args.parallel, args.json, global).await;
    }
    let not_run = |err: Error| match err {
        Error::Remote(reply) => Error::NotRun(reply),
        other => other,
    };
    let mut client = connect(global).await?;
    client.announce_jobs(std::io::stderr().is_terminal() && !global.quiet);
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    if !args.command.is_empty() {
        let request = args.request(&args.command);
        let stdin = Some(tokio::io::stdin());
        let end = client
            .exec(&request, stdin, &mut stdout, &mut stderr)
            .await
            .map_err(not_run)?;
        client.close().await;
        return Ok(end.shell_status().clamp(0, 255) as u8);
    }
    // The tutorial's loop: one command per line, its output, the next.
    let mut lines = PromptedLines::new();
    let mut status = 0;
    while let Some(line) = lines.next().await? {
        // Running the lines after one that cannot be sent could do harm in
        // a script: stop there.
        let Ok(command) = std::str::from_utf8(line) else {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a command line is not UTF-8; stopped before running it",
            )));
        };
        let request = args.request(&[command.trim().to_string()]);
        let end = client
            .exec(&request, None::<tokio::io::Empty>, &mut stdout, &mut stderr)
            .await
            .map_err(not_run)?;
        status = end.shell_status().clamp(0, 255);
    }
    client.close().await;
    Ok(status as u8)
}
