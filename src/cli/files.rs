//! `ferry put`, `get`, `ls`, `stat`, `mkdir` and `rm`. Only what was asked
//! for goes to stdout; progress, summaries, per-file failures (each with
//! the side it failed on) and, with `-v`, a line per file go to stderr.
//! Across many paths each failure is reported and the work goes on; the
//! exit status says whether everything succeeded.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use ferry::client::files::{
    Failure, FileAction, FileOutcome, Side, TransferOptions, TransferReport,
};
use ferry::client::retry::Retry;
use ferry::client::Error;
use ferry::client::FileInfo;
use ferry::client::TransferEvent;
use ferry::client::WirePath;
use serde::Serialize;

use super::address::{remote_paths, GetDest, GetPlan, PutPlan, PutSources, RemotePath};
use super::copy::{expand_sources, get_to_stdout, put_planned, spool_stdin};
use super::output::{escape_line, format_utc, print_escaped_line, print_peer_bytes};
use super::progress::TransferBar;
use super::{connect, parse_seconds, GlobalArgs};

/// Flags shared by `put` and `get`.
#[derive(Debug, Args)]
pub struct TransferFlags {
    /// Copy directories and everything under them.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Overwrite destination files that exist and differ.
    #[arg(long)]
    force: bool,
    /// Start over instead of continuing an interrupted transfer.
    #[arg(long)]
    no_resume: bool,
    /// Do not keep permission bits and modification times.
    #[arg(long)]
    no_preserve: bool,
    /// Spread files of 8 MiB and more over N connections at once, as
    /// ranges written into one partial file and checked as they land (1 to
    /// 8). Smaller files keep to the first connection. Default: 1 to a
    /// server on this machine or under 5 ms away, else up to one per 6 ms
    /// of round trip (at most 8), used only if the first ones' rate shows
    /// the link can take them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8))]
    streams: Option<u32>,
    /// Reconnect after a dropped or stalled connection up to N times,
    /// waiting a little longer each time, and go on where the transfer
    /// stopped: files already in place are skipped and a partial file
    /// continues from its verified bytes. 0 ends the command at the
    /// first cut.
    #[arg(long, value_name = "N", default_value_t = Retry::DEFAULT_RETRIES)]
    retries: u32,
    /// Count the connection as cut once no byte has moved either way for
    /// this long (`15s`, `0.5s`) while a transfer is in flight.
    #[arg(long, value_name = "DURATION", value_parser = parse_stall_timeout,
          default_value = "15s")]
    stall_timeout: Duration,
    /// Print one JSON object per line on stdout: each failed file
    /// (`"event": "failed"`, with its path, code and side), with -v each
    /// other file (`"event": "file"`: path, size, action `sent`, `skipped`
    /// or `resumed`), each md5 with --md5, the connection's `stalled`,
    /// `reconnected` and `resumed` events as they happen, and a summary
    /// last (files, bytes, resumed_bytes, skipped, failed, left_out,
    /// seconds).
    #[arg(long)]
    json: bool,
}

/// `get`'s own flags.
#[derive(Debug, Args)]
pub struct GetOnlyFlags {
    /// Print each file's md5 on stdout, in `md5sum` format: the server
    /// computes it while sending, as the tutorial's header carries it; for
    /// a file skipped as up to date, this client computes it from its copy.
    #[arg(long)]
    md5: bool,
}

impl TransferFlags {
    fn options(&self) -> TransferOptions {
        TransferOptions {
            recursive: self.recursive,
            force: self.force,
            resume: !self.no_resume,
            preserve: !self.no_preserve,
            md5: false,
            list_files: false,
            streams: self.streams,
            retry: Retry {
                retries: self.retries,
                stall_timeout: self.stall_timeout,
            },
        }
    }

    /// The transfer's bar, telling connection events as `-v` and `--json`
    /// ask.
    fn bar(&self, global: &GlobalArgs) -> Arc<TransferBar> {
        let human = global.verbose > 0 && !global.quiet;
        let json = self.json;
        let print = move |event: &TransferEvent| print_event(event, human, json);
        Arc::new(TransferBar::new(global.quiet).with_events(Box::new(print)))
    }
}

/// A stall timeout: seconds as `ferry serve`'s timeouts take them (`15`,
/// `15s`, `0.5`), more than 0.
fn parse_stall_timeout(text: &str) -> Result<Duration, String> {
    match parse_seconds(text)? {
        zero if zero.is_zero() => Err("a stall timeout of 0 would cut every connection".into()),
        timeout => Ok(timeout),
    }
}

/// One connection event: a line on stderr for people, a record on stdout
/// for `--json`. A failed print is dropped: the transfer matters more.
fn print_event(event: &TransferEvent, human: bool, json: bool) {
    if human {
        eprintln!("ferry: {}", escape_line(&event_line(event)));
    }
    if json {
        let record = match event {
            TransferEvent::Stalled { after } => Record::Stalled {
                seconds: after.as_secs_f64(),
            },
            TransferEvent::Reconnected { attempt, of } => Record::Reconnected {
                attempt: *attempt,
                of: *of,
            },
            TransferEvent::Resumed { path, from } => Record::Resumed {
                path: JsonPath::of(path),
                offset: *from,
            },
        };
        let _ = print_record(&record);
    }
}

/// `stalled: no progress for 15s`, `reconnected (attempt 2 of 5)`,
/// `resumed big.iso at 1048576`.
fn event_line(event: &TransferEvent) -> String {
    match event {
        TransferEvent::Stalled { after } => {
            format!("stalled: no progress for {}s", after.as_secs_f64())
        }
        TransferEvent::Reconnected { attempt, of } => {
            format!("reconnected (attempt {attempt} of {of})")
        }
        TransferEvent::Resumed { path, from } => {
            format!("resumed {} at {from}", String::from_utf8_lossy(path))
        }
    }
}

/// `ferry put` arguments.
#[derive(Debug, Args)]
#[command(override_usage = "ferry put [OPTIONS] LOCAL... [HOST:DEST]\n       \
                            ferry put [OPTIONS] LOCAL... [--to REMOTE_DIR]\n       \
                            ferry put [OPTIONS] - [HOST:]FILE")]
pub struct PutArgs {
    /// Local files (and with -r, directories) to upload, then the
    /// destination HOST:DEST (a host of `ferry hosts`, or ADDR:PORT). DEST
    /// is a directory when it is one, ends with `/` or takes several
    /// files; otherwise the one file is stored under that name, as cp
    /// does. `-` uploads stdin as one file, stored atomically once it has
    /// all arrived and its BLAKE3 matched (it is first copied to $TMPDIR,
    /// since its size goes ahead of it). A local path with a colon is
    /// written ./a:b.
    #[arg(required = true, value_name = "LOCAL")]
    local: Vec<OsString>,
    /// Remote directory to store into [default: the served root, or the
    /// host's remote-dir]; created with its parents if missing. Not with
    /// a HOST:DEST.
    #[arg(long, value_name = "REMOTE_DIR")]
    to: Option<OsString>,
    #[command(flatten)]
    flags: TransferFlags,
}

/// `ferry get` arguments.
#[derive(Debug, Args)]
#[command(
    override_usage = "ferry get [OPTIONS] HOST:REMOTE... [LOCAL_DEST]\n       \
                            ferry get [OPTIONS] REMOTE... [--to LOCAL_DIR]\n       \
                            ferry get [OPTIONS] [HOST:]FILE -"
)]
pub struct GetArgs {
    /// Remote files (and with -r, directories) to download, as HOST:PATH
    /// (a host of `ferry hosts`, or ADDR:PORT) or, without a host, from
    /// --server. A pattern (`'nas:logs/*.log'`, quoted) is expanded on the
    /// server. After HOST:PATHs, a last local path is the destination: a
    /// directory when it is one, ends with `/` or takes several files,
    /// else the one file's new name. `-` writes the one file to stdout as
    /// it arrives and checks its BLAKE3 at the end: on a mismatch the
    /// bytes are already written, and ferry exits 1 saying so.
    #[arg(required = true, value_name = "REMOTE")]
    remote: Vec<OsString>,
    /// Local directory to store into [default: .]; created if missing.
    /// Not with a destination argument.
    #[arg(long, value_name = "LOCAL_DIR")]
    to: Option<PathBuf>,
    #[command(flatten)]
    flags: TransferFlags,
    #[command(flatten)]
    get_flags: GetOnlyFlags,
}

/// `ferry ls` arguments.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Remote directory or file, as [HOST:]PATH [default: the served
    /// root]. A pattern (`'nas:logs/*.log'`) lists what it matches.
    #[arg(value_name = "REMOTE_PATH")]
    path: Option<OsString>,
    /// Long format: mode, size, modification time (UTC), name.
    #[arg(short = 'l', long)]
    long: bool,
    /// One JSON object per entry, one per line: `path` (or `path_b64`),
    /// `kind`, `size`, `mode`, `mtime`, `mtime_ns`.
    #[arg(long)]
    json: bool,
}

/// `ferry stat` arguments.
#[derive(Debug, Args)]
pub struct StatArgs {
    /// Remote path to describe, as [HOST:]PATH.
    #[arg(value_name = "REMOTE")]
    path: OsString,
    /// Also compute the file's BLAKE3 on the server.
    #[arg(long)]
    blake3: bool,
    /// One JSON document, with the names of `ls --json` (and `blake3`).
    #[arg(long)]
    json: bool,
}

/// `ferry mkdir` arguments.
#[derive(Debug, Args)]
pub struct MkdirArgs {
    /// Remote directory to create, as [HOST:]PATH.
    #[arg(value_name = "REMOTE")]
    path: OsString,
    /// Create missing parents; an existing directory is not an error.
    #[arg(short = 'p', long)]
    parents: bool,
}

/// `ferry rm` arguments.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remote paths to remove, as [HOST:]PATH, all on one host. A
    /// pattern (`'nas:tmp/*'`) removes what it matches.
    #[arg(required = true, value_name = "REMOTE")]
    paths: Vec<OsString>,
    /// Remove directories and everything under them.
    #[arg(short = 'r', long)]
    recursive: bool,
}

/// Runs `ferry put`.
pub async fn put(args: PutArgs, global: &GlobalArgs) -> Result<(), Error> {
    let plan = PutPlan::new(&args.local, args.to.as_deref(), global)?;
    let global = &global.for_target(plan.target.as_ref())?;
    // Stdin is read whole before connecting: a slow producer (`tar c` of
    // a large tree) must not hold a connection idle.
    let spool = match plan.sources {
        PutSources::Stdin => Some(spool_stdin().await?),
        PutSources::Files(_) => None,
    };
    let mut client = connect(global).await?;
    let bar = args.flags.bar(global);
    let started = Instant::now();
    let options = TransferOptions {
        list_files: global.verbose > 0,
        ..args.flags.options()
    };
    let report = put_planned(&mut client, &plan, spool.as_ref(), options, bar.clone()).await;
    bar.finish();
    client.close().await;
    finish_transfer("sent", report?, started, args.flags.json, global)
}

/// Runs `ferry get`.
pub async fn get(args: GetArgs, global: &GlobalArgs) -> Result<(), Error> {
    let plan = GetPlan::new(&args.remote, args.to.as_deref(), global)?;
    let global = &global.for_target(plan.target.as_ref())?;
    if plan.dest == GetDest::Stdout {
        let refusal = if plan.sources.len() != 1 {
            Some("stdout takes one file, so one source")
        } else if args.flags.recursive {
            Some("-r sends a tree, which stdout cannot hold")
        } else if args.get_flags.md5 || args.flags.json {
            Some("stdout carries the file alone: no --md5 or --json")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err(Error::Usage(format!("{refusal} (with `-`, stdout)")));
        }
        let started = Instant::now();
        let report = get_to_stdout(&plan.sources[0], global).await?;
        return finish_transfer("received", report, started, false, global);
    }
    let mut client = connect(global).await?;
    let bar = args.flags.bar(global);
    let started = Instant::now();
    let mut total = TransferReport::default();
    let options = TransferOptions {
        md5: args.get_flags.md5,
        list_files: global.verbose > 0,
        ..args.flags.options()
    };
    let (to, rename) = match &plan.dest {
        GetDest::Name(path) => (
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            path.file_name().map(|n| n.as_bytes().to_vec()),
        ),
        GetDest::Dir(dir) => (dir.clone(), None),
        GetDest::Stdout => (PathBuf::from("."), None),
    };
    let remotes = expand_sources(&mut client, &plan.sources, &mut total.failures).await?;
    for remote in &remotes {
        let got = match &rename {
            Some(name) => client.get_as(remote, &to, name, options, bar.clone()).await,
            None => client.get(remote, &to, options, bar.clone()).await,
        };
        match got {
            Ok(report) => {
                for (path, md5) in &report.md5s {
                    if args.flags.json {
                        print_record(&Record::Md5 {
                            path: JsonPath::of(path),
                            md5,
                        })?;
                    } else {
                        print_escaped_line(&[md5.as_bytes(), b"  ", path].concat())?;
                    }
                }
                total.add(TransferReport {
                    md5s: Vec::new(),
                    ..report
                });
            }
            // A refusal of one path (not found, a directory without -r)
            // is reported and the others still go.
            Err(Error::Remote(reply)) => total.failures.push(Failure {
                path: remote.clone(),
                code: reply.code,
                message: reply.message,
                side: Side::Server,
            }),
            Err(other) => {
                bar.finish();
                return Err(other);
            }
        }
    }
    bar.finish();
    client.close().await;
    finish_transfer("received", total, started, args.flags.json, global)
}

/// A path in `--json` output: text when it is UTF-8, base64 when not.
#[derive(Debug, Serialize)]
struct JsonPath {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_b64: Option<String>,
}

impl JsonPath {
    fn of(bytes: &[u8]) -> JsonPath {
        let wire = WirePath::from_bytes(bytes);
        JsonPath {
            path: wire.path.map(String::from),
            path_b64: wire.path_b64.map(String::from),
        }
    }
}

/// One line of `put --json` and `get --json`.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Record<'a> {
    /// A file that did not arrive, why, and on which side it failed.
    Failed {
        #[serde(flatten)]
        path: JsonPath,
        code: &'a str,
        message: &'a str,
        side: &'a str,
    },
    /// A file that arrived or was already there (with `-v`).
    File {
        #[serde(flatten)]
        path: JsonPath,
        size: u64,
        action: &'a str,
        /// For `resumed`: bytes kept from an earlier attempt.
        #[serde(skip_serializing_if = "Option::is_none")]
        resumed_bytes: Option<u64>,
    },
    /// Nothing moved for `seconds`: the connection was dropped.
    Stalled { seconds: f64 },
    /// A new connection, on reconnect `attempt` of `of`.
    Reconnected { attempt: u32, of: u32 },
    /// A file goes on at `offset`, kept from an earlier connection.
    Resumed {
        #[serde(flatten)]
        path: JsonPath,
        offset: u64,
    },
    /// A received file's md5 (`get --md5`).
    Md5 {
        #[serde(flatten)]
        path: JsonPath,
        md5: &'a str,
    },
    /// The last line: what the whole transfer did.
    Summary {
        files: u64,
        bytes: u64,
        resumed_bytes: u64,
        skipped: u64,
        failed: usize,
        left_out: u64,
        seconds: f64,
    },
}

fn print_record(record: &Record<'_>) -> std::io::Result<()> {
    let line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    print_peer_bytes(line.as_bytes())
}

/// Reports a transfer: with `-v` each file that arrived or was already
/// there, each failed file by name and side on stderr (and all of them on
/// stdout with `json`), the summary, and an error if any file failed, so
/// the exit status is 0 only when every file arrived or was already there.
pub(super) fn finish_transfer(
    verb: &str,
    report: TransferReport,
    started: Instant,
    json: bool,
    global: &GlobalArgs,
) -> Result<(), Error> {
    let secs = started.elapsed().as_secs_f64();
    for done in &report.files_done {
        if !global.quiet {
            eprintln!("ferry: {}", escape_line(&file_line(done)));
        }
        if json {
            let (action, resumed_bytes) = match done.action {
                FileAction::Sent => ("sent", None),
                FileAction::Skipped => ("skipped", None),
                FileAction::Resumed { from } => ("resumed", Some(from)),
            };
            print_record(&Record::File {
                path: JsonPath::of(&done.path),
                size: done.size,
                action,
                resumed_bytes,
            })?;
        }
    }
    for failure in &report.failures {
        eprintln!(
            "ferry: {}: {} ({})",
            failure.side.as_str(),
            escape_line(&failure_line(failure)),
            escape_line(&failure.code)
        );
        if json {
            print_record(&Record::Failed {
                path: JsonPath::of(&failure.path),
                code: &failure.code,
                message: &failure.message,
                side: failure.side.as_str(),
            })?;
        }
    }
    if json {
        print_record(&Record::Summary {
            files: report.files,
            bytes: report.bytes,
            resumed_bytes: report.resumed_bytes,
            skipped: report.skipped,
            failed: report.failures.len(),
            left_out: report.left_out,
            seconds: secs,
        })?;
    }
    if !global.quiet {
        let mut line = format!(
            "ferry: {verb} {} file{}, {} in {:.2} s ({}/s)",
            report.files,
            if report.files == 1 { "" } else { "s" },
            human_bytes(report.bytes),
            secs,
            human_bytes((report.bytes as f64 / secs.max(1e-6)) as u64)
        );
        if report.resumed_bytes > 0 {
            line.push_str(&format!(
                "; {} resumed from an earlier attempt",
                human_bytes(report.resumed_bytes)
            ));
        }
        if report.skipped > 0 {
            line.push_str(&format!("; {} already up to date", report.skipped));
        }
        if report.left_out > 0 {
            line.push_str(&format!(
                "; {} left out (not regular files or directories, or removed while listed)",
                report.left_out
            ));
        }
        eprintln!("{line}");
    }
    match report.failures.len() {
        0 => Ok(()),
        failed => Err(Error::TransferFailed { failed }),
    }
}

/// A `-v` line for a file that arrived or was already there:
/// `sent photos/a.jpg (1.5 MiB)`.
fn file_line(done: &FileOutcome) -> String {
    let path = String::from_utf8_lossy(&done.path);
    let size = human_bytes(done.size);
    match done.action {
        FileAction::Sent => format!("sent {path} ({size})"),
        FileAction::Skipped => format!("skipped {path} ({size}, up to date)"),
        FileAction::Resumed { from } => format!(
            "resumed {path} ({size}, {} of it from an earlier attempt)",
            human_bytes(from)
        ),
    }
}

/// A failed file's line: its path once, then what happened. Most messages
/// already start with the quoted path (`"a.txt": no such file`, or
/// `"a.txt" exists and differs`), so that is not said twice.
fn failure_line(failure: &Failure) -> String {
    let path = String::from_utf8_lossy(&failure.path);
    let quoted = format!("{path:?}");
    match failure.message.strip_prefix(&quoted) {
        Some(rest) => match rest.strip_prefix(": ") {
            Some(what) => format!("{path}: {what}"),
            None => failure.message.clone(),
        },
        None => format!("{path}: {}", failure.message),
    }
}

/// `1.5 MiB`-style sizes for people.
fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// An entry as `ls --json` and `stat --json` print it, with the names the
/// Python client's `ls()` uses too: `path` (or `path_b64`), `kind`, `size`
/// in bytes, `mode`, `mtime` in integer seconds and `mtime_ns`.
#[derive(Debug, Serialize)]
struct JsonInfo {
    #[serde(flatten)]
    path: JsonPath,
    kind: String,
    size: u64,
    mode: u32,
    mtime: i64,
    mtime_ns: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    blake3: Option<String>,
}

impl From<&FileInfo> for JsonInfo {
    fn from(info: &FileInfo) -> JsonInfo {
        JsonInfo {
            path: JsonPath {
                path: info.name.path.as_deref().map(String::from),
                path_b64: info.name.path_b64.as_deref().map(String::from),
            },
            kind: info.kind.clone(),
            size: info.file_size,
            mode: info.mode,
            mtime: info.mtime,
            mtime_ns: info.mtime_ns,
            blake3: info.blake3.clone(),
        }
    }
}

/// One remote path on one host, and the options aimed at that host.
fn one_remote(arg: &OsString, global: &GlobalArgs) -> Result<(RemotePath, GlobalArgs), Error> {
    let (target, mut paths) = remote_paths(std::slice::from_ref(arg), global)?;
    let global = global.for_target(target.as_ref())?;
    Ok((paths.remove(0), global))
}

/// Runs `ferry ls`.
pub async fn ls(args: LsArgs, global: &GlobalArgs) -> Result<(), Error> {
    let (remote, global) = one_remote(&args.path.unwrap_or_default(), global)?;
    let mut client = connect(&global).await?;
    let infos = if remote.is_pattern() {
        let mut matches = client.glob(&remote.path).await?;
        for info in &mut matches {
            info.name = WirePath::from_bytes(&remote.shown(&info.name_bytes()));
        }
        matches
    } else {
        client.ls(&remote.path).await?
    };
    client.close().await;
    for info in &infos {
        if args.json {
            let line = serde_json::to_string(&JsonInfo::from(info)).unwrap_or_default();
            print_peer_bytes(line.as_bytes())?;
        } else if args.long {
            let mut line = format!(
                "{} {:>12} {} ",
                mode_string(&info.kind, info.mode),
                info.file_size,
                format_utc(info.mtime)
            )
            .into_bytes();
            line.extend_from_slice(&info.name_bytes());
            print_escaped_line(&line)?;
        } else {
            print_escaped_line(&info.name_bytes())?;
        }
    }
    Ok(())
}

/// Runs `ferry stat`.
pub async fn stat(args: StatArgs, global: &GlobalArgs) -> Result<(), Error> {
    let (remote, global) = one_remote(&args.path, global)?;
    let mut client = connect(&global).await?;
    let info = client.stat(&remote.path, args.blake3).await?;
    client.close().await;
    if args.json {
        let doc = serde_json::to_string(&JsonInfo::from(&info)).unwrap_or_default();
        return Ok(print_peer_bytes(doc.as_bytes())?);
    }
    print_escaped_line(&[b"path:   ".as_slice(), &info.name_bytes()].concat())?;
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "kind:   {}\nsize:   {} bytes\nmode:   {:04o} ({})\nmtime:  {} ({}.{:09})",
            info.kind,
            info.file_size,
            info.mode,
            mode_string(&info.kind, info.mode),
            format_utc(info.mtime),
            info.mtime,
            info.mtime_ns
        )
        .as_bytes(),
    );
    if let Some(hash) = &info.blake3 {
        out.extend_from_slice(format!("\nblake3: {hash}").as_bytes());
    }
    Ok(print_peer_bytes(&out)?)
}

/// Runs `ferry mkdir`.
pub async fn mkdir(args: MkdirArgs, global: &GlobalArgs) -> Result<(), Error> {
    let (remote, global) = one_remote(&args.path, global)?;
    let mut client = connect(&global).await?;
    client.mkdir(&remote.path, args.parents).await?;
    client.close().await;
    Ok(())
}

/// Runs `ferry rm`: every path is tried, each match of a pattern too;
/// each failure is reported.
pub async fn rm(args: RmArgs, global: &GlobalArgs) -> Result<(), Error> {
    let (target, remotes) = remote_paths(&args.paths, global)?;
    let global = &global.for_target(target.as_ref())?;
    let mut client = connect(global).await?;
    let mut last_error = None;
    let mut paths = Vec::with_capacity(remotes.len());
    for remote in &remotes {
        if !remote.is_pattern() {
            paths.push(Ok(remote.path.clone()));
            continue;
        }
        match client.glob(&remote.path).await {
            Ok(matches) => paths.extend(matches.iter().map(|m| Ok(m.name_bytes()))),
            Err(Error::Remote(reply)) => paths.push(Err(reply)),
            Err(other) => return Err(other),
        }
    }
    for path in paths {
        let removed = match path {
            Ok(path) => client.rm(&path, args.recursive).await,
            Err(reply) => Err(Error::Remote(reply)),
        };
        match removed {
            Ok(_) => {}
            Err(Error::Remote(reply)) => {
                eprintln!("ferry: {}", escape_line(&reply.message));
                last_error = Some(reply);
            }
            Err(other) => return Err(other),
        }
    }
    client.close().await;
    match last_error {
        None => Ok(()),
        Some(reply) => Err(Error::Remote(ferry::client::ErrorReply {
            code: reply.code,
            message: "some paths could not be removed".into(),
        })),
    }
}

/// `drwxr-xr-x` for a kind and permission bits.
fn mode_string(kind: &str, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        "dir" => 'd',
        "symlink" => 'l',
        "special" => '?',
        _ => '-',
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_its_file_once() {
        let failure = |message: &str| Failure {
            path: b"d/a.txt".to_vec(),
            code: "x".into(),
            message: message.into(),
            side: Side::Local,
        };
        assert_eq!(
            failure_line(&failure("\"d/a.txt\": vanished")),
            "d/a.txt: vanished"
        );
        assert_eq!(
            failure_line(&failure("\"d/a.txt\" exists and differs")),
            "\"d/a.txt\" exists and differs"
        );
        assert_eq!(failure_line(&failure("vanished")), "d/a.txt: vanished");
    }

    #[test]
    fn connection_events_read_as_one_line_each() {
        let stalled = TransferEvent::Stalled {
            after: Duration::from_secs(15),
        };
        assert_eq!(event_line(&stalled), "stalled: no progress for 15s");
        let half = TransferEvent::Stalled {
            after: Duration::from_millis(500),
        };
        assert_eq!(event_line(&half), "stalled: no progress for 0.5s");
        let back = TransferEvent::Reconnected { attempt: 2, of: 5 };
        assert_eq!(event_line(&back), "reconnected (attempt 2 of 5)");
        let resumed = TransferEvent::Resumed {
            path: b"d/big.iso".to_vec(),
            from: 1_048_576,
        };
        assert_eq!(event_line(&resumed), "resumed d/big.iso at 1048576");
        assert!(parse_stall_timeout("0").is_err());
        assert_eq!(parse_stall_timeout("1s"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn modes_and_sizes_read_like_ls() {
        assert_eq!(mode_string("dir", 0o755), "drwxr-xr-x");
        assert_eq!(mode_string("file", 0o640), "-rw-r-----");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
