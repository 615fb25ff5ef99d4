//! The data phase of a transfer, shared by both ends: the server sends for
//! `get` and receives for `put`, the client the other way round.
//!
//! File IO and hashing run on a blocking thread, joined to the connection by
//! a bounded channel of chunks: the disk, the hash and the socket work at
//! once, and at most [`CHANNEL_CHUNKS`] × [`CHUNK_BYTES`] sit between them,
//! whatever the file size. Small files are batched into large writes by the
//! connection's buffer; no step waits for a reply per file.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::connection::{ConnectionError, FrameReader, FrameWriter};
use crate::protocol::message::StreamFrame;
use crate::protocol::{ErrorCode, Header};

use super::atomic::{has_partial, is_reserved_name, FileMeta, PartialFile, SealedFile, SourceId};
use super::error::{show, FileError};
use super::manifest::{Manifest, SourceRef};
use super::root::{fstat, Kind, RelPath, Root};
use super::wire::{parse_hash, Entry, EntryError, EntryKind, FileEnd, FileHead, Want, WantAction};

/// Bytes read from a file per chunk.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight between the file thread and the connection.
pub const CHANNEL_CHUNKS: usize = 4;
/// Files sealed before one `syncfs` and their renames.
const PUBLISH_BATCH_FILES: usize = 2048;
/// Bytes sealed before one `syncfs` and their renames.
const PUBLISH_BATCH_BYTES: u64 = 1 << 30;
/// Directories sealed files may span before they are published.
const PUBLISH_BATCH_DIRS: usize = 256;

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
}

/// Told about a transfer's progress; the CLI draws a bar from it.
pub trait Progress: Send + Sync {
    /// The transfer's data phase starts; `total_bytes` will move.
    fn begin(&self, _total_bytes: u64) {}
    /// A file starts; `size` bytes of it will move.
    fn file_started(&self, _path: &[u8], _size: u64) {}
    /// Some bytes moved.
    fn advanced(&self, _bytes: u64) {}
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
    /// Files already there (same size and mtime).
    pub skipped: u64,
    /// Entries that failed, with why.
    pub errors: Vec<EntryError>,
    /// The md5 the sender gave for each file written, when it was asked.
    pub md5s: Vec<(u64, String)>,
}

/// How to treat files already at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// Overwrite targets that differ.
    pub force: bool,
    /// Continue from partial files of an earlier attempt.
    pub resume: bool,
    /// Keep mode and mtime from the sender.
    pub preserve: bool,
}

enum Chunk {
    Head { file: u64, offset: u64, size: u64 },
    Data(Bytes),
    End(FileEnd),
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
) -> Result<(), TransferError> {
    let (tx, mut rx) = mpsc::channel::<Vec<Chunk>>(CHANNEL_CHUNKS);
    let reading_manifest = manifest.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut out = Batcher::new(tx);
        let pool = Arc::new(ChunkPool::default());
        for want in wants {
            let WantAction::Send {
                offset,
                prefix_blake3,
            } = want.action
            else {
                continue;
            };
            let asked = Asked {
                i: want.i,
                offset,
                prefix: prefix_blake3,
                md5,
            };
            let source = (&*reading_manifest, root.as_deref());
            if !read_one(source, asked, &mut out, &pool) {
                return; // the connection side is gone
            }
        }
        out.flush();
    });
    while let Some(batch) = rx.recv().await {
        for chunk in batch {
            match chunk {
                Chunk::Head { file, offset, size } => {
                    let entry = &manifest.entries[file as usize];
                    progress.file_started(&entry.path.to_bytes().unwrap_or_default(), size);
                    let head = Header::from_message(&FileHead { file, offset }).with_size(size);
                    writer.send_header(&head).await?;
                }
                Chunk::Data(bytes) => {
                    progress.advanced(bytes.len() as u64);
                    writer.send_body(bytes).await?;
                }
                Chunk::End(end) => writer.send_header(&Header::from_message(&end)).await?,
            }
        }
    }
    reader
        .await
        .map_err(|err| FileError::new(ErrorCode::Internal, format!("file reader failed: {err}")))?;
    writer
        .send_header(&StreamFrame::end_header(&serde_json::json!({})))
        .await?;
    writer.flush().await?;
    Ok(())
}

/// Chunk buffers handed back once the connection has sent them, so a large
/// file is read through the same few warm buffers instead of a fresh
/// allocation (and fresh pages from the kernel) per chunk.
#[derive(Debug, Default)]
struct ChunkPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

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

/// Most items in one batch, so a flood of empty files still moves along.
const MAX_BATCH_ITEMS: usize = 1024;

/// Groups chunks so that many small files cross from the file thread to the
/// connection in one message, and so one wakeup, instead of three each.
struct Batcher<T> {
    tx: mpsc::Sender<Vec<T>>,
    batch: Vec<T>,
    bytes: usize,
}

impl<T> Batcher<T> {
    fn new(tx: mpsc::Sender<Vec<T>>) -> Batcher<T> {
        Batcher {
            tx,
            batch: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds an item carrying `bytes` of data; sends the batch once it holds
    /// a chunk's worth. False when the other side is gone.
    fn push(&mut self, item: T, bytes: usize) -> bool {
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

/// Reads one file into the channel: head, data, end. Returns false when the
/// receiving side of the channel is gone.
fn read_one(
    (manifest, root): (&Manifest, Option<&Root>),
    asked: Asked,
    out: &mut Batcher<Chunk>,
    pool: &Arc<ChunkPool>,
) -> bool {
    let Asked {
        i,
        offset,
        prefix,
        md5,
    } = asked;
    let fail = |out: &mut Batcher<Chunk>, message: String| {
        let end = FileEnd {
            file_end: i,
            blake3: None,
            md5: None,
            error: Some(message),
        };
        out.push(Chunk::End(end), 0)
    };
    let (Some(entry), Some(Some(source))) = (
        manifest.entries.get(i as usize),
        manifest.sources.get(i as usize),
    ) else {
        return fail(out, "no such file in the manifest".into());
    };
    let mut file = match open_source(root, source) {
        Ok(file) => file,
        Err(err) => return fail(out, format!("cannot open: {err}")),
    };
    let changed = |file: &File| match fstat(file.as_fd()) {
        Ok(st) => {
            st.kind != Kind::File
                || st.len != entry.file_size
                || st.mtime != (entry.mtime, entry.mtime_ns)
        }
        Err(_) => true,
    };
    if changed(&file) {
        return fail(out, "the file changed since the listing".into());
    }
    let mut hasher = Hashes::new(md5);
    let mut offset = offset.min(entry.file_size);
    if offset > 0 {
        let matches = hash_prefix(&mut file, offset, &mut hasher).ok()
            == prefix.as_deref().and_then(|p| parse_hash(p).ok());
        if !matches {
            // The receiver's partial is not a prefix of this file: resend all.
            offset = 0;
            hasher = Hashes::new(md5);
            if file.seek(SeekFrom::Start(0)).is_err() {
                return fail(out, "cannot seek".into());
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
        return false;
    }
    let mut short = false;
    let mut left = size;
    while left > 0 {
        let want = left.min(CHUNK_BYTES as u64) as usize;
        let mut buf = pool.take();
        let got = read_full(&mut file, &mut buf.bytes[..want]).unwrap_or(0);
        // A file that shrank mid-read still owes the announced bytes; the
        // zeros are sent and the end frame says the file changed.
        short |= got < want;
        buf.bytes[got..want].fill(0);
        hasher.update(&buf.bytes[..got]);
        buf.len = want;
        left -= want as u64;
        if !out.push(Chunk::Data(Bytes::from_owner(buf)), want) {
            return false;
        }
    }
    finish_read(i, short || changed(&file), hasher, out)
}

/// Ends one file: its hashes, or why it cannot be trusted.
fn finish_read(i: u64, changed: bool, hasher: Hashes, out: &mut Batcher<Chunk>) -> bool {
    let end = if changed {
        FileEnd {
            file_end: i,
            blake3: None,
            md5: None,
            error: Some("the file changed while it was being sent".into()),
        }
    } else {
        FileEnd {
            file_end: i,
            blake3: Some(hasher.blake3.finalize().to_hex().to_string()),
            md5: hasher.md5.map(|m| hex(&md5::Digest::finalize(m))),
            error: None,
        }
    };
    out.push(Chunk::End(end), 0)
}

fn open_source(root: Option<&Root>, source: &SourceRef) -> io::Result<File> {
    match (source, root) {
        (SourceRef::InRoot(rel), Some(root)) => {
            Ok(File::from(root.open(rel, OFlags::RDONLY, Mode::empty())?))
        }
        (SourceRef::Local(path), _) => File::open(path),
        (SourceRef::InRoot(_), None) => Err(io::Error::other("no root to read from")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_prefix(file: &mut File, len: u64, hasher: &mut Hashes) -> io::Result<blake3::Hash> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut left = len;
    while left > 0 {
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

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// The receiving side, between its answer to the manifest and the data.
#[derive(Debug)]
pub struct ReceivePlan {
    dest: Arc<Root>,
    dirs: DirCache,
    /// The offset offered for each file asked for; data for anything else
    /// is refused, so a sender cannot write what the receiver skipped.
    offered: HashMap<u64, u64>,
    entries: Vec<Entry>,
    targets: Vec<Option<RelPath>>,
    partials: HashMap<u64, PartialFile>,
    options: ReceiveOptions,
    errors: Vec<EntryError>,
    skipped: u64,
}

impl ReceivePlan {
    /// Answers a manifest: creates its directories beneath `base`, and for
    /// each file decides to skip it, refuse it, or want it (from the offset
    /// of a partial file kept by an earlier attempt). Returns the plan and
    /// the answer for the sender, which lists refusals too. Blocking.
    pub fn new(
        dest: Arc<Root>,
        base: &RelPath,
        entries: Vec<Entry>,
        options: ReceiveOptions,
    ) -> (ReceivePlan, Vec<Want>) {
        let mut plan = ReceivePlan {
            dest,
            dirs: DirCache::default(),
            offered: HashMap::new(),
            targets: Vec::with_capacity(entries.len()),
            entries: Vec::new(),
            partials: HashMap::new(),
            options,
            errors: Vec::new(),
            skipped: 0,
        };
        let mut wants = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let i = i as u64;
            let action = match plan.plan_one(base, entry) {
                Ok((target, step)) => {
                    plan.targets.push(Some(target.clone()));
                    match step {
                        Step::Dir => continue,
                        Step::Skip => {
                            plan.skipped += 1;
                            WantAction::Skip
                        }
                        Step::Fetch => {
                            let action = plan.fetch(i, &target, entry);
                            if let WantAction::Send { offset, .. } = action {
                                plan.offered.insert(i, offset);
                            }
                            action
                        }
                    }
                }
                Err(err) => {
                    plan.targets.push(None);
                    WantAction::Refuse {
                        code: err.code.as_str().to_string(),
                        message: err.message,
                    }
                }
            };
            wants.push(Want { i, action });
        }
        plan.entries = entries;
        (plan, wants)
    }

    /// Wants a file whole, or from the end of a partial kept by an earlier
    /// attempt (hashed once here, and held open until its data comes).
    fn fetch(&mut self, i: u64, target: &RelPath, entry: &Entry) -> WantAction {
        let source = source_id(entry);
        let Ok((dir, name)) = self.dirs.parent(&self.dest, target) else {
            return WantAction::Send {
                offset: 0,
                prefix_blake3: None,
            };
        };
        if self.options.resume && has_partial(&dir, name) {
            if let Ok(partial) = PartialFile::open_in(dir, name, &source, true) {
                let offset = partial.resumed_len();
                let prefix = partial.resumed_hash().to_hex().to_string();
                self.partials.insert(i, partial);
                return WantAction::Send {
                    offset,
                    prefix_blake3: (offset > 0).then_some(prefix),
                };
            }
        }
        WantAction::Send {
            offset: 0,
            prefix_blake3: None,
        }
    }

    /// Where an entry goes and what to do about it.
    fn plan_one(&mut self, base: &RelPath, entry: &Entry) -> Result<(RelPath, Step), FileError> {
        let raw = entry
            .path
            .to_bytes()
            .map_err(|m| FileError::new(ErrorCode::BadPath, m))?;
        let rel = RelPath::parse(&raw)?;
        if rel.is_root() || rel.names().iter().any(|n| is_reserved_name(n)) {
            return Err(FileError::new(
                ErrorCode::BadPath,
                format!("{}: not a name a file can be stored under", show(&raw)),
            ));
        }
        let mut target = base.clone();
        for name in rel.names() {
            target = target.join(name)?;
        }
        let shown = target.to_bytes();
        let existing = match self.dirs.lstat(&self.dest, &target) {
            Ok(st) => Some(st),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(FileError::io(&shown, &err)),
        };
        if entry.kind == EntryKind::Dir {
            match existing {
                Some(st) if st.kind == Kind::Dir => {}
                Some(_) => {
                    return Err(FileError::new(
                        ErrorCode::NotADirectory,
                        format!("{} exists and is not a directory", show(&shown)),
                    ))
                }
                None => self
                    .dest
                    .mkdir_all(&target, 0o755)
                    .map_err(|e| FileError::io(&shown, &e))?,
            }
            return Ok((target, Step::Dir));
        }
        let step = match existing {
            None => Step::Fetch,
            Some(st) if st.kind == Kind::Dir => {
                return Err(FileError::new(
                    ErrorCode::IsADirectory,
                    format!("{} is a directory", show(&shown)),
                ))
            }
            Some(st) if st.kind == Kind::Special => {
                return Err(FileError::new(
                    ErrorCode::NotRegular,
                    format!("{} is not a regular file", show(&shown)),
                ))
            }
            // rsync's quick check: same size and mtime is the same file.
            Some(st)
                if self.options.preserve
                    && st.kind == Kind::File
                    && st.len == entry.file_size
                    && st.mtime == (entry.mtime, entry.mtime_ns) =>
            {
                Step::Skip
            }
            Some(_) if self.options.force => Step::Fetch,
            Some(_) => {
                return Err(FileError::new(
                    ErrorCode::Exists,
                    format!(
                        "{} exists and differs; use --force to overwrite it",
                        show(&shown)
                    ),
                ))
            }
        };
        Ok((target, step))
    }

    /// Receives the data frames of the wanted files, writing each through a
    /// partial file, until the end frame. Returns what was done.
    ///
    /// Data is hashed here, on the task that reads the socket, while the
    /// file thread only writes: the two costs run on two cores instead of
    /// adding up on one.
    pub async fn receive<R: AsyncRead + Unpin>(
        mut self,
        reader: &mut FrameReader<R>,
        progress: &dyn Progress,
    ) -> Result<ReceiveSummary, TransferError> {
        let (tx, rx) = mpsc::channel::<Vec<Op>>(CHANNEL_CHUNKS);
        let expected = Expected {
            sizes: self.entries.iter().map(|e| e.file_size).collect(),
            kinds: self.entries.iter().map(|e| e.kind).collect(),
            names: self.entries.iter().map(entry_name).collect(),
            prefixes: self
                .partials
                .iter_mut()
                .map(|(&i, partial)| (i, partial.detach_hasher()))
                .collect(),
        };
        let writer = tokio::task::spawn_blocking(move || self.write_all(rx));
        let result = forward_frames(reader, &tx, expected, progress).await;
        drop(tx);
        let summary = writer.await.map_err(|err| {
            FileError::new(ErrorCode::Internal, format!("file writer failed: {err}"))
        })?;
        result.map(|()| summary)
    }

    fn write_all(mut self, mut rx: mpsc::Receiver<Vec<Op>>) -> ReceiveSummary {
        let mut state = WriteState::default();
        while let Some(ops) = rx.blocking_recv() {
            for op in ops {
                self.apply(op, &mut state);
            }
        }
        // The stream ended inside a file: keep what came, for a resume.
        if let Some((_, Ok(partial))) = state.current.take() {
            partial.suspend();
        }
        self.publish(&mut state.pending, &mut state.summary);
        if self.options.preserve {
            self.apply_dir_meta();
        }
        let mut summary = state.summary;
        summary.skipped = self.skipped;
        summary.errors = std::mem::take(&mut self.errors);
        summary
    }

    fn apply(&mut self, op: Op, state: &mut WriteState) {
        match op {
            Op::Start { i, offset } => {
                let opened = self.start_file(i, offset);
                state.current = Some((i, opened));
            }
            Op::Data(chunk) => {
                if let Some((i, Ok(partial))) = &mut state.current {
                    if let Err(err) = partial.write(&chunk) {
                        let path = self.shown(*i);
                        state.current = Some((*i, Err(FileError::write(&path, &err))));
                    } else {
                        state.summary.bytes += chunk.len() as u64;
                    }
                }
            }
            Op::End(end, received) => {
                let Some((i, opened)) = state.current.take() else {
                    return;
                };
                match self.finish_file(i, opened, &end, received) {
                    Ok(sealed) => {
                        if let Some(md5) = &end.md5 {
                            state.summary.md5s.push((i, md5.clone()));
                        }
                        state.pending_bytes += self.entries[i as usize].file_size;
                        let new_dir = state
                            .pending
                            .last()
                            .is_none_or(|last| !Arc::ptr_eq(last.dir(), sealed.dir()));
                        state.pending_dirs += usize::from(new_dir);
                        state.pending.push(sealed);
                        // Each pending directory holds a descriptor.
                        if state.pending.len() >= PUBLISH_BATCH_FILES
                            || state.pending_bytes >= PUBLISH_BATCH_BYTES
                            || state.pending_dirs >= PUBLISH_BATCH_DIRS
                        {
                            state.pending_dirs = 0;
                            self.publish(&mut state.pending, &mut state.summary);
                            state.pending_bytes = 0;
                        }
                    }
                    Err(err) => self.fail(i, err),
                }
            }
        }
    }

    fn shown(&self, i: u64) -> Vec<u8> {
        self.targets[i as usize]
            .as_ref()
            .map(RelPath::to_bytes)
            .unwrap_or_default()
    }

    fn start_file(&mut self, i: u64, offset: u64) -> Result<PartialFile, FileError> {
        let shown = self.shown(i);
        match self.offered.get(&i) {
            Some(&offered) if offset == offered || offset == 0 => {}
            Some(_) => {
                return Err(FileError::new(
                    ErrorCode::BadRequest,
                    format!("{}: sent from an offset that was not offered", show(&shown)),
                ))
            }
            None => {
                return Err(FileError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "{}: data sent for a file that was not asked for",
                        show(&shown)
                    ),
                ))
            }
        }
        let target = self.targets[i as usize]
            .clone()
            .ok_or_else(|| FileError::new(ErrorCode::BadPath, "refused entry"))?;
        let mut partial = match self.partials.remove(&i) {
            Some(partial) => partial,
            None => {
                let (dir, name) = self
                    .dirs
                    .parent(&self.dest, &target)
                    .map_err(|e| FileError::io(&shown, &e))?;
                let source = source_id(&self.entries[i as usize]);
                PartialFile::open_in(dir, name, &source, false)
                    .map_err(|e| FileError::write(&shown, &e))?
            }
        };
        // The socket side hashes the data (see `receive`); a resumed
        // partial's hasher was taken before the data phase began.
        partial.detach_hasher();
        if offset != partial.resumed_len() {
            if offset != 0 {
                return Err(FileError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "{}: resumed from an offset that was not offered",
                        show(&shown)
                    ),
                ));
            }
            partial.restart().map_err(|e| FileError::io(&shown, &e))?;
        }
        Ok(partial)
    }

    fn finish_file(
        &mut self,
        i: u64,
        opened: Result<PartialFile, FileError>,
        end: &FileEnd,
        received: Option<blake3::Hash>,
    ) -> Result<SealedFile, FileError> {
        let shown = self.shown(i);
        let mut partial = opened?;
        if let Some(error) = &end.error {
            partial.remove();
            return Err(FileError::new(
                ErrorCode::Changed,
                format!("{}: {error}", show(&shown)),
            ));
        }
        let entry = &self.entries[i as usize];
        if partial.len() != entry.file_size {
            partial.remove();
            return Err(FileError::new(
                ErrorCode::BadRequest,
                format!(
                    "{}: {} bytes received for a file of {}",
                    show(&shown),
                    partial.len(),
                    entry.file_size
                ),
            ));
        }
        let hash = end
            .blake3
            .as_deref()
            .ok_or_else(|| "no blake3 in the end frame".to_string())
            .and_then(parse_hash)
            .map_err(|m| FileError::new(ErrorCode::BadRequest, m))?;
        let meta = FileMeta {
            mode: entry.mode,
            mtime: (entry.mtime, entry.mtime_ns),
        };
        let meta = self.options.preserve.then_some(&meta);
        let Some(received) = received else {
            partial.remove();
            return Err(FileError::new(
                ErrorCode::BadRequest,
                format!("{}: a file end without its data", show(&shown)),
            ));
        };
        partial
            .seal_hashed(&received, &hash, meta)
            .map_err(|e| FileError::write(&shown, &e))
    }

    /// Makes sealed files durable, then renames them into place: one fsync
    /// for a single file, one `syncfs` for a batch, so no file gets its final
    /// name before its data is on disk.
    fn publish(&mut self, pending: &mut Vec<SealedFile>, summary: &mut ReceiveSummary) {
        let durable = match pending.len() {
            0 => return,
            1 => pending[0].sync(),
            _ => rustix::fs::syncfs(self.dest.handle()).map_err(io::Error::from),
        };
        let single = pending.len() == 1;
        for sealed in pending.drain(..) {
            let result = durable
                .as_ref()
                .map_err(|e| io::Error::new(e.kind(), e.to_string()))
                .and_then(|()| sealed.publish(single));
            match result {
                Ok(()) => summary.files += 1,
                Err(err) => self.errors.push(EntryError {
                    i: u64::MAX,
                    code: super::error::code_of(&err).as_str().into(),
                    message: format!("cannot publish: {err}"),
                }),
            }
        }
        if !single {
            let _ = rustix::fs::syncfs(self.dest.handle());
        }
    }

    /// Sets directories' modes and mtimes last, deepest first, so writing
    /// their files did not disturb them and a read-only mode did not block
    /// the writes.
    fn apply_dir_meta(&self) {
        for (entry, target) in self.entries.iter().zip(&self.targets).rev() {
            let (EntryKind::Dir, Some(target)) = (entry.kind, target) else {
                continue;
            };
            if let Ok(fd) = self.dest.open_dir(target) {
                let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(entry.mode & 0o777));
                let time = rustix::fs::Timespec {
                    tv_sec: entry.mtime,
                    tv_nsec: entry.mtime_ns as _,
                };
                let _ = rustix::fs::futimens(
                    &fd,
                    &rustix::fs::Timestamps {
                        last_access: time,
                        last_modification: time,
                    },
                );
            }
        }
    }

    fn fail(&mut self, i: u64, err: FileError) {
        self.errors.push(EntryError {
            i,
            code: err.code.as_str().to_string(),
            message: err.message,
        });
    }
}

/// The path an entry names, for progress and messages.
fn entry_name(entry: &Entry) -> Vec<u8> {
    entry.path.to_bytes().unwrap_or_default()
}

/// What the receiver does with one manifest entry.
enum Step {
    /// A directory, now present.
    Dir,
    /// A file already there.
    Skip,
    /// A file to receive.
    Fetch,
}

fn source_id(entry: &Entry) -> SourceId {
    SourceId {
        file_size: entry.file_size,
        mtime: (entry.mtime, entry.mtime_ns),
    }
}

enum Op {
    Start {
        i: u64,
        offset: u64,
    },
    Data(Bytes),
    /// The sender's end frame, and the hash of what arrived since `Start`
    /// (with the resumed prefix), if a `Start` came first.
    End(FileEnd, Option<blake3::Hash>),
}

/// What the socket side of a receive checks and hashes against.
struct Expected {
    /// Each entry's size, kind and name, by index.
    sizes: Vec<u64>,
    kinds: Vec<EntryKind>,
    names: Vec<Vec<u8>>,
    /// The hash state of each resumed partial's kept prefix.
    prefixes: HashMap<u64, blake3::Hasher>,
}

/// The file thread's progress through the data phase.
#[derive(Default)]
struct WriteState {
    /// The file being written, or why it cannot be.
    current: Option<(u64, Result<PartialFile, FileError>)>,
    /// Sealed files waiting for the next durable publish.
    pending: Vec<SealedFile>,
    pending_bytes: u64,
    /// Distinct directories among `pending`, each holding a descriptor.
    pending_dirs: usize,
    summary: ReceiveSummary,
}

/// The last directory a file went into, held open: files of a tree arrive
/// grouped by directory, so one handle serves most of them and the parent
/// is not resolved again for every file.
#[derive(Debug, Default)]
struct DirCache {
    last: Option<(RelPath, Arc<OwnedFd>)>,
}

impl DirCache {
    /// A handle on `target`'s parent and `target`'s last name.
    fn parent<'t>(
        &mut self,
        root: &Root,
        target: &'t RelPath,
    ) -> io::Result<(Arc<OwnedFd>, &'t OsStr)> {
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the root itself cannot be the target",
            )
        })?;
        let parent = target.parent();
        if let Some((cached, dir)) = &self.last {
            if *cached == parent {
                return Ok((dir.clone(), name));
            }
        }
        let dir = Arc::new(root.open_dir(&parent)?);
        self.last = Some((parent, dir.clone()));
        Ok((dir, name))
    }

    /// Facts about `target` itself (a symlink is not followed).
    fn lstat(&mut self, root: &Root, target: &RelPath) -> io::Result<super::root::Stat> {
        let (dir, name) = self.parent(root, target)?;
        let st = rustix::fs::statat(&*dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(super::root::Stat::from_raw(&st))
    }
}

/// Reads data frames off the connection and hands them to the file thread,
/// checking that each file's size is the one its manifest entry gave.
async fn forward_frames<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    tx: &mpsc::Sender<Vec<Op>>,
    expected: Expected,
    progress: &dyn Progress,
) -> Result<(), TransferError> {
    let Expected {
        sizes,
        kinds,
        names,
        mut prefixes,
    } = expected;
    // The file whose data is arriving, hashed as it comes.
    let mut hashing: Option<blake3::Hasher> = None;
    // Ops cross to the file thread in batches of about a chunk, so small
    // files do not cost a wakeup each.
    let mut batch: Vec<Op> = Vec::new();
    let mut batch_bytes = 0usize;
    let stopped = || TransferError::Protocol("the file writer stopped".into());
    loop {
        if batch_bytes >= CHUNK_BYTES / 2 || batch.len() >= MAX_BATCH_ITEMS {
            tx.send(std::mem::take(&mut batch))
                .await
                .map_err(|_| stopped())?;
            batch_bytes = 0;
        }
        let header = reader.expect_header().await?;
        if header.get("end") == Some(&serde_json::Value::Bool(true)) {
            if !batch.is_empty() {
                tx.send(batch).await.map_err(|_| stopped())?;
            }
            return Ok(());
        }
        if let Ok(head) = header.to_message::<FileHead>() {
            let i = head.file as usize;
            let expected = sizes
                .get(i)
                .filter(|_| kinds[i] == EntryKind::File)
                .and_then(|size| size.checked_sub(head.offset));
            if expected != Some(header.size()) {
                return Err(TransferError::Protocol(format!(
                    "file {i}: {} bytes sent where the manifest says otherwise",
                    header.size()
                )));
            }
            progress.file_started(&names[i], header.size());
            batch.push(Op::Start {
                i: head.file,
                offset: head.offset,
            });
            // From an offset, the data continues the resumed prefix; an
            // offset that was not offered fails in the writer either way.
            let mut hasher = match head.offset {
                0 => blake3::Hasher::new(),
                _ => prefixes.remove(&head.file).unwrap_or_default(),
            };
            while let Some(chunk) = reader.read_body_chunk().await? {
                hasher.update(&chunk);
                progress.advanced(chunk.len() as u64);
                batch_bytes += chunk.len();
                batch.push(Op::Data(chunk));
                if batch_bytes >= CHUNK_BYTES / 2 {
                    tx.send(std::mem::take(&mut batch))
                        .await
                        .map_err(|_| stopped())?;
                    batch_bytes = 0;
                }
            }
            hashing = Some(hasher);
        } else if let Ok(end) = header.to_message::<FileEnd>() {
            let received = hashing.take().map(|hasher| hasher.finalize());
            batch.push(Op::End(end, received));
        } else {
            return Err(TransferError::Protocol(
                "expected a file head, file end or end frame".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Connection, ConnectionConfig};
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

    fn config() -> ConnectionConfig {
        ConnectionConfig {
            max_header_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            max_write_buffer_bytes: 256 * 1024,
        }
    }

    const OPTIONS: ReceiveOptions = ReceiveOptions {
        force: false,
        resume: true,
        preserve: true,
    };

    /// Sends `path` beneath `from` to `base` beneath `to` over an in-memory
    /// pipe, through the same planning and data phases the services use.
    async fn transfer(
        from: &std::path::Path,
        path: &str,
        to: &std::path::Path,
        options: ReceiveOptions,
    ) -> (Vec<Want>, ReceiveSummary) {
        let src = Arc::new(Root::new(from).unwrap());
        let dst = Arc::new(Root::new(to).unwrap());
        let manifest =
            Manifest::from_root(&src, &RelPath::parse(path.as_bytes()).unwrap(), true).unwrap();
        let (plan, wants) =
            ReceivePlan::new(dst, &RelPath::root(), manifest.entries.clone(), options);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut sender = Connection::new(a, config());
        let mut receiver = Connection::new(b, config());
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
    fn keep_partial(from: &std::path::Path, to: &std::path::Path, bytes: &[u8]) {
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

    fn tree(dir: &std::path::Path) {
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

    fn entries_of(dir: &std::path::Path) -> Vec<String> {
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
        assert_eq!(
            std::fs::read(to.path().join("photos/a.bin")).unwrap(),
            vec![7u8; 700_000]
        );
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

    #[tokio::test]
    async fn hostile_entry_paths_are_refused_and_nothing_lands_outside() {
        let outer = tempfile::tempdir().unwrap();
        let to = outer.path().join("dest");
        std::fs::create_dir(&to).unwrap();
        let dst = Arc::new(Root::new(&to).unwrap());
        let file = |p: &[u8]| Entry {
            kind: EntryKind::File,
            path: super::super::wire::WirePath::from_bytes(p),
            file_size: 1,
            mode: 0o644,
            mtime: 0,
            mtime_ns: 0,
        };
        let entries = vec![
            file(b"../escape"),
            file(b"/abs"),
            file(b"a\0b"),
            file(b".ferry-partial-x"),
            file(b""),
        ];
        let (_, wants) = ReceivePlan::new(dst, &RelPath::root(), entries, OPTIONS);
        assert_eq!(wants.len(), 5);
        for want in &wants {
            assert!(
                matches!(&want.action, WantAction::Refuse { code, .. } if code == "bad_path"),
                "{want:?}"
            );
        }
        assert_eq!(std::fs::read_dir(outer.path()).unwrap().count(), 1);
    }
}
