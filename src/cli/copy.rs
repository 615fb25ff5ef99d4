//! `put` and `get` beyond files into directories: a copy under a new
//! name (`ferry put a.txt nas:b.txt`), stdin and stdout as one file, and
//! patterns expanded on the server before a get. [`super::address`] reads
//! the arguments; this runs what they say.

use std::sync::Arc;

use ferry::client::files::{Failure, Side, TransferOptions, TransferReport};
use ferry::client::stream::Spool;
use ferry::client::Client;
use ferry::client::Error;
use ferry::client::FileInfo;

use super::address::{split_last, PutDest, PutPlan, PutSources, RemotePath};
use super::output::escape_line;
use super::progress::TransferBar;
use super::{connect, GlobalArgs};

/// Copies stdin to its end into a temporary file, off the async threads.
pub async fn spool_stdin() -> Result<Spool, Error> {
    tokio::task::spawn_blocking(|| Spool::from_reader(std::io::stdin().lock()))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot copy stdin to a temporary file in $TMPDIR: {e}"),
            ))
        })
}

/// Sends what `plan` names: into a directory, or, when the destination is
/// not an existing directory, under its name.
pub async fn put_planned(
    client: &mut Client,
    plan: &PutPlan,
    spool: Option<&Spool>,
    options: TransferOptions,
    progress: Arc<TransferBar>,
) -> Result<TransferReport, Error> {
    let dest = match (&plan.dest, &plan.sources) {
        (PutDest::Dir(dir), PutSources::Files(locals)) => {
            return client.put(locals, dir, options, progress).await
        }
        (PutDest::DirOrName(path) | PutDest::Name(path) | PutDest::Dir(path), _) => path,
    };
    let is_dir = matches!(client.stat(dest, false).await, Ok(info) if info.kind == "dir");
    let (dir, name) = split_last(dest);
    match (&plan.sources, spool) {
        (PutSources::Files(locals), _) if is_dir => {
            client.put(locals, dest, options, progress).await
        }
        (PutSources::Files(locals), _) => {
            client
                .put_as(&locals[0], &dir, &name, options, progress)
                .await
        }
        (PutSources::Stdin, _) if is_dir => Err(Error::Usage(format!(
            "{} is a directory; name the file to store stdin as, as in {}/NAME",
            escape_line(&String::from_utf8_lossy(dest)),
            escape_line(&String::from_utf8_lossy(dest)),
        ))),
        (PutSources::Stdin, spool) => {
            let spool = spool.ok_or_else(|| Error::Usage("stdin was not read".into()))?;
            // A stream has no mode or mtime worth keeping.
            let options = TransferOptions {
                recursive: false,
                preserve: false,
                ..options
            };
            client
                .put_as(&spool.path(), &dir, &name, options, progress)
                .await
        }
    }
}

/// The remote paths `sources` name, each pattern replaced by its matches
/// (in the server's order). A pattern that matches nothing is a failure
/// of its own, as a file that is not there; the others still go.
pub async fn expand_sources(
    client: &mut Client,
    sources: &[RemotePath],
    failures: &mut Vec<Failure>,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut remotes = Vec::with_capacity(sources.len());
    for source in sources {
        if !source.is_pattern() {
            remotes.push(source.path.clone());
            continue;
        }
        match client.glob(&source.path).await {
            Ok(matches) => remotes.extend(matches.iter().map(FileInfo::name_bytes)),
            Err(Error::Remote(reply)) => failures.push(Failure {
                path: source.typed.clone(),
                code: reply.code,
                message: reply.message,
                side: Side::Server,
            }),
            Err(other) => return Err(other),
        }
    }
    Ok(remotes)
}

/// `ferry get SOURCE -`: the one file to stdout, checked at its end.
pub async fn get_to_stdout(
    source: &RemotePath,
    global: &GlobalArgs,
) -> Result<TransferReport, Error> {
    let mut client = connect(global).await?;
    let path = if source.is_pattern() {
        match &client.glob(&source.path).await?[..] {
            [one] => one.name_bytes(),
            many => {
                return Err(Error::Usage(format!(
                    "{} matches {} paths, and stdout takes one file",
                    escape_line(&String::from_utf8_lossy(&source.typed)),
                    many.len()
                )))
            }
        }
    } else {
        source.path.clone()
    };
    let written = client.get_to_writer(&path, &mut tokio::io::stdout()).await;
    client.close().await;
    Ok(TransferReport {
        files: 1,
        bytes: written?,
        ..TransferReport::default()
    })
}
