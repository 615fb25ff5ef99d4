//! `ferry sync SRC DST`: keep a tree on the server the same as a local one,
//! or the other way round, sending only what changed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use ferry::client::sync::{LocalSide, SyncReport, SyncSettings, WireRule};
use ferry::client::Error;

use super::address::SyncSides;
use super::output::{escape_line, print_peer_bytes};
use super::progress::TransferBar;
use super::{connect, local_state_dir, GlobalArgs};

/// `ferry sync` arguments.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// What to copy from: a local path, or HOST:PATH. `DIR/` (a trailing
    /// slash) syncs the directory's contents into DST; `DIR` syncs the
    /// directory itself into DST/DIR, as rsync does.
    #[arg(value_name = "SRC")]
    src: OsString,
    /// Where to: a directory (created if missing), local or HOST:PATH.
    /// Exactly one of SRC and DST is remote.
    #[arg(value_name = "DST")]
    dst: OsString,
    /// Remove files and directories in DST that SRC does not have, after
    /// every new file is in place, and only if none failed. Never what an
    /// --exclude protects.
    #[arg(long)]
    delete: bool,
    /// With --delete, allow emptying DST entirely (an empty SRC).
    #[arg(long)]
    force: bool,
    /// Leave out paths that match PATTERN (gitignore-style: `*.log`,
    /// `/build`, `cache/`, `**/tmp`), relative to SRC. Repeatable; with
    /// --include, the first rule that matches decides. An excluded
    /// directory is not entered.
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Take paths that match PATTERN even if a later --exclude matches.
    #[arg(long, value_name = "PATTERN")]
    include: Vec<String>,
    /// Read exclude patterns from FILE, one per line (`+ PATTERN` includes,
    /// `- PATTERN` excludes, `#` and `;` start comments).
    #[arg(long, value_name = "FILE")]
    exclude_from: Vec<PathBuf>,
    /// Honour `.gitignore` files in SRC (and protect what they ignore in
    /// DST from --delete).
    #[arg(long)]
    filter_gitignore: bool,
    /// Print what would be sent, updated and deleted, and change nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Compare content (BLAKE3) instead of size and modification time.
    #[arg(short = 'c', long)]
    checksum: bool,
    /// Send at most RATE bytes per second: a number in KiB/s as rsync
    /// reads it, or with a suffix: 500K, 20M, 1G.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    bwlimit: Option<u64>,
    /// Print one JSON object per line on stdout: each change (`change`:
    /// new, update, delta, mkdir, link, meta, delete or failed; `path` or
    /// `path_b64`; `bytes`; `code` and `message` when failed), then a
    /// summary (`"summary": true`, counts, bytes, seconds).
    #[arg(long)]
    json: bool,
}

/// The rules of `--exclude`, `--include` and `--exclude-from` in the order
/// they were given: `positions` are the argument indexes clap saw.
pub fn ordered_rules(
    args: &SyncArgs,
    positions: (&[usize], &[usize], &[usize]),
) -> Result<Vec<WireRule>, Error> {
    let mut rules: Vec<(usize, Vec<WireRule>)> = Vec::new();
    for (k, pattern) in args.exclude.iter().enumerate() {
        rules.push((at(positions.0, k), vec![WireRule::Exclude(pattern.clone())]));
    }
    for (k, pattern) in args.include.iter().enumerate() {
        rules.push((at(positions.1, k), vec![WireRule::Include(pattern.clone())]));
    }
    for (k, file) in args.exclude_from.iter().enumerate() {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Error::Usage(format!(
                "cannot read --exclude-from {}: {e}",
                file.display()
            ))
        })?;
        rules.push((
            at(positions.2, k),
            ferry::client::sync::rules_from_file(&text),
        ));
    }
    rules.sort_by_key(|(position, _)| *position);
    Ok(rules.into_iter().flat_map(|(_, rules)| rules).collect())
}

fn at(positions: &[usize], k: usize) -> usize {
    positions.get(k).copied().unwrap_or(usize::MAX)
}

fn parse_rate(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "K"),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a rate; write 500K, 20M or 1G"))?;
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => 1024 * 1024,
        "G" | "GB" | "GIB" => 1024 * 1024 * 1024,
        _ => return Err(format!("{text:?}: unknown unit; write 500K, 20M or 1G")),
    };
    match number.checked_mul(scale) {
        Some(0) => Err("a rate of 0 would never send; leave --bwlimit out".into()),
        Some(rate) => Ok(rate),
        None => Err(format!("{text:?} is too large")),
    }
}

/// Runs `ferry sync`.
pub async fn run(args: SyncArgs, rules: Vec<WireRule>, global: &GlobalArgs) -> Result<(), Error> {
    if args.force && !args.delete {
        return Err(Error::Usage("--force goes with --delete".into()));
    }
    let sides = SyncSides::new(&args.src, &args.dst, global)?;
    let target = match &sides {
        SyncSides::Push { target, .. } | SyncSides::Pull { target, .. } => target.clone(),
    };
    let global = &global.for_target(Some(&target))?;
    let settings = SyncSettings {
        delete: args.delete,
        force: args.force,
        dry_run: args.dry_run,
        checksum: args.checksum,
        rules,
        gitignore: args.filter_gitignore,
        bwlimit: args.bwlimit,
    };
    let state_dir = local_state_dir();
    let mut client = connect(global).await?;
    let bar = Arc::new(TransferBar::new(global.quiet || args.json));
    let started = Instant::now();
    let report = match &sides {
        SyncSides::Push { local, remote, .. } => {
            let side = LocalSide {
                contents: local.as_os_str().as_bytes().ends_with(b"/"),
                path: local.clone(),
            };
            client
                .sync_push(
                    &side,
                    &remote.path,
                    settings,
                    state_dir.as_deref(),
                    bar.clone(),
                )
                .await?
        }
        SyncSides::Pull { remote, local, .. } => {
            let contents = remote.typed.ends_with(b"/") || remote.typed.is_empty();
            client
                .sync_pull(
                    &remote.path,
                    contents,
                    local,
                    settings,
                    state_dir.as_deref(),
                    bar.clone(),
                )
                .await?
        }
    };
    bar.finish();
    client.close().await;
    print_report(&report, started, args.json, global)?;
    report.outcome()
}

fn print_report(
    report: &SyncReport,
    started: Instant,
    json: bool,
    global: &GlobalArgs,
) -> Result<(), Error> {
    let secs = started.elapsed().as_secs_f64();
    for warning in &report.warnings {
        eprintln!("ferry: warning: {}", escape_line(warning));
    }
    for change in &report.changes {
        let path = change.path.to_bytes().unwrap_or_default();
        if json {
            let line = serde_json::to_string(change).map_err(std::io::Error::other)?;
            print_peer_bytes(line.as_bytes())?;
        }
        let verb = serde_json::to_value(change.change)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let shown = escape_line(&String::from_utf8_lossy(&path));
        match (&change.message, json) {
            (Some(message), _) => eprintln!("ferry: failed: {}", escape_line(message)),
            (None, false) if !global.quiet => eprintln!("ferry: {verb:<6} {shown}"),
            _ => {}
        }
    }
    let summary = &report.summary;
    if json {
        let mut value = serde_json::to_value(summary).map_err(std::io::Error::other)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("summary".into(), true.into());
            map.insert("seconds".into(), secs.into());
            map.insert("changes_left_out".into(), report.changes_left_out.into());
        }
        print_peer_bytes(value.to_string().as_bytes())?;
    }
    if !global.quiet {
        let verb = if summary.dry_run {
            "would send"
        } else {
            "sent"
        };
        eprintln!(
            "ferry: {verb} {} whole and {} as deltas ({} bytes, {} delta bytes, {} reused); \
             {} unchanged, {} deleted, {} failed in {secs:.2} s",
            summary.files,
            summary.deltas,
            summary.bytes,
            summary.delta_bytes,
            summary.reused_bytes,
            summary.unchanged,
            summary.deleted,
            summary.failed
        );
        if report.changes_left_out > 0 {
            eprintln!(
                "ferry: {} changes were left out of the server's report",
                report.changes_left_out
            );
        }
        for (path, why) in &report.left_out {
            eprintln!(
                "ferry: left out {}: {}",
                escape_line(&String::from_utf8_lossy(path)),
                why
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_read_as_rsync_reads_them() {
        assert_eq!(parse_rate("100"), Ok(100 * 1024));
        assert_eq!(parse_rate("500K"), Ok(500 * 1024));
        assert_eq!(parse_rate("20m"), Ok(20 * 1024 * 1024));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5Q").is_err());
        assert!(parse_rate("99999999999999999G").is_err());
    }
}
