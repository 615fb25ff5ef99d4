//! `ferry echo`: one answer for TEXT, or the tutorial's client loop over
//! stdin lines.

use bytes::Bytes;
use clap::Args;
use ferry::client::Error;

use super::prompt::PromptedLines;
use super::{connect, output, GlobalArgs};

/// `ferry echo` arguments.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Ask the server to upper-case the answer (ASCII letters), as the
    /// tutorial's server does.
    #[arg(long)]
    upper: bool,

    /// Text to send, joined by spaces. Without it, each line of stdin is
    /// sent and answered (with a `>> ` prompt on a terminal); empty lines
    /// are skipped; EOF ends.
    #[arg(value_name = "TEXT")]
    text: Vec<String>,
}

/// Runs `ferry echo`.
pub async fn run(args: EchoArgs, global: &GlobalArgs) -> Result<(), Error> {
    let mut client = connect(global).await?;
    if !args.text.is_empty() {
        let answer = client
            .echo(Bytes::from(args.text.join(" ")), args.upper)
            .await?;
        output::print_peer_bytes(&answer)?;
        client.close().await;
        return Ok(());
    }
    let mut lines = PromptedLines::new();
    while let Some(text) = lines.next().await? {
        let answer = client
            .echo(Bytes::copy_from_slice(text), args.upper)
            .await?;
        output::print_peer_bytes(&answer)?;
    }
    client.close().await;
    Ok(())
}
