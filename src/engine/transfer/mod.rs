//! The data phase of a transfer, shared by both ends: the server sends for
//! `get` and receives for `put`, the client the other way round.
//!
//! File IO runs on a blocking thread, joined to the connection by a bounded
//! channel: the disk, the hash and the socket work at once, and a few MiB
//! at most sit between them, whatever the file size ([`CHANNEL_CHUNKS`] ×
//! [`CHUNK_BYTES`] sending; two 1 MiB batches receiving). Small files are batched into large writes by the
//! connection's buffer; no step waits for a reply per file.
//!
//! By role, as rsync splits a transfer:
//! - `exchange.rs`: manifest, wants and data, as both peers call them;
//! - `plan.rs`: the receiver's answer to a manifest, and where entries go;
//! - `send.rs`: reads and hashes the wanted files for the connection;
//! - `receive.rs`: the receiver's socket side, checking each data frame;
//! - `write.rs`: the receiver's file thread: partial files, seal, publish;
//! - `md5.rs`: the md5 of a file a receiver already had;
//! - `stripe.rs`, `range_send.rs`: the big files of a transfer over several
//!   streams (`--streams`), as ranges, receiving and sending.

mod exchange;
mod md5;
mod plan;
mod range_send;
mod receive;
mod send;
mod stripe;
mod write;

pub use exchange::{
    bytes_wanted, read_json_lines, read_wants, read_wants_and_ticket, receive_wanted, send_wanted,
    send_wanted_alongside, send_wants, Direction,
};
pub use md5::md5_beneath;
pub use plan::{Decider, Decision, FileAtTarget, ReceivePlan, Wants};
pub use range_send::RangeSender;
pub use send::{send_files, SendSummary};
pub use stripe::StripeReceiver;

use crate::connection::ConnectionError;
use crate::protocol::ErrorReply;

use super::error::FileError;
use super::wire::EntryError;

/// Bytes read from a file per chunk.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight between the file thread and the connection.
pub const CHANNEL_CHUNKS: usize = 4;
/// Most items in one batch, so a flood of empty files still moves along.
const MAX_BATCH_ITEMS: usize = 1024;

/// Why a transfer stopped as a whole (per-file failures are reported in
/// the summary instead).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The peer broke the transfer protocol.
    #[error("{0}")]
    Protocol(String),
    /// The local file thread failed as a whole.
    #[error(transparent)]
    Local(#[from] FileError),
    /// The peer refused the transfer: a put's server answered the
    /// manifest with an error instead of its wants.
    #[error("{}", .0.message)]
    Refused(ErrorReply),
}

impl From<TransferError> for ConnectionError {
    /// A failure in the middle of a transfer cannot be answered in band:
    /// the peer may be sending data frames. A server closes the connection
    /// with the message.
    fn from(err: TransferError) -> ConnectionError {
        match err {
            TransferError::Connection(err) => err,
            TransferError::Protocol(message) => ConnectionError::Unexpected(message),
            TransferError::Local(err) => ConnectionError::Unexpected(err.message),
            TransferError::Refused(refusal) => ConnectionError::Unexpected(refusal.message),
        }
    }
}

impl From<TransferError> for crate::error::Error {
    /// A client's view: the connection, the peer's protocol, this end's
    /// files, or the peer's refusal.
    fn from(err: TransferError) -> crate::error::Error {
        use crate::error::Error;
        match err {
            TransferError::Connection(err) => Error::Connection(err),
            TransferError::Protocol(message) => Error::Protocol(message),
            TransferError::Local(err) => Error::Files(err),
            TransferError::Refused(refusal) => Error::Remote(refusal),
        }
    }
}

/// Told about a transfer's progress; the CLI draws a bar from it.
pub trait Progress: Send + Sync {
    /// The transfer's data phase starts; `total_bytes` will move.
    fn begin(&self, _total_bytes: u64) {}
    /// A file starts; `size` bytes of it will move.
    fn file_started(&self, _path: &[u8], _size: u64) {}
    /// Some bytes moved.
    fn advanced(&self, _bytes: u64) {}
    /// How long the sender waits before sending `bytes` more, to keep to a
    /// rate (`--bwlimit`); `None` for as fast as it can.
    fn delay_for(&self, _bytes: u64) -> Option<std::time::Duration> {
        None
    }
    /// The connection under the transfer stalled, came back, or a file
    /// went on where an earlier attempt left it.
    fn event(&self, _event: &TransferEvent) {}
}

/// What happened to a transfer's connection, for `-v` and `--json`: a
/// transfer that outlives its connection says so as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// Nothing moved for `after`, so the connection was dropped.
    Stalled {
        /// The stall timeout that passed.
        after: std::time::Duration,
    },
    /// A new connection said hello, on reconnect `attempt` of `of`.
    Reconnected {
        /// Counting from 1.
        attempt: u32,
        /// The most there will be (`--retries`).
        of: u32,
    },
    /// A file goes on from `from`: the bytes before it arrived and were
    /// kept on an earlier connection.
    Resumed {
        /// Its path in the transfer.
        path: Vec<u8>,
        /// Bytes already there.
        from: u64,
    },
}

/// A rate a sender keeps to, as a token bucket: bytes earn credit at the
/// rate, up to a tenth of a second's worth, and a send that overdraws it
/// waits until the credit is back.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_second: u64,
    state: std::sync::Mutex<(std::time::Instant, f64)>,
}

impl RateLimit {
    /// A limit of `bytes_per_second` (at least 1).
    pub fn new(bytes_per_second: u64) -> RateLimit {
        RateLimit {
            bytes_per_second: bytes_per_second.max(1),
            state: std::sync::Mutex::new((std::time::Instant::now(), 0.0)),
        }
    }

    /// How long to wait before sending `bytes`, charging them now.
    pub fn delay_for(&self, bytes: u64) -> std::time::Duration {
        self.delay_at(std::time::Instant::now(), bytes)
    }

    fn delay_at(&self, now: std::time::Instant, bytes: u64) -> std::time::Duration {
        let rate = self.bytes_per_second as f64;
        let burst = (rate / 10.0).max(64.0 * 1024.0);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, credit) = &mut *state;
        let earned = now.saturating_duration_since(*last).as_secs_f64() * rate;
        *credit = (*credit + earned).min(burst) - bytes as f64;
        *last = now;
        if *credit >= 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-*credit / rate)
        }
    }
}

/// A [`Progress`] that also keeps the sender to a [`RateLimit`].
pub struct Paced {
    /// Told about progress as before.
    pub inner: std::sync::Arc<dyn Progress>,
    /// The rate.
    pub limit: RateLimit,
}

impl Progress for Paced {
    fn begin(&self, total_bytes: u64) {
        self.inner.begin(total_bytes)
    }
    fn file_started(&self, path: &[u8], size: u64) {
        self.inner.file_started(path, size)
    }
    fn advanced(&self, bytes: u64) {
        self.inner.advanced(bytes)
    }
    fn delay_for(&self, bytes: u64) -> Option<std::time::Duration> {
        Some(self.limit.delay_for(bytes))
    }
    fn event(&self, event: &TransferEvent) {
        self.inner.event(event)
    }
}

#[cfg(test)]
mod rate_tests {
    use super::RateLimit;
    use std::time::{Duration, Instant};

    #[test]
    fn a_rate_limit_lets_a_burst_through_then_spaces_sends_at_the_rate() {
        let limit = RateLimit::new(1_000_000);
        let start = Instant::now();
        // A tenth of a second's credit is earned from the start.
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(limit.delay_at(at(100), 100_000), Duration::ZERO);
        // The next 250 KB at 1 MB/s: a quarter of a second.
        let wait = limit.delay_at(at(100), 250_000);
        assert!((wait.as_secs_f64() - 0.25).abs() < 0.001, "{wait:?}");
        // Once that time has passed, the debt is paid and nothing more
        // is owed for a small send.
        let wait = limit.delay_at(at(400), 10_000);
        assert!(wait < Duration::from_millis(1), "{wait:?}");
    }
}

/// No progress reporting.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// What the receiving side did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiveSummary {
    /// Files written and published.
    pub files: u64,
    /// Bytes received into them (resumed bytes not counted).
    pub bytes: u64,
    /// Bytes of published files that were kept from an earlier attempt.
    pub resumed_bytes: u64,
    /// Files already there (same size and mtime).
    pub skipped: u64,
    /// Entries that failed, with why.
    pub errors: Vec<FailedFile>,
    /// The md5 the sender gave for each file written, when it was asked.
    pub md5s: Vec<(u64, String)>,
    /// With [`ReceiveOptions::list_files`]: each published file's index
    /// and the offset it was resumed from (0 when sent whole).
    pub published: Vec<(u64, u64)>,
}

/// A file the receiver did not keep: the failure as the wire reports it
/// (serialized as just that), and which end caused it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedFile {
    /// The index, code and message.
    #[serde(flatten)]
    pub error: EntryError,
    /// The sender failed it (could not read it, sent what does not hash,
    /// broke the protocol, never sent it); otherwise this receiver did
    /// (could not write or publish it).
    #[serde(skip)]
    pub by_sender: bool,
}

/// How to treat files already at the destination, and the sender's
/// metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// Overwrite targets that differ, and set the sender's mode and mtime
    /// on directories that existed before.
    pub force: bool,
    /// Continue from partial files of an earlier attempt.
    pub resume: bool,
    /// Keep mode and mtime from the sender.
    pub preserve: bool,
    /// Keep the sender's permission bits as sent (the server, for its
    /// user's put). Otherwise (the client, for what a server sends) they
    /// pass through this process's umask, as a file it creates would.
    pub trust_sent_modes: bool,
    /// Keep each skipped file's index ([`Wants::skipped_files`]) and each
    /// published one's ([`ReceiveSummary::published`]) for a per-file
    /// report. Off, nothing per file is kept but failures, so a vast tree
    /// costs no memory for its report.
    pub list_files: bool,
    /// Accept symlink entries and leave them to the caller (`ferry sync`);
    /// otherwise they are refused.
    pub links: bool,
    /// Ask for files of at least
    /// [`STRIPE_MIN_BYTES`](crate::engine::ranges::STRIPE_MIN_BYTES) in ranges over the
    /// extra streams of a striped transfer ([`StripeReceiver`]).
    pub stripe: bool,
}

/// Whole transfers: plan, send, receive and write together. Each role's
/// own tests sit in its file; the fixtures here serve them too.
/// Reads until `buf` is full or the file ends; the bytes read.
pub(super) fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match std::io::Read::read(file, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Connection, ConnectionConfig};
    use crate::engine::atomic::{PartialFile, SourceId};
    use crate::engine::manifest::Manifest;
    use crate::engine::root::{RelPath, Root};
    use crate::engine::wire::{Want, WantAction};
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;
    use std::time::Duration;

    pub(super) fn config() -> ConnectionConfig {
        ConnectionConfig {
            max_header_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            max_write_buffer_bytes: 256 * 1024,
            decrypts: false,
        }
    }

    pub(super) const OPTIONS: ReceiveOptions = ReceiveOptions {
        force: false,
        resume: true,
        preserve: true,
        trust_sent_modes: true,
        list_files: true,
        links: false,
        stripe: false,
    };

    /// Sends `path` beneath `from` to `base` beneath `to` over an in-memory
    /// pipe, through the same planning and data phases the services use.
    async fn transfer(
        from: &std::path::Path,
        path: &str,
        to: &std::path::Path,
        options: ReceiveOptions,
    ) -> (Vec<Want>, ReceiveSummary) {
        transfer_over(from, path, to, options, false).await
    }

    /// [`transfer`] as over TLS, when the reader decrypts and so the file
    /// thread hashes.
    async fn transfer_over(
        from: &std::path::Path,
        path: &str,
        to: &std::path::Path,
        options: ReceiveOptions,
        decrypting: bool,
    ) -> (Vec<Want>, ReceiveSummary) {
        let src = Arc::new(Root::new(from).unwrap());
        let dst = Arc::new(Root::new(to).unwrap());
        let manifest =
            Manifest::from_root(&src, &RelPath::parse(path.as_bytes()).unwrap(), true).unwrap();
        let (plan, wants) =
            ReceivePlan::new(dst, &RelPath::root(), manifest.entries.clone(), options).unwrap();
        let wants: Vec<Want> = super::super::wire::from_json_lines(&wants.body).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut sender = Connection::new(a, config());
        let mut receiver = Connection::new(
            b,
            ConnectionConfig {
                decrypts: decrypting,
                ..config()
            },
        );
        let sent_wants = wants.clone();
        let send = tokio::spawn(async move {
            let (_, writer) = sender.split();
            send_files(
                writer,
                Arc::new(manifest),
                Some(src),
                sent_wants,
                true,
                &NoProgress,
            )
            .await
            .unwrap();
        });
        let summary = plan.receive(receiver.reader(), &NoProgress).await.unwrap();
        send.await.unwrap();
        (wants, summary)
    }

    /// Leaves `bytes` in `to` as the partial file an interrupted transfer
    /// of `photos/a.bin` from `from` would have kept.
    pub(super) fn keep_partial(from: &std::path::Path, to: &std::path::Path, bytes: &[u8]) {
        let dst = Root::new(to).unwrap();
        let src_md = std::fs::metadata(from.join("photos/a.bin")).unwrap();
        let source = SourceId {
            file_size: src_md.len(),
            mtime: (src_md.mtime(), src_md.mtime_nsec() as u32),
        };
        std::fs::create_dir(to.join("photos")).unwrap();
        let target = RelPath::parse(b"photos/a.bin").unwrap();
        let mut partial = PartialFile::open(&dst, &target, &source, true).unwrap();
        partial.write(bytes).unwrap();
        partial.suspend();
    }

    pub(super) fn tree(dir: &std::path::Path) {
        std::fs::create_dir_all(dir.join("photos/b")).unwrap();
        std::fs::write(dir.join("photos/a.bin"), vec![7u8; 700_000]).unwrap();
        std::fs::write(dir.join("photos/b/ünï code.txt"), b"hello").unwrap();
        std::fs::write(dir.join("photos/empty"), b"").unwrap();
        std::fs::set_permissions(
            dir.join("photos/b/ünï code.txt"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4750),
        )
        .unwrap();
    }

    pub(super) fn entries_of(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                for sub in entries_of(&entry.path()) {
                    out.push(format!("{name}/{sub}"));
                }
            } else {
                out.push(name);
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_tree_arrives_whole_with_modes_and_times_and_nothing_else() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        tree(from.path());
        let (_, summary) = transfer(from.path(), "photos", to.path(), OPTIONS).await;
        assert_eq!(summary.errors, vec![]);
        assert_eq!((summary.files, summary.bytes), (3, 700_005));
        let md5s: Vec<&str> = summary.md5s.iter().map(|(_, m)| m.as_str()).collect();
        // md5("hello") and md5("") from coreutils' md5sum.
        assert!(
            md5s.contains(&"5d41402abc4b2a76b9719d911017c592"),
            "{md5s:?}"
        );
        assert!(
            md5s.contains(&"d41d8cd98f00b204e9800998ecf8427e"),
            "{md5s:?}"
        );
        assert_eq!(
            entries_of(to.path()),
            ["photos/a.bin", "photos/b/ünï code.txt", "photos/empty"]
        );
        let a = to.path().join("photos/b/ünï code.txt");
        assert_eq!(std::fs::read(&a).unwrap(), b"hello");
        assert_eq!(std::fs::metadata(&a).unwrap().mode() & 0o7777, 0o750);
        let src_md = std::fs::metadata(from.path().join("photos/a.bin")).unwrap();
        let dst_md = std::fs::metadata(to.path().join("photos/a.bin")).unwrap();
        assert_eq!(src_md.mtime(), dst_md.mtime());
        assert_eq!(src_md.mtime_nsec(), dst_md.mtime_nsec());
    }

    #[tokio::test]
    async fn hashed_on_either_thread_a_tree_and_a_resumed_file_arrive_whole() {
        for decrypting in [false, true] {
            let from = tempfile::tempdir().unwrap();
            let to = tempfile::tempdir().unwrap();
            tree(from.path());
            keep_partial(from.path(), to.path(), &vec![7u8; 300_000]);
            let (_, summary) =
                transfer_over(from.path(), "photos", to.path(), OPTIONS, decrypting).await;
            assert_eq!(summary.errors, vec![], "decrypting: {decrypting}");
            assert_eq!(summary.bytes, 400_005, "decrypting: {decrypting}");
            assert_eq!(
                std::fs::read(to.path().join("photos/a.bin")).unwrap(),
                vec![7u8; 700_000]
            );
            assert_eq!(
                entries_of(to.path()),
                ["photos/a.bin", "photos/b/ünï code.txt", "photos/empty"]
            );
        }
    }

    #[tokio::test]
    async fn a_second_run_skips_what_is_already_there() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        tree(from.path());
        transfer(from.path(), "photos", to.path(), OPTIONS).await;
        let (_, summary) = transfer(from.path(), "photos", to.path(), OPTIONS).await;
        assert_eq!((summary.files, summary.skipped, summary.bytes), (0, 3, 0));
    }

    #[tokio::test]
    async fn a_partial_file_is_resumed_from_its_end() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        tree(from.path());
        // An earlier attempt kept the first 300,000 bytes.
        keep_partial(from.path(), to.path(), &vec![7u8; 300_000]);
        let (wants, summary) = transfer(from.path(), "photos", to.path(), OPTIONS).await;
        assert!(wants.iter().any(|w| matches!(
            w.action,
            WantAction::Send {
                offset: 300_000,
                ..
            }
        )));
        assert_eq!(summary.errors, vec![]);
        assert_eq!(summary.bytes, 400_005, "only the rest moved");
        assert_eq!(summary.resumed_bytes, 300_000, "the rest of a.bin");
        let mut published = summary.published.clone();
        published.sort_unstable();
        // photos, photos/a.bin, photos/b, photos/b/ünï code.txt, photos/empty
        assert_eq!(published, [(1, 300_000), (3, 0), (4, 0)]);
        assert_eq!(
            std::fs::read(to.path().join("photos/a.bin")).unwrap(),
            vec![7u8; 700_000]
        );
        assert_eq!(entries_of(to.path()).len(), 3, "no partial left");
    }

    #[tokio::test]
    async fn a_partial_that_is_not_a_prefix_is_resent_whole() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        tree(from.path());
        keep_partial(from.path(), to.path(), &vec![9u8; 1000]); // corrupt prefix
        let (_, summary) = transfer(from.path(), "photos", to.path(), OPTIONS).await;
        assert_eq!(summary.errors, vec![]);
        assert_eq!(summary.resumed_bytes, 0, "sent whole, not resumed");
        assert!(summary.published.iter().all(|&(_, from)| from == 0));
        assert_eq!(
            std::fs::read(to.path().join("photos/a.bin")).unwrap(),
            vec![7u8; 700_000]
        );
    }

    #[tokio::test]
    async fn a_transfer_sweeps_stale_partials_from_the_directories_it_writes() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        tree(from.path());
        std::fs::create_dir_all(to.path().join("photos")).unwrap();
        std::fs::create_dir_all(to.path().join("elsewhere")).unwrap();
        let dst = Root::new(to.path()).unwrap();
        // Partials of transfers given up on, in a directory this transfer
        // writes and in one it does not.
        let abandon = |path: &str, days: u64| {
            let target = RelPath::parse(path.as_bytes()).unwrap();
            let source = SourceId {
                file_size: 10,
                mtime: (0, 0),
            };
            let mut partial = PartialFile::open(&dst, &target, &source, true).unwrap();
            partial.write(b"abandoned").unwrap();
            partial.suspend();
            let name = crate::engine::atomic::partial_name(target.file_name().unwrap());
            let parent = String::from_utf8(target.parent().to_bytes()).unwrap();
            let file = to.path().join(parent).join(name);
            let then = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
            std::fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(then)
                .unwrap();
            file
        };
        let stale = abandon("photos/gone.bin", 8);
        let recent = abandon("photos/recent.bin", 1);
        let untouched = abandon("elsewhere/gone.bin", 8);
        let (_, summary) = transfer(from.path(), "photos", to.path(), OPTIONS).await;
        assert_eq!(summary.errors, vec![]);
        assert!(!stale.exists(), "a week-old partial in a written directory");
        assert!(recent.exists(), "a partial that may still be resumed");
        assert!(untouched.exists(), "a directory the transfer did not write");
    }

    #[tokio::test]
    async fn an_existing_different_file_is_refused_without_force_and_replaced_with_it() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        tree(from.path());
        std::fs::create_dir(to.path().join("photos")).unwrap();
        std::fs::write(to.path().join("photos/empty"), b"mine").unwrap();
        let (wants, summary) = transfer(from.path(), "photos", to.path(), OPTIONS).await;
        assert!(wants
            .iter()
            .any(|w| matches!(&w.action, WantAction::Refuse { code, .. } if code == "exists")));
        assert_eq!(summary.files, 2);
        assert_eq!(
            std::fs::read(to.path().join("photos/empty")).unwrap(),
            b"mine"
        );
        let force = ReceiveOptions {
            force: true,
            ..OPTIONS
        };
        transfer(from.path(), "photos", to.path(), force).await;
        assert_eq!(std::fs::read(to.path().join("photos/empty")).unwrap(), b"");
    }
}
