//! The receiver's file thread: writes each wanted file through a partial
//! file, seals it against the sender's hash, publishes sealed files in
//! durable batches, settles every file asked for as published or failed,
//! and last gives the directories it planned their modes and mtimes.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::Mode;
use tokio::sync::mpsc;

use crate::limits;
use crate::protocol::ErrorCode;

use super::super::atomic::{sweep_stale_partials, FileMeta, PartialFile, SealedFile, SourceId};
use super::super::dirs::DirChain;
use super::super::error::{code_of, show, FileError};
use super::super::root::split_names;
use super::super::wire::{parse_hash, Entry, EntryError, FileEnd};
use super::plan::{FileState, ReceivePlan, Target};
use super::{FailedFile, ReceiveSummary};

/// Files sealed before one `syncfs` and their renames.
const PUBLISH_BATCH_FILES: usize = 2048;
/// Bytes sealed before one `syncfs` and their renames.
const PUBLISH_BATCH_BYTES: u64 = 1 << 30;
/// Directories sealed files may span before they are published: each holds
/// a descriptor until then.
const PUBLISH_BATCH_DIRS: usize = 64;

/// What the socket side hands the file thread.
pub(super) enum Op {
    Start {
        i: u64,
        offset: u64,
    },
    Data(Bytes),
    /// The sender's end frame, and the hash of what arrived since `Start`
    /// (with the resumed prefix) when the reader hashes.
    End(FileEnd, Option<blake3::Hash>),
}

/// Why a file failed, and whether the sender caused it (see
/// [`FailedFile::by_sender`]).
struct Fault {
    err: FileError,
    by_sender: bool,
}

impl Fault {
    /// A failure of this receiver: a write, a publish, a directory.
    fn here(err: FileError) -> Fault {
        Fault {
            err,
            by_sender: false,
        }
    }

    /// A failure the sender caused.
    fn sender(err: FileError) -> Fault {
        Fault {
            err,
            by_sender: true,
        }
    }
}

/// The file thread's progress through the data phase.
struct WriteState {
    /// The walk through the destination, in manifest order.
    chain: Option<DirChain>,
    /// The file being written, or why it cannot be.
    current: Option<(u64, Result<PartialFile, Fault>)>,
    /// Sealed files waiting for the next durable publish, by index.
    pending: Vec<(u64, SealedFile)>,
    pending_bytes: u64,
    /// Distinct directories among `pending`, each holding a descriptor.
    pending_dirs: usize,
    /// Directories already swept of stale partials.
    swept: HashSet<u32>,
    summary: ReceiveSummary,
    /// Whether the socket side hashes the data (see `receive`).
    hashed_by_reader: bool,
}

impl ReceivePlan {
    /// Runs the file thread until the socket side closes the channel.
    pub(super) fn write_all(
        mut self,
        mut rx: mpsc::Receiver<Vec<Op>>,
        hashed: bool,
    ) -> ReceiveSummary {
        let chain = rustix::io::fcntl_dupfd_cloexec(&self.base, 0)
            .map_err(io::Error::from)
            .and_then(DirChain::new)
            .ok();
        let mut state = WriteState {
            chain,
            current: None,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_dirs: 0,
            swept: HashSet::new(),
            summary: ReceiveSummary::default(),
            hashed_by_reader: hashed,
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
        for i in 0..self.states.len() as u64 {
            if self.states[i as usize].is_outstanding() {
                let message = format!("{}: the sender never sent it", show(&self.shown(i)));
                self.fail(
                    i,
                    Fault::sender(FileError::new(ErrorCode::NotSent, message)),
                );
            }
        }
        if let Some(chain) = &mut state.chain {
            self.apply_dir_meta(chain);
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
                let opened = self.start_file(i, offset, state);
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
                        let fault = Fault::here(FileError::write(&path, &err));
                        state.current = Some((*i, Err(fault)));
                    } else {
                        state.summary.bytes += chunk.len() as u64;
                    }
                }
            }
            Op::End(end, received) => {
                if let Some(striped) = self.striped.get(&end.file_end) {
                    striped.set_end(end);
                    return;
                }
                let (i, opened) = match state.current.take() {
                    Some((i, opened)) if i == end.file_end => (i, opened),
                    Some((i, opened)) => {
                        self.abandon(i, opened, "its data was ended by another file's end frame");
                        return self.end_without_data(&end);
                    }
                    None => return self.end_without_data(&end),
                };
                match self.finish_file(i, opened, &end, received) {
                    Ok(sealed) => self.queue(i, sealed, &end, state),
                    Err(err) => self.fail(i, err),
                }
            }
        }
    }

    /// Queues a sealed file for publishing, publishing the batch when full.
    fn queue(&mut self, i: u64, sealed: SealedFile, end: &FileEnd, state: &mut WriteState) {
        if let Some(md5) = &end.md5 {
            state.summary.md5s.push((i, md5.clone()));
        }
        state.pending_bytes += self.entries[i as usize].file_size;
        let new_dir = state
            .pending
            .last()
            .is_none_or(|(_, last)| !Arc::ptr_eq(last.dir(), sealed.dir()));
        state.pending_dirs += usize::from(new_dir);
        // A batch of more than one file is made durable by one `syncfs`:
        // none of them needs its descriptor any more.
        let mut sealed = sealed;
        if let Some((_, first)) = state.pending.first_mut() {
            first.close();
            sealed.close();
        }
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

    /// The path of entry `i` for messages.
    pub(super) fn shown(&self, i: u64) -> Vec<u8> {
        self.entries
            .get(i as usize)
            .and_then(|e| e.path.to_bytes().ok())
            .unwrap_or_default()
    }

    fn start_file(
        &mut self,
        i: u64,
        offset: u64,
        state: &mut WriteState,
    ) -> Result<PartialFile, Fault> {
        let shown = self.shown(i);
        let bad = |what: &str| {
            let message = format!("{}: {what}", show(&shown));
            Fault::sender(FileError::new(ErrorCode::BadRequest, message))
        };
        let entry_state = self.states.get_mut(i as usize);
        let Some(entry_state @ FileState::Offered) = entry_state else {
            return Err(bad(
                "data sent for a file that was not asked for, or sent twice",
            ));
        };
        *entry_state = FileState::Started;
        let offered = self.resumed_offsets.get(&i).copied().unwrap_or(0);
        if offset != offered && offset != 0 {
            return Err(bad("sent from an offset that was not offered"));
        }
        let Some(Target::File(node)) = self.targets.get(i as usize).copied() else {
            return Err(bad("data sent for an entry that is not a file"));
        };
        let mut partial = match self.partials.remove(&i) {
            Some(partial) => partial,
            None => {
                let (dir, name) = self.enter_dir_of(i, node, state).map_err(Fault::here)?;
                let entry = &self.entries[i as usize];
                let source = SourceId {
                    file_size: entry.file_size,
                    mtime: (entry.mtime, entry.mtime_ns),
                };
                PartialFile::open_in(dir, &name, &source, false)
                    .map_err(|e| Fault::here(FileError::write(&shown, &e)))?
            }
        };
        if offset != partial.resumed_len() {
            if offset != 0 {
                return Err(bad("resumed from an offset that was not offered"));
            }
            // The sender starts over (the kept prefix was not its file's).
            self.resumed_offsets.remove(&i);
            partial
                .restart()
                .map_err(|e| Fault::here(FileError::io(&shown, &e)))?;
        }
        Ok(partial)
    }

    /// Walks to the directory file `i` goes into, which must still be the
    /// one the plan chose; sweeps it of stale partials the first time.
    fn enter_dir_of(
        &self,
        i: u64,
        node: u32,
        state: &mut WriteState,
    ) -> Result<(Arc<OwnedFd>, OsString), FileError> {
        let shown = self.shown(i);
        let names = split_names(&shown)?;
        let Some((&name, parents)) = names.split_last() else {
            return Err(FileError::new(ErrorCode::BadPath, "the root is not a file"));
        };
        let chain = state.chain.as_mut().ok_or_else(|| {
            FileError::new(ErrorCode::IoError, "cannot open the destination directory")
        })?;
        let dir = chain
            .enter(parents)
            .map_err(|e| FileError::io(&shown, &e))?;
        if chain.identity() != self.dirs[node as usize].identity {
            return Err(FileError::new(
                ErrorCode::Changed,
                format!(
                    "{}: its directory was replaced during the transfer",
                    show(&shown)
                ),
            ));
        }
        if state.swept.len() < limits::MAX_SWEPT_DIRS && state.swept.insert(node) {
            // Partials of this transfer are fresh or locked: never swept.
            let _ =
                sweep_stale_partials(&dir, limits::PARTIAL_MAX_AGE, std::time::SystemTime::now());
        }
        Ok((dir, name.to_os_string()))
    }

    fn finish_file(
        &mut self,
        i: u64,
        opened: Result<PartialFile, Fault>,
        end: &FileEnd,
        received: Option<blake3::Hash>,
    ) -> Result<SealedFile, Fault> {
        let shown = self.shown(i);
        let mut partial = opened?;
        if let Some(error) = &end.error {
            partial.remove();
            let code = end.code.as_deref().and_then(ErrorCode::from_wire);
            return Err(Fault::sender(FileError::new(
                code.unwrap_or(ErrorCode::Changed),
                format!("{}: {error}", show(&shown)),
            )));
        }
        let entry = &self.entries[i as usize];
        if partial.len() != entry.file_size {
            partial.remove();
            return Err(Fault::sender(FileError::new(
                ErrorCode::BadRequest,
                format!(
                    "{}: {} bytes received for a file of {}",
                    show(&shown),
                    partial.len(),
                    entry.file_size
                ),
            )));
        }
        let hash = end
            .blake3
            .as_deref()
            .ok_or_else(|| "no blake3 in the end frame".to_string())
            .and_then(parse_hash)
            .map_err(|m| Fault::sender(FileError::new(ErrorCode::BadRequest, m)))?;
        let meta = self.file_meta(i, entry);
        // Without the reader's hash, `seal` checks the partial's own: after
        // unhashed writes it cannot match, so a missing hash refuses the file.
        match received {
            Some(received) => partial.seal_hashed(&received, &hash, &meta),
            None => partial.seal(&hash, &meta),
        }
        .map_err(|e| {
            // Data that does not hash to the sender's hash is the sender's
            // (or the network's) fault; anything else failed writing here.
            let err = FileError::write(&shown, &e);
            match err.code {
                ErrorCode::ChecksumMismatch => Fault::sender(err),
                _ => Fault::here(err),
            }
        })
    }

    /// The mode and mtime file `i` is published with.
    pub(super) fn file_meta(&self, i: u64, entry: &Entry) -> FileMeta {
        if self.options.preserve {
            return FileMeta {
                mode: self.sent_mode(entry.mode),
                mtime: Some((entry.mtime, entry.mtime_ns)),
            };
        }
        match self.replaced_modes.get(&i) {
            Some(&mode) => FileMeta { mode, mtime: None },
            None => FileMeta::fresh(),
        }
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
                    self.settle(i);
                    summary.files += 1;
                    let from = self.resumed_offsets.get(&i).copied().unwrap_or(0);
                    summary.resumed_bytes += from;
                    if self.options.list_files {
                        summary.published.push((i, from));
                    }
                }
                Err(err) => {
                    let shown = self.shown(i);
                    let message = format!("{}: cannot publish: {err}", show(&shown));
                    self.fail(i, Fault::here(FileError::new(code_of(&err), message)));
                }
            }
        }
        if !single {
            let _ = rustix::fs::syncfs(self.dest.handle());
        }
    }

    /// Sets the planned directories' modes and mtimes last, deepest first,
    /// so writing their files did not disturb them and a read-only mode did
    /// not block the writes. Each goes through a handle reached by the walk
    /// and must still be the directory the plan created or found.
    fn apply_dir_meta(&self, chain: &mut DirChain) {
        for (entry, target) in self.entries.iter().zip(&self.targets).rev() {
            let Target::Dir(node) = *target else { continue };
            let node = self.dirs[node as usize];
            let Some(meta) = node.meta else { continue };
            let Ok(path) = entry.path.to_bytes() else {
                continue;
            };
            let Ok(names) = split_names(&path) else {
                continue;
            };
            let Ok(dir) = chain.enter(&names) else {
                continue;
            };
            if chain.identity() != node.identity {
                continue;
            }
            let _ = rustix::fs::fchmod(&*dir, Mode::from_raw_mode(meta.mode));
            let time = rustix::fs::Timespec {
                tv_sec: meta.mtime.0,
                tv_nsec: meta.mtime.1 as _,
            };
            let _ = rustix::fs::futimens(
                &*dir,
                &rustix::fs::Timestamps {
                    last_access: time,
                    last_modification: time,
                },
            );
        }
    }

    /// A file the sender ended without data: its failure, with the code
    /// the sender gave. An end frame for a file that is not outstanding
    /// (never asked for, or already settled) changes nothing.
    fn end_without_data(&mut self, end: &FileEnd) {
        let i = end.file_end;
        if !self
            .states
            .get(i as usize)
            .is_some_and(|state| state.is_outstanding())
        {
            return;
        }
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
        self.fail(i, Fault::sender(FileError::new(code, message)));
    }

    /// Gives up on the file being written, whose data was cut short by a
    /// sender that broke the protocol.
    fn abandon(&mut self, i: u64, opened: Result<PartialFile, Fault>, why: &str) {
        if let Ok(mut partial) = opened {
            partial.remove();
        }
        let message = format!("{}: {why}", show(&self.shown(i)));
        self.fail(
            i,
            Fault::sender(FileError::new(ErrorCode::BadRequest, message)),
        );
    }

    /// Marks file `i` published or failed.
    fn settle(&mut self, i: u64) {
        if let Some(state) = self.states.get_mut(i as usize) {
            *state = FileState::Settled;
        }
    }

    /// Records a file's failure; the file is settled.
    fn fail(&mut self, i: u64, fault: Fault) {
        self.settle(i);
        self.errors.push(FailedFile {
            error: EntryError {
                i,
                code: fault.err.code.as_str().to_string(),
                message: fault.err.message,
            },
            by_sender: fault.by_sender,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{entries_of, OPTIONS};
    use super::*;
    use crate::engine::root::{RelPath, Root};
    use crate::engine::wire::{EntryKind, WirePath};

    fn entry(kind: EntryKind, path: &str) -> Entry {
        Entry {
            kind,
            path: WirePath::from_bytes(path.as_bytes()),
            file_size: if kind == EntryKind::File { 5 } else { 0 },
            mode: 0o644,
            mtime: 0,
            mtime_ns: 0,
            sync: None,
        }
    }

    fn end(i: u64, data: &[u8]) -> Op {
        let end = FileEnd {
            file_end: i,
            blake3: Some(blake3::hash(data).to_hex().to_string()),
            md5: Some("md5 of it".into()),
            error: None,
            code: None,
        };
        Op::End(end, None)
    }

    fn start(i: u64) -> Op {
        Op::Start { i, offset: 0 }
    }

    fn data(bytes: &'static [u8]) -> Op {
        Op::Data(Bytes::from_static(bytes))
    }

    /// Runs the file thread over `ops`, handed over as the socket side
    /// hands them when it does not hash.
    fn write(to: &std::path::Path, entries: Vec<Entry>, ops: Vec<Op>) -> ReceiveSummary {
        let dst = Arc::new(Root::new(to).unwrap());
        let (plan, _) = ReceivePlan::new(dst, &RelPath::root(), entries, OPTIONS).unwrap();
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(ops).unwrap();
        drop(tx);
        plan.write_all(rx, false)
    }

    #[test]
    fn every_file_asked_for_is_published_or_failed_once_with_the_code_that_says_why() {
        let to = tempfile::tempdir().unwrap();
        let entries = vec![
            entry(EntryKind::Dir, "d"),
            entry(EntryKind::File, "d/cut"),
            entry(EntryKind::File, "d/good"),
            entry(EntryKind::File, "d/never"),
            entry(EntryKind::File, "d/denied"),
        ];
        let denied = FileEnd {
            file_end: 4,
            blake3: None,
            md5: None,
            error: Some("cannot open".into()),
            code: Some("permission_denied".into()),
        };
        let ops = vec![
            // Data for a directory, which was not asked for.
            start(0),
            end(0, b""),
            // A file's data cut off by the next file's.
            start(1),
            data(b"hel"),
            start(2),
            data(b"hello"),
            end(2, b"hello"),
            // The sender could not send it at all.
            Op::End(denied, None),
        ];
        let summary = write(to.path(), entries, ops);
        assert_eq!((summary.files, summary.bytes), (1, 8));
        assert_eq!(summary.md5s, [(2, "md5 of it".to_string())]);
        let mut failed: Vec<(u64, &str, bool)> = summary
            .errors
            .iter()
            .map(|e| (e.error.i, e.error.code.as_str(), e.by_sender))
            .collect();
        failed.sort_unstable();
        assert_eq!(
            failed,
            [
                (0, "bad_request", true),
                (1, "bad_request", true),
                (3, "not_sent", true),
                (4, "permission_denied", true),
            ]
        );
        assert_eq!(entries_of(to.path()), ["d/good"], "no partial is left");
        assert_eq!(std::fs::read(to.path().join("d/good")).unwrap(), b"hello");
    }

    #[test]
    fn a_stream_that_ends_inside_a_file_keeps_its_partial_for_a_resume() {
        let to = tempfile::tempdir().unwrap();
        let entries = vec![entry(EntryKind::File, "f")];
        let summary = write(to.path(), entries, vec![start(0), data(b"he")]);
        assert_eq!(summary.files, 0);
        let codes: Vec<&str> = summary
            .errors
            .iter()
            .map(|e| e.error.code.as_str())
            .collect();
        assert_eq!(codes, ["not_sent"]);
        let left = entries_of(to.path());
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(
            crate::engine::atomic::is_reserved_name(std::ffi::OsStr::new(&left[0])),
            "{left:?}"
        );
    }
}
