//! Confines every file operation to the served root. Paths are resolved by
//! the kernel beneath a directory handle opened once at startup (`openat2`
//! with `RESOLVE_BENEATH`), so `..`, absolute paths and symlinks that lead
//! out of the root fail in the kernel, even if a symlink is swapped in while
//! we work. Operations on a final name (create, rename, unlink, mkdir) run
//! relative to a confined handle on its parent directory and never follow a
//! symlink in that name. Nothing here compares path strings to decide what
//! is inside: [`RelPath`] only rejects names that can never be valid, so the
//! user gets a clear error before any system call.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use super::dirs::DirChain;

/// Longest single name accepted, in bytes (Linux's NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest relative path accepted, in bytes (Linux's PATH_MAX less room).
pub const MAX_PATH_BYTES: usize = 4000;

/// Resolution rules for every lookup: stay beneath the root, and never
/// through /proc magic links.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// A relative path inside the root, as a list of plain names: no `..`, no
/// `.`, no empty names, no NUL, not absolute, within the length limits.
/// The empty path is the root itself.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct RelPath {
    names: Vec<OsString>,
}

/// Why a client-supplied path was refused before touching the disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Starts with `/`.
    #[error("absolute paths are not allowed; name a path inside the served root")]
    Absolute,
    /// Has a `..` component.
    #[error("`..` is not allowed in paths")]
    DotDot,
    /// Contains a NUL byte.
    #[error("paths cannot contain NUL bytes")]
    Nul,
    /// A name or the whole path is too long.
    #[error("path too long (names up to {MAX_NAME_BYTES} bytes, paths up to {MAX_PATH_BYTES})")]
    TooLong,
}

impl RelPath {
    /// The root itself.
    pub fn root() -> RelPath {
        RelPath::default()
    }

    /// Parses a path a peer sent. `a//b/./c/` is `a/b/c`.
    pub fn parse(raw: &[u8]) -> Result<RelPath, PathError> {
        let names = split_names(raw)?
            .into_iter()
            .map(OsStr::to_os_string)
            .collect();
        Ok(RelPath { names })
    }

    /// Whether this is the root itself.
    pub fn is_root(&self) -> bool {
        self.names.is_empty()
    }

    /// The last name, `None` for the root.
    pub fn file_name(&self) -> Option<&OsStr> {
        self.names.last().map(OsString::as_os_str)
    }

    /// The path without its last name.
    pub fn parent(&self) -> RelPath {
        let mut names = self.names.clone();
        names.pop();
        RelPath { names }
    }

    /// This path with one more plain name (which must not contain `/`).
    pub fn join(&self, name: &OsStr) -> Result<RelPath, PathError> {
        let bytes = name.as_bytes();
        if bytes.contains(&b'/') || bytes == b".." || bytes == b"." || bytes.is_empty() {
            return Err(PathError::DotDot);
        }
        let mut joined = self.clone();
        joined.names.extend(RelPath::parse(bytes)?.names);
        if joined.to_bytes().len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        Ok(joined)
    }

    /// This path followed by `rest`, checked once for length (where a
    /// [`RelPath::join`] per name would copy the path each time).
    pub fn concat(&self, rest: &RelPath) -> Result<RelPath, PathError> {
        let mut names = Vec::with_capacity(self.names.len() + rest.names.len());
        names.extend_from_slice(&self.names);
        names.extend_from_slice(&rest.names);
        let joined = RelPath { names };
        let bytes: usize = joined.names.iter().map(|n| n.len() + 1).sum();
        if bytes > MAX_PATH_BYTES + 1 {
            return Err(PathError::TooLong);
        }
        Ok(joined)
    }

    /// The names, in order.
    pub fn names(&self) -> &[OsString] {
        &self.names
    }

    /// The path as bytes, `a/b/c`; empty for the root.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.names
            .iter()
            .map(|n| n.as_bytes())
            .collect::<Vec<_>>()
            .join(&b'/')
    }

    /// The path as a relative filesystem path (empty for the root).
    pub fn to_path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(OsString::from_vec(self.to_bytes()))
    }

    /// The path for a system call relative to the root: `.` for the root.
    fn as_syscall_path(&self) -> OsString {
        if self.names.is_empty() {
            OsString::from(".")
        } else {
            OsString::from_vec(self.to_bytes())
        }
    }
}

/// The names of a path a peer sent, borrowed from it, checked as
/// [`RelPath::parse`] checks them: for walks that visit many paths and
/// should not copy every name of each.
pub fn split_names(raw: &[u8]) -> Result<Vec<&OsStr>, PathError> {
    if raw.contains(&0) {
        return Err(PathError::Nul);
    }
    if raw.first() == Some(&b'/') {
        return Err(PathError::Absolute);
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let mut names = Vec::new();
    for name in raw.split(|&b| b == b'/') {
        match name {
            b"" | b"." => continue,
            b".." => return Err(PathError::DotDot),
            name if name.len() > MAX_NAME_BYTES => return Err(PathError::TooLong),
            name => names.push(OsStr::from_bytes(name)),
        }
    }
    Ok(names)
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug escapes control characters: safe for logs.
        write!(f, "{:?}", String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// The served root: a directory handle every operation resolves beneath.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
}

/// What a path names, for the file service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink (seen only where links are not followed).
    Symlink,
    /// A FIFO, socket or device: never served.
    Special,
}

impl Kind {
    /// The kind a raw `st_mode` describes.
    pub fn of(mode: u32) -> Kind {
        match rustix::fs::FileType::from_raw_mode(mode) {
            rustix::fs::FileType::RegularFile => Kind::File,
            rustix::fs::FileType::Directory => Kind::Dir,
            rustix::fs::FileType::Symlink => Kind::Symlink,
            _ => Kind::Special,
        }
    }
}

/// The facts the file service reports about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// What it is.
    pub kind: Kind,
    /// Length in bytes (0 for directories).
    pub len: u64,
    /// Permission bits (the low 12 bits of st_mode).
    pub mode: u32,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    /// Device and inode, to tell whether two handles name one file.
    pub dev_ino: (u64, u64),
}

impl Stat {
    /// Reads a raw `stat` result.
    pub fn from_raw(st: &rustix::fs::Stat) -> Stat {
        Stat {
            kind: Kind::of(st.st_mode),
            len: if Kind::of(st.st_mode) == Kind::File {
                st.st_size as u64
            } else {
                0
            },
            mode: st.st_mode & 0o7777,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            dev_ino: (st.st_dev, st.st_ino),
        }
    }
}

/// Stat of an open handle.
pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    Ok(Stat::from_raw(&rustix::fs::fstat(fd)?))
}

impl Root {
    /// Opens the root directory once; every later call resolves beneath it.
    pub fn new(path: &Path) -> io::Result<Root> {
        let dir = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { dir })
    }

    /// The directory `path` beneath this root as a root of its own: what
    /// it confines to is that directory.
    pub fn subdir(&self, path: &RelPath) -> io::Result<Root> {
        Ok(Root {
            dir: self.open_dir(path)?,
        })
    }

    /// Opens `path` beneath the root with `flags`. Symlinks are followed
    /// only while they stay beneath the root.
    pub fn open(&self, path: &RelPath, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat2(
            &self.dir,
            path.as_syscall_path(),
            flags | OFlags::CLOEXEC,
            mode,
            BENEATH,
        )?)
    }

    /// Opens a directory beneath the root.
    pub fn open_dir(&self, path: &RelPath) -> io::Result<OwnedFd> {
        self.open(path, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
    }

    /// A confined handle on `path`'s parent directory and `path`'s last
    /// name, for operations that must not follow a symlink in that name.
    /// Refuses the root itself, which has no name in the root.
    pub fn parent_of<'p>(&self, path: &'p RelPath) -> io::Result<(OwnedFd, &'p OsStr)> {
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the root itself cannot be the target",
            )
        })?;
        Ok((self.open_dir(&path.parent())?, name))
    }

    /// Facts about `path`, following symlinks that stay beneath the root.
    pub fn stat(&self, path: &RelPath) -> io::Result<Stat> {
        let fd = self.open(path, OFlags::PATH, Mode::empty())?;
        fstat(&fd)
    }

    /// Facts about `path` itself: a symlink is reported as one.
    pub fn lstat(&self, path: &RelPath) -> io::Result<Stat> {
        if path.is_root() {
            return fstat(&self.dir);
        }
        let (parent, name) = self.parent_of(path)?;
        Ok(Stat::from_raw(&rustix::fs::statat(
            &parent,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
        )?))
    }

    /// Creates one directory.
    pub fn mkdir(&self, path: &RelPath, mode: u32) -> io::Result<()> {
        let (parent, name) = self.parent_of(path)?;
        Ok(rustix::fs::mkdirat(
            &parent,
            name,
            Mode::from_raw_mode(mode),
        )?)
    }

    /// Creates a directory and any missing parents; existing directories
    /// are fine, anything else in the way is an error.
    pub fn mkdir_all(&self, path: &RelPath, mode: u32) -> io::Result<()> {
        let mut partial = RelPath::root();
        for name in path.names() {
            partial.names.push(name.clone());
            match self.mkdir(&partial, mode) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    if self.stat(&partial)?.kind != Kind::Dir {
                        return Err(rustix::io::Errno::NOTDIR.into());
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Removes a file, symlink or empty directory (never what a symlink
    /// points to).
    pub fn remove(&self, path: &RelPath) -> io::Result<()> {
        let (parent, name) = self.parent_of(path)?;
        let st = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let flags = if Kind::of(st.st_mode) == Kind::Dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        Ok(rustix::fs::unlinkat(&parent, name, flags)?)
    }

    /// Removes `path` and, if it is a directory, everything under it.
    /// Symlinks are removed, never followed. Returns how many entries went.
    pub fn remove_all(&self, path: &RelPath) -> io::Result<u64> {
        let (parent, name) = self.parent_of(path)?;
        remove_tree_at(parent.as_fd(), name)
    }

    /// Renames within the root. A symlink at `to` is replaced, not followed.
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let (from_parent, from_name) = self.parent_of(from)?;
        let (to_parent, to_name) = self.parent_of(to)?;
        Ok(rustix::fs::renameat(
            &from_parent,
            from_name,
            &to_parent,
            to_name,
        )?)
    }

    /// The names in a directory, without `.` and `..`, unsorted.
    pub fn list(&self, path: &RelPath) -> io::Result<Vec<OsString>> {
        list_fd(self.open_dir(path)?)
    }

    /// The root's own handle, for fsync of the root directory.
    pub fn handle(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

/// The names in an open directory, without `.` and `..`.
pub fn list_fd(dir: OwnedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    Ok(names)
}

/// Removes `name` in `parent` and everything under it, depth first,
/// through a [`DirChain`]: each directory is listed once, its other
/// entries unlinked, and its subdirectories entered with `O_NOFOLLOW`, so a
/// symlink swapped in cannot redirect the removal, a deep tree costs time
/// linear in its entries, and the descriptors held stay bounded.
fn remove_tree_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<u64> {
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if Kind::of(st.st_mode) != Kind::Dir {
        rustix::fs::unlinkat(parent, name, AtFlags::empty())?;
        return Ok(1);
    }
    let mut chain = DirChain::new(rustix::io::fcntl_dupfd_cloexec(parent, 0)?)?;
    // The directories from `name` down to the one being emptied, each with
    // the subdirectories it still holds.
    let mut path: Vec<OsString> = vec![name.to_os_string()];
    let mut pending: Vec<Vec<OsString>> = Vec::new();
    let mut removed = 0;
    let dir = chain.enter(&path)?;
    pending.push(empty_but_subdirs(&dir, &mut removed)?);
    loop {
        let next = pending.last_mut().and_then(Vec::pop);
        if let Some(subdir) = next {
            path.push(subdir);
            let dir = chain.enter(&path)?;
            pending.push(empty_but_subdirs(&dir, &mut removed)?);
            continue;
        }
        pending.pop();
        let Some(done) = path.pop() else { break };
        let above = chain.enter(&path)?;
        rustix::fs::unlinkat(&*above, &done, AtFlags::REMOVEDIR)?;
        removed += 1;
        if path.is_empty() {
            break;
        }
    }
    Ok(removed)
}

/// Unlinks everything in `dir` that is not a directory (symlinks as
/// links); returns the subdirectories' names.
fn empty_but_subdirs(dir: &OwnedFd, removed: &mut u64) -> io::Result<Vec<OsString>> {
    let mut subdirs = Vec::new();
    for child in list_fd(rustix::io::fcntl_dupfd_cloexec(dir, 0)?)? {
        let st = rustix::fs::statat(dir, &child, AtFlags::SYMLINK_NOFOLLOW)?;
        if Kind::of(st.st_mode) == Kind::Dir {
            subdirs.push(child);
        } else {
            rustix::fs::unlinkat(dir, &child, AtFlags::empty())?;
            *removed += 1;
        }
    }
    Ok(subdirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).unwrap()
    }

    /// A temp dir holding `root/` and, beside it, a victim file that no
    /// operation on the root may touch.
    fn setup() -> (tempfile::TempDir, Root, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let handle = Root::new(&root).unwrap();
        (tmp, handle, victim)
    }

    #[test]
    fn paths_parse_into_plain_names() {
        assert_eq!(rel("a//b/./c/").to_bytes(), b"a/b/c");
        assert!(rel("").is_root() && rel(".").is_root() && rel("./").is_root());
        assert_eq!(rel("with space/ünï").names().len(), 2);
        assert_eq!(RelPath::parse(b"/etc/passwd"), Err(PathError::Absolute));
        assert_eq!(RelPath::parse(b"a/../../x"), Err(PathError::DotDot));
        assert_eq!(RelPath::parse(b"a\0b"), Err(PathError::Nul));
        assert_eq!(RelPath::parse(&[b'x'; 256]), Err(PathError::TooLong));
        assert!(RelPath::parse(&[b'x'; 255]).is_ok());
        assert_eq!(RelPath::parse(&[b'a'; 5000]), Err(PathError::TooLong));
        assert!(RelPath::parse(b"bad\xffutf8").is_ok(), "names are bytes");
    }

    #[test]
    fn concat_joins_whole_paths_within_the_length_limit() {
        assert_eq!(
            rel("a/b").concat(&rel("c/d")).unwrap().to_bytes(),
            b"a/b/c/d"
        );
        assert!(rel("").concat(&rel("")).unwrap().is_root());
        let half = "x/".repeat(1500);
        assert!(rel(&half).concat(&rel(&half)).is_err());
    }

    #[test]
    fn join_accepts_only_plain_names() {
        let base = rel("a");
        assert_eq!(base.join(OsStr::new("b")).unwrap().to_bytes(), b"a/b");
        for bad in ["..", ".", "", "x/y"] {
            assert!(base.join(OsStr::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_symlink_out_of_the_root_is_refused_by_the_kernel() {
        let (tmp, root, victim) = setup();
        symlink(&victim, tmp.path().join("root/link")).unwrap();
        symlink(tmp.path(), tmp.path().join("root/dirlink")).unwrap();
        let err = root
            .open(&rel("link"), OFlags::RDONLY, Mode::empty())
            .unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::XDEV.raw_os_error())
        );
        assert!(root
            .open(&rel("dirlink/victim"), OFlags::RDONLY, Mode::empty())
            .is_err());
        assert!(root.stat(&rel("link")).is_err());
        assert!(root.mkdir(&rel("dirlink/new"), 0o755).is_err());
        assert!(!tmp.path().join("new").exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn an_absolute_symlink_to_inside_is_still_refused() {
        // Absolute link targets resolve from `/`, which is not beneath.
        let (tmp, root, _) = setup();
        std::fs::write(tmp.path().join("root/real"), b"x").unwrap();
        symlink(tmp.path().join("root/real"), tmp.path().join("root/abs")).unwrap();
        assert!(root
            .open(&rel("abs"), OFlags::RDONLY, Mode::empty())
            .is_err());
    }

    #[test]
    fn a_relative_symlink_inside_the_root_is_followed() {
        let (tmp, root, _) = setup();
        std::fs::create_dir(tmp.path().join("root/d")).unwrap();
        std::fs::write(tmp.path().join("root/d/f"), b"inside").unwrap();
        symlink("d/f", tmp.path().join("root/ok")).unwrap();
        assert_eq!(root.stat(&rel("ok")).unwrap().kind, Kind::File);
        assert_eq!(root.lstat(&rel("ok")).unwrap().kind, Kind::Symlink);
    }

    #[test]
    fn removing_a_symlink_removes_the_link_not_its_target() {
        let (tmp, root, victim) = setup();
        symlink(tmp.path(), tmp.path().join("root/out")).unwrap();
        assert_eq!(root.remove_all(&rel("out")).unwrap(), 1);
        assert!(victim.exists());
        std::fs::create_dir_all(tmp.path().join("root/t/u")).unwrap();
        symlink(tmp.path(), tmp.path().join("root/t/u/escape")).unwrap();
        std::fs::write(tmp.path().join("root/t/f"), b"x").unwrap();
        assert_eq!(root.remove_all(&rel("t")).unwrap(), 4);
        assert!(victim.exists());
        assert!(!tmp.path().join("root/t").exists());
    }

    #[test]
    fn the_root_itself_is_never_a_target() {
        let (_tmp, root, _) = setup();
        assert!(root.remove_all(&RelPath::root()).is_err());
        assert!(root.remove(&RelPath::root()).is_err());
        assert!(root.rename(&RelPath::root(), &rel("x")).is_err());
    }

    #[test]
    fn mkdir_all_creates_parents_and_refuses_a_file_in_the_way() {
        let (tmp, root, _) = setup();
        root.mkdir_all(&rel("a/b/c"), 0o755).unwrap();
        root.mkdir_all(&rel("a/b/c"), 0o755).unwrap();
        assert!(tmp.path().join("root/a/b/c").is_dir());
        std::fs::write(tmp.path().join("root/file"), b"").unwrap();
        assert!(root.mkdir_all(&rel("file/x"), 0o755).is_err());
    }

    #[test]
    fn rename_replaces_a_symlink_instead_of_writing_through_it() {
        let (tmp, root, victim) = setup();
        std::fs::write(tmp.path().join("root/new"), b"new").unwrap();
        symlink(&victim, tmp.path().join("root/target")).unwrap();
        root.rename(&rel("new"), &rel("target")).unwrap();
        assert_eq!(
            std::fs::read(tmp.path().join("root/target")).unwrap(),
            b"new"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn list_and_stat_report_kinds() {
        let (tmp, root, _) = setup();
        std::fs::write(tmp.path().join("root/f"), b"12345").unwrap();
        std::fs::create_dir(tmp.path().join("root/d")).unwrap();
        let mut names = root.list(&RelPath::root()).unwrap();
        names.sort();
        assert_eq!(names, vec![OsString::from("d"), OsString::from("f")]);
        let st = root.stat(&rel("f")).unwrap();
        assert_eq!((st.kind, st.len), (Kind::File, 5));
        assert_eq!(root.stat(&rel("d")).unwrap().kind, Kind::Dir);
    }
}
