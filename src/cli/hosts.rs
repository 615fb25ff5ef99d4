//! `ferry hosts`: the named hosts of the client's config file, one line
//! each (or one JSON object each), in file order.

use std::path::Path;

use clap::Args;
use ferry::client::config::HostEntry;
use ferry::client::Error;
use serde::Serialize;

use super::output::{escape_line, print_escaped_line, print_peer_bytes};
use super::GlobalArgs;

/// `ferry hosts` arguments.
#[derive(Debug, Args)]
pub struct HostsArgs {
    /// One JSON object per host, one per line.
    #[arg(long)]
    json: bool,
}

/// A host as `--json` prints it.
#[derive(Debug, Serialize)]
struct HostRecord<'a> {
    name: &'a str,
    server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_dir: Option<&'a str>,
}

impl<'a> HostRecord<'a> {
    fn new(name: &'a str, entry: &'a HostEntry) -> HostRecord<'a> {
        HostRecord {
            name,
            server: entry.server.to_string(),
            token_file: entry.token_file.as_deref().map(display),
            fingerprint: entry.fingerprint.map(|fp| fp.to_string()),
            remote_dir: entry.remote_dir.as_deref(),
        }
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Runs `ferry hosts`. No hosts is not an error: stderr says where they
/// would be and how to add one.
pub fn run(args: HostsArgs, global: &GlobalArgs) -> Result<(), Error> {
    let config = global.client_config()?;
    if config.hosts().next().is_none() && !global.quiet {
        eprintln!(
            "ferry: no hosts in {}; add one with `ferry pair`, or a [hosts.NAME] table with its \
             `server`",
            escape_line(&display(config.path()))
        );
    }
    for (name, entry) in config.hosts() {
        let record = HostRecord::new(name, entry);
        if args.json {
            let line = serde_json::to_string(&record).map_err(std::io::Error::other)?;
            print_peer_bytes(line.as_bytes())?;
            continue;
        }
        let mut line = format!("{name}  {}", record.server);
        for (key, value) in [
            ("remote-dir", record.remote_dir.map(str::to_string)),
            ("fingerprint", record.fingerprint),
            ("token-file", record.token_file),
        ] {
            if let Some(value) = value {
                line.push_str(&format!("  {key}={value}"));
            }
        }
        print_escaped_line(line.as_bytes())?;
    }
    Ok(())
}
