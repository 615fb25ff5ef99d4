//! Transfers that outlive their connection. A `get` or `put` whose
//! connection drops, or moves no byte either way for the stall timeout,
//! waits (exponential backoff with jitter), connects again through
//! [`Client::connect`] with the same options, so the same pin and token
//! checks, and runs again with resume on: files already in place are
//! skipped and a partial file goes on from its verified prefix, so no
//! verified byte travels twice.
//!
//! Only a cut is retried. A refusal (a path, a changed certificate, a
//! token), a local failure or a peer that breaks the protocol ends the
//! transfer at once, as it always did.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::ops::ControlFlow;
use std::time::Duration;

use super::files::{Failure, FileAction, Side, TransferOptions, TransferReport};
use super::Client;
use crate::connection::ConnectionError;
use crate::engine::transfer::{Progress, TransferEvent};
use crate::engine::wire::{Entry, Want, WantAction};
use crate::error::Error;
use crate::protocol::ErrorCode;

/// The wait before the first reconnect; each next one waits twice as long.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between reconnects, so a long outage is still probed
/// every few seconds.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// How a transfer treats a connection that drops or stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Reconnects before giving up (`--retries`); 0 ends the transfer at
    /// the first cut, as before.
    pub retries: u32,
    /// How long the connection may move no byte either way before it
    /// counts as cut (`--stall-timeout`).
    pub stall_timeout: Duration,
}

impl Retry {
    /// `--retries`' default.
    pub const DEFAULT_RETRIES: u32 = 5;
    /// `--stall-timeout`'s default.
    pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(15);

    /// No reconnects: the first cut ends the transfer.
    pub fn never() -> Retry {
        Retry {
            retries: 0,
            ..Retry::default()
        }
    }
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            retries: Retry::DEFAULT_RETRIES,
            stall_timeout: Retry::DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// Whether `err` is the connection failing (a cut, a stall, a server that
/// cannot be reached for now), which another connection may get past.
pub fn is_cut(err: &Error) -> bool {
    use std::io::ErrorKind::*;
    match err {
        Error::Connection(conn) => matches!(
            conn,
            ConnectionError::Truncated
                | ConnectionError::Closed
                | ConnectionError::Timeout(_)
                | ConnectionError::Io(_)
        ),
        Error::Connect { .. } => true,
        // A handshake the network broke, not one the server refused.
        Error::Tls { source, .. } => matches!(
            source.kind(),
            ConnectionReset | ConnectionAborted | UnexpectedEof | TimedOut | BrokenPipe
        ),
        _ => false,
    }
}

/// The wait before reconnect `attempt` (from 1): [`FIRST_BACKOFF`] doubled
/// each time up to [`MAX_BACKOFF`], then scaled by `jitter` (0.5 to 1.5),
/// so clients cut at one moment do not all come back at one moment.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF).mul_f64(jitter.clamp(0.5, 1.5))
}

/// A jitter factor in 0.5..1.5 from the process's random hash keys: no
/// cryptography needed, only clients that differ.
fn jitter(attempt: u32) -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    0.5 + (hasher.finish() % 1000) as f64 / 1000.0
}

/// What the attempts of one transfer have done so far.
#[derive(Debug)]
pub(crate) struct Attempts {
    retry: Retry,
    /// Reconnects made.
    made: u32,
    /// Every file an attempt asked for: a later attempt that finds one in
    /// place found it delivered, not in the way.
    asked: HashSet<Vec<u8>>,
    /// The files the latest attempt to get that far asked for: those not
    /// delivered if the transfer gives up.
    pending: Vec<Vec<u8>>,
    /// Files the latest attempt found in place that an earlier one asked
    /// for: delivered by this transfer, not found up to date.
    delivered_before: u64,
}

impl Attempts {
    pub(crate) fn new(retry: Retry) -> Attempts {
        Attempts {
            retry,
            made: 0,
            asked: HashSet::new(),
            pending: Vec::new(),
            delivered_before: 0,
        }
    }

    /// The options for the next attempt: after a cut, resume is on
    /// whatever the first attempt said, so this command's own partials
    /// are never sent again.
    pub(crate) fn options(&self, options: TransferOptions) -> TransferOptions {
        TransferOptions {
            resume: options.resume || self.made > 0,
            ..options
        }
    }

    /// Notes what an attempt asked for, once the receiver planned it; on
    /// a retry, says which files go on from a kept prefix.
    pub(crate) fn planned<'a>(
        &mut self,
        entries: &[Entry],
        wants: impl Iterator<Item = &'a Want>,
        progress: &dyn Progress,
    ) {
        if self.retry.retries == 0 {
            return;
        }
        self.pending.clear();
        self.delivered_before = 0;
        for want in wants {
            let Some(path) = entries
                .get(want.i as usize)
                .and_then(|e| e.path.to_bytes().ok())
            else {
                continue;
            };
            let offset = match &want.action {
                WantAction::Send { offset, .. } => *offset,
                WantAction::Stripe { .. } => 0,
                WantAction::Skip if self.asked.contains(&path) => {
                    self.delivered_before += 1;
                    continue;
                }
                _ => continue,
            };
            if self.made > 0 && offset > 0 {
                progress.event(&TransferEvent::Resumed {
                    path: path.clone(),
                    from: offset,
                });
            }
            self.asked.insert(path.clone());
            self.pending.push(path);
        }
    }

    /// A finished attempt's report, set right: a file an earlier attempt
    /// delivered is one this transfer delivered, whether this attempt
    /// found it up to date or "in the way" (without `--force` and with
    /// `--no-preserve`, its mtime is not the sender's).
    pub(crate) fn settle(&self, report: &mut TransferReport) {
        if self.made == 0 {
            return;
        }
        let before = report.failures.len();
        report
            .failures
            .retain(|f| !(f.code == ErrorCode::Exists.as_str() && self.asked.contains(&f.path)));
        let delivered = self.delivered_before.min(report.skipped);
        report.skipped -= delivered;
        report.files += delivered + (before - report.failures.len()) as u64;
        for done in &mut report.files_done {
            if done.action == FileAction::Skipped && self.asked.contains(&done.path) {
                done.action = FileAction::Sent;
            }
        }
    }

    /// What a transfer that stopped with `err` ends with: after reconnects
    /// ran out, a report naming each file not delivered; otherwise `err`,
    /// as a transfer without retries ends.
    pub(crate) fn give_up(&mut self, err: Error) -> Result<TransferReport, Error> {
        if self.made == 0 || !is_cut(&err) || self.pending.is_empty() {
            return Err(err);
        }
        let message = format!(
            "not delivered: the connection failed and {} reconnects did not get it through \
             ({err}); run the command again to resume",
            self.made
        );
        Ok(TransferReport {
            failures: std::mem::take(&mut self.pending)
                .into_iter()
                .map(|path| Failure {
                    path,
                    code: "disconnected".into(),
                    message: message.clone(),
                    side: Side::Local,
                })
                .collect(),
            ..TransferReport::default()
        })
    }
}

impl Client {
    /// Gives this connection, and every one the transfer opens after it,
    /// `stall` to move a byte before it counts as cut.
    pub(crate) fn set_stall_timeout(&mut self, stall: Duration) {
        self.options.request_timeout = stall;
        self.conn.reader().set_timeout(stall);
        self.conn.writer().set_timeout(stall);
    }

    /// What the transfer does after an attempt: ends with its report (or
    /// error), or goes again over a new connection. An attempt whose
    /// extra streams were cut ends with its ranges' files failed, not with
    /// an error: it goes again too, and if the reconnects run out, its
    /// report, which names those files, is the transfer's.
    pub(crate) async fn after(
        &mut self,
        tried: Result<TransferReport, Error>,
        attempts: &mut Attempts,
        progress: &dyn Progress,
    ) -> ControlFlow<Result<TransferReport, Error>> {
        let (err, report) = match tried {
            Ok(mut report) => match self.stripe_cut.take() {
                Some(cut) if !report.failures.is_empty() && attempts.retry.retries > 0 => {
                    (cut, Some(report))
                }
                _ => {
                    attempts.settle(&mut report);
                    return ControlFlow::Break(Ok(report));
                }
            },
            Err(err) => (err, None),
        };
        match self.recover(err, attempts, progress).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(last) => ControlFlow::Break(match report {
                Some(mut report) if is_cut(&last) => {
                    attempts.settle(&mut report);
                    Ok(report)
                }
                _ => attempts.give_up(last),
            }),
        }
    }

    /// After an attempt failed with `err`: `Ok` once a new connection
    /// said hello and the transfer may go again; otherwise the error the
    /// transfer ends with (not a cut, a hard refusal on reconnecting, or
    /// the last cut once the reconnects ran out).
    pub(crate) async fn recover(
        &mut self,
        err: Error,
        attempts: &mut Attempts,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        if !is_cut(&err) {
            return Err(err);
        }
        if let Error::Connection(ConnectionError::Timeout(after)) = &err {
            progress.event(&TransferEvent::Stalled { after: *after });
        }
        let mut last = err;
        while attempts.made < attempts.retry.retries {
            attempts.made += 1;
            let attempt = attempts.made;
            tracing::debug!("the connection failed ({last}); reconnect {attempt} soon");
            tokio::time::sleep(backoff(attempt, jitter(attempt))).await;
            match Client::connect(&self.options).await {
                Ok(client) => {
                    *self = client;
                    self.set_stall_timeout(attempts.retry.stall_timeout);
                    progress.event(&TransferEvent::Reconnected {
                        attempt,
                        of: attempts.retry.retries,
                    });
                    return Ok(());
                }
                Err(err) if is_cut(&err) => last = err,
                // A changed certificate, a refused token: never retried.
                Err(err) => return Err(err),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_200_ms_up_to_its_cap_with_jitter() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(4, 1.0), Duration::from_millis(1600));
        assert_eq!(backoff(6, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(1, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(6, 9.0), MAX_BACKOFF.mul_f64(1.5));
        for attempt in 1..20 {
            let factor = jitter(attempt);
            assert!((0.5..1.5).contains(&factor), "{factor}");
        }
    }

    #[test]
    fn only_a_failing_connection_is_retried() {
        let io = |kind| std::io::Error::new(kind, "x");
        assert!(is_cut(&Error::Connection(ConnectionError::Closed)));
        assert!(is_cut(&Error::Connection(ConnectionError::Truncated)));
        assert!(is_cut(&Error::Connection(ConnectionError::Timeout(
            Duration::from_secs(1)
        ))));
        assert!(is_cut(&Error::Connection(ConnectionError::Io(io(
            std::io::ErrorKind::ConnectionReset
        )))));
        assert!(is_cut(&Error::Connect {
            endpoint: "x".into(),
            source: io(std::io::ErrorKind::ConnectionRefused),
        }));
        assert!(is_cut(&Error::Tls {
            endpoint: "x".into(),
            source: io(std::io::ErrorKind::UnexpectedEof),
        }));
        assert!(!is_cut(&Error::Tls {
            endpoint: "x".into(),
            source: io(std::io::ErrorKind::InvalidData),
        }));
        assert!(!is_cut(&Error::Connection(ConnectionError::Unexpected(
            "x".into()
        ))));
        assert!(!is_cut(&Error::Protocol("x".into())));
        let reply = crate::protocol::ErrorReply {
            code: "bad_token".into(),
            message: "no".into(),
        };
        assert!(!is_cut(&Error::Refused(reply.clone())));
        assert!(!is_cut(&Error::Remote(reply)));
    }

    #[test]
    fn a_retry_resumes_even_when_the_first_attempt_started_over() {
        let options = TransferOptions {
            recursive: false,
            force: false,
            resume: false,
            preserve: true,
            md5: false,
            list_files: false,
            streams: None,
            retry: Retry::default(),
        };
        let mut attempts = Attempts::new(Retry::default());
        assert!(!attempts.options(options).resume);
        attempts.made = 1;
        assert!(attempts.options(options).resume);
    }

    /// Keeps the events it is told.
    #[derive(Default)]
    struct Told(std::sync::Mutex<Vec<TransferEvent>>);

    impl Progress for Told {
        fn event(&self, event: &TransferEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    fn entry(path: &str, size: u64) -> Entry {
        Entry {
            kind: crate::engine::wire::EntryKind::File,
            path: crate::engine::wire::WirePath::from_bytes(path.as_bytes()),
            file_size: size,
            mode: 0o644,
            mtime: 0,
            mtime_ns: 0,
            sync: None,
        }
    }

    fn send(i: u64, offset: u64) -> Want {
        Want {
            i,
            action: WantAction::Send {
                offset,
                prefix_blake3: None,
            },
        }
    }

    #[test]
    fn a_retry_says_which_files_go_on_from_a_kept_prefix() {
        let entries = [entry("a", 10), entry("b", 10), entry("c", 10)];
        let skip = Want {
            i: 2,
            action: WantAction::Skip,
        };
        let wants = [send(0, 4), send(1, 0), skip];
        let told = Told::default();
        let mut attempts = Attempts::new(Retry::default());
        // A first attempt's resumes are the earlier command's: no event.
        attempts.planned(&entries, wants.iter(), &told);
        assert!(told.0.lock().unwrap().is_empty());
        assert_eq!(attempts.pending, [b"a".to_vec(), b"b".to_vec()]);
        attempts.made = 1;
        attempts.planned(&entries, [send(1, 6)].iter(), &told);
        let resumed = TransferEvent::Resumed {
            path: b"b".to_vec(),
            from: 6,
        };
        assert_eq!(*told.0.lock().unwrap(), [resumed]);
        assert_eq!(attempts.pending, [b"b".to_vec()]);
    }

    #[test]
    fn a_file_an_earlier_attempt_asked_for_and_now_exists_was_delivered() {
        let entries = [entry("mine", 10)];
        let mut attempts = Attempts::new(Retry::default());
        attempts.planned(
            &entries,
            [send(0, 0)].iter(),
            &crate::engine::transfer::NoProgress,
        );
        let exists = |path: &str| Failure {
            path: path.as_bytes().to_vec(),
            code: ErrorCode::Exists.as_str().into(),
            message: "exists and differs".into(),
            side: Side::Local,
        };
        let report = || TransferReport {
            failures: vec![exists("mine"), exists("theirs")],
            ..TransferReport::default()
        };
        // On the first attempt, nothing is this command's yet.
        let mut first = report();
        attempts.settle(&mut first);
        assert_eq!(first.failures.len(), 2);
        attempts.made = 1;
        let mut retried = report();
        attempts.settle(&mut retried);
        assert_eq!(retried.failures, [exists("theirs")]);
        assert_eq!((retried.files, retried.skipped), (1, 0));
    }

    #[test]
    fn a_file_an_earlier_attempt_asked_for_and_now_up_to_date_counts_as_delivered() {
        let entries = [entry("mine", 10), entry("old", 10)];
        let mut attempts = Attempts::new(Retry::default());
        let none = crate::engine::transfer::NoProgress;
        attempts.planned(&entries, [send(0, 0)].iter(), &none);
        attempts.made = 1;
        let skip = |i| Want {
            i,
            action: WantAction::Skip,
        };
        attempts.planned(&entries, [skip(0), skip(1)].iter(), &none);
        let outcome = |path: &str| super::super::files::FileOutcome {
            path: path.as_bytes().to_vec(),
            size: 10,
            action: FileAction::Skipped,
        };
        let mut report = TransferReport {
            skipped: 2,
            files_done: vec![outcome("mine"), outcome("old")],
            ..TransferReport::default()
        };
        attempts.settle(&mut report);
        assert_eq!((report.files, report.skipped), (1, 1));
        let actions: Vec<FileAction> = report.files_done.iter().map(|d| d.action).collect();
        assert_eq!(actions, [FileAction::Sent, FileAction::Skipped]);
    }

    #[test]
    fn giving_up_names_each_file_not_delivered_and_without_retries_keeps_the_error() {
        let cut = || Error::Connection(ConnectionError::Closed);
        let mut none = Attempts::new(Retry::never());
        assert!(matches!(none.give_up(cut()), Err(Error::Connection(_))));
        let mut spent = Attempts::new(Retry::default());
        spent.made = 5;
        spent.pending = vec![b"a.bin".to_vec(), b"d/b.bin".to_vec()];
        let report = spent.give_up(cut()).expect("a report");
        let paths: Vec<&[u8]> = report.failures.iter().map(|f| &f.path[..]).collect();
        assert_eq!(paths, [&b"a.bin"[..], b"d/b.bin"]);
        assert!(report.failures[0].message.contains("5 reconnects"));
        let mut refused = Attempts::new(Retry::default());
        refused.made = 1;
        refused.pending = vec![b"a.bin".to_vec()];
        assert!(refused.give_up(Error::Protocol("x".into())).is_err());
    }
}
