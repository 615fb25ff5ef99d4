//! The sending side: files are read and hashed on a blocking thread and
//! handed to the connection in recycled chunk buffers.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use crate::connection::{ConnectionError, FrameWriter};
use crate::protocol::ErrorCode;

use super::super::dirs::DirChain;
use super::super::error::{code_of, show, FileError};
use super::super::manifest::{Manifest, SourceRef};
use super::super::ranges::{range_len, RANGE_BYTES};
use super::super::root::{fstat, split_names, Kind, RelPath, Root};
use super::super::wire::{parse_hash, DataFrame, Entry, FileEnd, FileHead, Want, WantAction};
use super::md5::hex;
use super::{read_full, Progress, TransferError, CHANNEL_CHUNKS, CHUNK_BYTES, MAX_BATCH_ITEMS};

enum Chunk {
    Head { file: u64, offset: u64, size: u64 },
    Data(Bytes),
    End(FileEnd),
}

/// What the sending side did, for its own report: the receiver's result
/// says which files failed, this says which of them the sender failed
/// itself and which it resumed. Both lists are as long as the files they
/// name, never a list of every file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendSummary {
    /// Files the sender could not read whole (gone, unreadable, changed),
    /// sent as failed end frames.
    pub failed: Vec<u64>,
    /// Files sent from the offset the receiver offered: index and offset.
    pub resumed: Vec<(u64, u64)>,
}

/// Sends the wanted files of `manifest`, then an end frame. Files are read
/// beneath `root` or from local paths, as the manifest's sources say.
pub async fn send_files<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    manifest: Arc<Manifest>,
    root: Option<Arc<Root>>,
    wants: Vec<Want>,
    md5: bool,
    progress: &dyn Progress,
) -> Result<SendSummary, TransferError> {
    let sent = send_file_frames(writer, manifest, root, wants, md5, progress).await?;
    writer.send_header(&DataFrame::Done.to_header(0)).await?;
    writer.flush().await?;
    Ok(sent)
}

/// [`send_files`] without the end frame, for a sender that ends the data
/// only once its extra streams are done (a striped put). A `Stripe` want
/// gets only its end frame here, with the BLAKE3 (and md5) of the whole
/// file; its ranges travel on the extra streams (`range_send.rs`).
pub(super) async fn send_file_frames<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    manifest: Arc<Manifest>,
    root: Option<Arc<Root>>,
    wants: Vec<Want>,
    md5: bool,
    progress: &dyn Progress,
) -> Result<SendSummary, TransferError> {
    let (tx, mut rx) = mpsc::channel::<Vec<Chunk>>(CHANNEL_CHUNKS);
    let reading_manifest = manifest.clone();
    let liveness = Arc::new(Liveness::default());
    let reading_liveness = liveness.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut out = Batcher::new(tx, reading_liveness);
        let pool = Arc::new(ChunkPool::default());
        let mut opener = Opener::new(root.as_deref(), &reading_manifest.in_root);
        let mut sent = SendSummary::default();
        for want in wants {
            let (offset, prefix_blake3) = match want.action {
                WantAction::Send {
                    offset,
                    prefix_blake3,
                } => (offset, prefix_blake3),
                WantAction::Stripe { kept, kept_blake3 } => {
                    let asked = Striped {
                        i: want.i,
                        kept,
                        kept_blake3,
                        md5,
                    };
                    match hash_striped((&reading_manifest, &mut opener), asked, &mut out) {
                        ReadOutcome::Gone => return sent,
                        ReadOutcome::Failed => sent.failed.push(want.i),
                        ReadOutcome::Sent { .. } => {}
                    }
                    continue;
                }
                _ => continue,
            };
            let asked = Asked {
                i: want.i,
                offset,
                prefix: prefix_blake3,
                md5,
            };
            let read = read_one((&reading_manifest, &mut opener), asked, &mut out, &pool);
            match read {
                ReadOutcome::Gone => return sent,
                ReadOutcome::Failed => sent.failed.push(want.i),
                ReadOutcome::Sent { from: 0 } => {}
                ReadOutcome::Sent { from } => sent.resumed.push((want.i, from)),
            }
        }
        out.flush();
        sent
    });
    // The file thread must show progress (a chunk read or hashed) within
    // the request deadline, or the transfer stops and so does the thread.
    let mut watch = Watchdog::new(writer.timeout());
    while let Some(batch) = watch.next_batch(&mut rx, &liveness).await? {
        for chunk in batch {
            match chunk {
                Chunk::Head { file, offset, size } => {
                    let entry = &manifest.entries[file as usize];
                    progress.file_started(&entry.path.to_bytes().unwrap_or_default(), size);
                    let head = DataFrame::Head(FileHead { file, offset }).to_header(size);
                    writer.send_header(&head).await?;
                }
                Chunk::Data(bytes) => {
                    progress.advanced(bytes.len() as u64);
                    if let Some(wait) = progress.delay_for(bytes.len() as u64) {
                        if !wait.is_zero() {
                            writer.flush().await?;
                            tokio::time::sleep(wait).await;
                        }
                    }
                    writer.send_body(bytes).await?;
                }
                Chunk::End(end) => {
                    writer
                        .send_header(&DataFrame::End(end).to_header(0))
                        .await?
                }
            }
        }
    }
    let sent = reader
        .await
        .map_err(|err| FileError::new(ErrorCode::Internal, format!("file reader failed: {err}")))?;
    Ok(sent)
}

/// Checks, once per deadline, that the file thread got on since the last
/// check: one timer for the whole transfer, not one per batch.
struct Watchdog {
    deadline: std::time::Duration,
    check: std::pin::Pin<Box<tokio::time::Sleep>>,
    last_ticks: u64,
}

impl Watchdog {
    fn new(deadline: std::time::Duration) -> Watchdog {
        Watchdog {
            deadline,
            check: Box::pin(tokio::time::sleep(deadline)),
            last_ticks: 0,
        }
    }

    /// The file thread's next batch; `None` once it has sent everything.
    /// The thread must show progress (a chunk read or hashed, counted in
    /// `liveness`) within each deadline, or it is told to stop and the
    /// transfer fails with a timeout.
    async fn next_batch<T>(
        &mut self,
        rx: &mut mpsc::Receiver<Vec<T>>,
        liveness: &Liveness,
    ) -> Result<Option<Vec<T>>, TransferError> {
        loop {
            tokio::select! {
                batch = rx.recv() => return Ok(batch),
                () = self.check.as_mut() => {
                    let ticks = liveness.ticks.load(Ordering::Relaxed);
                    if ticks == self.last_ticks {
                        liveness.stopped.store(true, Ordering::Relaxed);
                        return Err(ConnectionError::Timeout(self.deadline).into());
                    }
                    self.last_ticks = ticks;
                    let next = tokio::time::Instant::now() + self.deadline;
                    self.check.as_mut().reset(next);
                }
            }
        }
    }
}

/// Chunk buffers handed back once the connection has sent them, so a large
/// file is read through the same few warm buffers instead of a fresh
/// allocation (and fresh pages from the kernel) per chunk.
#[derive(Debug, Default)]
struct ChunkPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Chunks shorter than this (the tails of files, and small files whole)
/// are read into buffers of their own size instead of pooled ones.
const SMALL_CHUNK_BYTES: usize = CHUNK_BYTES / 4;

/// Buffers kept for reuse: the chunks that can be in flight at once.
const POOLED_CHUNKS: usize = CHANNEL_CHUNKS + 4;

impl ChunkPool {
    /// A buffer of [`CHUNK_BYTES`], recycled when there is one.
    fn take(self: &Arc<ChunkPool>) -> PooledChunk {
        let recycled = self.free.lock().ok().and_then(|mut free| free.pop());
        PooledChunk {
            bytes: recycled.unwrap_or_else(|| vec![0; CHUNK_BYTES]),
            len: 0,
            pool: self.clone(),
        }
    }
}

/// A chunk's bytes (`bytes[..len]`) that go back to their pool when the
/// last `Bytes` referring to them is dropped.
struct PooledChunk {
    bytes: Vec<u8>,
    len: usize,
    pool: Arc<ChunkPool>,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.free.lock() {
            if free.len() < POOLED_CHUNKS {
                free.push(std::mem::take(&mut self.bytes));
            }
        }
    }
}

/// What the file thread shows the connection side, and is told by it.
#[derive(Debug, Default)]
struct Liveness {
    /// Bumped for every chunk read or hashed: the thread is getting on.
    ticks: AtomicU64,
    /// Set when the transfer gave up on the thread.
    stopped: AtomicBool,
}

/// Groups chunks so that many small files cross from the file thread to the
/// connection in one message, and so one wakeup, instead of three each.
struct Batcher<T> {
    tx: mpsc::Sender<Vec<T>>,
    batch: Vec<T>,
    bytes: usize,
    liveness: Arc<Liveness>,
}

impl<T> Batcher<T> {
    fn new(tx: mpsc::Sender<Vec<T>>, liveness: Arc<Liveness>) -> Batcher<T> {
        Batcher {
            tx,
            batch: Vec::new(),
            bytes: 0,
            liveness,
        }
    }

    /// Counts a step of work done without anything to send.
    fn tick(&self) {
        self.liveness.ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the connection side is gone or gave up: work for it stops.
    fn abandoned(&self) -> bool {
        self.tx.is_closed() || self.liveness.stopped.load(Ordering::Relaxed)
    }

    /// Adds an item carrying `bytes` of data; sends the batch once it holds
    /// a chunk's worth. False when the other side is gone.
    fn push(&mut self, item: T, bytes: usize) -> bool {
        self.tick();
        self.batch.push(item);
        self.bytes += bytes;
        if self.bytes >= CHUNK_BYTES / 2 || self.batch.len() >= MAX_BATCH_ITEMS {
            return self.flush();
        }
        true
    }

    /// Sends what is batched (blocking while the channel is full).
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.bytes = 0;
        self.tx
            .blocking_send(std::mem::take(&mut self.batch))
            .is_ok()
    }
}

/// One file the receiver asked for.
struct Asked {
    i: u64,
    offset: u64,
    prefix: Option<String>,
    md5: bool,
}

/// Both hashes a sender may compute while reading.
struct Hashes {
    blake3: blake3::Hasher,
    md5: Option<md5::Md5>,
}

impl Hashes {
    fn new(md5: bool) -> Hashes {
        Hashes {
            blake3: blake3::Hasher::new(),
            md5: md5.then(md5::Md5::default),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.blake3.update(bytes);
        if let Some(md5) = &mut self.md5 {
            md5::Digest::update(md5, bytes);
        }
    }
}

/// How reading one asked-for file went.
enum ReadOutcome {
    /// Its data and hashes went out, from this offset.
    Sent { from: u64 },
    /// It went out as a failed end frame.
    Failed,
    /// The connection side is gone: stop.
    Gone,
}

impl ReadOutcome {
    /// `Sent` (from `from`) or `Failed`, if the item went into the channel.
    fn pushed(pushed: bool, ok: ReadOutcome) -> ReadOutcome {
        if pushed {
            ok
        } else {
            ReadOutcome::Gone
        }
    }
}

/// Reads one file into the channel: head, data, end.
fn read_one(
    (manifest, opener): (&Manifest, &mut Opener<'_>),
    asked: Asked,
    out: &mut Batcher<Chunk>,
    pool: &Arc<ChunkPool>,
) -> ReadOutcome {
    let Asked {
        i,
        offset,
        prefix,
        md5,
    } = asked;
    let (entry, mut file) = match open_listed(manifest, opener, i) {
        Ok(opened) => opened,
        Err(err) => return fail_unsent(out, i, err.code, err.message),
    };
    let mut hasher = Hashes::new(md5);
    let mut offset = offset.min(entry.file_size);
    if offset > 0 {
        let hashed = match hash_prefix(&mut file, offset, &mut hasher, out) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return ReadOutcome::Gone,
            hashed => hashed.ok(),
        };
        let matches = hashed == prefix.as_deref().and_then(|p| parse_hash(p).ok());
        if !matches {
            // The receiver's partial is not a prefix of this file: resend all.
            offset = 0;
            hasher = Hashes::new(md5);
            if let Err(err) = file.seek(SeekFrom::Start(0)) {
                return fail_unsent(out, i, code_of(&err), format!("cannot seek: {err}"));
            }
        }
    }
    let size = entry.file_size - offset;
    if !out.push(
        Chunk::Head {
            file: i,
            offset,
            size,
        },
        0,
    ) {
        return ReadOutcome::Gone;
    }
    let mut short = false;
    let mut left = size;
    while left > 0 {
        let want = left.min(CHUNK_BYTES as u64) as usize;
        let (got, chunk) = if want < SMALL_CHUNK_BYTES {
            // A small file's bytes get a buffer of their own size: a batch
            // of many small files must not pin a pooled chunk each.
            let mut bytes = vec![0; want];
            let got = read_full(&mut file, &mut bytes).unwrap_or(0);
            hasher.update(&bytes[..got]);
            (got, Bytes::from(bytes))
        } else {
            let mut buf = pool.take();
            let got = read_full(&mut file, &mut buf.bytes[..want]).unwrap_or(0);
            // A file that shrank mid-read still owes the announced bytes;
            // the zeros are sent and the end frame says the file changed.
            buf.bytes[got..want].fill(0);
            hasher.update(&buf.bytes[..got]);
            buf.len = want;
            (got, Bytes::from_owner(buf))
        };
        short |= got < want;
        left -= want as u64;
        if !out.push(Chunk::Data(chunk), want) {
            return ReadOutcome::Gone;
        }
    }
    let changed = short || !still_listed(&file, entry);
    let pushed = finish_read(i, changed, hasher, out);
    ReadOutcome::pushed(
        pushed,
        if changed {
            ReadOutcome::Failed
        } else {
            ReadOutcome::Sent { from: offset }
        },
    )
}

/// A file the receiver asked for in ranges.
struct Striped {
    i: u64,
    kept: Vec<u64>,
    kept_blake3: Option<String>,
    md5: bool,
}

/// Fails file `i` before any of its data: an end frame with nothing
/// before it, so the receiver fails the file with `code` instead of
/// waiting for it.
fn fail_unsent(out: &mut Batcher<Chunk>, i: u64, code: ErrorCode, message: String) -> ReadOutcome {
    let end = FileEnd::failed(i, code, message);
    ReadOutcome::pushed(out.push(Chunk::End(end), 0), ReadOutcome::Failed)
}

/// Reads a striped file once, in order, for its end frame: the BLAKE3 (and
/// md5) of the whole file, or `changed` when it changed since the listing
/// or the ranges the receiver kept are not this file's (the receiver then
/// drops them).
fn hash_striped(
    (manifest, opener): (&Manifest, &mut Opener<'_>),
    asked: Striped,
    out: &mut Batcher<Chunk>,
) -> ReadOutcome {
    let i = asked.i;
    let (entry, mut file) = match open_listed(manifest, opener, i) {
        Ok(opened) => opened,
        Err(err) => return fail_unsent(out, i, err.code, err.message),
    };
    let kept: std::collections::BTreeSet<u64> = asked.kept.into_iter().collect();
    let mut hasher = Hashes::new(asked.md5);
    let mut kept_hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; RANGE_BYTES as usize];
    let mut offset = 0;
    let mut short = false;
    while offset < entry.file_size {
        if out.abandoned() {
            return ReadOutcome::Gone;
        }
        let len = range_len(entry.file_size, offset) as usize;
        let got = read_full(&mut file, &mut buf[..len]).unwrap_or(0);
        short |= got < len;
        hasher.update(&buf[..got]);
        if kept.contains(&offset) {
            kept_hasher.update(&buf[..got]);
        }
        out.tick();
        offset += len as u64;
    }
    let kept_matches = kept.is_empty()
        || asked
            .kept_blake3
            .as_deref()
            .and_then(|h| parse_hash(h).ok())
            == Some(kept_hasher.finalize());
    if !kept_matches {
        return fail_unsent(
            out,
            i,
            ErrorCode::Changed,
            "the ranges kept by an earlier attempt are not this file's; they were dropped, \
             run the transfer again"
                .into(),
        );
    }
    let changed = short || !still_listed(&file, entry);
    let pushed = finish_read(i, changed, hasher, out);
    ReadOutcome::pushed(
        pushed,
        if changed {
            ReadOutcome::Failed
        } else {
            ReadOutcome::Sent { from: 0 }
        },
    )
}

/// Opens manifest entry `i` to send it, refusing a file that is no longer
/// the regular file of the listing's size and mtime.
fn open_listed<'m>(
    manifest: &'m Manifest,
    opener: &mut Opener<'_>,
    i: u64,
) -> Result<(&'m Entry, File), FileError> {
    let (Some(entry), Some(Some(source))) = (
        manifest.entries.get(i as usize),
        manifest.sources.get(i as usize),
    ) else {
        return Err(FileError::new(
            ErrorCode::BadRequest,
            "no such file in the manifest",
        ));
    };
    let file = opener.open(entry, source)?;
    if !still_listed(&file, entry) {
        return Err(FileError::new(
            ErrorCode::Changed,
            "the file changed since the listing",
        ));
    }
    Ok((entry, file))
}

/// Whether `file` is still the regular file of `entry`'s size and mtime.
fn still_listed(file: &File, entry: &Entry) -> bool {
    fstat(file.as_fd()).is_ok_and(|st| {
        st.kind == Kind::File
            && st.len == entry.file_size
            && st.mtime == (entry.mtime, entry.mtime_ns)
    })
}

/// Ends one file: its hashes, or why it cannot be trusted. False when the
/// other side of the channel is gone.
fn finish_read(i: u64, changed: bool, hasher: Hashes, out: &mut Batcher<Chunk>) -> bool {
    let end = if changed {
        FileEnd::failed(
            i,
            ErrorCode::Changed,
            "the file changed while it was being sent".into(),
        )
    } else {
        FileEnd {
            file_end: i,
            blake3: Some(hasher.blake3.finalize().to_hex().to_string()),
            md5: hasher.md5.map(|m| hex(&md5::Digest::finalize(m))),
            error: None,
            code: None,
        }
    };
    out.push(Chunk::End(end), 0)
}

/// Opens the files a transfer sends. A file is opened without blocking (a
/// FIFO swapped in after the listing must not hold the thread) and without
/// following a symlink (unless it was listed through one), and must still
/// be a regular file when it is open.
pub(super) struct Opener<'m> {
    root: Option<&'m Root>,
    in_root: &'m RelPath,
    /// The walk beneath the root, for files listed from it.
    chain: Option<DirChain>,
}

impl<'m> Opener<'m> {
    pub(super) fn new(root: Option<&'m Root>, in_root: &'m RelPath) -> Opener<'m> {
        Opener {
            root,
            in_root,
            chain: None,
        }
    }

    pub(super) fn open(&mut self, entry: &Entry, source: &SourceRef) -> Result<File, FileError> {
        let shown = entry.path.to_bytes().unwrap_or_default();
        let cannot = |err: io::Error| {
            let code = match err.raw_os_error() {
                // A file swapped for a symlink since the listing.
                Some(errno) if errno == rustix::io::Errno::LOOP.raw_os_error() => {
                    ErrorCode::Changed
                }
                _ => code_of(&err),
            };
            FileError::new(code, format!("{}: cannot open: {err}", show(&shown)))
        };
        let fd: OwnedFd = match source {
            SourceRef::InRoot { via_symlink } => {
                let root = self
                    .root
                    .ok_or_else(|| FileError::new(ErrorCode::Internal, "no root to read from"))?;
                if *via_symlink {
                    let rel = self.in_root.concat(&RelPath::parse(&shown)?)?;
                    root.open(&rel, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())
                        .map_err(cannot)?
                } else {
                    let mut names: Vec<&OsStr> = self
                        .in_root
                        .names()
                        .iter()
                        .map(OsString::as_os_str)
                        .collect();
                    names.extend(split_names(&shown)?);
                    let Some((&name, parents)) = names.split_last() else {
                        return Err(FileError::new(ErrorCode::BadPath, "the root is not a file"));
                    };
                    let chain = match &mut self.chain {
                        Some(chain) => chain,
                        None => {
                            let handle = rustix::io::fcntl_dupfd_cloexec(root.handle(), 0)
                                .map_err(|e| cannot(e.into()))?;
                            self.chain.insert(DirChain::new(handle).map_err(cannot)?)
                        }
                    };
                    let dir = chain.enter(parents).map_err(cannot)?;
                    rustix::fs::openat(
                        &*dir,
                        name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| cannot(e.into()))?
                }
            }
            SourceRef::Local { path, via_symlink } => {
                let mut flags = libc::O_NONBLOCK;
                if !via_symlink {
                    flags |= libc::O_NOFOLLOW;
                }
                OwnedFd::from(
                    std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(flags)
                        .open(path)
                        .map_err(cannot)?,
                )
            }
        };
        let kind = fstat(&fd).map_err(cannot)?.kind;
        if kind != Kind::File {
            return Err(FileError::new(
                ErrorCode::NotRegular,
                format!("{}: no longer a regular file", show(&shown)),
            ));
        }
        Ok(File::from(fd))
    }
}

/// Hashes the first `len` bytes of `file`, to check a receiver's kept
/// prefix; stops (`Interrupted`) as soon as the connection side is gone.
fn hash_prefix<T>(
    file: &mut File,
    len: u64,
    hasher: &mut Hashes,
    out: &Batcher<T>,
) -> io::Result<blake3::Hash> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut left = len;
    while left > 0 {
        if out.abandoned() {
            return Err(io::ErrorKind::Interrupted.into());
        }
        out.tick();
        let want = left.min(CHUNK_BYTES as u64) as usize;
        let got = read_full(file, &mut buf[..want])?;
        if got < want {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        hasher.update(&buf[..got]);
        left -= got as u64;
    }
    Ok(hasher.blake3.finalize())
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::super::NoProgress;
    use super::*;
    use crate::connection::Connection;
    use std::collections::HashMap;

    /// Sends `wants` of the tree `d` beneath `from`, as listed before
    /// `meanwhile` ran, and reads back every frame: the heads (index,
    /// offset, size), the ends (index, code) and what the sender reports.
    async fn send(
        from: &std::path::Path,
        wants: impl FnOnce(&Manifest) -> Vec<Want>,
        meanwhile: impl FnOnce(),
    ) -> (
        Vec<(u64, u64, u64)>,
        Vec<(u64, Option<String>)>,
        SendSummary,
    ) {
        let root = Arc::new(Root::new(from).unwrap());
        let manifest = Manifest::from_root(&root, &RelPath::parse(b"d").unwrap(), true).unwrap();
        let wants = wants(&manifest);
        meanwhile();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut sender = Connection::new(a, config());
        let mut receiver = Connection::new(b, config());
        let sending = tokio::spawn(async move {
            let writer = sender.writer();
            let manifest = Arc::new(manifest);
            send_files(writer, manifest, Some(root), wants, false, &NoProgress)
                .await
                .unwrap()
        });
        let (mut heads, mut ends) = (Vec::new(), Vec::new());
        let reader = receiver.reader();
        loop {
            let header = reader.expect_header().await.unwrap();
            match DataFrame::from_header(&header).unwrap() {
                DataFrame::Head(head) => {
                    heads.push((head.file, head.offset, header.size()));
                    while reader.read_body_chunk().await.unwrap().is_some() {}
                }
                DataFrame::End(end) => ends.push((end.file_end, end.code)),
                DataFrame::Done => break,
            }
        }
        (heads, ends, sending.await.unwrap())
    }

    fn index(manifest: &Manifest, path: &str) -> u64 {
        let at = manifest
            .entries
            .iter()
            .position(|e| e.path.to_bytes().unwrap() == path.as_bytes());
        at.unwrap() as u64
    }

    #[tokio::test]
    async fn each_want_is_sent_from_the_offset_its_prefix_earns_or_failed_with_a_code() {
        let from = tempfile::tempdir().unwrap();
        let d = from.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("kept"), vec![7u8; 1000]).unwrap();
        std::fs::write(d.join("other"), b"0123456789").unwrap();
        std::fs::write(d.join("changed"), b"before").unwrap();
        std::fs::write(d.join("skipped"), b"x").unwrap();
        let mut at = HashMap::new();
        let send_from = |offset: u64, prefix: &[u8]| WantAction::Send {
            offset,
            prefix_blake3: Some(blake3::hash(prefix).to_hex().to_string()),
        };
        let (heads, ends, sent) = send(
            from.path(),
            |manifest| {
                for name in ["d/kept", "d/other", "d/changed", "d/skipped"] {
                    at.insert(name, index(manifest, name));
                }
                let want = |i, action| Want { i, action };
                vec![
                    // The receiver kept the first 300 bytes.
                    want(at["d/kept"], send_from(300, &[7u8; 300])),
                    // What the receiver kept is not this file's prefix.
                    want(at["d/other"], send_from(4, b"abcd")),
                    want(at["d/changed"], send_from(0, b"")),
                    want(at["d/skipped"], WantAction::Skip),
                    want(99, send_from(0, b"")),
                ]
            },
            || std::fs::write(d.join("changed"), b"after, and longer").unwrap(),
        )
        .await;
        assert_eq!(
            heads,
            [(at["d/kept"], 300, 700), (at["d/other"], 0, 10)],
            "data only for files that can be sent, from where they can be"
        );
        let codes: Vec<(u64, Option<&str>)> =
            ends.iter().map(|(i, code)| (*i, code.as_deref())).collect();
        assert_eq!(
            codes,
            [
                (at["d/kept"], None),
                (at["d/other"], None),
                (at["d/changed"], Some("changed")),
                (99, Some("bad_request")),
            ]
        );
        assert_eq!(sent.failed, [at["d/changed"], 99]);
        assert_eq!(sent.resumed, [(at["d/kept"], 300)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_thread_that_shows_no_progress_within_the_deadline_is_stopped() {
        let deadline = std::time::Duration::from_secs(30);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
        let liveness = Arc::new(Liveness::default());
        // Hashing a long prefix: no batch for three deadlines, but a tick
        // in each, so the transfer waits.
        let working = liveness.clone();
        let worker = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(deadline / 2).await;
                working.ticks.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(deadline / 2).await;
            }
            tx.send(vec![1]).await.unwrap();
            // Then stuck: no tick, no batch, the sender still held.
            tokio::time::sleep(deadline * 10).await;
            drop(tx);
        });
        let mut watch = Watchdog::new(deadline);
        let first = watch.next_batch(&mut rx, &liveness).await;
        assert_eq!(first.unwrap(), Some(vec![1]));
        let started = tokio::time::Instant::now();
        let stuck = watch.next_batch(&mut rx, &liveness).await;
        assert!(matches!(
            stuck,
            Err(TransferError::Connection(ConnectionError::Timeout(_)))
        ));
        assert!(started.elapsed() <= deadline * 2, "{:?}", started.elapsed());
        assert!(
            liveness.stopped.load(Ordering::Relaxed),
            "the thread was told"
        );
        worker.abort();
    }

    #[test]
    fn sent_chunk_buffers_come_back_for_the_next_chunk() {
        let pool = Arc::new(ChunkPool::default());
        let mut chunk = pool.take();
        let first = chunk.bytes.as_ptr();
        chunk.bytes[..3].copy_from_slice(b"abc");
        chunk.len = 3;
        let bytes = Bytes::from_owner(chunk);
        let shared = bytes.slice(1..);
        assert_eq!(&shared[..], b"bc");
        drop(bytes);
        assert!(pool.free.lock().unwrap().is_empty(), "still referenced");
        drop(shared);
        let again = pool.take();
        assert_eq!(again.bytes.as_ptr(), first, "the same buffer, reused");
        assert_eq!(again.bytes.len(), CHUNK_BYTES);
        // More buffers than can be in flight are not kept.
        let many: Vec<PooledChunk> = (0..POOLED_CHUNKS * 2).map(|_| pool.take()).collect();
        drop(many);
        assert_eq!(pool.free.lock().unwrap().len(), POOLED_CHUNKS);
    }
}
