//! `ferry tokens`: the server machine's per-client tokens, in its state
//! directory. A running server sees each change at a client's next
//! request; nothing needs restarting.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use ferry::client::Error;
use ferry::server::tokens::{Clients, Limits};

use super::output::format_utc;

/// `ferry tokens` arguments.
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// The server's state directory [default: $XDG_STATE_HOME/ferry or
    /// ~/.local/state/ferry], as for `ferry serve --state`.
    #[arg(long, value_name = "DIR", env = "FERRY_STATE")]
    state: Option<PathBuf>,
    #[command(subcommand)]
    action: TokensAction,
}

#[derive(Debug, Subcommand)]
enum TokensAction {
    /// List the clients: name, limits, when made.
    List,
    /// Make a token for a new client NAME and print it (once: only its hash
    /// is kept).
    Add(AddArgs),
    /// Revoke client NAME's token; its next request is refused.
    Revoke {
        /// The client's name.
        name: String,
    },
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The client's name: letters, digits, `.`, `_`, `-`.
    name: String,
    /// Reads only: no put, mkdir, rm, exec or shell.
    #[arg(long)]
    read_only: bool,
    /// No exec or shell.
    #[arg(long)]
    no_exec: bool,
    /// Confine the client to this directory beneath the served root.
    #[arg(long, value_name = "DIR")]
    root_subdir: Option<String>,
    /// Write the token to FILE (mode 0600, refused if it exists) instead of
    /// printing it.
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    out: Option<PathBuf>,
    /// Print `{"name", "token", "fingerprint"}` as JSON (what `ferry pair
    /// --ssh` reads).
    #[arg(long)]
    json: bool,
}

/// Runs `ferry tokens`.
pub fn run(args: TokensArgs) -> Result<(), Error> {
    let state = match args.state {
        Some(dir) => dir,
        None => ferry::server::default_state_dir().ok_or_else(|| {
            Error::Usage("HOME is not set; pass --state DIR for the server's state".into())
        })?,
    };
    match args.action {
        TokensAction::List => {
            let clients = Clients::load(&state)?;
            let mut out = std::io::stdout().lock();
            for (name, entry) in &clients.clients {
                writeln!(
                    out,
                    "{name}\t{}\t{}",
                    describe(&entry.limits),
                    format_utc(entry.created)
                )?;
            }
            Ok(())
        }
        TokensAction::Add(add) => {
            if let Some(dir) = &add.root_subdir {
                ferry::server::tokens::check_root_subdir(dir).map_err(Error::Usage)?;
            }
            let limits = Limits {
                read_only: add.read_only,
                no_exec: add.no_exec,
                root_subdir: add.root_subdir,
            };
            let now = chrono::Utc::now().timestamp();
            let token = Clients::update(&state, |clients| clients.add(&add.name, limits, now))
                .map_err(Error::Usage)?;
            if add.json {
                let fingerprint = ferry::server::identity::read_fingerprint(&state)?;
                let doc = serde_json::json!({
                    "name": add.name,
                    "token": token,
                    "fingerprint": fingerprint.to_string(),
                });
                writeln!(std::io::stdout(), "{doc}")?;
                return Ok(());
            }
            match add.out {
                None => writeln!(std::io::stdout(), "{token}")?,
                Some(path) => {
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .map_err(|err| {
                            Error::Usage(format!("cannot create {}: {err}", path.display()))
                        })?;
                    writeln!(file, "{token}")?;
                }
            }
            Ok(())
        }
        TokensAction::Revoke { name } => Clients::update(&state, |clients| {
            clients.clients.remove(&name).map(drop).ok_or_else(|| {
                format!("no client is named {name:?}; `ferry tokens list` shows them")
            })
        })
        .map_err(Error::Usage),
    }
}

/// A client's limits in a word or three.
fn describe(limits: &Limits) -> String {
    let mut words = Vec::new();
    if limits.read_only {
        words.push("read-only".to_string());
    } else if limits.no_exec {
        words.push("no-exec".to_string());
    }
    if let Some(dir) = &limits.root_subdir {
        words.push(format!("root-subdir={dir}"));
    }
    if words.is_empty() {
        "full".to_string()
    } else {
        words.join(",")
    }
}
