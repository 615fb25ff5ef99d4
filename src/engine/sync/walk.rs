//! The sending side's walk: what a `ferry sync` sends, read through the
//! confining root, with the filter applied as rsync applies it (an excluded
//! directory is not entered) and `.gitignore` files read on the way when
//! asked. Symlinks are listed as links, never followed; FIFOs, sockets and
//! devices are left out and listed in [`Manifest::skipped`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::protocol::ErrorCode;

use super::super::atomic::is_reserved_name;
use super::super::error::{show, FileError};
use super::super::filter::{Filter, Verdict, GITIGNORE};
use super::super::index::{Index, Lookup};
use super::super::manifest::{Manifest, SourceRef};
use super::super::root::{list_fd, Kind, RelPath, Root, Stat};
use super::super::wire::{Entry, EntryKind, SyncFields, WirePath};
use super::index_stat;

/// The most bytes of one `.gitignore` file read.
const MAX_GITIGNORE_BYTES: u64 = 1024 * 1024;

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    /// The entries, directories before what they hold, names sorted;
    /// paths relative to the synced directory (or the file's own name).
    pub manifest: Manifest,
    /// The name the receiver puts the entries under (`SRC` without a
    /// trailing slash), `None` to put them in the destination itself.
    pub into: Option<Vec<u8>>,
    /// Whether the source is a directory (deletes happen only then).
    pub is_dir: bool,
    /// Patterns in `.gitignore` files that could not be read, for a
    /// warning.
    pub problems: Vec<String>,
}

/// Walks `top` beneath `root`: a directory's contents (named under `into`
/// when `contents` is false), or one file. With `checksum`, every file's
/// BLAKE3 goes into its entry, from `index` when its stat is unchanged.
pub fn walk(
    root: &Root,
    top: &RelPath,
    contents: bool,
    filter: &mut Filter,
    checksum: Option<&mut Index>,
) -> Result<Walked, FileError> {
    let shown = top.to_bytes();
    let st = root.stat(top).map_err(|e| FileError::io(&shown, &e))?;
    let mut walked = Walked::default();
    let mut walker = Walker {
        root,
        filter,
        checksum,
        manifest: Manifest {
            in_root: top.clone(),
            ..Manifest::default()
        },
        problems: Vec::new(),
    };
    match st.kind {
        Kind::Dir => {
            walked.is_dir = true;
            if !contents {
                walked.into = top.file_name().map(|n| n.as_bytes().to_vec());
            }
            walker.read_gitignore(b"");
            walker.dir(b"")?;
        }
        Kind::File => {
            let name = top
                .file_name()
                .ok_or_else(|| FileError::new(ErrorCode::BadPath, "the root is not a file"))?;
            walker.manifest.in_root = top.parent();
            let via_symlink =
                root.lstat(top).map_err(|e| FileError::io(&shown, &e))?.kind == Kind::Symlink;
            walker.push_file(name.as_bytes(), &st, via_symlink)?;
        }
        _ => {
            return Err(FileError::new(
                ErrorCode::NotRegular,
                format!("{} is not a file or directory", show(&shown)),
            ))
        }
    }
    walked.manifest = walker.manifest;
    walked.problems = walker.problems;
    Ok(walked)
}

struct Walker<'a> {
    root: &'a Root,
    filter: &'a mut Filter,
    checksum: Option<&'a mut Index>,
    manifest: Manifest,
    problems: Vec<String>,
}

impl Walker<'_> {
    /// `rel` below the walk's top, as a path beneath the root.
    fn in_root(&self, rel: &[u8]) -> Result<RelPath, FileError> {
        if rel.is_empty() {
            return Ok(self.manifest.in_root.clone());
        }
        Ok(self.manifest.in_root.concat(&RelPath::parse(rel)?)?)
    }

    fn dir(&mut self, rel: &[u8]) -> Result<(), FileError> {
        let path = self.in_root(rel)?;
        // One handle on the directory for its listing and every stat in
        // it, instead of resolving each child's path from the root again.
        let dir = self
            .root
            .open_dir(&path)
            .map_err(|e| FileError::io(&path.to_bytes(), &e))?;
        let listed = rustix::io::fcntl_dupfd_cloexec(&dir, 0)
            .map_err(std::io::Error::from)
            .and_then(list_fd);
        let mut names = listed.map_err(|e| FileError::io(&path.to_bytes(), &e))?;
        names.sort();
        for name in names {
            if is_reserved_name(&name) {
                continue;
            }
            let child: Vec<u8> = if rel.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [rel, b"/", name.as_bytes()].concat()
            };
            let st = match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Stat::from_raw(&st),
                // Gone since the listing: nothing to send.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(err) => return Err(FileError::io(&child, &err.into())),
            };
            let is_dir = st.kind == Kind::Dir;
            if self.filter.verdict(&child, is_dir) == Verdict::Exclude {
                continue;
            }
            match st.kind {
                Kind::Dir => {
                    self.push(EntryKind::Dir, &child, &st, None, None);
                    self.read_gitignore(&child);
                    self.dir(&child)?;
                }
                Kind::File => self.push_file(&child, &st, false)?,
                Kind::Symlink => match rustix::fs::readlinkat(&dir, &name, Vec::new()) {
                    Ok(target) => {
                        let target = WirePath::from_bytes(target.as_bytes());
                        self.push(EntryKind::Symlink, &child, &st, Some(target), None);
                    }
                    Err(err) => self
                        .manifest
                        .skipped
                        .push((child, format!("cannot read the link: {err}"))),
                },
                Kind::Special => self
                    .manifest
                    .skipped
                    .push((child, "not a file, directory or symlink".into())),
            }
        }
        Ok(())
    }

    fn push_file(&mut self, rel: &[u8], st: &Stat, via_symlink: bool) -> Result<(), FileError> {
        let mut blake3 = None;
        if self.checksum.is_some() {
            blake3 = Some(self.hash_of(rel, st)?);
        }
        self.push(
            EntryKind::File,
            rel,
            st,
            None,
            Some(SourceRef::InRoot { via_symlink }),
        );
        if let (Some(entry), Some(hash)) = (self.manifest.entries.last_mut(), blake3) {
            entry.sync = Some(Box::new(SyncFields {
                target: None,
                blake3: Some(hash),
            }));
        }
        Ok(())
    }

    /// The file's BLAKE3, from the index when its stat is unchanged, else
    /// read (and recorded).
    fn hash_of(&mut self, rel: &[u8], st: &Stat) -> Result<Box<str>, FileError> {
        let path = self.in_root(rel)?;
        let index = self.checksum.as_deref_mut().expect("checksum walk");
        let key = path_key(&self.manifest.in_root, &path);
        let stat = index_stat(st);
        if let Lookup::Unchanged(entry) = index.lookup(&key, &stat) {
            return Ok(blake3::Hash::from(entry.file_hash).to_hex().as_str().into());
        }
        let file = self
            .root
            .open(
                &path,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
                Mode::empty(),
            )
            .map(std::fs::File::from)
            .map_err(|e| FileError::io(rel, &e))?;
        let (_, chunked) = index
            .lookup_checksum(&key, file)
            .map_err(|e| FileError::io(rel, &e))?;
        let hex = blake3::Hash::from(chunked.file_hash)
            .to_hex()
            .as_str()
            .into();
        index.insert(&key, super::super::index::IndexEntry::new(stat, chunked));
        Ok(hex)
    }

    fn push(
        &mut self,
        kind: EntryKind,
        rel: &[u8],
        st: &Stat,
        target: Option<WirePath>,
        source: Option<SourceRef>,
    ) {
        let file_size = if kind == EntryKind::File { st.len } else { 0 };
        self.manifest.entries.push(Entry {
            kind,
            path: WirePath::from_bytes(rel),
            file_size,
            mode: st.mode,
            mtime: st.mtime.0,
            mtime_ns: st.mtime.1,
            sync: target.map(|target| {
                Box::new(SyncFields {
                    target: Some(target),
                    blake3: None,
                })
            }),
        });
        self.manifest.total_bytes += file_size;
        self.manifest.sources.push(source);
    }

    /// Reads `rel/.gitignore` into the filter, when it honours them.
    fn read_gitignore(&mut self, rel: &[u8]) {
        if !self.filter.honours_gitignore() {
            return;
        }
        let Ok(dir) = self.in_root(rel) else { return };
        let Ok(path) = dir.join(OsStr::from_bytes(GITIGNORE)) else {
            return;
        };
        let Ok(fd) = self.root.open(
            &path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) else {
            return;
        };
        let mut contents = Vec::new();
        let read = std::fs::File::from(fd)
            .take(MAX_GITIGNORE_BYTES)
            .read_to_end(&mut contents);
        if read.is_ok() {
            for problem in self.filter.add_gitignore(rel, &contents) {
                self.problems.push(problem.to_string());
            }
        }
    }
}

/// The index key of `path`: its bytes below the walk's top.
pub fn path_key(top: &RelPath, path: &RelPath) -> Vec<u8> {
    let names = &path.names()[top.names().len().min(path.names().len())..];
    let mut key = Vec::new();
    for (k, name) in names.iter().enumerate() {
        if k > 0 {
            key.push(b'/');
        }
        key.extend_from_slice(name.as_bytes());
    }
    key
}

/// The source entries of `walked` by their path, for the checks the
/// receiver's answer needs.
pub fn by_path(entries: &[Entry]) -> HashMap<Vec<u8>, usize> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.path.to_bytes().ok().map(|p| (p, i)))
        .collect()
}
