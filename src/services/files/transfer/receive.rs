//! The receiving side: a plan that answers the sender's manifest, then
//! the data phase: frames read on the socket's task, written through
//! partial files on a blocking thread, hashed on whichever of the two has
//! less to do, and published in durable batches.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::Mode;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::connection::FrameReader;
use crate::limits;
use crate::protocol::ErrorCode;

use super::super::atomic::{
    has_partial, is_reserved_name, sweep_stale_partials, FileMeta, PartialFile, SealedFile,
    SourceId,
};
use super::super::error::{code_of, show, FileError};
use super::super::root::{Kind, RelPath, Root};
use super::super::wire::{
    parse_hash, Entry, EntryError, EntryKind, FileEnd, FileHead, Want, WantAction,
};
use super::{Progress, ReceiveOptions, ReceiveSummary, TransferError, MAX_BATCH_ITEMS};

/// Data handed to the file thread at once. Each hand-off wakes that
/// thread: at 128 KiB a plaintext put of 1 GiB cost the server 0.76-0.90 s
/// of CPU, at 1 MiB 0.70-0.80 s, and its median time fell from 0.85 to
/// 0.78 s (five runs each, interleaved, tmpfs to tmpfs).
const RECEIVE_BATCH_BYTES: usize = 1024 * 1024;
/// Batches queued for the file thread: with the one being filled, a
/// receiving transfer holds at most 3 MiB of data in memory.
const RECEIVE_QUEUE_BATCHES: usize = 2;
/// Files sealed before one `syncfs` and their renames.
const PUBLISH_BATCH_FILES: usize = 2048;
/// Bytes sealed before one `syncfs` and their renames.
const PUBLISH_BATCH_BYTES: u64 = 1 << 30;
/// Directories sealed files may span before they are published.
const PUBLISH_BATCH_DIRS: usize = 256;

/// The receiving side, between its answer to the manifest and the data.
#[derive(Debug)]
pub struct ReceivePlan {
    dest: Arc<Root>,
    dirs: DirCache,
    /// The offset offered for each file asked for and not yet started;
    /// data for anything else is refused, so a sender cannot write what
    /// the receiver skipped, nor write one file twice.
    offered: HashMap<u64, u64>,
    /// Files asked for that have not yet ended as published or failed: at
    /// the end of the data phase, each one left is failed.
    outstanding: BTreeSet<u64>,
    /// Every file asked for, by index.
    wanted: Vec<u64>,
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
            outstanding: BTreeSet::new(),
            wanted: Vec::new(),
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
                                plan.outstanding.insert(i);
                                plan.wanted.push(i);
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
        entry
            .check_times()
            .map_err(|m| FileError::new(ErrorCode::BadRequest, format!("{}: {m}", show(&raw))))?;
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
    /// The data is hashed where it costs the least wall time: on a plain
    /// socket, by the task that reads it, so the file thread only writes;
    /// through TLS, where that task also decrypts, by the file thread. The
    /// other way round made a 1 GiB TLS get 6-8% slower in three of four
    /// interleaved A/B runs (no change in the fourth), and a plaintext get
    /// 0-5% slower in three (medians of six to ten runs each).
    pub async fn receive<R: AsyncRead + Unpin>(
        self,
        reader: &mut FrameReader<R>,
        progress: &dyn Progress,
    ) -> Result<ReceiveSummary, TransferError> {
        let (tx, rx) = mpsc::channel::<Vec<Op>>(RECEIVE_QUEUE_BATCHES);
        let hash_while_reading = !reader.decrypts();
        let expected = Expected {
            sizes: self.entries.iter().map(|e| e.file_size).collect(),
            kinds: self.entries.iter().map(|e| e.kind).collect(),
            names: self.entries.iter().map(entry_name).collect(),
            prefixes: hash_while_reading.then(|| {
                self.partials
                    .iter()
                    .map(|(&i, partial)| (i, partial.hasher()))
                    .collect()
            }),
        };
        let writer = tokio::task::spawn_blocking(move || self.write_all(rx, hash_while_reading));
        let result = forward_frames(reader, &tx, expected, progress).await;
        drop(tx);
        let summary = writer.await.map_err(|err| {
            FileError::new(ErrorCode::Internal, format!("file writer failed: {err}"))
        })?;
        result.map(|()| summary)
    }

    fn write_all(mut self, mut rx: mpsc::Receiver<Vec<Op>>, hashed: bool) -> ReceiveSummary {
        let mut state = WriteState {
            hashed_by_reader: hashed,
            ..WriteState::default()
        };
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
        // Whatever was asked for and neither arrived nor was failed by the
        // sender is failed here: a transfer never ends with a file unsaid.
        for i in std::mem::take(&mut self.outstanding) {
            let message = format!("{}: the sender never sent it", show(&self.shown(i)));
            self.fail(i, FileError::new(ErrorCode::NotSent, message));
        }
        // Before the directories get their mtimes: unlinking touches them.
        self.sweep_stale_partials();
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
                if let Some((previous, opened)) = state.current.take() {
                    let message = "its data was followed by another file's, with no end frame";
                    self.abandon(previous, opened, message);
                }
                let opened = self.start_file(i, offset);
                state.current = Some((i, opened));
            }
            Op::Data(chunk) => {
                if let Some((i, Ok(partial))) = &mut state.current {
                    let written = if state.hashed_by_reader {
                        partial.write_unhashed(&chunk)
                    } else {
                        partial.write(&chunk)
                    };
                    if let Err(err) = written {
                        let path = self.shown(*i);
                        state.current = Some((*i, Err(FileError::write(&path, &err))));
                    } else {
                        state.summary.bytes += chunk.len() as u64;
                    }
                }
            }
            Op::End(end, received) => {
                let (i, opened) = match state.current.take() {
                    Some((i, opened)) if i == end.file_end => (i, opened),
                    Some((i, opened)) => {
                        self.abandon(i, opened, "its data was ended by another file's end frame");
                        return self.end_without_data(&end);
                    }
                    None => return self.end_without_data(&end),
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
                            .is_none_or(|(_, last)| !Arc::ptr_eq(last.dir(), sealed.dir()));
                        state.pending_dirs += usize::from(new_dir);
                        state.pending.push((i, sealed));
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
        match self.offered.remove(&i) {
            Some(offered) if offset == offered || offset == 0 => {}
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
                        "{}: data sent for a file that was not asked for, or sent twice",
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
            let code = end.code.as_deref().and_then(ErrorCode::from_wire);
            return Err(FileError::new(
                code.unwrap_or(ErrorCode::Changed),
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
        // Without the reader's hash, `seal` checks the partial's own: after
        // unhashed writes it cannot match, so a missing hash refuses the file.
        match received {
            Some(received) => partial.seal_hashed(&received, &hash, meta),
            None => partial.seal(&hash, meta),
        }
        .map_err(|e| FileError::write(&shown, &e))
    }

    /// Makes sealed files durable, then renames them into place: one fsync
    /// for a single file, one `syncfs` for a batch, so no file gets its final
    /// name before its data is on disk.
    fn publish(&mut self, pending: &mut Vec<(u64, SealedFile)>, summary: &mut ReceiveSummary) {
        let durable = match pending.len() {
            0 => return,
            1 => pending[0].1.sync(),
            _ => rustix::fs::syncfs(self.dest.handle()).map_err(io::Error::from),
        };
        let single = pending.len() == 1;
        for (i, sealed) in pending.drain(..) {
            let result = durable
                .as_ref()
                .map_err(|e| io::Error::new(e.kind(), e.to_string()))
                .and_then(|()| sealed.publish(single));
            match result {
                Ok(()) => {
                    self.outstanding.remove(&i);
                    summary.files += 1;
                }
                Err(err) => {
                    let shown = self.shown(i);
                    let message = format!("{}: cannot publish: {err}", show(&shown));
                    self.fail(i, FileError::new(code_of(&err), message));
                }
            }
        }
        if !single {
            let _ = rustix::fs::syncfs(self.dest.handle());
        }
    }

    /// Removes partial files older than [`limits::PARTIAL_MAX_AGE`] from
    /// the directories this transfer wrote into (at most
    /// [`limits::MAX_SWEPT_DIRS`] of them). Partials of this transfer were
    /// just written or published, so they are never old.
    fn sweep_stale_partials(&self) {
        let mut dirs: Vec<RelPath> = self
            .wanted
            .iter()
            .filter_map(|&i| self.targets[i as usize].as_ref())
            .map(RelPath::parent)
            .collect();
        dirs.sort_unstable_by(|a, b| a.names().cmp(b.names()));
        dirs.dedup();
        let now = std::time::SystemTime::now();
        for dir in dirs.iter().take(limits::MAX_SWEPT_DIRS) {
            if let Ok(handle) = self.dest.open_dir(dir) {
                let _ = sweep_stale_partials(&handle, limits::PARTIAL_MAX_AGE, now);
            }
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

    /// A file the sender ended without data: its failure, with the code
    /// the sender gave. An end frame for a file that is not outstanding
    /// (never asked for, or already settled) changes nothing.
    fn end_without_data(&mut self, end: &FileEnd) {
        let i = end.file_end;
        if !self.outstanding.contains(&i) {
            return;
        }
        self.offered.remove(&i);
        if let Some(partial) = self.partials.remove(&i) {
            partial.suspend();
        }
        let code = end
            .code
            .as_deref()
            .and_then(ErrorCode::from_wire)
            .unwrap_or(ErrorCode::Changed);
        let why = end
            .error
            .as_deref()
            .unwrap_or("the sender ended it without sending its data");
        let message = format!("{}: {why}", show(&self.shown(i)));
        self.fail(i, FileError::new(code, message));
    }

    /// Gives up on the file being written, whose data was cut short by a
    /// sender that broke the protocol.
    fn abandon(&mut self, i: u64, opened: Result<PartialFile, FileError>, why: &str) {
        if let Ok(mut partial) = opened {
            partial.remove();
        }
        let message = format!("{}: {why}", show(&self.shown(i)));
        self.fail(i, FileError::new(ErrorCode::BadRequest, message));
    }

    /// Records a file's failure; the file is settled.
    fn fail(&mut self, i: u64, err: FileError) {
        self.outstanding.remove(&i);
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
    /// (with the resumed prefix) when the reader hashes.
    End(FileEnd, Option<blake3::Hash>),
}

/// What the socket side of a receive checks frames against.
struct Expected {
    /// Each entry's size, kind and name, by index.
    sizes: Vec<u64>,
    kinds: Vec<EntryKind>,
    names: Vec<Vec<u8>>,
    /// When the reader hashes: the hash state of each resumed partial's
    /// kept prefix.
    prefixes: Option<HashMap<u64, blake3::Hasher>>,
}

/// The file thread's progress through the data phase.
#[derive(Default)]
struct WriteState {
    /// The file being written, or why it cannot be.
    current: Option<(u64, Result<PartialFile, FileError>)>,
    /// Sealed files waiting for the next durable publish, by index.
    pending: Vec<(u64, SealedFile)>,
    pending_bytes: u64,
    /// Distinct directories among `pending`, each holding a descriptor.
    pending_dirs: usize,
    summary: ReceiveSummary,
    /// Whether the socket side hashes the data (see `receive`).
    hashed_by_reader: bool,
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
    fn lstat(&mut self, root: &Root, target: &RelPath) -> io::Result<super::super::root::Stat> {
        let (dir, name) = self.parent(root, target)?;
        let st = rustix::fs::statat(&*dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(super::super::root::Stat::from_raw(&st))
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
    // The file whose data is arriving, hashed as it comes (if the reader
    // hashes).
    let mut hashing: Option<blake3::Hasher> = None;
    // Ops cross to the file thread in batches of about a chunk, so small
    // files do not cost a wakeup each.
    let mut batch: Vec<Op> = Vec::new();
    let mut batch_bytes = 0usize;
    let stopped = || TransferError::Protocol("the file writer stopped".into());
    loop {
        if batch_bytes >= RECEIVE_BATCH_BYTES || batch.len() >= MAX_BATCH_ITEMS {
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
            let mut hasher = prefixes.as_mut().map(|prefixes| match head.offset {
                0 => blake3::Hasher::new(),
                _ => prefixes.remove(&head.file).unwrap_or_default(),
            });
            while let Some(chunk) = reader.read_body_chunk().await? {
                if let Some(hasher) = &mut hasher {
                    hasher.update(&chunk);
                }
                progress.advanced(chunk.len() as u64);
                batch_bytes += chunk.len();
                batch.push(Op::Data(chunk));
                if batch_bytes >= RECEIVE_BATCH_BYTES {
                    tx.send(std::mem::take(&mut batch))
                        .await
                        .map_err(|_| stopped())?;
                    batch_bytes = 0;
                }
            }
            hashing = hasher;
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
