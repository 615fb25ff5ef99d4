//! `ferry sync`: keep a tree on one end the same as a tree on the other.
//! Both peers run this code; the end that owns the destination is the
//! **receiver** whichever end started the sync (the server for a push, the
//! client for a pull), as get and put swap roles.
//!
//! Sync is get/put's exchange (manifest, wants, data) extended, so a tree
//! still costs one round trip:
//! - the manifest comes from [`walk`]: filtered, symlinks as links;
//! - the receiver's wants (`receive.rs`) add `delta` for files it has an
//!   older version of (or, for a big new file, chunks of elsewhere);
//! - after the whole files' data phase, the delta files move (`delta.rs`);
//! - then the receiver applies symlinks and directory times, and deletes
//!   (only with `--delete`, only when every file arrived, never a path the
//!   filter protects, and never all of the destination without `--force`).
//!
//! Each end keeps an index of its own files' chunks in its state directory
//! ([`super::index`]): a cache that spares hashing unchanged files.

pub mod delta;
pub mod receive;
pub mod send;
pub mod walk;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::filter::{Filter, FilterError, Rule};
use super::index;
use super::root::Stat;
use super::wire::WirePath;

/// How a sync runs, as the request carries it to the other end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSettings {
    /// Remove from the destination what the source does not have.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
    /// Let `delete` empty the destination entirely.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Report what would change and change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Compare content (BLAKE3), not size and mtime.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checksum: bool,
    /// `--exclude` and `--include` rules in command-line order, first match
    /// wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<WireRule>,
    /// Honour `.gitignore` files in the tree.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gitignore: bool,
    /// The most bytes per second the sender sends (`--bwlimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<u64>,
}

/// One filter rule on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireRule {
    /// Take what matches.
    Include(String),
    /// Leave out what matches.
    Exclude(String),
}

impl SyncSettings {
    /// The filter these settings describe.
    pub fn filter(&self) -> Result<Filter, FilterError> {
        let rules: Vec<Rule> = self
            .rules
            .iter()
            .map(|rule| match rule {
                WireRule::Include(p) => Rule::Include(p.clone()),
                WireRule::Exclude(p) => Rule::Exclude(p.clone()),
            })
            .collect();
        Filter::new(&rules, self.gitignore)
    }
}

/// What the side that sends the manifest says of it: whether the entries
/// go under a name of their own (`SRC` without a trailing slash) and
/// whether the source is a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHead {
    /// The name to put the entries under, inside the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<WirePath>,
    /// The source is a directory: deletes may happen in it.
    #[serde(default)]
    pub is_dir: bool,
    /// Entries in the manifest.
    pub entries: u64,
    /// Bytes of all files in it.
    pub total_bytes: u64,
}

/// One change a sync made (or, with `--dry-run`, would make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What happened.
    pub change: ChangeKind,
    /// The path, relative to the destination.
    #[serde(flatten)]
    pub path: WirePath,
    /// Bytes that crossed the wire for it (data, or a delta's chunks).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why it failed, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Change {
    /// A change to `path`.
    pub fn new(change: ChangeKind, path: &[u8], bytes: u64) -> Change {
        Change {
            change,
            path: WirePath::from_bytes(path),
            bytes,
            code: None,
            message: None,
        }
    }
}

/// The kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A file that was not there, sent whole.
    New,
    /// A file that differed, sent whole.
    Update,
    /// A file that differed, sent as the chunks the receiver lacked.
    Delta,
    /// A directory created.
    Mkdir,
    /// A symlink created or changed.
    Link,
    /// Only mode or mtime changed.
    Meta,
    /// Removed (`--delete`).
    Delete,
    /// Not synced; `code` and `message` say why.
    Failed,
}

/// What a sync did, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    /// Files sent whole.
    pub files: u64,
    /// Files sent as deltas.
    pub deltas: u64,
    /// Files, links and directories already in place.
    pub unchanged: u64,
    /// Paths removed.
    pub deleted: u64,
    /// Entries that failed.
    pub failed: u64,
    /// Bytes of whole files' data.
    pub bytes: u64,
    /// Bytes of delta chunks and hash trees.
    pub delta_bytes: u64,
    /// Bytes the receiver copied from its own files instead.
    pub reused_bytes: u64,
    /// Nothing was changed (`--dry-run`).
    #[serde(default)]
    pub dry_run: bool,
    /// Deletes were skipped because something failed, or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes_skipped: Option<String>,
}

/// Where one end keeps its index of a tree: the state directory and the
/// tree's path on this machine.
#[derive(Debug, Clone)]
pub struct IndexPlace {
    /// The state directory.
    pub state_dir: PathBuf,
    /// The synced tree (the source's top, or the destination).
    pub tree: PathBuf,
}

impl IndexPlace {
    /// Loads the index, empty when there is none or it cannot be used.
    pub fn load(&self) -> index::Index {
        match index::Index::path_for(&self.state_dir, &self.tree, "") {
            Ok(path) => index::Index::load(&path).0,
            Err(_) => index::Index::new(),
        }
    }

    /// Saves the index under its lock, if it changed; a failure costs
    /// speed next time, never correctness, so it is only logged.
    pub fn save(&self, index: &index::Index) {
        if !index.is_changed() {
            return;
        }
        let saved = index::Index::path_for(&self.state_dir, &self.tree, "").and_then(|path| {
            super::state::with_lock(&self.state_dir, "sync.lock", || {
                index.save(&path).map_err(|e| e.to_string())
            })
            .map_err(std::io::Error::other)
        });
        if let Err(err) = saved {
            tracing::warn!(
                "could not save the sync index of {}: {err}",
                self.tree.display()
            );
        }
    }
}

/// The metadata an index compares, from a confined stat.
pub fn index_stat(st: &Stat) -> index::Stat {
    index::Stat {
        size: st.len,
        mtime: st.mtime.0,
        mtime_ns: st.mtime.1,
        inode: st.dev_ino.1,
    }
}
