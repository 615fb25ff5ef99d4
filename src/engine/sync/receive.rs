//! The side that owns the destination: answers the manifest (skip, send
//! whole, or send as a delta), takes the whole files and the deltas, then
//! sets symlinks and directory times and, last, deletes.
//!
//! Deletes come after every file of the sync is in place and durable, and
//! only when none failed: a sync cut short leaves the destination with
//! what it had plus what arrived. The receiver lists what to delete from
//! its own walk; the peer never names a path to delete.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};

use crate::connection::{ByteStream, Connection};
use crate::limits::{SYNC_MIN_DELTA_BYTES, SYNC_MIN_NEW_DELTA_BYTES};
use crate::protocol::ErrorCode;

use super::super::atomic::{is_reserved_name, partial_name, process_umask, FileMeta};
use super::super::error::{show, FileError};
use super::super::filter::{Filter, Verdict, GITIGNORE};
use super::super::index::{Index, IndexEntry, Lookup};
use super::super::root::{Kind, RelPath, Root};
use super::super::transfer::{
    receive_wanted, Decision, Direction, FileAtTarget, Progress, ReceiveOptions, ReceivePlan,
    TransferError, Wants,
};
use super::super::wire::{Entry, EntryKind};
use super::delta::{self, DeltaTarget, KnownChunks};
use super::{index_stat, Change, ChangeKind, IndexPlace, SyncSettings, SyncSummary};

/// The receiving side's inputs besides the connection.
pub struct Receiving {
    /// The destination directory, as a root of its own.
    pub dest: Arc<Root>,
    /// The sender's manifest.
    pub entries: Vec<Entry>,
    /// The source is a directory (deletes only then).
    pub is_dir: bool,
    /// How the sync runs.
    pub settings: SyncSettings,
    /// Keep the sender's permission bits as sent (the server, for its
    /// user); otherwise they pass through this process's umask.
    pub trust_sent_modes: bool,
    /// Where this end keeps its index, if it keeps one.
    pub index: Option<IndexPlace>,
}

/// What the receiving side did.
#[derive(Debug, Default)]
pub struct Received {
    /// The numbers.
    pub summary: SyncSummary,
    /// Each change, in the order made.
    pub changes: Vec<Change>,
}

/// Runs the receiving side, from the answer to the manifest to the deletes.
pub async fn receive<S: ByteStream>(
    conn: &mut Connection<S>,
    direction: Direction,
    receiving: Receiving,
    progress: &dyn Progress,
) -> Result<Received, TransferError> {
    let Receiving {
        dest,
        entries,
        is_dir,
        settings,
        trust_sent_modes,
        index,
    } = receiving;
    let filter = settings
        .filter()
        .map_err(|e| TransferError::Protocol(e.to_string()))?;
    let options = ReceiveOptions {
        force: true,
        resume: true,
        preserve: true,
        trust_sent_modes,
        list_files: true,
        links: true,
        stripe: false,
    };
    if settings.dry_run {
        let planning = (dest.clone(), entries, settings.clone());
        let mut received =
            blocking(move || preview(&planning.0, &planning.1, is_dir, &planning.2, filter))
                .await?;
        received.summary.dry_run = true;
        let (plan, wants) = {
            let dest = dest.clone();
            blocking(move || ReceivePlan::new(dest, &RelPath::root(), Vec::new(), options)).await?
        };
        receive_wanted(conn, direction, plan, wants, progress).await?;
        return Ok(received);
    }

    // Plan: directories made, each file skipped, wanted whole or as a delta.
    let planning = {
        let dest = dest.clone();
        let settings = settings.clone();
        let index = index.clone();
        blocking(move || {
            plan(
                dest,
                entries,
                &settings,
                trust_sent_modes,
                index.as_ref(),
                options,
            )
        })
    };
    let Planned {
        plan,
        wants,
        existed,
        mut changes,
        entries,
        index: mut known_index,
    } = planning.await?;
    let delta_wants = wants.delta.clone();
    let refused = wants.refused.clone();
    let (_, summary) = receive_wanted(conn, direction, plan, wants, progress).await?;

    let mut received = Received::default();
    received.summary.unchanged = summary.skipped;
    let mut failed: HashSet<u64> = HashSet::new();
    // Entries this end refused to place (a directory where a file goes, a
    // bad name) failed as surely as a file that broke in transit.
    for error in &refused {
        failed.insert(error.i);
        changes.push(failed_change(
            &entries,
            &error.i,
            &error.code,
            &error.message,
        ));
    }
    for error in &summary.errors {
        failed.insert(error.error.i);
        changes.push(failed_change(
            &entries,
            &error.error.i,
            &error.error.code,
            &error.error.message,
        ));
    }
    let mut sent_whole: Vec<u64> = Vec::new();
    for &(i, _) in &summary.published {
        let kind = if existed.contains(&i) {
            ChangeKind::Update
        } else {
            ChangeKind::New
        };
        let size = entries[i as usize].file_size;
        changes.push(Change::new(kind, &path_of(&entries[i as usize]), size));
        sent_whole.push(i);
    }
    received.summary.files = summary.files;
    received.summary.bytes = summary.bytes;

    // Deltas, against every chunk this end knows of files this sync did
    // not just replace.
    if !delta_wants.is_empty() {
        let replaced: HashSet<Vec<u8>> = sent_whole
            .iter()
            .map(|&i| path_of(&entries[i as usize]))
            .collect();
        let targets: Vec<DeltaTarget> = delta_wants
            .iter()
            .filter_map(|&i| {
                let entry = entries.get(i as usize)?.clone();
                let path = RelPath::parse(&path_of(&entry)).ok()?;
                let meta = FileMeta {
                    mode: sent_mode(entry.mode, trust_sent_modes),
                    mtime: Some((entry.mtime, entry.mtime_ns)),
                };
                Some(DeltaTarget {
                    i,
                    path,
                    entry,
                    meta,
                })
            })
            .collect();
        let known = {
            let dest = dest.clone();
            let index = std::mem::take(&mut known_index);
            let delta_paths: Vec<Vec<u8>> = targets.iter().map(|t| t.path.to_bytes()).collect();
            blocking(move || Ok(known_chunks(&dest, index, &replaced, &delta_paths))).await?
        };
        let (index_back, known) = known;
        known_index = index_back;
        let got = delta::receive(conn, dest.clone(), targets, Arc::new(known)).await?;
        received.summary.delta_bytes = got.chunk_bytes + got.tree_bytes;
        received.summary.reused_bytes = got.copied_bytes;
        received.summary.deltas = got.published.len() as u64;
        for stale in &got.stale {
            known_index.remove(&stale.to_bytes());
        }
        for failure in &got.failed {
            failed.insert(failure.error.i);
            changes.push(failed_change(
                &entries,
                &failure.error.i,
                &failure.error.code,
                &failure.error.message,
            ));
        }
        for (i, chunked) in got.published {
            let path = path_of(&entries[i as usize]);
            let bytes: u64 = 0;
            changes.push(Change::new(ChangeKind::Delta, &path, bytes));
            if let Ok(rel) = RelPath::parse(&path) {
                if let Ok(st) = dest.lstat(&rel) {
                    known_index.insert(&path, IndexEntry::new(index_stat(&st), chunked));
                }
            }
        }
    }

    // Links, then directory times (every write above touched them), then
    // deletes, then the index.
    let finishing = {
        let dest = dest.clone();
        let settings = settings.clone();
        let index = index.clone();
        move || {
            let mut changes = Vec::new();
            let mut failures = Vec::new();
            set_links(&dest, &entries, &mut changes, &mut failures);
            set_dir_times(&dest, &entries);
            let mut summary = SyncSummary::default();
            let mut deleted: Vec<Vec<u8>> = Vec::new();
            if settings.delete && is_dir {
                if !failed.is_empty() || !failures.is_empty() {
                    summary.deletes_skipped =
                        Some("some files failed, so nothing was deleted; sync again".into());
                } else {
                    match deletes(&dest, &entries, filter, settings.force) {
                        Ok(paths) => {
                            for (path, _) in &paths {
                                match RelPath::parse(path).map(|rel| dest.remove(&rel)) {
                                    Ok(Ok(())) => {
                                        changes.push(Change::new(ChangeKind::Delete, path, 0));
                                        deleted.push(path.clone());
                                    }
                                    // A directory holding what the filter
                                    // protects stays.
                                    Ok(Err(err)) if err.raw_os_error() == Some(libc::ENOTEMPTY) => {
                                    }
                                    Ok(Err(err)) => failures.push(Change {
                                        code: Some(ErrorCode::IoError.as_str().into()),
                                        message: Some(format!(
                                            "{}: cannot delete: {err}",
                                            show(path)
                                        )),
                                        ..Change::new(ChangeKind::Failed, path, 0)
                                    }),
                                    Err(_) => {}
                                }
                            }
                        }
                        Err(refused) => summary.deletes_skipped = Some(refused),
                    }
                }
            }
            if let Some(place) = &index {
                // Whole files at least a delta's size are cut now, so the next
                // sync can reuse their chunks (a rename costs nothing).
                for &i in &sent_whole {
                    let entry = &entries[i as usize];
                    if entry.file_size < SYNC_MIN_DELTA_BYTES {
                        continue;
                    }
                    let path = path_of(entry);
                    if let Some(indexed) = index_file(&dest, &path) {
                        known_index.insert(&path, indexed);
                    }
                }
                let gone: HashSet<&[u8]> = deleted.iter().map(Vec::as_slice).collect();
                known_index.retain(|p| !gone.contains(p));
                place.save(&known_index);
            }
            Ok((changes, failures, summary))
        }
    };
    let (more, failures, finish) = blocking(finishing).await?;
    changes.extend(more);
    received.summary.deleted = changes
        .iter()
        .filter(|c| c.change == ChangeKind::Delete)
        .count() as u64;
    received.summary.deletes_skipped = finish.deletes_skipped;
    changes.extend(failures);
    received.summary.failed = changes
        .iter()
        .filter(|c| c.change == ChangeKind::Failed)
        .count() as u64;
    received.changes = changes;
    Ok(received)
}

struct Planned {
    plan: ReceivePlan,
    wants: Wants,
    existed: HashSet<u64>,
    changes: Vec<Change>,
    entries: Vec<Entry>,
    index: Index,
}

/// Makes the plan with sync's rules: quick check (or content with
/// `--checksum`), metadata-only changes applied in place, deltas for files
/// this end has an older version of.
fn plan(
    dest: Arc<Root>,
    entries: Vec<Entry>,
    settings: &SyncSettings,
    trust_sent_modes: bool,
    place: Option<&IndexPlace>,
    options: ReceiveOptions,
) -> Result<Planned, FileError> {
    let mut index = place.map(IndexPlace::load).unwrap_or_default();
    let knows_chunks = !index.is_empty();
    let mut existed = HashSet::new();
    let mut changes = Vec::new();
    let mut new_dirs = Vec::new();
    for entry in &entries {
        if entry.kind == EntryKind::Dir {
            if let Ok(rel) = entry
                .path
                .to_bytes()
                .and_then(|p| RelPath::parse(&p).map_err(|e| e.to_string()))
            {
                if dest.lstat(&rel).is_err() {
                    new_dirs.push(rel.to_bytes());
                }
            }
        }
    }
    let mut decide = |at: FileAtTarget<'_>| -> Decision {
        let entry = at.entry;
        let Some(st) = at.existing else {
            return if knows_chunks && entry.file_size >= SYNC_MIN_NEW_DELTA_BYTES {
                Decision::Delta
            } else {
                Decision::Usual
            };
        };
        existed.insert(at.i);
        if st.kind != Kind::File {
            return Decision::Usual;
        }
        let path = entry.path.to_bytes().unwrap_or_default();
        let same = if settings.checksum {
            // No hash on either side is a difference, never a match.
            st.len == entry.file_size
                && entry.content_hash().is_some_and(|sent| {
                    content_hash(at.dir, at.name, &path, st, &mut index).as_deref() == Some(sent)
                })
        } else {
            st.len == entry.file_size && st.mtime == (entry.mtime, entry.mtime_ns)
        };
        if same {
            let mode = sent_mode(entry.mode, trust_sent_modes);
            let mut touched = false;
            if st.mode & 0o777 != mode {
                touched |= rustix::fs::chmodat(
                    at.dir,
                    at.name,
                    Mode::from_raw_mode(mode),
                    AtFlags::empty(),
                )
                .is_ok();
            }
            if st.mtime != (entry.mtime, entry.mtime_ns) {
                let when = timestamps(entry.mtime, entry.mtime_ns);
                touched |= rustix::fs::utimensat(at.dir, at.name, &when, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok();
            }
            if touched {
                changes.push(Change::new(ChangeKind::Meta, &path, 0));
            }
            return Decision::Skip;
        }
        if st.len > 0 && entry.file_size >= SYNC_MIN_DELTA_BYTES {
            Decision::Delta
        } else {
            // Not the quick check's call: with --checksum, size and mtime
            // may match and the content still differ.
            Decision::Fetch
        }
    };
    let (plan, wants) = ReceivePlan::new_deciding(
        dest.clone(),
        &RelPath::root(),
        entries.clone(),
        options,
        &mut decide,
    )?;
    for dir in new_dirs {
        changes.push(Change::new(ChangeKind::Mkdir, &dir, 0));
    }
    Ok(Planned {
        plan,
        wants,
        existed,
        changes,
        entries,
        index,
    })
}

/// The BLAKE3 of the file `name` in `dir`, hex, from the index when its
/// stat is unchanged, else read (and recorded).
fn content_hash(
    dir: &std::os::fd::OwnedFd,
    name: &OsStr,
    key: &[u8],
    st: &super::super::root::Stat,
    index: &mut Index,
) -> Option<String> {
    let stat = index_stat(st);
    if let Lookup::Unchanged(entry) = index.lookup(key, &stat) {
        return Some(blake3::Hash::from(entry.file_hash).to_hex().to_string());
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let (_, chunked) = index.lookup_checksum(key, std::fs::File::from(fd)).ok()?;
    let hex = blake3::Hash::from(chunked.file_hash).to_hex().to_string();
    index.insert(key, IndexEntry::new(stat, chunked));
    Some(hex)
}

/// Every chunk this end can reuse: the files its index knows whose stat
/// is unchanged, and the old version of each delta target, less the files
/// this sync replaced whole. Returns the index back, with what was cut.
fn known_chunks(
    dest: &Root,
    mut index: Index,
    replaced: &HashSet<Vec<u8>>,
    delta_paths: &[Vec<u8>],
) -> (Index, KnownChunks) {
    // The old version of each delta target, cut now unless the index
    // already knows it as it is. Cut for its chunks only (no whole-file
    // hash, so not indexed): the delta replaces it.
    let mut basis = Vec::new();
    for path in delta_paths {
        let Ok(rel) = RelPath::parse(path) else {
            continue;
        };
        let unchanged = dest
            .lstat(&rel)
            .is_ok_and(|st| matches!(index.lookup(path, &index_stat(&st)), Lookup::Unchanged(_)));
        if !unchanged {
            index.remove(path);
            if let Some(chunks) = cut_file(dest, &rel) {
                basis.push((rel, chunks));
            }
        }
    }
    let mut known = KnownChunks::default();
    let mut stale = Vec::new();
    for (path, entry) in index.entries() {
        if replaced.contains(path) {
            continue;
        }
        let Ok(rel) = RelPath::parse(path) else {
            continue;
        };
        match dest.lstat(&rel) {
            Ok(st) if st.kind == Kind::File && index_stat(&st) == entry.stat => {
                known.add(rel, entry.chunks.clone());
            }
            _ => stale.push(path.to_vec()),
        }
    }
    for path in stale {
        index.remove(&path);
    }
    for (rel, chunks) in basis {
        known.add(rel, chunks);
    }
    (index, known)
}

/// Cuts the file at `rel` into chunks, without its whole-file hash.
fn cut_file(dest: &Root, rel: &RelPath) -> Option<Vec<super::super::chunks::Chunk>> {
    let fd = dest
        .open(
            rel,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
    let cut = super::super::chunks::cut_reader(std::fs::File::from(fd)).ok()?;
    Some(cut.chunks)
}

/// Cuts the file at `path` into chunks for the index.
fn index_file(dest: &Root, path: &[u8]) -> Option<IndexEntry> {
    let rel = RelPath::parse(path).ok()?;
    let fd = dest
        .open(
            &rel,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
    let st = super::super::root::fstat(&fd).ok()?;
    let chunked = super::super::chunks::chunk_reader(std::fs::File::from(fd)).ok()?;
    Some(IndexEntry::new(index_stat(&st), chunked))
}

/// Creates or replaces each symlink entry: confined (a target that leads
/// out of the destination is refused), made under a partial name and
/// renamed into place, so a reader never sees a missing link.
fn set_links(
    dest: &Root,
    entries: &[Entry],
    changes: &mut Vec<Change>,
    failures: &mut Vec<Change>,
) {
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Symlink) {
        let path = path_of(entry);
        let fail = |failures: &mut Vec<Change>, code: ErrorCode, why: String| {
            failures.push(Change {
                code: Some(code.as_str().into()),
                message: Some(format!("{}: {why}", show(&path))),
                ..Change::new(ChangeKind::Failed, &path, 0)
            })
        };
        let Some(target) = entry.link_target().and_then(|t| t.to_bytes().ok()) else {
            fail(
                failures,
                ErrorCode::BadRequest,
                "a symlink without a target".into(),
            );
            continue;
        };
        if let Err(why) = link_stays_inside(&path, &target) {
            fail(failures, ErrorCode::NotAllowed, why);
            continue;
        }
        let Ok(rel) = RelPath::parse(&path) else {
            fail(failures, ErrorCode::BadPath, "not a path".into());
            continue;
        };
        let Ok((dir, name)) = dest.parent_of(&rel) else {
            fail(
                failures,
                ErrorCode::NotFound,
                "its directory is missing".into(),
            );
            continue;
        };
        if is_reserved_name(name) {
            fail(failures, ErrorCode::BadPath, "reserved name".into());
            continue;
        }
        match rustix::fs::readlinkat(&dir, name, Vec::new()) {
            Ok(existing) if existing.as_bytes() == target.as_slice() => continue,
            _ => {}
        }
        if let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            if Kind::of(st.st_mode) == Kind::Dir {
                fail(
                    failures,
                    ErrorCode::IsADirectory,
                    "a directory is in the way".into(),
                );
                continue;
            }
        }
        let temp = partial_name(name);
        let _ = rustix::fs::unlinkat(&dir, &temp, AtFlags::empty());
        let when = timestamps(entry.mtime, entry.mtime_ns);
        let made = rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir, &temp)
            .and_then(|()| rustix::fs::utimensat(&dir, &temp, &when, AtFlags::SYMLINK_NOFOLLOW))
            .and_then(|()| rustix::fs::renameat(&dir, &temp, &dir, name));
        match made {
            Ok(()) => changes.push(Change::new(ChangeKind::Link, &path, 0)),
            Err(err) => {
                let _ = rustix::fs::unlinkat(&dir, &temp, AtFlags::empty());
                fail(
                    failures,
                    ErrorCode::IoError,
                    format!("cannot make the link: {err}"),
                );
            }
        }
    }
}

/// Checks that a link at `path` (relative to the destination) pointing at
/// `target` resolves inside the destination, by its names alone: no
/// absolute target, and no `..` that climbs above the top.
pub fn link_stays_inside(path: &[u8], target: &[u8]) -> Result<(), String> {
    if target.is_empty() || target.starts_with(b"/") {
        return Err("its target is absolute or empty, which leads out of the destination".into());
    }
    if target.contains(&0) {
        return Err("its target holds a NUL byte".into());
    }
    let names: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|n| !n.is_empty() && *n != b".")
        .collect();
    if names.is_empty() || names.contains(&&b".."[..]) {
        return Err("the link's own path is not a plain path".into());
    }
    let mut depth = names.len() as i64 - 1;
    for name in target.split(|&b| b == b'/') {
        match name {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err("its target leads out of the destination".into());
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Gives each directory of the manifest its mtime again, deepest first:
/// writing files into them changed it.
fn set_dir_times(dest: &Root, entries: &[Entry]) {
    for entry in entries.iter().rev().filter(|e| e.kind == EntryKind::Dir) {
        let Ok(rel) = RelPath::parse(&path_of(entry)) else {
            continue;
        };
        if let Ok(fd) = dest.open_dir(&rel) {
            let _ = rustix::fs::futimens(&fd, &timestamps(entry.mtime, entry.mtime_ns));
        }
    }
}

/// What `--delete` removes: in the source's directories, every path of
/// this end's that the manifest does not name and the filter does not
/// protect; files before the directories holding them. Refuses to remove
/// everything when the manifest is empty (a wrong source), unless `force`.
fn deletes(
    dest: &Root,
    entries: &[Entry],
    mut filter: Filter,
    force: bool,
) -> Result<Vec<(Vec<u8>, bool)>, String> {
    let named: HashSet<Vec<u8>> = entries.iter().map(path_of).collect();
    let mut scope: Vec<Vec<u8>> = vec![Vec::new()];
    scope.extend(
        entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .map(path_of),
    );
    let mut out = Vec::new();
    for dir in &scope {
        read_gitignore(dest, &mut filter, dir);
        let Ok(rel) = RelPath::parse(dir) else {
            continue;
        };
        let Ok(mut names) = dest.list(&rel) else {
            continue;
        };
        names.sort();
        for name in names {
            if is_reserved_name(&name) {
                continue;
            }
            let child = join(dir, name.as_bytes());
            if named.contains(&child) {
                continue;
            }
            collect_extraneous(dest, &mut filter, child, &mut out);
        }
    }
    if entries.is_empty() && !out.is_empty() && !force {
        return Err(format!(
            "the source is empty, so --delete would remove all {} paths of the destination; \
             check the source, or add --force",
            out.len()
        ));
    }
    Ok(out)
}

fn collect_extraneous(
    dest: &Root,
    filter: &mut Filter,
    path: Vec<u8>,
    out: &mut Vec<(Vec<u8>, bool)>,
) {
    let Ok(rel) = RelPath::parse(&path) else {
        return;
    };
    let Ok(st) = dest.lstat(&rel) else { return };
    let is_dir = st.kind == Kind::Dir;
    if filter.verdict(&path, is_dir) == Verdict::Exclude {
        return;
    }
    if is_dir {
        read_gitignore(dest, filter, &path);
        if let Ok(mut names) = dest.list(&rel) {
            names.sort();
            for name in names {
                collect_extraneous(dest, filter, join(&path, name.as_bytes()), out);
            }
        }
    }
    out.push((path, is_dir));
}

fn read_gitignore(dest: &Root, filter: &mut Filter, dir: &[u8]) {
    if !filter.honours_gitignore() {
        return;
    }
    let Ok(rel) = RelPath::parse(&join(dir, GITIGNORE)) else {
        return;
    };
    let Ok(fd) = dest.open(
        &rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    ) else {
        return;
    };
    let mut contents = Vec::new();
    use std::io::Read;
    if std::fs::File::from(fd)
        .take(1024 * 1024)
        .read_to_end(&mut contents)
        .is_ok()
    {
        let _ = filter.add_gitignore(dir, &contents);
    }
}

/// `--dry-run`: what a sync would change, from this end's metadata, with
/// nothing written.
fn preview(
    dest: &Root,
    entries: &[Entry],
    is_dir: bool,
    settings: &SyncSettings,
    filter: Filter,
) -> Result<Received, FileError> {
    let mut received = Received::default();
    for entry in entries {
        let path = path_of(entry);
        let rel = RelPath::parse(&path)?;
        let existing = dest.lstat(&rel).ok();
        let change = match (entry.kind, existing) {
            (EntryKind::Dir, None) => Some((ChangeKind::Mkdir, 0)),
            (EntryKind::Dir, Some(_)) => None,
            (EntryKind::Symlink, Some(st)) if st.kind == Kind::Symlink => {
                let same = dest
                    .parent_of(&rel)
                    .ok()
                    .and_then(|(dir, name)| rustix::fs::readlinkat(&dir, name, Vec::new()).ok())
                    .zip(entry.link_target().and_then(|t| t.to_bytes().ok()))
                    .is_some_and(|(now, want)| now.as_bytes() == want.as_slice());
                (!same).then_some((ChangeKind::Link, 0))
            }
            (EntryKind::Symlink, _) => Some((ChangeKind::Link, 0)),
            (EntryKind::File, None) => Some((ChangeKind::New, entry.file_size)),
            (EntryKind::File, Some(st)) => {
                let same = st.kind == Kind::File
                    && st.len == entry.file_size
                    && (settings.checksum || st.mtime == (entry.mtime, entry.mtime_ns));
                let same = same
                    && (!settings.checksum || {
                        let fd = dest.open(
                            &rel,
                            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
                            Mode::empty(),
                        );
                        fd.ok()
                            .and_then(|fd| {
                                super::super::chunks::chunk_reader(std::fs::File::from(fd)).ok()
                            })
                            .map(|c| blake3::Hash::from(c.file_hash).to_hex().to_string())
                            .as_deref()
                            == entry.content_hash()
                    });
                (!same).then_some((ChangeKind::Update, entry.file_size))
            }
        };
        match change {
            Some((kind, bytes)) => received.changes.push(Change::new(kind, &path, bytes)),
            // Counted as the real run counts them: files only.
            None if entry.kind == EntryKind::File => received.summary.unchanged += 1,
            None => {}
        }
    }
    if settings.delete && is_dir {
        match deletes(dest, entries, filter, settings.force) {
            Ok(paths) => received.changes.extend(
                paths
                    .iter()
                    .map(|(p, _)| Change::new(ChangeKind::Delete, p, 0)),
            ),
            Err(refused) => received.summary.deletes_skipped = Some(refused),
        }
    }
    for change in &received.changes {
        match change.change {
            ChangeKind::New | ChangeKind::Update => {
                received.summary.files += 1;
                received.summary.bytes += change.bytes;
            }
            ChangeKind::Delete => received.summary.deleted += 1,
            _ => {}
        }
    }
    Ok(received)
}

fn path_of(entry: &Entry) -> Vec<u8> {
    entry.path.to_bytes().unwrap_or_default()
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

fn failed_change(entries: &[Entry], i: &u64, code: &str, message: &str) -> Change {
    let path = entries.get(*i as usize).map(path_of).unwrap_or_default();
    Change {
        code: Some(code.to_string()),
        message: Some(message.to_string()),
        ..Change::new(ChangeKind::Failed, &path, 0)
    }
}

fn sent_mode(mode: u32, trusted: bool) -> u32 {
    let mask = if trusted { 0 } else { process_umask() };
    mode & 0o777 & !mask
}

fn timestamps(secs: i64, nanos: u32) -> Timestamps {
    let at = Timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    };
    Timestamps {
        last_access: at,
        last_modification: at,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| TransferError::Protocol(format!("the sync's file work failed: {err}")))?
        .map_err(TransferError::Local)
}

#[cfg(test)]
mod tests {
    use super::link_stays_inside;
    use proptest::prelude::*;

    /// Resolves `target` from the directory of `path` by names, as a
    /// stack: `None` when it climbs above the top.
    fn resolve(path: &str, target: &str) -> Option<Vec<String>> {
        let mut stack: Vec<String> = path
            .split('/')
            .filter(|n| !n.is_empty() && *n != ".")
            .map(String::from)
            .collect();
        stack.pop()?;
        for name in target.split('/') {
            match name {
                "" | "." => {}
                ".." => {
                    stack.pop()?;
                }
                other => stack.push(other.to_string()),
            }
        }
        Some(stack)
    }

    #[test]
    fn links_that_climb_out_or_start_at_the_root_are_refused() {
        assert!(link_stays_inside(b"a/link", b"../b").is_ok());
        assert!(link_stays_inside(b"a/link", b"../../b").is_err());
        assert!(
            link_stays_inside(b"a//link", b"../../b").is_err(),
            "empty names are not levels"
        );
        assert!(link_stays_inside(b"./a/./link", b"../../b").is_err());
        assert!(link_stays_inside(b"link", b"/etc/passwd").is_err());
        assert!(link_stays_inside(b"link", b"").is_err());
        assert!(link_stays_inside(b"a/../link", b"x").is_err());
        assert!(link_stays_inside(b"a/link", b"b/../../c").is_ok());
        assert!(link_stays_inside(b"a/link", b"b/../../../c").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn a_link_judged_inside_resolves_inside(
            path in prop::collection::vec(prop::sample::select(vec!["a", "b", ".", ""]), 1..5),
            target in prop::collection::vec(prop::sample::select(vec!["x", "..", ".", ""]), 1..7),
        ) {
            let (path, target) = (path.join("/"), target.join("/"));
            let judged = link_stays_inside(path.as_bytes(), target.as_bytes()).is_ok();
            if judged {
                prop_assert!(resolve(&path, &target).is_some(), "{path:?} -> {target:?}");
            }
            if !target.is_empty() && !target.starts_with('/') && resolve(&path, &target).is_some()
                && path.split('/').any(|n| !n.is_empty() && n != ".")
            {
                prop_assert!(judged, "{path:?} -> {target:?} was refused");
            }
        }
    }
}
