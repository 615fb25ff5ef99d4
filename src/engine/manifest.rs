//! Building a transfer's manifest: the directories and files under a path,
//! in a stable order (directories before their contents, names sorted), with
//! where the sender will read each file from.
//!
//! Only regular files and directories are sent. In a tree walk, symlinks to
//! files inside the root are sent as files; symlinks to directories, links
//! out of the root, FIFOs, sockets and devices are skipped and listed in
//! [`Manifest::skipped`]. Reserved partial-file names are never listed.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::AtFlags;

use crate::protocol::ErrorCode;

use super::atomic::is_reserved_name;
use super::dirs::DirChain;
use super::error::{show, FileError};
use super::root::{list_fd, Kind, RelPath, Root, Stat};
use super::wire::{Entry, EntryKind, WirePath};

/// Where the sender reads a file from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// A file beneath the served root (server side), at the manifest's
    /// [`Manifest::in_root`] joined with the entry's path.
    InRoot {
        /// Listed through a symlink (to a file inside the root), so it is
        /// opened by following it; every other file is opened without.
        via_symlink: bool,
    },
    /// A file the local user named (client side).
    Local {
        /// Its path.
        path: PathBuf,
        /// Listed through a symlink, so it is opened by following it.
        via_symlink: bool,
    },
}

/// A manifest and the sources of its files.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The entries, in sending order.
    pub entries: Vec<Entry>,
    /// For each entry, where its data comes from (`None` for directories).
    pub sources: Vec<Option<SourceRef>>,
    /// The directory beneath the root that entry paths start from (the
    /// requested path's parent), for [`SourceRef::InRoot`].
    pub in_root: RelPath,
    /// Total bytes of all files.
    pub total_bytes: u64,
    /// Paths left out of a tree walk, and why.
    pub skipped: Vec<(Vec<u8>, String)>,
}

impl Manifest {
    /// How many files (not directories) the manifest holds.
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count()
    }

    fn push(&mut self, kind: EntryKind, path: &[u8], st: &Stat, source: Option<SourceRef>) {
        self.entries.push(Entry {
            kind,
            path: WirePath::from_bytes(path),
            file_size: st.len,
            mode: st.mode,
            mtime: st.mtime.0,
            mtime_ns: st.mtime.1,
            sync: None,
        });
        self.total_bytes += st.len;
        self.sources.push(source);
    }

    /// The manifest for `path` beneath the root, named by its last
    /// component. A directory needs `recursive`.
    pub fn from_root(root: &Root, path: &RelPath, recursive: bool) -> Result<Manifest, FileError> {
        let bytes = path.to_bytes();
        if path.names().iter().any(|n| is_reserved_name(n)) {
            return Err(FileError::new(
                ErrorCode::BadPath,
                format!("{}: reserved name", show(&bytes)),
            ));
        }
        let st = root.stat(path).map_err(|e| FileError::io(&bytes, &e))?;
        // The root itself is sent under no name: its contents land in the
        // destination directly.
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let mut manifest = Manifest {
            in_root: path.parent(),
            ..Manifest::default()
        };
        let via_symlink = root
            .lstat(path)
            .map_err(|e| FileError::io(&bytes, &e))?
            .kind
            == Kind::Symlink;
        match st.kind {
            Kind::File => manifest.push(
                EntryKind::File,
                &name,
                &st,
                Some(SourceRef::InRoot { via_symlink }),
            ),
            Kind::Dir if !recursive => {
                return Err(FileError::new(
                    ErrorCode::IsADirectory,
                    format!("{} is a directory; use -r to transfer it", show(&bytes)),
                ))
            }
            Kind::Dir => {
                if !name.is_empty() {
                    manifest.push(EntryKind::Dir, &name, &st, None);
                }
                let shown = |e: io::Error| FileError::io(&bytes, &e);
                let handle = root.open_dir(path).map_err(shown)?;
                let mut chain = DirChain::new(handle).map_err(shown)?;
                let mut walk = RootWalk {
                    root,
                    top: path,
                    chain: &mut chain,
                    names: Vec::new(),
                };
                walk.walk(&name, &mut manifest)?;
            }
            Kind::Symlink | Kind::Special => {
                return Err(FileError::new(
                    ErrorCode::NotRegular,
                    format!("{} is not a regular file or directory", show(&bytes)),
                ))
            }
        }
        Ok(manifest)
    }

    /// The manifest for files and directories the local user named, each
    /// under its own last component (as `scp -r` does).
    pub fn from_local(paths: &[PathBuf], recursive: bool) -> Result<Manifest, FileError> {
        let mut manifest = Manifest::default();
        for path in paths {
            let shown = path.as_os_str().as_bytes();
            let md = fs::metadata(path).map_err(|e| FileError::io(shown, &e))?;
            let name = local_name(path).ok_or_else(|| {
                FileError::new(
                    ErrorCode::BadPath,
                    format!("{} has no file name", show(shown)),
                )
            })?;
            let st = stat_of(&md);
            if md.is_file() {
                let via_symlink = fs::symlink_metadata(path)
                    .map_err(|e| FileError::io(shown, &e))?
                    .file_type()
                    .is_symlink();
                manifest.push(
                    EntryKind::File,
                    &name,
                    &st,
                    Some(SourceRef::Local {
                        path: path.clone(),
                        via_symlink,
                    }),
                );
            } else if md.is_dir() {
                if !recursive {
                    return Err(FileError::new(
                        ErrorCode::IsADirectory,
                        format!("{} is a directory; use -r to transfer it", show(shown)),
                    ));
                }
                manifest.push(EntryKind::Dir, &name, &st, None);
                walk_local(path, &name, &mut manifest)?;
            } else {
                return Err(FileError::new(
                    ErrorCode::NotRegular,
                    format!("{} is not a regular file or directory", show(shown)),
                ));
            }
        }
        Ok(manifest)
    }
}

/// The last component of a local path, resolving `.` and `..` lexically
/// against the current directory when the user wrote them.
fn local_name(path: &Path) -> Option<Vec<u8>> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut parts: Vec<OsString> = Vec::new();
    for component in absolute.components() {
        match component {
            std::path::Component::Normal(n) => parts.push(n.to_os_string()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.pop().map(OsString::into_vec)
}

fn stat_of(md: &fs::Metadata) -> Stat {
    Stat {
        kind: if md.is_dir() { Kind::Dir } else { Kind::File },
        len: if md.is_file() { md.len() } else { 0 },
        mode: md.mode() & 0o7777,
        mtime: (md.mtime(), md.mtime_nsec() as u32),
        dev_ino: (md.dev(), md.ino()),
    }
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return name.to_vec();
    }
    let mut out = Vec::with_capacity(prefix.len() + 1 + name.len());
    out.extend_from_slice(prefix);
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

/// A walk of a tree beneath the root, through a chain of held directory
/// handles: each directory is listed and each entry stated relative to its
/// parent's handle, so the walk costs time linear in the tree.
struct RootWalk<'w> {
    root: &'w Root,
    /// The walked directory, beneath the root.
    top: &'w RelPath,
    chain: &'w mut DirChain,
    /// Where the walk is, below `top`.
    names: Vec<OsString>,
}

impl RootWalk<'_> {
    /// Lists the directory the walk is in, under the wire prefix `prefix`,
    /// and everything below it, depth first with names sorted, on a heap
    /// stack of its own (a tree thousands of levels deep must not overflow
    /// a thread's stack).
    fn walk(&mut self, prefix: &[u8], manifest: &mut Manifest) -> Result<(), FileError> {
        // Each directory being listed: its wire prefix and the names left,
        // last first. `self.names` names the deepest one.
        let mut stack = vec![(prefix.to_vec(), self.list(prefix)?)];
        while let Some((prefix, names)) = stack.last_mut() {
            let Some(name) = names.pop() else {
                stack.pop();
                self.names.pop();
                continue;
            };
            if is_reserved_name(&name) {
                continue;
            }
            let wire = join(prefix, name.as_bytes());
            let dir = self
                .chain
                .enter(&self.names)
                .map_err(|e| FileError::io(&wire, &e))?;
            let st = match rustix::fs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Stat::from_raw(&st),
                // Removed between the directory's listing and this look:
                // left out, and counted as such.
                Err(rustix::io::Errno::NOENT) => {
                    manifest
                        .skipped
                        .push((wire, "removed while the tree was listed".into()));
                    continue;
                }
                Err(errno) => return Err(FileError::io(&wire, &errno.into())),
            };
            drop(dir);
            match st.kind {
                Kind::Dir => {
                    manifest.push(EntryKind::Dir, &wire, &st, None);
                    self.names.push(name);
                    let below = self.list(&wire)?;
                    stack.push((wire, below));
                }
                Kind::File => manifest.push(
                    EntryKind::File,
                    &wire,
                    &st,
                    Some(SourceRef::InRoot { via_symlink: false }),
                ),
                Kind::Symlink => match self.symlink_target(&name) {
                    Some(target) if target.kind == Kind::File => manifest.push(
                        EntryKind::File,
                        &wire,
                        &target,
                        Some(SourceRef::InRoot { via_symlink: true }),
                    ),
                    _ => manifest
                        .skipped
                        .push((wire, "symlink to a directory or out of the root".into())),
                },
                Kind::Special => manifest.skipped.push((wire, "not a regular file".into())),
            }
        }
        Ok(())
    }

    /// The names in the directory the walk is in, sorted, last first.
    fn list(&mut self, shown: &[u8]) -> Result<Vec<OsString>, FileError> {
        let fail = |e: io::Error| FileError::io(shown, &e);
        let dir = self.chain.enter(&self.names).map_err(fail)?;
        let listing = rustix::io::fcntl_dupfd_cloexec(&*dir, 0).map_err(|e| fail(e.into()))?;
        let mut names = list_fd(listing).map_err(fail)?;
        names.sort_unstable_by(|a, b| b.cmp(a));
        Ok(names)
    }

    /// What a symlink in the current directory leads to, if it stays
    /// beneath the root.
    fn symlink_target(&self, name: &OsString) -> Option<Stat> {
        let mut below = self.names.clone();
        below.push(name.clone());
        let below = RelPath::parse(&below.join(OsStr::new("/")).into_vec()).ok()?;
        self.root.stat(&self.top.concat(&below).ok()?).ok()
    }
}

/// Lists a local directory and everything below it, depth first with
/// names sorted, on a heap stack of its own (a tree thousands of levels
/// deep must not overflow a thread's stack).
fn walk_local(dir: &Path, prefix: &[u8], manifest: &mut Manifest) -> Result<(), FileError> {
    // Each directory being listed: its wire prefix and the entries left,
    // last name first.
    let mut stack = vec![(prefix.to_vec(), list_local(dir)?)];
    while let Some((prefix, entries)) = stack.last_mut() {
        let Some(entry) = entries.pop() else {
            stack.pop();
            continue;
        };
        let path = entry.path();
        let wire = join(prefix, entry.file_name().as_bytes());
        let md = fs::symlink_metadata(&path).map_err(|e| FileError::io(&wire, &e))?;
        let file_type = md.file_type();
        if file_type.is_dir() {
            manifest.push(EntryKind::Dir, &wire, &stat_of(&md), None);
            let below = list_local(&path)?;
            stack.push((wire, below));
        } else if file_type.is_file() {
            manifest.push(
                EntryKind::File,
                &wire,
                &stat_of(&md),
                Some(SourceRef::Local {
                    path,
                    via_symlink: false,
                }),
            );
        } else if file_type.is_symlink() {
            match fs::metadata(&path) {
                Ok(target) if target.is_file() => manifest.push(
                    EntryKind::File,
                    &wire,
                    &stat_of(&target),
                    Some(SourceRef::Local {
                        path,
                        via_symlink: true,
                    }),
                ),
                _ => manifest
                    .skipped
                    .push((wire, "symlink to a directory or nowhere".into())),
            }
        } else {
            manifest.skipped.push((wire, "not a regular file".into()));
        }
    }
    Ok(())
}

/// A local directory's entries, sorted by name, last first.
fn list_local(dir: &Path) -> Result<Vec<fs::DirEntry>, FileError> {
    let shown = dir.as_os_str().as_bytes();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| FileError::io(shown, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| FileError::io(shown, &e))?;
    entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(m: &Manifest) -> Vec<String> {
        m.entries
            .iter()
            .map(|e| format!("{:?} {}", e.kind, e.path.path.as_deref().unwrap_or("?")))
            .collect()
    }

    fn tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("photos");
        fs::create_dir_all(d.join("b")).unwrap();
        fs::write(d.join("z.txt"), b"zz").unwrap();
        fs::write(d.join("b/a.txt"), b"a").unwrap();
        std::os::unix::fs::symlink("/", d.join("escape")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        tmp
    }

    #[test]
    fn a_root_tree_lists_dirs_before_contents_and_skips_specials() {
        let tmp = tree();
        let root = Root::new(tmp.path()).unwrap();
        let m = Manifest::from_root(&root, &RelPath::parse(b"photos").unwrap(), true).unwrap();
        assert_eq!(
            paths(&m),
            [
                "Dir photos",
                "Dir photos/b",
                "File photos/b/a.txt",
                "File photos/z.txt"
            ]
        );
        assert_eq!(m.total_bytes, 3);
        assert_eq!(m.skipped.len(), 2, "{:?}", m.skipped);
    }

    #[test]
    fn a_directory_needs_recursive_and_specials_are_refused() {
        let tmp = tree();
        let root = Root::new(tmp.path()).unwrap();
        let err = Manifest::from_root(&root, &RelPath::parse(b"photos").unwrap(), false);
        assert_eq!(err.unwrap_err().code, ErrorCode::IsADirectory);
        let err = Manifest::from_root(&root, &RelPath::parse(b"photos/fifo").unwrap(), false);
        assert_eq!(err.unwrap_err().code, ErrorCode::NotRegular);
        let err = Manifest::from_root(&root, &RelPath::parse(b"photos/escape").unwrap(), false);
        assert_eq!(err.unwrap_err().code, ErrorCode::BadPath);
    }

    #[test]
    fn local_paths_are_named_by_their_last_component() {
        let tmp = tree();
        let dir = tmp.path().join("photos/b/..");
        let m = Manifest::from_local(&[dir], true).unwrap();
        assert_eq!(paths(&m)[0], "Dir photos");
        let m = Manifest::from_local(&[tmp.path().join("photos/z.txt")], false).unwrap();
        assert_eq!(paths(&m), ["File z.txt"]);
        assert_eq!(m.file_count(), 1);
    }
}
