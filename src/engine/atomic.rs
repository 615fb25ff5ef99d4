//! Writes a file so that its final name only ever holds the old file or the
//! complete new one, on either end of a transfer (server `put`, client
//! `get`).
//!
//! Data goes to a partial file *in the destination directory* (so the final
//! rename stays on one filesystem and is atomic), hashed with BLAKE3 as it is
//! written — here, or by a caller that writes with
//! [`PartialFile::write_unhashed`] and hashes on another thread. Sealing
//! checks the hash and sets mode and mtime; publishing
//! renames into place. Between the two the caller makes the data durable:
//! one fsync per file, or one `syncfs` for a whole tree before any rename.
//!
//! A partial file has a reserved name, `.ferry-partial-<id>`, derived from
//! the final name, so running the same transfer again finds it and resumes
//! (the sender checks that its bytes are still a prefix of the source); the
//! file service hides and refuses reserved names, so clients can never name
//! a partial. A disconnect keeps
//! the partial for a later resume; a hash mismatch or a full disk removes it.
//!
//! The name is predictable, so another local user who can write the
//! directory could plant a file there first. A partial is therefore created
//! exclusively with mode 0600, adopted only when this user made it (owner,
//! one link, no group or other bits), and published only while its name
//! still leads to the file this transfer wrote.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, Timespec, Timestamps};

use super::root::{fstat, Kind, RelPath, Root};
use super::sparse::SparseWriter;

/// Names starting with this are partial files: hidden and refused.
pub const PARTIAL_PREFIX: &str = ".ferry-partial-";

/// Whether `name` is reserved for partial files.
pub fn is_reserved_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(PARTIAL_PREFIX.as_bytes())
}

/// Permission bits a transfer may set: never setuid, setgid or sticky.
pub const PRESERVED_MODE_BITS: u32 = 0o777;

/// What identifies the content being received, so a partial is resumed only
/// for the same source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceId {
    /// The source file's length in bytes.
    pub file_size: u64,
    /// The source file's mtime, seconds and nanoseconds.
    pub mtime: (i64, u32),
}

/// Mode and mtime to give the finished file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// Permission bits; masked with [`PRESERVED_MODE_BITS`].
    pub mode: u32,
    /// Modification time, seconds and nanoseconds; `None` leaves the time
    /// of writing.
    pub mtime: Option<(i64, u32)>,
}

impl FileMeta {
    /// What a file gets when the sender's metadata is not kept: the mode a
    /// new file of this process gets (`0666` less the umask), and the time
    /// of writing.
    pub fn fresh() -> FileMeta {
        FileMeta {
            mode: 0o666 & !process_umask(),
            mtime: None,
        }
    }
}

/// This process's umask, read once. Linux shows it in /proc (4.7 and
/// later); reading it with umask(2) would change it for a moment under the
/// other threads.
pub fn process_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status.lines().find_map(|line| {
                    let value = line.strip_prefix("Umask:")?.trim();
                    u32::from_str_radix(value, 8).ok()
                })
            })
            .unwrap_or(0o022)
    })
}

/// Why a received file was not kept.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The data does not hash to what the sender computed.
    #[error("checksum mismatch: the data received does not hash to what the sender computed")]
    HashMismatch,
    /// Another transfer is writing the same partial file right now.
    #[error("another transfer of this file is in progress")]
    Busy,
    /// The filesystem failed (a full disk among others).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<rustix::io::Errno> for WriteError {
    fn from(errno: rustix::io::Errno) -> WriteError {
        WriteError::Io(errno.into())
    }
}

/// The reserved name of the partial file for `final_name` from `source`.
///
/// The name depends on the final name alone, so there is at most one partial
/// per target: a transfer of a changed source reuses (and restarts) it
/// instead of leaving the old one behind. Whether its bytes still fit is
/// settled by the sender, which compares the partial's hash with its own
/// prefix.
pub fn partial_name(final_name: &OsStr) -> OsString {
    let id = blake3::hash(final_name.as_bytes()).to_hex();
    OsString::from(format!("{PARTIAL_PREFIX}{}", &id[..32]))
}

/// Whether a non-empty partial file exists for `final_name`, without
/// creating one: only then is it worth opening (and hashing) to resume.
pub fn has_partial(dir: &OwnedFd, final_name: &OsStr) -> bool {
    let name = partial_name(final_name);
    rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| st.st_size > 0)
        .unwrap_or(false)
}

/// A file being received under its partial name.
#[derive(Debug)]
pub struct PartialFile {
    dir: Arc<OwnedFd>,
    name: OsString,
    final_name: OsString,
    /// Device and inode of the file this transfer created or adopted: only
    /// that file is ever published.
    identity: (u64, u64),
    file: File,
    /// Hashes what is written, from byte 0 (a resumed prefix included).
    hasher: blake3::Hasher,
    /// Bytes accepted, written or still in `sparse`.
    len: u64,
    /// Keeps zero blocks as holes.
    sparse: SparseWriter,
    resumed: u64,
}

impl PartialFile {
    /// Opens the partial file for `target`. With `resume`, an existing
    /// partial of the same source is kept: its bytes are hashed once (the
    /// least that verifies it) and writing continues at its end; see
    /// [`PartialFile::resumed_len`]. Without, any partial starts over.
    pub fn open(
        root: &Root,
        target: &RelPath,
        source: &SourceId,
        resume: bool,
    ) -> Result<PartialFile, WriteError> {
        let (dir, final_name) = root.parent_of(target)?;
        PartialFile::open_in(Arc::new(dir), final_name, source, resume)
    }

    /// [`PartialFile::open`] for `final_name` in an open directory, so a
    /// tree's files can share one handle on their directory.
    pub fn open_in(
        dir: Arc<OwnedFd>,
        final_name: &OsStr,
        source: &SourceId,
        resume: bool,
    ) -> Result<PartialFile, WriteError> {
        if is_reserved_name(final_name) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "reserved file name").into());
        }
        let name = partial_name(final_name);
        let fd = open_own_partial(&dir, &name)?;
        // Two transfers of one file to one place would interleave their
        // bytes; the lock makes the second one fail clearly instead.
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(WriteError::Busy);
        }
        let st = fstat(&fd)?;
        let mut partial = PartialFile {
            dir,
            name,
            final_name: final_name.to_os_string(),
            identity: st.dev_ino,
            file: File::from(fd),
            hasher: blake3::Hasher::new(),
            len: 0,
            sparse: SparseWriter::default(),
            resumed: 0,
        };
        if resume && st.len > 0 && st.len <= source.file_size {
            partial.hash_existing(st.len)?;
        } else if st.len > 0 {
            partial.restart()?;
        }
        Ok(partial)
    }

    fn hash_existing(&mut self, len: u64) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        let mut reader = (&self.file).take(len);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buf[..n]);
            self.len += n as u64;
        }
        if self.len != len {
            return self.restart();
        }
        self.resumed = len;
        self.sparse = SparseWriter::at(len);
        self.file.seek(SeekFrom::Start(len))?;
        Ok(())
    }

    /// Bytes kept from an earlier attempt; the sender continues from here.
    pub fn resumed_len(&self) -> u64 {
        self.resumed
    }

    /// The BLAKE3 of the bytes kept from an earlier attempt, for the sender
    /// to compare with its own prefix.
    pub fn resumed_hash(&self) -> blake3::Hash {
        self.hasher.finalize()
    }

    /// The hash state of what was written so far (a resumed prefix), for
    /// a caller that hashes the rest itself.
    pub fn hasher(&self) -> blake3::Hasher {
        self.hasher.clone()
    }

    /// Drops whatever was kept and starts from byte 0.
    pub fn restart(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.hasher = blake3::Hasher::new();
        self.len = 0;
        self.sparse = SparseWriter::default();
        self.resumed = 0;
        Ok(())
    }

    /// Bytes written so far, resumed ones included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `chunk`, hashing it. A full disk removes the partial: it
    /// could never complete, and it holds space the user needs.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), WriteError> {
        self.hasher.update(chunk);
        self.write_unhashed(chunk)
    }

    /// [`PartialFile::write`] for a caller that hashes every byte itself
    /// (starting from [`PartialFile::hasher`]) and seals with
    /// [`PartialFile::seal_hashed`]. [`PartialFile::seal`] would miss these
    /// bytes, find a mismatch, and refuse the file.
    pub fn write_unhashed(&mut self, chunk: &[u8]) -> Result<(), WriteError> {
        if let Err(err) = self.sparse.write(&mut self.file, chunk) {
            if err.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
                self.remove();
            }
            return Err(err.into());
        }
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Checks the hash and sets mode and mtime; the data is not yet durable
    /// nor under its final name. On a mismatch the partial is removed.
    pub fn seal(self, expected: &blake3::Hash, meta: &FileMeta) -> Result<SealedFile, WriteError> {
        let hash = self.hasher.finalize();
        self.seal_hashed(&hash, expected, meta)
    }

    /// [`PartialFile::seal`] for a caller that hashed the data itself:
    /// `received` is its hash of every byte, a resumed prefix included.
    pub fn seal_hashed(
        mut self,
        received: &blake3::Hash,
        expected: &blake3::Hash,
        meta: &FileMeta,
    ) -> Result<SealedFile, WriteError> {
        let hash = *received;
        if &hash != expected {
            self.remove();
            return Err(WriteError::HashMismatch);
        }
        // A file that cannot be finished (a full disk for its last block, a
        // time the filesystem refuses) is given up on, never left behind.
        if let Err(err) = self.finish(meta) {
            self.remove();
            return Err(err.into());
        }
        Ok(SealedFile {
            dir: self.dir,
            name: self.name,
            final_name: self.final_name,
            identity: self.identity,
            file: Some(self.file),
            hash,
        })
    }

    /// Writes the last partial block and sets mode and mtime.
    fn finish(&mut self, meta: &FileMeta) -> io::Result<()> {
        self.sparse.finish(&mut self.file, self.len)?;
        set_meta(&self.file, meta)
    }

    /// [`PartialFile::seal`] for a sender that sends no hash (the socket
    /// tutorial's put frame): there is nothing to check, and the hash of
    /// what arrived is the file's.
    pub fn seal_as_received(self, meta: &FileMeta) -> Result<SealedFile, WriteError> {
        let hash = self.hasher.finalize();
        self.seal_hashed(&hash, &hash, meta)
    }

    /// Makes every byte accepted so far part of the file on disk (the
    /// block still being assembled written, a trailing hole given its
    /// length), so the file's length is the offset a resume starts from.
    /// Writing goes on after it: a resumable upload commits after each
    /// chunk.
    pub fn commit(&mut self) -> io::Result<()> {
        self.sparse.finish(&mut self.file, self.len)?;
        self.sparse = SparseWriter::at(self.len);
        Ok(())
    }

    /// Where the file stands now, to come back to with
    /// [`PartialFile::rollback`]; take it right after a commit.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            len: self.len,
            hasher: self.hasher.clone(),
        }
    }

    /// Drops what was written since `checkpoint` (a chunk that failed its
    /// checksum), bytes and hash state alike.
    pub fn rollback(&mut self, checkpoint: Checkpoint) -> io::Result<()> {
        self.file.set_len(checkpoint.len)?;
        self.file.seek(SeekFrom::Start(checkpoint.len))?;
        self.hasher = checkpoint.hasher;
        self.len = checkpoint.len;
        self.sparse = SparseWriter::at(checkpoint.len);
        Ok(())
    }

    /// Keeps what arrived for a later resume: writes out the block still
    /// being assembled and closes the file. Call it when a transfer stops
    /// early; a partial file that is only dropped may lose its last few KiB
    /// (a resume then sends them again).
    pub fn suspend(mut self) {
        let _ = self.sparse.flush_tail(&mut self.file);
    }

    /// Removes the partial file (best effort: it is being given up on).
    pub fn remove(&mut self) {
        let _ = rustix::fs::unlinkat(&self.dir, &self.name, AtFlags::empty());
    }
}

/// A partial file's length and hash state at one moment.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    len: u64,
    hasher: blake3::Hasher,
}

/// Device and inode of `name` in `dir` itself (a symlink is not followed).
pub(super) fn identity_at(dir: &OwnedFd, name: &OsStr) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok((st.st_dev, st.st_ino))
}

/// Opens the partial file `name` in `dir` for this transfer: created
/// exclusively with mode 0600 when there is none, or an existing one
/// adopted (to resume it) only if this user made it: a regular file owned
/// by us, with one link and no group or other permission bits. Anything
/// else at that name was planted by someone who can write the directory
/// (to read the upload through it, or to own the published file); it is
/// removed and a fresh partial created in its place.
pub(super) fn open_own_partial(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let create = || {
        rustix::fs::openat(
            dir,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    match create() {
        Ok(fd) => return Ok(fd),
        Err(errno) if errno != rustix::io::Errno::EXIST => return Err(errno.into()),
        Err(_) => {}
    }
    // O_NONBLOCK: a FIFO planted under the name must not block the open.
    let existing = rustix::fs::openat(
        dir,
        name,
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    );
    if let Ok(fd) = existing {
        let st = rustix::fs::fstat(&fd)?;
        let ours = Kind::of(st.st_mode) == Kind::File
            && st.st_uid == rustix::process::geteuid().as_raw()
            && st.st_nlink == 1
            && st.st_mode & 0o077 == 0;
        if ours {
            clear_nonblocking(&fd)?;
            return Ok(fd);
        }
    }
    // Not ours (or a symlink, or unopenable): take the name back, once.
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => {}
        Err(errno) if errno == rustix::io::Errno::ISDIR => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a directory is in the way of the partial file; remove it",
            ))
        }
        Err(errno) if errno != rustix::io::Errno::NOENT => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("a partial file that another user planted is in the way and cannot be removed ({errno}); remove it"),
            ))
        }
        Err(_) => {}
    }
    Ok(create()?)
}

fn clear_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags - OFlags::NONBLOCK)?;
    Ok(())
}

/// A verified file under its partial name, ready to be made durable and
/// published.
#[derive(Debug)]
pub struct SealedFile {
    dir: Arc<OwnedFd>,
    name: OsString,
    final_name: OsString,
    identity: (u64, u64),
    /// The open file, until [`SealedFile::close`]: only [`SealedFile::sync`]
    /// needs it.
    file: Option<File>,
    hash: blake3::Hash,
}

impl SealedFile {
    /// A file written and checked elsewhere in this module's tree (a
    /// ranged partial), to be published with the same checks.
    pub(super) fn of_parts(
        dir: Arc<OwnedFd>,
        (name, final_name): (OsString, OsString),
        identity: (u64, u64),
        file: File,
        hash: blake3::Hash,
    ) -> SealedFile {
        SealedFile {
            dir,
            name,
            final_name,
            identity,
            file: Some(file),
            hash,
        }
    }

    /// The file's BLAKE3.
    pub fn hash(&self) -> blake3::Hash {
        self.hash
    }

    /// Makes this file's data durable (skip it when the caller syncs the
    /// whole filesystem once for many files).
    pub fn sync(&self) -> io::Result<()> {
        match &self.file {
            Some(file) => file.sync_all(),
            None => Err(io::Error::other(
                "the sealed file was closed before its sync",
            )),
        }
    }

    /// Closes the file, for a caller that makes a batch durable with one
    /// `syncfs` instead: a batch of thousands of files then holds no
    /// descriptor for each. Publishing still checks the file by its device
    /// and inode.
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Renames the file into place, replacing what was there. With
    /// `sync_dir`, the directory entry is made durable too.
    ///
    /// Only the file this transfer wrote is published: if the partial's
    /// name leads to another file (someone who can write the directory
    /// swapped it), nothing is renamed; if the final name leads elsewhere
    /// right after the rename, the publish is reported as failed.
    pub fn publish(self, sync_dir: bool) -> io::Result<()> {
        let swapped = || {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the partial file was replaced by someone else while it was written; not kept",
            )
        };
        if identity_at(&self.dir, &self.name)? != self.identity {
            return Err(swapped());
        }
        rustix::fs::renameat(&self.dir, &self.name, &self.dir, &self.final_name)?;
        if identity_at(&self.dir, &self.final_name)? != self.identity {
            return Err(swapped());
        }
        if sync_dir {
            rustix::fs::fsync(&self.dir)?;
        }
        Ok(())
    }

    /// The handle on the destination directory.
    pub fn dir(&self) -> &Arc<OwnedFd> {
        &self.dir
    }
}

/// Removes the partial files in `dir` that were last written more than
/// `max_age` before `now` and that no transfer holds: a transfer that is
/// never run again would otherwise leave its partial, hidden from `ls`,
/// for good. Returns how many were removed.
///
/// A partial is opened without following links or blocking (a FIFO planted
/// under a reserved name is skipped), locked as a transfer would lock it,
/// and removed only if the name still leads to the locked file; so a
/// transfer resuming it at the same moment either holds the lock first
/// (and the partial stays) or finds it gone and starts afresh.
pub fn sweep_stale_partials(
    dir: &OwnedFd,
    max_age: std::time::Duration,
    now: std::time::SystemTime,
) -> io::Result<usize> {
    let Some(cutoff) = now.checked_sub(max_age) else {
        return Ok(0);
    };
    let cutoff = cutoff
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut removed = 0;
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if !is_reserved_name(name) {
            continue;
        }
        let Ok(fd) = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue; // a symlink, or gone already: not ours to judge
        };
        let Ok(st) = fstat(&fd) else { continue };
        if st.kind != Kind::File || st.mtime.0 >= cutoff {
            continue;
        }
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue; // a transfer holds it
        }
        let still_ours = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|now| super::root::Stat::from_raw(&now).dev_ino == st.dev_ino);
        if still_ours && rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Gives a written file the mode bits ferry keeps and, if the sender sent
/// one, its mtime: every partial file, whole or striped, is finished so.
pub(super) fn set_meta(file: &File, meta: &FileMeta) -> io::Result<()> {
    let mode = meta.mode & PRESERVED_MODE_BITS;
    rustix::fs::fchmod(file, Mode::from_raw_mode(mode))?;
    if let Some((secs, nanos)) = meta.mtime {
        let time = Timespec {
            tv_sec: secs,
            tv_nsec: nanos as _,
        };
        rustix::fs::futimens(
            file,
            &Timestamps {
                last_access: time,
                last_modification: time,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn setup() -> (tempfile::TempDir, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path()).unwrap();
        (tmp, root)
    }

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).unwrap()
    }

    const SOURCE: SourceId = SourceId {
        file_size: 11,
        mtime: (1_700_000_000, 5),
    };

    fn names(tmp: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_appears_under_its_final_name_only_when_published() {
        let (tmp, root) = setup();
        std::fs::write(tmp.path().join("f"), b"old").unwrap();
        let mut partial = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        partial.write(b"hello ").unwrap();
        partial.write(b"world").unwrap();
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"old");
        let meta = FileMeta {
            mode: 0o4755,
            mtime: Some((1_600_000_000, 123)),
        };
        let sealed = partial.seal(&blake3::hash(b"hello world"), &meta).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"old");
        sealed.sync().unwrap();
        sealed.publish(true).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"hello world");
        let md = std::fs::metadata(tmp.path().join("f")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o755, "setuid is never kept");
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123));
        assert_eq!(names(&tmp), vec!["f"], "no partial left behind");
    }

    #[test]
    fn a_commit_puts_every_byte_on_disk_and_a_rollback_forgets_a_chunk() {
        let (tmp, root) = setup();
        let source = SourceId {
            file_size: 1 << 20,
            mtime: (0, 0),
        };
        let mut partial = PartialFile::open(&root, &rel("f"), &source, false).unwrap();
        // Zeros the sparse writer would hold back or seek over, then text.
        let first = [vec![0u8; 70_000], b"abc".to_vec()].concat();
        partial.write(&first).unwrap();
        partial.commit().unwrap();
        let on_disk = |tmp: &tempfile::TempDir| {
            std::fs::read(tmp.path().join(partial_name(OsStr::new("f")))).unwrap()
        };
        assert_eq!(on_disk(&tmp), first);
        let checkpoint = partial.checkpoint();
        partial.write(b"a chunk that failed its checksum").unwrap();
        partial.commit().unwrap();
        partial.rollback(checkpoint).unwrap();
        assert_eq!(
            (partial.len(), on_disk(&tmp)),
            (first.len() as u64, first.clone())
        );
        partial.write(&[0u8; 70_000]).unwrap();
        partial.commit().unwrap();
        let whole = [first, vec![0u8; 70_000]].concat();
        assert_eq!(on_disk(&tmp), whole, "a trailing hole is given its length");
        let sealed = partial
            .seal(&blake3::hash(&whole), &FileMeta::fresh())
            .unwrap();
        sealed.publish(false).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), whole);
    }

    #[test]
    fn a_checksum_mismatch_keeps_the_old_file_and_removes_the_partial() {
        let (tmp, root) = setup();
        std::fs::write(tmp.path().join("f"), b"old").unwrap();
        let mut partial = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        partial.write(b"corrupted!!").unwrap();
        let err = partial
            .seal(&blake3::hash(b"hello world"), &FileMeta::fresh())
            .unwrap_err();
        assert!(matches!(err, WriteError::HashMismatch));
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"old");
        assert_eq!(names(&tmp), vec!["f"]);
    }

    #[test]
    fn an_interrupted_write_resumes_from_the_kept_prefix() {
        let (tmp, root) = setup();
        let mut first = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        first.write(b"hello").unwrap();
        first.suspend(); // the connection died
        assert!(!tmp.path().join("f").exists());
        let mut again = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        assert_eq!(again.resumed_len(), 5);
        assert_eq!(again.resumed_hash(), blake3::hash(b"hello"));
        again.write(b" world").unwrap();
        let sealed = again
            .seal(&blake3::hash(b"hello world"), &FileMeta::fresh())
            .unwrap();
        sealed.publish(false).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"hello world");
    }

    #[test]
    fn a_caller_that_hashes_itself_seals_with_its_hash_and_seal_refuses_it() {
        let (tmp, root) = setup();
        let mut first = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        first.write(b"hello").unwrap();
        first.suspend();
        let mut again = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        let mut hasher = again.hasher();
        hasher.update(b" world");
        again.write_unhashed(b" world").unwrap();
        let expected = blake3::hash(b"hello world");
        assert_eq!(hasher.finalize(), expected, "the prefix was in the hasher");
        let sealed = again
            .seal_hashed(&hasher.finalize(), &expected, &FileMeta::fresh())
            .unwrap();
        sealed.publish(false).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"hello world");

        // A hash that does not match removes the partial.
        let mut other = PartialFile::open(&root, &rel("g"), &SOURCE, true).unwrap();
        other.write_unhashed(b"data").unwrap();
        assert!(matches!(
            other.seal_hashed(
                &blake3::hash(b"other"),
                &blake3::hash(b"data"),
                &FileMeta::fresh()
            ),
            Err(WriteError::HashMismatch)
        ));
        // `seal` after unhashed writes sees a hash without them: refused.
        let mut third = PartialFile::open(&root, &rel("h"), &SOURCE, true).unwrap();
        third.write_unhashed(b"data").unwrap();
        assert!(matches!(
            third.seal(&blake3::hash(b"data"), &FileMeta::fresh()),
            Err(WriteError::HashMismatch)
        ));
        assert_eq!(names(&tmp), ["f"], "no partial left behind");
    }

    #[test]
    fn a_partial_longer_than_the_source_or_no_resume_starts_over() {
        let (_tmp, root) = setup();
        let mut first = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        first.write(b"hello").unwrap();
        first.suspend();
        let shorter = SourceId {
            file_size: 3,
            ..SOURCE
        };
        assert_eq!(
            PartialFile::open(&root, &rel("f"), &shorter, true)
                .unwrap()
                .resumed_len(),
            0
        );
        assert_eq!(
            PartialFile::open(&root, &rel("f"), &SOURCE, false)
                .unwrap()
                .resumed_len(),
            0
        );
    }

    #[test]
    fn only_a_partial_this_user_made_is_resumed() {
        use std::os::unix::fs::PermissionsExt;
        let (tmp, root) = setup();
        let partial_path = tmp.path().join(partial_name(OsStr::new("f")));
        let plant = |mode: u32, owner: Option<u32>| {
            let _ = std::fs::remove_file(&partial_path);
            std::fs::write(&partial_path, b"hello").unwrap();
            std::fs::set_permissions(&partial_path, std::fs::Permissions::from_mode(mode)).unwrap();
            if owner.is_some() {
                std::os::unix::fs::chown(&partial_path, owner, owner).unwrap();
            }
            std::fs::File::open(&partial_path).unwrap()
        };
        // Ours: resumed.
        plant(0o600, None);
        let resumed = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        assert_eq!(resumed.resumed_len(), 5);
        drop(resumed);
        // Readable by others, or another user's: replaced, never written.
        for (mode, owner) in [(0o644, None), (0o600, Some(65534))] {
            if owner.is_some() && !rustix::process::geteuid().is_root() {
                continue; // only root can give a file away
            }
            let foreign = plant(mode, owner);
            let mut partial = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
            assert_eq!(partial.resumed_len(), 0, "mode {mode:o} owner {owner:?}");
            partial.write(b"secret data").unwrap();
            partial.suspend();
            assert_eq!(foreign.metadata().unwrap().len(), 5, "written through");
            let md = std::fs::metadata(&partial_path).unwrap();
            assert_eq!(md.mode() & 0o777, 0o600);
            assert_ne!(md.ino(), foreign.metadata().unwrap().ino());
        }
    }

    #[test]
    fn a_file_that_cannot_be_finished_leaves_no_partial() {
        let (tmp, root) = setup();
        let mut partial = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        partial.write(b"hello world").unwrap();
        let refused_time = FileMeta {
            mode: 0o644,
            mtime: Some((0, 2_000_000_000)),
        };
        let sealed = partial.seal(&blake3::hash(b"hello world"), &refused_time);
        assert!(matches!(sealed, Err(WriteError::Io(_))), "{sealed:?}");
        assert_eq!(names(&tmp), Vec::<String>::new());
    }

    #[test]
    fn a_partial_swapped_for_another_file_is_not_published() {
        let (tmp, root) = setup();
        let mut partial = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        partial.write(b"hello world").unwrap();
        let sealed = partial
            .seal(&blake3::hash(b"hello world"), &FileMeta::fresh())
            .unwrap();
        let partial_path = tmp.path().join(partial_name(OsStr::new("f")));
        std::fs::remove_file(&partial_path).unwrap();
        std::fs::write(&partial_path, b"planted").unwrap();
        assert!(sealed.publish(false).is_err());
        assert!(
            !tmp.path().join("f").exists(),
            "the planted file was published"
        );
    }

    #[test]
    fn two_writers_of_one_partial_are_refused() {
        let (_tmp, root) = setup();
        let _first = PartialFile::open(&root, &rel("f"), &SOURCE, true).unwrap();
        let second = PartialFile::open(&root, &rel("f"), &SOURCE, true);
        assert!(matches!(second, Err(WriteError::Busy)));
    }

    #[test]
    fn zero_runs_become_holes_and_the_content_is_exact() {
        let (tmp, root) = setup();
        let source = SourceId {
            file_size: 3 * 1024 * 1024 + 3,
            mtime: (0, 0),
        };
        let mut content = vec![0u8; 3 * 1024 * 1024];
        content.extend_from_slice(b"end");
        let mut partial = PartialFile::open(&root, &rel("sparse"), &source, true).unwrap();
        for chunk in content.chunks(64 * 1024) {
            partial.write(chunk).unwrap();
        }
        partial
            .seal(&blake3::hash(&content), &FileMeta::fresh())
            .unwrap()
            .publish(false)
            .unwrap();
        let path = tmp.path().join("sparse");
        assert_eq!(std::fs::read(&path).unwrap(), content);
        let md = std::fs::metadata(&path).unwrap();
        assert!(
            md.blocks() * 512 < 1024 * 1024,
            "{} blocks allocated",
            md.blocks()
        );
    }

    #[test]
    fn holes_are_found_whatever_the_chunk_edges() {
        let (tmp, root) = setup();
        let mut content = vec![1u8; 1000];
        content.extend(vec![0u8; 2 * 1024 * 1024]);
        content.extend(vec![2u8; 5000]);
        content.extend(vec![0u8; 1024 * 1024]);
        let source = SourceId {
            file_size: content.len() as u64,
            mtime: (0, 0),
        };
        let mut partial = PartialFile::open(&root, &rel("odd"), &source, true).unwrap();
        // Chunks of odd sizes, as socket reads come.
        let mut pos = 0;
        for size in [1, 4095, 4097, 7777, 65_521].iter().cycle() {
            if pos >= content.len() {
                break;
            }
            let end = (pos + size).min(content.len());
            partial.write(&content[pos..end]).unwrap();
            pos = end;
        }
        partial
            .seal(&blake3::hash(&content), &FileMeta::fresh())
            .unwrap()
            .publish(false)
            .unwrap();
        let path = tmp.path().join("odd");
        assert_eq!(std::fs::read(&path).unwrap(), content);
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(allocated < 256 * 1024, "{allocated} bytes allocated");
    }

    #[test]
    fn a_trailing_hole_keeps_the_length() {
        let (tmp, root) = setup();
        let content = vec![0u8; 8192];
        let source = SourceId {
            file_size: 8192,
            mtime: (0, 0),
        };
        let mut partial = PartialFile::open(&root, &rel("z"), &source, true).unwrap();
        partial.write(&content).unwrap();
        partial
            .seal(&blake3::hash(&content), &FileMeta::fresh())
            .unwrap()
            .publish(false)
            .unwrap();
        assert_eq!(std::fs::read(tmp.path().join("z")).unwrap(), content);
    }

    /// Sets `path`'s mtime (of a link itself, not its target) `days` back.
    fn age(path: &std::path::Path, days: u64) {
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400);
        let secs = then
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let time = Timespec {
            tv_sec: secs as i64,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    #[test]
    fn stale_partials_are_swept_and_held_fresh_or_foreign_ones_are_not() {
        let (tmp, root) = setup();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let dir = tmp.path();
        // Abandoned a week and a day ago: swept.
        let mut old = PartialFile::open(&root, &rel("old"), &SOURCE, true).unwrap();
        old.write(b"abandoned").unwrap();
        old.suspend();
        age(&dir.join(partial_name(OsStr::new("old"))), 8);
        // Written an hour ago: a transfer may still resume it.
        let mut fresh = PartialFile::open(&root, &rel("fresh"), &SOURCE, true).unwrap();
        fresh.write(b"recent").unwrap();
        fresh.suspend();
        // Old, but a transfer holds it right now.
        let mut held = PartialFile::open(&root, &rel("held"), &SOURCE, true).unwrap();
        held.write(b"in use").unwrap();
        age(&dir.join(partial_name(OsStr::new("held"))), 8);
        // Not partial files, or not files: left alone.
        std::fs::write(dir.join("user-file"), b"mine").unwrap();
        age(&dir.join("user-file"), 30);
        std::os::unix::fs::symlink(&victim, dir.join(".ferry-partial-link")).unwrap();
        age(&dir.join(".ferry-partial-link"), 30);
        std::fs::create_dir(dir.join(".ferry-partial-dir")).unwrap();
        age(&dir.join(".ferry-partial-dir"), 30);
        let before = names(&tmp);

        let handle = root.open_dir(&RelPath::root()).unwrap();
        let week = std::time::Duration::from_secs(7 * 86_400);
        let now = std::time::SystemTime::now();
        assert_eq!(sweep_stale_partials(&handle, week, now).unwrap(), 1);
        let mut expected = before.clone();
        expected.retain(|n| *n != partial_name(OsStr::new("old")).to_string_lossy());
        assert_eq!(names(&tmp), expected);
        assert_eq!(expected.len(), before.len() - 1);
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");

        // Once the transfer lets go, the old one it held goes too.
        drop(held);
        assert_eq!(sweep_stale_partials(&handle, week, now).unwrap(), 1);
        assert!(!dir.join(partial_name(OsStr::new("held"))).exists());
        assert!(dir.join(partial_name(OsStr::new("fresh"))).exists());
    }

    #[test]
    fn reserved_names_are_recognised_and_refused_as_targets() {
        let name = partial_name(OsStr::new("f"));
        assert!(is_reserved_name(&name));
        assert!(!is_reserved_name(OsStr::new("f")));
        let (_tmp, root) = setup();
        let target = RelPath::parse(name.as_bytes()).unwrap();
        assert!(PartialFile::open(&root, &target, &SOURCE, true).is_err());
    }
}
