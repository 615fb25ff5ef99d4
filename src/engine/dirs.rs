//! A chain of open directory handles, from a base directory down to the
//! directory a tree walk is in, for every walk of a transfer: listing a
//! tree, planning where its entries go, writing its files, and applying
//! directory modes at the end.
//!
//! Entries of a tree come directories first, then their contents, so most
//! steps move one level down or stay where they are. Each level is opened
//! beneath the one above it with `O_NOFOLLOW`, never by resolving a whole
//! path from the root again: a walk costs time linear in its entries, and
//! a directory swapped for a symlink mid-walk is refused by the kernel.
//!
//! Only the deepest [`HELD_HANDLES`] levels keep their handles, and above
//! them every [`HELD_HANDLES`]th level, so a tree 2,000 levels deep costs
//! under a hundred descriptors. A level whose handle was let go is opened
//! again (one level at a time, from the nearest held one, at most
//! [`HELD_HANDLES`] levels up) only when the walk climbs back to it, and
//! must still be the directory first seen there (device and inode), or the
//! walk fails.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};

/// Directory handles a chain keeps open at most.
pub const HELD_HANDLES: usize = 64;

/// The open directories from a base down to where a walk is.
#[derive(Debug)]
pub struct DirChain {
    base: Arc<OwnedFd>,
    base_identity: (u64, u64),
    levels: Vec<Level>,
}

#[derive(Debug)]
struct Level {
    name: OsString,
    identity: (u64, u64),
    handle: Option<Arc<OwnedFd>>,
}

impl DirChain {
    /// A chain standing at `base`.
    pub fn new(base: OwnedFd) -> io::Result<DirChain> {
        let base_identity = identity_of(&base)?;
        Ok(DirChain {
            base: Arc::new(base),
            base_identity,
            levels: Vec::new(),
        })
    }

    /// The handle on the directory `names` below the base (the base itself
    /// for no names), opening what is not open yet. Every level must be a
    /// directory reached without following a symlink.
    pub fn enter<N: AsRef<OsStr>>(&mut self, names: &[N]) -> io::Result<Arc<OwnedFd>> {
        let common = self
            .levels
            .iter()
            .zip(names)
            .take_while(|(level, name)| level.name == name.as_ref())
            .count();
        self.levels.truncate(common);
        let mut dir = self.reopen_top()?;
        for name in &names[common..] {
            let handle = Arc::new(open_dir_at(&dir, name.as_ref())?);
            self.levels.push(Level {
                name: name.as_ref().to_os_string(),
                identity: identity_of(&*handle)?,
                handle: Some(handle.clone()),
            });
            if let Some(old) = self.levels.len().checked_sub(HELD_HANDLES + 1) {
                if !is_checkpoint(old) {
                    self.levels[old].handle = None;
                }
            }
            dir = handle;
        }
        Ok(dir)
    }

    /// Device and inode of the directory the chain stands in.
    pub fn identity(&self) -> (u64, u64) {
        self.levels
            .last()
            .map_or(self.base_identity, |level| level.identity)
    }

    /// The handle on the deepest level, opened again from the nearest held
    /// level if it was let go.
    fn reopen_top(&mut self) -> io::Result<Arc<OwnedFd>> {
        let mut dir = self.base.clone();
        let mut first = 0;
        if let Some(i) = self.levels.iter().rposition(|level| level.handle.is_some()) {
            if let Some(handle) = &self.levels[i].handle {
                dir = handle.clone();
                first = i + 1;
            }
        }
        let top = self.levels.len();
        for i in first..top {
            let handle = Arc::new(open_dir_at(&dir, &self.levels[i].name)?);
            if identity_of(&*handle)? != self.levels[i].identity {
                self.levels.truncate(i);
                return Err(io::Error::other(
                    "a directory was replaced while the transfer walked it",
                ));
            }
            // Of the levels opened again, keep the deepest.
            if top - i <= HELD_HANDLES || is_checkpoint(i) {
                self.levels[i].handle = Some(handle.clone());
            }
            dir = handle;
        }
        Ok(dir)
    }
}

/// Whether level `i` keeps its handle above the deepest ones, so that
/// climbing back reopens at most [`HELD_HANDLES`] levels at a time.
fn is_checkpoint(i: usize) -> bool {
    i % HELD_HANDLES == HELD_HANDLES - 1
}

/// Opens the directory `name` in `dir`, never through a symlink: a symlink
/// there fails with `ELOOP`, whatever it points to.
pub fn open_dir_at(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        // O_NOFOLLOW with O_DIRECTORY reports a symlink as "not a directory".
        Err(rustix::io::Errno::NOTDIR) => {
            let st = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink {
                Err(rustix::io::Errno::LOOP.into())
            } else {
                Err(rustix::io::Errno::NOTDIR.into())
            }
        }
        other => Ok(other?),
    }
}

/// The (device, inode) pair that names an open directory.
fn identity_of(fd: impl std::os::fd::AsFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn chain(dir: &Path) -> DirChain {
        DirChain::new(
            rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap(),
        )
        .unwrap()
    }

    fn names(path: &str) -> Vec<OsString> {
        path.split('/')
            .filter(|n| !n.is_empty())
            .map(OsString::from)
            .collect()
    }

    fn ino(path: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
    }

    #[test]
    fn entering_moves_down_up_and_across_and_names_the_right_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b/c")).unwrap();
        std::fs::create_dir_all(tmp.path().join("a/x")).unwrap();
        let mut chain = chain(tmp.path());
        for path in ["a/b/c", "a/b", "a/x", "", "a/b/c", "a"] {
            chain.enter(&names(path)).unwrap();
            assert_eq!(chain.identity().1, ino(&tmp.path().join(path)), "{path}");
        }
    }

    #[test]
    fn a_symlink_in_the_way_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a")).unwrap();
        std::os::unix::fs::symlink("..", tmp.path().join("a/up")).unwrap();
        std::os::unix::fs::symlink(".", tmp.path().join("here")).unwrap();
        let mut chain = chain(tmp.path());
        assert!(chain.enter(&names("a/up")).is_err());
        assert!(chain.enter(&names("here/a")).is_err());
        assert!(chain.enter(&names("a")).is_ok());
    }

    #[test]
    fn a_deep_tree_holds_few_handles_and_a_level_let_go_must_be_the_same_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let depth = HELD_HANDLES * 3;
        let deep: Vec<OsString> = (0..depth).map(|_| OsString::from("d")).collect();
        let mut path = tmp.path().to_path_buf();
        for _ in 0..depth {
            path.push("d");
        }
        std::fs::create_dir_all(&path).unwrap();
        let mut chain = chain(tmp.path());
        chain.enter(&deep).unwrap();
        let held = chain.levels.iter().filter(|l| l.handle.is_some()).count();
        assert_eq!(held, HELD_HANDLES + 2, "the deepest and two checkpoints");
        // Climbing back opens the levels that were let go again.
        for len in (0..depth).rev() {
            chain.enter(&deep[..len]).unwrap();
            let mut expected = tmp.path().to_path_buf();
            for _ in 0..len {
                expected.push("d");
            }
            assert_eq!(chain.identity().1, ino(&expected), "depth {len}");
        }
        // A level let go and replaced by another directory is refused.
        chain.enter(&deep).unwrap();
        let first = tmp.path().join("d");
        std::fs::rename(&first, tmp.path().join("moved")).unwrap();
        std::fs::create_dir(&first).unwrap();
        assert!(chain.enter(&deep[..1]).is_err());
    }
}
