//! The receiver's answer to a manifest: where each entry goes, which
//! directories to create, and for each file whether to skip it, refuse it,
//! or ask for it (from the end of a partial kept by an earlier attempt).
//!
//! The plan walks the destination in manifest order through a
//! [`DirChain`], so it costs time linear in the manifest, and remembers
//! each directory by device and inode: the file thread later writes only
//! into, and sets modes only on, the very directories planned here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode};

use crate::protocol::ErrorCode;

use super::super::atomic::{has_partial, is_reserved_name, process_umask, PartialFile, SourceId};
use super::super::dirs::DirChain;
use super::super::error::{show, FileError};
use super::super::ranged::RangedPartial;
use super::super::ranges::{range_len, RangeBook, STRIPE_MIN_BYTES};
use super::super::root::{split_names, Kind, RelPath, Root, Stat};
use super::super::wire::{Entry, EntryError, EntryKind, Want, WantAction};
use super::stripe::{StripeReceiver, StripedFile};
use super::ReceiveOptions;

/// The receiving side, between its answer to the manifest and the data.
#[derive(Debug)]
pub struct ReceivePlan {
    pub(super) dest: Arc<Root>,
    /// The destination directory, for the file thread's own walk.
    pub(super) base: OwnedFd,
    pub(super) entries: Arc<Vec<Entry>>,
    /// Where each entry goes, by index.
    pub(super) targets: Vec<Target>,
    /// Every directory entries go into, as planned.
    pub(super) dirs: Vec<DirNode>,
    /// Where each entry stands in the data phase, by index: data is taken
    /// only for a file asked for and not yet started (a sender cannot write
    /// what the receiver skipped, nor one file twice), and at the end every
    /// file asked for and not settled is failed.
    pub(super) states: Vec<FileState>,
    /// The offset offered for each file resumed from a kept partial (every
    /// other file is asked for from 0); dropped when the sender starts it
    /// over instead.
    pub(super) resumed_offsets: HashMap<u64, u64>,
    /// Partial files kept by an earlier attempt, held open until their
    /// data comes.
    pub(super) partials: HashMap<u64, PartialFile>,
    /// Permission bits of files that are replaced without `preserve`: a
    /// replaced file keeps its own.
    pub(super) replaced_modes: HashMap<u64, u32>,
    pub(super) options: ReceiveOptions,
    /// The files asked for in ranges, shared with the streams that
    /// receive them.
    pub(super) striped: HashMap<u64, Arc<StripedFile>>,
    pub(super) errors: Vec<super::FailedFile>,
    pub(super) skipped: u64,
}

/// Where one manifest entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// Refused: nothing is written for it.
    Refused,
    /// A directory, `dirs[n]`.
    Dir(u32),
    /// A file in the directory `dirs[n]`, under its last name.
    File(u32),
}

/// Where one entry stands in the data phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileState {
    /// Not asked for: a directory, a skipped or refused file.
    Unwanted,
    /// Asked for; no data yet.
    Offered,
    /// Its data is arriving.
    Started,
    /// Published or failed.
    Settled,
    /// Asked for in ranges: settled by the [`StripeReceiver`].
    Striped,
}

impl FileState {
    /// Asked for and not yet published or failed.
    pub fn is_outstanding(self) -> bool {
        matches!(self, FileState::Offered | FileState::Started)
    }
}

/// A directory entries go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DirNode {
    /// Device and inode, as created or found by the plan.
    pub identity: (u64, u64),
    /// Mode and mtime to give it once every file is in place: for a
    /// directory this transfer created (or any, with `force`).
    pub meta: Option<DirMeta>,
}

/// Metadata a directory gets at the end of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DirMeta {
    pub mode: u32,
    pub mtime: (i64, u32),
}

/// The receiver's answer to a manifest, ready to send: the wants as a
/// JSON-lines body (written as the plan goes, so a large manifest's answer
/// is never held twice), and what the receiver reports of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    /// One [`Want`] per file and per refused entry, as JSON lines.
    pub body: Vec<u8>,
    /// The refused entries, and why.
    pub refused: Vec<EntryError>,
    /// Files already in place.
    pub skipped: u64,
    /// With [`ReceiveOptions::list_files`]: the index of each file already
    /// in place.
    pub skipped_files: Vec<u64>,
    /// Bytes the sender will send: each wanted file from its offset.
    pub bytes_wanted: u64,
    /// The index of each file wanted as a delta.
    pub delta: Vec<u64>,
    /// For a striped put: the ticket its extra connections say hello with,
    /// sent in the wants' frame.
    pub ticket: Option<String>,
}

impl Wants {
    /// Adds one want to the body.
    pub fn push(&mut self, want: &Want) {
        // Our wire types always serialize.
        let _ = serde_json::to_writer(&mut self.body, want);
        self.body.push(b'\n');
    }
}

/// What the receiver does with one file entry.
enum Step {
    Skip,
    Fetch,
    Delta,
}

/// A caller's say on one file entry before the usual rules (`ferry sync`
/// decides deltas, content compares and metadata-only changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The usual rules: skip on same size and mtime, else fetch (or refuse).
    Usual,
    /// Already in place.
    Skip,
    /// Send it as a delta, after the data phase.
    Delta,
    /// Send it whole, even if size and mtime match (a content compare
    /// found it differs).
    Fetch,
}

/// What a [`Decider`] is told of one file entry: the entry, its index, the
/// directory it goes into and its name there, and what is there now.
pub struct FileAtTarget<'a> {
    /// The entry's index in the manifest.
    pub i: u64,
    /// The entry.
    pub entry: &'a Entry,
    /// The directory the file goes into.
    pub dir: &'a OwnedFd,
    /// Its name there.
    pub name: &'a OsStr,
    /// What is at that name now, not followed.
    pub existing: Option<&'a Stat>,
}

/// Decides file entries before the usual rules.
pub type Decider<'a> = &'a mut dyn FnMut(FileAtTarget<'_>) -> Decision;

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
    ) -> Result<(ReceivePlan, Wants), FileError> {
        ReceivePlan::new_deciding(dest, base, entries, options, &mut |_| Decision::Usual)
    }

    /// [`ReceivePlan::new`], with `decide` asked first about each file
    /// entry. With [`ReceiveOptions::links`], symlink entries are left to
    /// the caller (their parent directories made); without, refused.
    pub fn new_deciding(
        dest: Arc<Root>,
        base: &RelPath,
        entries: Vec<Entry>,
        options: ReceiveOptions,
        decide: Decider<'_>,
    ) -> Result<(ReceivePlan, Wants), FileError> {
        let shown = base.to_bytes();
        let base_dir = dest.open_dir(base).map_err(|e| FileError::io(&shown, &e))?;
        let mut chain = rustix::io::fcntl_dupfd_cloexec(&base_dir, 0)
            .map_err(io::Error::from)
            .and_then(DirChain::new)
            .map_err(|e| FileError::io(&shown, &e))?;
        let mut plan = ReceivePlan {
            dest,
            base: base_dir,
            entries: Arc::new(Vec::new()),
            targets: Vec::with_capacity(entries.len()),
            dirs: vec![DirNode {
                identity: chain.identity(),
                meta: None,
            }],
            states: Vec::with_capacity(entries.len()),
            resumed_offsets: HashMap::new(),
            partials: HashMap::new(),
            replaced_modes: HashMap::new(),
            options,
            striped: HashMap::new(),
            errors: Vec::new(),
            skipped: 0,
        };
        let mut known: HashMap<(u64, u64), u32> = HashMap::from([(chain.identity(), 0)]);
        // Room for every line at once (most are about this long).
        let mut wants = Wants {
            body: Vec::with_capacity(entries.len() * 48),
            ..Wants::default()
        };
        for (i, entry) in entries.iter().enumerate() {
            plan.states.push(FileState::Unwanted);
            let i = i as u64;
            let action = match plan.plan_one(&mut chain, &mut known, i, entry, decide) {
                Ok(None) => continue,
                Ok(Some(action)) => action,
                Err(err) => {
                    plan.targets.push(Target::Refused);
                    let code = err.code.as_str().to_string();
                    wants.refused.push(EntryError {
                        i,
                        code: code.clone(),
                        message: err.message.clone(),
                    });
                    WantAction::Refuse {
                        code,
                        message: err.message,
                    }
                }
            };
            match &action {
                WantAction::Send { offset, .. } => {
                    wants.bytes_wanted += entry.file_size.saturating_sub(*offset);
                }
                WantAction::Stripe { kept, .. } => {
                    let kept: u64 = kept.iter().map(|&at| range_len(entry.file_size, at)).sum();
                    wants.bytes_wanted += entry.file_size - kept;
                }
                WantAction::Skip if options.list_files => wants.skipped_files.push(i),
                WantAction::Delta => wants.delta.push(i),
                _ => {}
            }
            wants.push(&Want { i, action });
        }
        wants.skipped = plan.skipped;
        plan.entries = Arc::new(entries);
        Ok((plan, wants))
    }

    /// Plans one entry and pushes its target: `None` for a directory,
    /// else what to ask the sender for.
    fn plan_one(
        &mut self,
        chain: &mut DirChain,
        known: &mut HashMap<(u64, u64), u32>,
        i: u64,
        entry: &Entry,
        decide: Decider<'_>,
    ) -> Result<Option<WantAction>, FileError> {
        let raw = entry
            .path
            .to_bytes()
            .map_err(|m| FileError::new(ErrorCode::BadPath, m))?;
        let names = split_names(&raw)?;
        entry
            .check_times()
            .map_err(|m| FileError::new(ErrorCode::BadRequest, format!("{}: {m}", show(&raw))))?;
        let Some((&name, parents)) = names.split_last() else {
            return Err(not_a_name(&raw));
        };
        if names.iter().any(|n| is_reserved_name(n)) {
            return Err(not_a_name(&raw));
        }
        let fail = |err: io::Error| FileError::io(&raw, &err);
        if entry.kind == EntryKind::Symlink {
            if !self.options.links {
                return Err(FileError::new(
                    ErrorCode::NotRegular,
                    format!("{}: a symlink, which only sync keeps", show(&raw)),
                ));
            }
            enter_creating(chain, parents).map_err(fail)?;
            self.targets.push(Target::Refused);
            return Ok(None);
        }
        if entry.kind == EntryKind::Dir {
            let parent = enter_creating(chain, parents).map_err(fail)?;
            let created = match lstat_at(&parent, name).map_err(fail)? {
                Some(st) if st.kind == Kind::Dir => false,
                Some(_) => {
                    return Err(FileError::new(
                        ErrorCode::NotADirectory,
                        format!("{} exists and is not a directory", show(&raw)),
                    ))
                }
                None => {
                    // Private until its own mode is set at the end.
                    let mode = if self.options.preserve { 0o700 } else { 0o777 };
                    rustix::fs::mkdirat(&*parent, name, Mode::from_raw_mode(mode))
                        .map_err(|e| fail(e.into()))?;
                    true
                }
            };
            chain.enter(&names).map_err(fail)?;
            let meta =
                (self.options.preserve && (created || self.options.force)).then(|| DirMeta {
                    mode: self.sent_mode(entry.mode),
                    mtime: (entry.mtime, entry.mtime_ns),
                });
            let node = self.node(known, chain.identity(), meta);
            self.targets.push(Target::Dir(node));
            return Ok(None);
        }
        let parent = chain.enter(parents).map_err(fail)?;
        let node = self.node(known, chain.identity(), None);
        let existing = lstat_at(&parent, name).map_err(fail)?;
        let decision = decide(FileAtTarget {
            i,
            entry,
            dir: &parent,
            name,
            existing: existing.as_ref(),
        });
        let step = match (decision, existing) {
            (Decision::Skip, _) => Step::Skip,
            (Decision::Delta, _) => Step::Delta,
            (Decision::Fetch, Some(st)) if matches!(st.kind, Kind::File | Kind::Symlink) => {
                Step::Fetch
            }
            (Decision::Usual | Decision::Fetch, None) => Step::Fetch,
            (Decision::Fetch, Some(st)) => self.existing_file(i, entry, &st, &raw)?,
            (Decision::Usual, Some(st)) => self.existing_file(i, entry, &st, &raw)?,
        };
        self.targets.push(Target::File(node));
        Ok(Some(match step {
            Step::Skip => {
                self.skipped += 1;
                WantAction::Skip
            }
            Step::Delta => WantAction::Delta,
            Step::Fetch => {
                if self.options.stripe && entry.file_size >= STRIPE_MIN_BYTES {
                    if let Some(action) = self.fetch_striped(i, parent.clone(), name, entry) {
                        self.states[i as usize] = FileState::Striped;
                        return Ok(Some(action));
                    }
                }
                let action = self.fetch(i, parent, name, entry);
                if let WantAction::Send { offset, .. } = action {
                    self.states[i as usize] = FileState::Offered;
                    if offset > 0 {
                        self.resumed_offsets.insert(i, offset);
                    }
                }
                action
            }
        }))
    }

    /// What to do about a file entry whose target exists.
    fn existing_file(
        &mut self,
        i: u64,
        entry: &Entry,
        st: &Stat,
        raw: &[u8],
    ) -> Result<Step, FileError> {
        match st.kind {
            Kind::Dir => Err(FileError::new(
                ErrorCode::IsADirectory,
                format!("{} is a directory", show(raw)),
            )),
            Kind::Special => Err(FileError::new(
                ErrorCode::NotRegular,
                format!("{} is not a regular file", show(raw)),
            )),
            // rsync's quick check: same size and mtime is the same file.
            Kind::File
                if self.options.preserve
                    && st.len == entry.file_size
                    && st.mtime == (entry.mtime, entry.mtime_ns) =>
            {
                Ok(Step::Skip)
            }
            _ if self.options.force => {
                if !self.options.preserve && st.kind == Kind::File {
                    self.replaced_modes.insert(i, st.mode & 0o777);
                }
                Ok(Step::Fetch)
            }
            _ => Err(FileError::new(
                ErrorCode::Exists,
                format!(
                    "{} exists and differs; use --force to overwrite it",
                    show(raw)
                ),
            )),
        }
    }

    /// Wants a file whole, or from the end of a partial kept by an earlier
    /// attempt (hashed once here, and held open until its data comes).
    fn fetch(&mut self, i: u64, dir: Arc<OwnedFd>, name: &OsStr, entry: &Entry) -> WantAction {
        let source = SourceId {
            file_size: entry.file_size,
            mtime: (entry.mtime, entry.mtime_ns),
        };
        let partial_there = has_partial(&dir, name);
        if partial_there {
            RangedPartial::forget_ranges(&dir, name);
        }
        if self.options.resume && partial_there {
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

    /// Wants a big file in ranges, less those an earlier attempt verified
    /// and recorded (each hashed again here). `None` when its ranged
    /// partial cannot be had (another transfer holds it): it is then asked
    /// for whole, and that transfer's lock refuses it clearly.
    fn fetch_striped(
        &mut self,
        i: u64,
        dir: Arc<OwnedFd>,
        name: &OsStr,
        entry: &Entry,
    ) -> Option<WantAction> {
        let partial = RangedPartial::open_in(dir, name, entry.file_size).ok()?;
        let mtime = (entry.mtime, entry.mtime_ns);
        let (book, kept_blake3) = if self.options.resume {
            partial.kept(entry.file_size, mtime)
        } else {
            (RangeBook::new(entry.file_size), blake3::hash(b""))
        };
        let kept: Vec<u64> = book.verified().map(|(offset, _, _)| offset).collect();
        let shown = entry.path.to_bytes().unwrap_or_default();
        let meta = self.file_meta(i, entry);
        let file = StripedFile::new(shown, (mtime, meta), partial, book);
        self.striped.insert(i, Arc::new(file));
        Some(WantAction::Stripe {
            kept_blake3: (!kept.is_empty()).then(|| kept_blake3.to_hex().to_string()),
            kept,
        })
    }

    /// The files asked for in ranges, for the streams that carry them; the
    /// plan keeps its share, to hand each file the sender's end frame.
    pub fn stripes(&self) -> StripeReceiver {
        StripeReceiver {
            files: self.striped.clone(),
        }
    }

    /// The permission bits a sent mode becomes here: never setuid, setgid
    /// or sticky, and less this process's umask unless the sender is
    /// trusted with modes.
    pub(super) fn sent_mode(&self, mode: u32) -> u32 {
        let mask = if self.options.trust_sent_modes {
            0
        } else {
            process_umask()
        };
        mode & 0o777 & !mask
    }

    /// The directory node with `identity`, added if new.
    fn node(
        &mut self,
        known: &mut HashMap<(u64, u64), u32>,
        identity: (u64, u64),
        meta: Option<DirMeta>,
    ) -> u32 {
        if let Some(&node) = known.get(&identity) {
            if meta.is_some() {
                self.dirs[node as usize].meta = meta;
            }
            return node;
        }
        let node = self.dirs.len() as u32;
        self.dirs.push(DirNode { identity, meta });
        known.insert(identity, node);
        node
    }
}

fn not_a_name(raw: &[u8]) -> FileError {
    FileError::new(
        ErrorCode::BadPath,
        format!("{}: not a name a file can be stored under", show(raw)),
    )
}

/// Facts about `name` in `dir` itself, `None` if there is nothing there.
fn lstat_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Stat::from_raw(&st))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
}

/// Enters `names` below the chain's base, creating missing directories on
/// the way (as `mkdir -p` does, with the umask's mode).
fn enter_creating(chain: &mut DirChain, names: &[&OsStr]) -> io::Result<Arc<OwnedFd>> {
    match chain.enter(names) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    for depth in 1..=names.len() {
        if let Some((name, parents)) = names[..depth].split_last() {
            let parent = chain.enter(parents)?;
            match rustix::fs::mkdirat(&*parent, *name, Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
    }
    chain.enter(names)
}

#[cfg(test)]
mod tests {
    use super::super::tests::OPTIONS;
    use super::*;
    use crate::engine::wire::{from_json_lines, WirePath};
    use std::time::{Duration, SystemTime};

    const MTIME: i64 = 1_700_000_000;

    fn entry(kind: EntryKind, path: &str, file_size: u64) -> Entry {
        Entry {
            kind,
            path: WirePath::from_bytes(path.as_bytes()),
            file_size,
            mode: 0o644,
            mtime: MTIME,
            mtime_ns: 0,
            sync: None,
        }
    }

    fn plan(
        to: &std::path::Path,
        entries: Vec<Entry>,
        options: ReceiveOptions,
    ) -> (ReceivePlan, Wants, Vec<Want>) {
        let dst = Arc::new(Root::new(to).unwrap());
        let (plan, wants) = ReceivePlan::new(dst, &RelPath::root(), entries, options).unwrap();
        let lines = from_json_lines(&wants.body).unwrap();
        (plan, wants, lines)
    }

    #[test]
    fn each_file_is_skipped_refused_resumed_or_asked_for_whole() {
        let to = tempfile::tempdir().unwrap();
        let dst = Root::new(to.path()).unwrap();
        std::fs::create_dir(to.path().join("d")).unwrap();
        // Same size and mtime as its entry: the quick check calls it the same.
        std::fs::write(to.path().join("d/same"), b"12345").unwrap();
        std::fs::File::options()
            .write(true)
            .open(to.path().join("d/same"))
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME as u64))
            .unwrap();
        std::fs::write(to.path().join("d/differs"), b"mine").unwrap();
        // An earlier attempt kept 300 bytes of d/resumed.
        let source = SourceId {
            file_size: 1000,
            mtime: (MTIME, 0),
        };
        let target = RelPath::parse(b"d/resumed").unwrap();
        let mut partial = PartialFile::open(&dst, &target, &source, true).unwrap();
        partial.write(&[7u8; 300]).unwrap();
        partial.suspend();
        let entries = vec![
            entry(EntryKind::Dir, "d", 0),
            entry(EntryKind::File, "d/same", 5),
            entry(EntryKind::File, "d/differs", 9),
            entry(EntryKind::File, "d/new", 40),
            entry(EntryKind::File, "d/resumed", 1000),
            entry(EntryKind::Dir, "d/sub", 0),
        ];
        let (plan, wants, lines) = plan(to.path(), entries, OPTIONS);
        let actions: Vec<(u64, WantAction)> = lines.into_iter().map(|w| (w.i, w.action)).collect();
        let prefix = blake3::hash(&[7u8; 300]).to_hex().to_string();
        assert_eq!(actions.len(), 4, "one want per file, none per directory");
        assert_eq!(actions[0], (1, WantAction::Skip));
        assert!(
            matches!(&actions[1], (2, WantAction::Refuse { code, .. }) if code == "exists"),
            "{actions:?}"
        );
        let send = |offset, prefix_blake3| WantAction::Send {
            offset,
            prefix_blake3,
        };
        assert_eq!(actions[2], (3, send(0, None)));
        assert_eq!(actions[3], (4, send(300, Some(prefix))));
        assert_eq!(wants.bytes_wanted, 40 + 700);
        assert_eq!((wants.skipped, wants.skipped_files.clone()), (1, vec![1]));
        assert_eq!(wants.refused.len(), 1);
        assert!(to.path().join("d/sub").is_dir(), "directories are made now");
        let states = &plan.states;
        assert_eq!(states[3], FileState::Offered);
        assert_eq!(states[1], FileState::Unwanted);
        assert_eq!(plan.resumed_offsets.get(&4), Some(&300));
        assert!(plan.partials.contains_key(&4), "held open until its data");
    }

    #[test]
    fn what_stands_in_the_way_is_refused_with_its_code() {
        let to = tempfile::tempdir().unwrap();
        std::fs::write(to.path().join("file"), b"x").unwrap();
        std::fs::create_dir(to.path().join("dir")).unwrap();
        let entries = vec![
            entry(EntryKind::Dir, "file", 0),
            entry(EntryKind::File, "dir", 1),
        ];
        let (_, wants, _) = plan(to.path(), entries, OPTIONS);
        let codes: Vec<&str> = wants.refused.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["not_a_directory", "is_a_directory"]);
    }

    #[test]
    fn hostile_entry_paths_are_refused_and_nothing_lands_outside() {
        let outer = tempfile::tempdir().unwrap();
        let to = outer.path().join("dest");
        std::fs::create_dir(&to).unwrap();
        let dst = Arc::new(Root::new(&to).unwrap());
        let file = |p: &[u8]| Entry {
            kind: EntryKind::File,
            path: WirePath::from_bytes(p),
            file_size: 1,
            mode: 0o644,
            mtime: 0,
            mtime_ns: 0,
            sync: None,
        };
        let entries = vec![
            file(b"../escape"),
            file(b"/abs"),
            file(b"a\0b"),
            file(b".ferry-partial-x"),
            file(b""),
        ];
        let (_, wants) = ReceivePlan::new(dst, &RelPath::root(), entries, OPTIONS).unwrap();
        assert_eq!(wants.refused.len(), 5);
        let wants: Vec<Want> = from_json_lines(&wants.body).unwrap();
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
