//! The sync index: what one end last synced of one tree with one peer, so a
//! second `ferry sync` of a tree where nothing changed reads metadata only
//! and hashes nothing.
//!
//! It lives in the state directory ([`super::state`]), never in the synced
//! tree, one file per tree and peer: `sync/<key>.index`, the key a hash of
//! the tree's canonical path and the peer's name. Each entry holds a file's
//! size, mtime (ns), inode, whole-file BLAKE3 and chunk list.
//!
//! **The index is a cache.** Losing it costs speed, never correctness: a
//! missing, unreadable or corrupt index (checked by a BLAKE3 of its bytes
//! and by every count and length in it) loads as empty, and the caller
//! rebuilds it. A lookup answers "unchanged" only when size, mtime and inode
//! all match; a file whose metadata lies (new content, same size and mtime)
//! is caught only by [`Index::lookup_checksum`], which reads the file.
//! Whoever reads a chunk through the index (a chunk found in another file)
//! must check its hash as it reads, for the same reason.
//!
//! The file is written 0600 through a temporary file and a rename, as every
//! file of the state directory.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::chunks::{chunk_reader, Chunk, ChunkedFile, Hash32, MAX_CHUNK_BYTES};
use super::state;

/// The state directory's folder of sync indexes.
pub const INDEX_DIR: &str = "sync";

/// The largest index file read. One entry per file and 36 bytes per chunk
/// (91 KiB on average), so 1 GiB describes about 2.5 TiB of synced data; a
/// bigger file is taken for corrupt and the index is rebuilt.
pub const MAX_INDEX_BYTES: u64 = 1 << 30;

/// The first bytes of an index file; the last byte is the format version.
///
/// Version 2: chunks cut with a 48 KiB minimum, so a version 1 index (16 KiB)
/// names cuts this ferry never makes and is rebuilt, not half-reused.
const MAGIC: &[u8; 8] = b"ferryix\x02";

/// The hash key of index names, so they never pass for another hash.
const KEY_CONTEXT: &str = "ferry 2026 sync index key v1";

/// The fixed part of an entry: path length, size, mtime, mtime_ns, inode,
/// file hash, chunk count.
const ENTRY_FIXED_BYTES: usize = 4 + 8 + 8 + 4 + 8 + 32 + 4;

/// One chunk in the file: hash and length.
const CHUNK_BYTES: usize = 32 + 4;

/// The metadata a lookup compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The file's length.
    pub size: u64,
    /// Its mtime, seconds since the epoch.
    pub mtime: i64,
    /// The nanoseconds of its mtime, under one second.
    pub mtime_ns: u32,
    /// Its inode: a file replaced by another of the same size and mtime
    /// (a restore, a `cp -p`) has a new one.
    pub inode: u64,
}

impl Stat {
    /// The stat of a file's metadata.
    pub fn of(metadata: &fs::Metadata) -> Stat {
        Stat {
            size: metadata.size(),
            mtime: metadata.mtime(),
            mtime_ns: metadata.mtime_nsec() as u32,
            inode: metadata.ino(),
        }
    }
}

/// What the index knows of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The metadata it had when it was hashed.
    pub stat: Stat,
    /// Its whole-file BLAKE3.
    pub file_hash: Hash32,
    /// Its chunks, in file order, covering exactly `stat.size` bytes.
    pub chunks: Vec<Chunk>,
}

impl IndexEntry {
    /// The entry of a file with `stat`, just chunked.
    pub fn new(stat: Stat, file: ChunkedFile) -> IndexEntry {
        IndexEntry {
            stat,
            file_hash: file.file_hash,
            chunks: file.chunks,
        }
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The file is as the index recorded it.
    Unchanged(&'a IndexEntry),
    /// The index knew the file, and it changed since.
    Changed(&'a IndexEntry),
    /// The index does not know the file.
    Unknown,
}

/// How a load went. Every outcome gives an index to use; only the first
/// gives one worth anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The index was read and checked.
    Loaded,
    /// There was no index: a first sync, or it was deleted.
    Missing,
    /// The index could not be used, for the reason given; it starts empty.
    Discarded(String),
}

/// The files of one tree as last synced with one peer. Two indexes are
/// equal when they know the same files, whether or not either changed.
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: BTreeMap<Box<[u8]>, IndexEntry>,
    /// Changed since it was loaded: only then is it worth saving.
    changed: bool,
}

impl PartialEq for Index {
    fn eq(&self, other: &Index) -> bool {
        self.entries == other.entries
    }
}

impl Eq for Index {}

impl Index {
    /// Whether anything was recorded or forgotten since it was loaded.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Where the index of the tree at `tree_root` synced with `peer` lives in
    /// `state_dir`. The path is made canonical first, so two spellings of
    /// one tree share an index; the tree must exist.
    pub fn path_for(state_dir: &Path, tree_root: &Path, peer: &str) -> io::Result<PathBuf> {
        let canonical = fs::canonicalize(tree_root)?;
        let mut hasher = blake3::Hasher::new_derive_key(KEY_CONTEXT);
        hasher.update(&(canonical.as_os_str().len() as u64).to_le_bytes());
        hasher.update(canonical.as_os_str().as_bytes());
        hasher.update(peer.as_bytes());
        let key = hasher.finalize().to_hex();
        Ok(state_dir.join(INDEX_DIR).join(format!("{key}.index")))
    }

    /// Loads the index at `path`. Never fails: an index that cannot be used
    /// loads empty, and the outcome says why.
    pub fn load(path: &Path) -> (Index, LoadOutcome) {
        let bytes = match read_capped(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return (Index::new(), LoadOutcome::Missing)
            }
            Err(err) => {
                let reason = format!("cannot read {}: {err}", path.display());
                return (Index::new(), LoadOutcome::Discarded(reason));
            }
        };
        match decode(&bytes) {
            Ok(index) => (index, LoadOutcome::Loaded),
            Err(Corrupt(what)) => {
                let reason = format!("{} is corrupt ({what})", path.display());
                (Index::new(), LoadOutcome::Discarded(reason))
            }
        }
    }

    /// Saves the index to `path` atomically, 0600, creating its folder
    /// (0700) if needed.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            state::create_dir(dir)?;
        }
        state::write_private(path, &self.encode())
    }

    /// Records what a file is now, replacing what was known of it.
    pub fn insert(&mut self, path: &[u8], entry: IndexEntry) {
        self.changed = true;
        self.entries.insert(path.into(), entry);
    }

    /// Forgets a file (deleted, or no longer synced).
    pub fn remove(&mut self, path: &[u8]) -> Option<IndexEntry> {
        let removed = self.entries.remove(path);
        self.changed |= removed.is_some();
        removed
    }

    /// What is known of a file.
    pub fn get(&self, path: &[u8]) -> Option<&IndexEntry> {
        self.entries.get(path)
    }

    /// The number of files known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every file known, by path.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &IndexEntry)> {
        self.entries.iter().map(|(path, entry)| (&path[..], entry))
    }

    /// Whether no file is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps only the files `keep` says yes to: after a walk, those it met.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        let before = self.entries.len();
        self.entries.retain(|path, _| keep(path));
        self.changed |= self.entries.len() != before;
    }

    /// Whether a file is as last recorded, by metadata alone: unchanged only
    /// when size, mtime and inode all match. Reads nothing.
    pub fn lookup(&self, path: &[u8], stat: &Stat) -> Lookup<'_> {
        match self.entries.get(path) {
            Some(entry) if entry.stat == *stat => Lookup::Unchanged(entry),
            Some(entry) => Lookup::Changed(entry),
            None => Lookup::Unknown,
        }
    }

    /// Whether a file is as last recorded, by content (`--checksum`): reads
    /// and chunks `file`, and answers unchanged only when its BLAKE3 is the
    /// recorded one, whatever the metadata says. Returns the fresh chunks
    /// too, so the caller can record them without reading again.
    pub fn lookup_checksum<R: Read + Send>(
        &self,
        path: &[u8],
        file: R,
    ) -> io::Result<(Lookup<'_>, ChunkedFile)> {
        let chunked = chunk_reader(file)?;
        let lookup = match self.entries.get(path) {
            Some(entry) if entry.file_hash == chunked.file_hash => Lookup::Unchanged(entry),
            Some(entry) => Lookup::Changed(entry),
            None => Lookup::Unknown,
        };
        Ok((lookup, chunked))
    }

    /// Where each known chunk can be read: a file and a chunk of it, for
    /// the receiver to reuse chunks from any file (a rename costs nothing).
    /// The bytes found there must be checked (a chunk's hash, or the whole
    /// file's they go into): the index is a cache.
    pub fn chunk_sources(&self) -> HashMap<Hash32, (&[u8], Chunk)> {
        let mut sources = HashMap::new();
        for (path, entry) in &self.entries {
            for chunk in &entry.chunks {
                sources.entry(chunk.hash).or_insert((&path[..], *chunk));
            }
        }
        sources
    }

    /// The index as bytes: magic, entry count, entries, then the BLAKE3 of
    /// everything before it.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (path, entry) in &self.entries {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path);
            out.extend_from_slice(&entry.stat.size.to_le_bytes());
            out.extend_from_slice(&entry.stat.mtime.to_le_bytes());
            out.extend_from_slice(&entry.stat.mtime_ns.to_le_bytes());
            out.extend_from_slice(&entry.stat.inode.to_le_bytes());
            out.extend_from_slice(&entry.file_hash);
            out.extend_from_slice(&(entry.chunks.len() as u32).to_le_bytes());
            for chunk in &entry.chunks {
                out.extend_from_slice(&chunk.hash);
                out.extend_from_slice(&chunk.len.to_le_bytes());
            }
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }
}

/// Why an index file cannot be used.
#[derive(Debug)]
struct Corrupt(&'static str);

fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_INDEX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        return Err(io::Error::other(format!(
            "it is over {MAX_INDEX_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

fn decode(bytes: &[u8]) -> Result<Index, Corrupt> {
    let body_len = bytes.len().checked_sub(32).ok_or(Corrupt("too short"))?;
    let (body, checksum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != checksum {
        return Err(Corrupt("checksum mismatch"));
    }
    let mut input = Input(body);
    if input.take(MAGIC.len())? != MAGIC {
        return Err(Corrupt("not a ferry index of this version"));
    }
    let count = input.u64()?;
    // Each count is checked against the bytes left before anything is
    // allocated for it.
    if count > (input.0.len() / ENTRY_FIXED_BYTES) as u64 {
        return Err(Corrupt("entry count past the end"));
    }
    let mut entries = BTreeMap::new();
    for _ in 0..count {
        let path_len = input.u32()? as usize;
        let path = input.take(path_len)?;
        if !is_relative_path(path) {
            return Err(Corrupt("a path is not relative and plain"));
        }
        let stat = Stat {
            size: input.u64()?,
            mtime: input.u64()? as i64,
            mtime_ns: input.u32()?,
            inode: input.u64()?,
        };
        if stat.mtime_ns >= 1_000_000_000 {
            return Err(Corrupt("mtime nanoseconds over a second"));
        }
        let file_hash = input.hash()?;
        let chunk_count = input.u32()? as usize;
        if chunk_count > input.0.len() / CHUNK_BYTES {
            return Err(Corrupt("chunk count past the end"));
        }
        let mut chunks = Vec::with_capacity(chunk_count);
        let mut offset = 0u64;
        for _ in 0..chunk_count {
            let hash = input.hash()?;
            let len = input.u32()?;
            if len == 0 || len as usize > MAX_CHUNK_BYTES {
                return Err(Corrupt("a chunk length out of range"));
            }
            chunks.push(Chunk { offset, len, hash });
            offset += u64::from(len);
        }
        if offset != stat.size {
            return Err(Corrupt("chunks do not cover the file"));
        }
        let entry = IndexEntry {
            stat,
            file_hash,
            chunks,
        };
        if entries.insert(Box::from(path), entry).is_some() {
            return Err(Corrupt("a path twice"));
        }
    }
    if !input.0.is_empty() {
        return Err(Corrupt("bytes after the last entry"));
    }
    Ok(Index {
        entries,
        changed: false,
    })
}

/// A path as the manifest has them: relative, `/`-separated, no empty,
/// `.` or `..` component, no NUL.
fn is_relative_path(path: &[u8]) -> bool {
    !path.is_empty()
        && !path.contains(&0)
        && path
            .split(|&b| b == b'/')
            .all(|part| !part.is_empty() && part != b"." && part != b"..")
}

/// The unread rest of an index file.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if n > self.0.len() {
            return Err(Corrupt("cut short"));
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn hash(&mut self) -> Result<Hash32, Corrupt> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }
}

#[cfg(test)]
mod tests;
