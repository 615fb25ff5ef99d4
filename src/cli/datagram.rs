//! `ferry time` and `ferry udp-echo`: one datagram to a service of
//! `ferry serve` (or any server of the same protocol), one reply printed.

use clap::Args;
use ferry::client::datagram::{self, Retry};
use ferry::client::Endpoint;
use ferry::client::Error;

use super::{output, parse_seconds, GlobalArgs};

/// `ferry time` arguments.
#[derive(Debug, Args)]
pub struct TimeArgs {
    /// A strftime format, e.g. `%H:%M:%S`; without it the server uses
    /// `%Y-%m-%d %X`.
    #[arg(value_name = "FORMAT")]
    format: Option<String>,

    #[command(flatten)]
    retry: RetryArgs,
}

/// `ferry udp-echo` arguments.
#[derive(Debug, Args)]
pub struct UdpEchoArgs {
    /// Text to send, joined by spaces.
    #[arg(value_name = "TEXT", required = true)]
    text: Vec<String>,

    #[command(flatten)]
    retry: RetryArgs,
}

/// How patiently to ask.
#[derive(Debug, Args)]
struct RetryArgs {
    /// Datagrams to send before giving up (UDP may lose any of them).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    tries: u32,

    /// Seconds to wait for a reply to each.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = "1")]
    wait: std::time::Duration,
}

impl RetryArgs {
    fn retry(&self) -> Retry {
        Retry {
            tries: self.tries,
            timeout: self.wait,
        }
    }
}

/// Where a datagram command asks: `--server` when given on the command
/// line, else the service's default address. FERRY_SERVER names the
/// framed server, so it is not used here.
fn server(global: &GlobalArgs, default: &str) -> Result<Endpoint, Error> {
    match (&global.server_on_command_line, &global.server) {
        (true, Some(server)) => Ok(server.clone()),
        _ => default
            .parse()
            .map_err(|err| Error::Usage(format!("bad default address {default}: {err}"))),
    }
}

/// Runs `ferry time`.
pub async fn time(args: TimeArgs, global: &GlobalArgs) -> Result<(), Error> {
    let server = server(global, ferry::client::datagram::TIME_DEFAULT_ADDR)?;
    let format = args.format.unwrap_or_default();
    let reply = datagram::ask(&server, format.as_bytes(), args.retry.retry()).await?;
    output::print_peer_bytes(&reply)?;
    Ok(())
}

/// Runs `ferry udp-echo`.
pub async fn udp_echo(args: UdpEchoArgs, global: &GlobalArgs) -> Result<(), Error> {
    let server = server(global, DEFAULT_UDP_ECHO)?;
    let text = args.text.join(" ");
    let reply = datagram::ask(&server, text.as_bytes(), args.retry.retry()).await?;
    output::print_peer_bytes(&reply)?;
    Ok(())
}

/// Where `ferry udp-echo` asks without `--server`: the echo port of RFC 862
/// on this machine.
const DEFAULT_UDP_ECHO: &str = "127.0.0.1:7";
