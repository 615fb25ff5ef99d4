//! `ferry exec --hosts`: the same command on many servers at once, with
//! bounded parallelism. Each output line is printed whole, prefixed by its
//! host (stdout lines to stdout, stderr lines to stderr; a line over 64 KiB
//! in pieces, each prefixed), then a summary says which hosts succeeded,
//! failed, timed out or were unreachable. With `--json`, stdout carries
//! one record per host instead and the command's output goes, prefixed,
//! to stderr.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use ferry::client::Client;
use ferry::client::Endpoint;
use ferry::client::Error;
use ferry::client::ExecRequest;
use serde::Serialize;
use tokio::io::AsyncWrite;

use super::output::escape_line;
use super::{client_options, report_notices, GlobalArgs};

/// How one host's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum HostStatus {
    Succeeded,
    Failed,
    TimedOut,
    Unreachable,
}

/// One `--json` record.
#[derive(Debug, Serialize)]
struct HostRecord {
    host: String,
    status: HostStatus,
    exit_code: Option<i32>,
    signal: Option<i32>,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Reads a hosts file: one address per line; `#` comments and blank lines
/// are skipped.
pub fn read_hosts_file(path: &std::path::Path) -> Result<Vec<Endpoint>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            line.parse::<Endpoint>()
                .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// Runs `request` on every host, at most `parallel` at once; returns the
/// exit status: 0 if all succeeded, 3 if any host could not be reached,
/// 1 otherwise.
pub async fn run(
    hosts: Vec<Endpoint>,
    request: ExecRequest,
    parallel: usize,
    json: bool,
    global: &GlobalArgs,
) -> Result<u8, Error> {
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let request = Arc::new(request);
    let mut tasks = tokio::task::JoinSet::new();
    let quiet = global.quiet;
    for (index, host) in hosts.into_iter().enumerate() {
        let mut options = client_options(global);
        options.server = super::with_transport(global, host.clone());
        let slots = slots.clone();
        let request = request.clone();
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let started = Instant::now();
            let name = host.to_string();
            let mut out = Prefixed::new(&name, !json);
            let mut err = Prefixed::new(&name, false);
            let result = async {
                let mut client = Client::connect(&options).await?;
                report_notices(&mut client, quiet);
                let end = client
                    .exec(&request, None::<tokio::io::Empty>, &mut out, &mut err)
                    .await?;
                client.close().await;
                Ok::<_, Error>(end)
            }
            .await;
            out.finish();
            err.finish();
            (index, name, started.elapsed(), result)
        });
    }
    let mut records = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (index, host, elapsed, result) =
            joined.map_err(|e| Error::Protocol(format!("a host's task failed: {e}")))?;
        let duration_ms = elapsed.as_millis() as u64;
        let record = match result {
            Ok(end) => HostRecord {
                host,
                status: if end.timed_out {
                    HostStatus::TimedOut
                } else if end.shell_status() == 0 {
                    HostStatus::Succeeded
                } else {
                    HostStatus::Failed
                },
                exit_code: end.exit_code,
                signal: end.signal,
                duration_ms,
                error: None,
            },
            Err(err) => HostRecord {
                status: match err {
                    Error::Remote(_) => HostStatus::Failed,
                    _ => HostStatus::Unreachable,
                },
                host,
                exit_code: None,
                signal: None,
                duration_ms,
                error: Some(err.to_string()),
            },
        };
        records.push((index, record));
    }
    records.sort_by_key(|(index, _)| *index);
    let records: Vec<HostRecord> = records.into_iter().map(|(_, r)| r).collect();
    if json {
        let mut stdout = std::io::stdout().lock();
        for record in &records {
            writeln!(
                stdout,
                "{}",
                serde_json::to_string(record).unwrap_or_default()
            )?;
        }
    }
    if !global.quiet {
        let line = format!("{}\n", summary(&records));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    let all = |status| records.iter().all(|r| r.status == status);
    Ok(if all(HostStatus::Succeeded) {
        0
    } else if records.iter().any(|r| r.status == HostStatus::Unreachable) {
        3
    } else {
        1
    })
}

/// `ferry: 4 hosts: 2 succeeded, 1 failed (b:9001 exit 1), ...`.
fn summary(records: &[HostRecord]) -> String {
    let group = |status: HostStatus, label: &str| {
        let hosts: Vec<String> = records
            .iter()
            .filter(|r| r.status == status)
            .map(|r| match (status, r.exit_code, r.signal, &r.error) {
                (HostStatus::Failed, Some(code), _, _) => format!("{} exit {code}", r.host),
                (HostStatus::Failed, None, Some(signal), _) => {
                    format!("{} signal {signal}", r.host)
                }
                (HostStatus::Unreachable, _, _, Some(error)) => {
                    format!("{}: {}", r.host, escape_line(error))
                }
                _ => r.host.clone(),
            })
            .collect();
        match (hosts.len(), status) {
            (0, _) => format!("0 {label}"),
            (n, HostStatus::Succeeded) => format!("{n} {label}"),
            (n, _) => format!("{n} {label} ({})", hosts.join(", ")),
        }
    };
    format!(
        "ferry: {} host{}: {}, {}, {}, {}",
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        group(HostStatus::Succeeded, "succeeded"),
        group(HostStatus::Failed, "failed"),
        group(HostStatus::TimedOut, "timed out"),
        group(HostStatus::Unreachable, "unreachable"),
    )
}

/// The longest line `--hosts` holds before passing it on. A longer one (a
/// command printing megabytes with no newline) goes out in pieces of this
/// size, each with its host's prefix: memory stays bounded and the output
/// keeps flowing. 64 KiB is longer than any line a person reads, so real
/// lines still arrive whole.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Writes whole lines, each prefixed with `host: `, to stdout or stderr;
/// a line is held until it is complete so hosts never interleave inside a
/// line, up to [`MAX_LINE_BYTES`]. Control characters from the host are
/// escaped.
struct Prefixed {
    prefix: String,
    to_stdout: bool,
    pending: Vec<u8>,
}

impl Prefixed {
    fn new(host: &str, to_stdout: bool) -> Prefixed {
        Prefixed {
            prefix: format!("{host}: "),
            to_stdout,
            pending: Vec::new(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = escape_line(&String::from_utf8_lossy(line));
        let line = format!("{}{text}\n", self.prefix);
        if self.to_stdout {
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        } else {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    /// Prints a last line that had no newline.
    fn finish(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }

    /// Takes `bytes` in: each line is printed once its newline arrives, or
    /// a piece of it once [`MAX_LINE_BYTES`] are held. Each byte is looked
    /// at once.
    fn take(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LINE_BYTES - self.pending.len();
            let window = &bytes[..bytes.len().min(room)];
            if let Some(end) = window.iter().position(|&b| b == b'\n') {
                self.pending.extend_from_slice(&window[..end]);
                let line = std::mem::take(&mut self.pending);
                self.emit(&line);
                bytes = &bytes[end + 1..];
            } else {
                self.pending.extend_from_slice(window);
                bytes = &bytes[window.len()..];
                if self.pending.len() == MAX_LINE_BYTES {
                    // Cut between characters; a character begun stays.
                    let cut = whole_chars(&self.pending);
                    let cut = if cut == 0 { self.pending.len() } else { cut };
                    let piece: Vec<u8> = self.pending.drain(..cut).collect();
                    self.emit(&piece);
                }
            }
        }
    }
}

/// How many leading bytes of `bytes` end on a character boundary: all of
/// them, unless they end inside a UTF-8 sequence.
fn whole_chars(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(4) {
        let at = bytes.len() - back;
        let byte = bytes[at];
        if byte & 0xc0 != 0x80 {
            let len = match byte {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            };
            return if back < len { at } else { bytes.len() };
        }
    }
    bytes.len()
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, status: HostStatus, exit_code: Option<i32>) -> HostRecord {
        HostRecord {
            host: host.into(),
            status,
            exit_code,
            signal: None,
            duration_ms: 1,
            error: None,
        }
    }

    #[test]
    fn the_summary_names_the_hosts_that_did_not_succeed() {
        let records = [
            record("a:1", HostStatus::Succeeded, Some(0)),
            record("b:1", HostStatus::Failed, Some(2)),
            record("c:1", HostStatus::TimedOut, None),
        ];
        assert_eq!(
            summary(&records),
            "ferry: 3 hosts: 1 succeeded, 1 failed (b:1 exit 2), 1 timed out (c:1), 0 unreachable"
        );
    }

    #[test]
    fn pieces_of_a_long_line_end_between_characters() {
        assert_eq!(whole_chars(b"abc"), 3);
        assert_eq!(whole_chars("aé".as_bytes()), 3);
        assert_eq!(whole_chars(&"aé".as_bytes()[..2]), 1);
        assert_eq!(whole_chars(&"a€".as_bytes()[..3]), 1);
        assert_eq!(whole_chars(&"a𝄞".as_bytes()[..4]), 1);
        assert_eq!(whole_chars("a𝄞".as_bytes()), 5);
        assert_eq!(whole_chars(b"\x80\x80\x80\x80\x80"), 5);
        assert_eq!(whole_chars(b""), 0);
    }

    #[test]
    fn hosts_files_skip_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "# fleet\na:9001\n\n[::1]:9002  # local\n").unwrap();
        let hosts = read_hosts_file(&path).unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[1].to_string(), "[::1]:9002");
    }
}
