//! `ferry jobs` and `ferry attach`: the detachable commands a client
//! started (`ferry exec --detachable`, `ferry shell --detachable`), listed,
//! and followed again from another terminal.

use std::io::IsTerminal;

use clap::Args;
use ferry::client::{escape_line, Error};

use super::{connect, GlobalArgs};

/// `ferry jobs` arguments.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The server: a host of the config file or an address with its port
    /// [default: --server].
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
}

/// `ferry attach` arguments.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The job, as `ferry jobs` lists it.
    #[arg(value_name = "ID")]
    job: String,

    /// The server [default: --server].
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
}

/// Runs `ferry jobs`: one line per job: id, state, how long ago it
/// started, whether a client follows it, and its command.
pub async fn list(_args: JobsArgs, global: &GlobalArgs) -> Result<(), Error> {
    let mut client = connect(global).await?;
    let jobs = client.jobs().await?;
    client.close().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for job in jobs {
        let state = match &job.end {
            None => "running".to_string(),
            Some(end) => format!("exited {}", end.shell_status()),
        };
        let follower = if job.attached { "attached" } else { "detached" };
        println!(
            "{}  {state}  {}s ago  {follower}  {}",
            escape_line(&job.job),
            now.saturating_sub(job.started),
            escape_line(&job.command)
        );
    }
    Ok(())
}

/// Runs `ferry attach`: the job's output from the oldest the server kept,
/// this terminal's stdin to it (raw, with its window size, for a shell on a
/// terminal); exits with its status.
pub async fn attach(args: AttachArgs, global: &GlobalArgs) -> Result<u8, Error> {
    let mut client = connect(global).await?;
    let terminal = std::io::stdin().is_terminal()
        && client
            .jobs()
            .await?
            .iter()
            .any(|job| job.job == args.job && job.terminal);
    if terminal {
        let status = super::shell::attach(&mut client, &args.job).await?;
        client.close().await;
        return Ok(status);
    }
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let end = client
        .attach(
            &args.job,
            Some(tokio::io::stdin()),
            &mut stdout,
            &mut stderr,
        )
        .await
        .map_err(|err| match err {
            Error::Remote(reply) => Error::NotRun(reply),
            other => other,
        })?;
    client.close().await;
    Ok(end.shell_status().clamp(0, 255) as u8)
}
