//! The client side of `ferry sync`. A push walks a local tree and makes the
//! server the receiver; a pull makes this end the receiver of the server's
//! tree. Either way the receiver trusts its peer no more than get and put
//! do: every name is confined beneath the destination, symlinks that lead
//! out of it are refused, and what to delete comes from its own walk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::files::{read_lines, MAX_LIST_BYTES};
use super::{expect_ok, Client};
use crate::engine::root::{RelPath, Root};
use crate::engine::sync::{receive, send, walk, IndexPlace, ManifestHead};
use crate::engine::transfer::{Direction, Paced, Progress, RateLimit};
use crate::engine::wire::{to_json_lines, Entry, WirePath};
use crate::error::Error;
use crate::services::sync::{SyncRequest, SyncResult};
use crate::services::Request;

/// What a sync did: its numbers and each change.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// The numbers.
    pub summary: SyncSummary,
    /// Each change (the server may have left some out of a push's report).
    pub changes: Vec<Change>,
    /// Changes the server left out of its report.
    pub changes_left_out: u64,
    /// Paths of the source left out (not files, directories or links).
    pub left_out: Vec<(Vec<u8>, String)>,
    /// Problems reading `.gitignore` patterns.
    pub warnings: Vec<String>,
}

/// A local side of a sync: a path, and whether it was written with a
/// trailing slash (a directory's contents, as rsync reads it).
#[derive(Debug, Clone)]
pub struct LocalSide {
    /// The path.
    pub path: PathBuf,
    /// Written as `DIR/`.
    pub contents: bool,
}

impl Client {
    /// Makes the server's `dest` (relative to its root) the same as the
    /// local `src`.
    pub async fn sync_push(
        &mut self,
        src: &LocalSide,
        dest: &[u8],
        settings: SyncSettings,
        state_dir: Option<&Path>,
        progress: Arc<dyn Progress>,
    ) -> Result<SyncReport, Error> {
        let (root, top) = local_root(&src.path)?;
        let mut filter = settings.filter().map_err(|e| Error::Usage(e.to_string()))?;
        let place = state_dir.map(|dir| IndexPlace {
            state_dir: dir.to_path_buf(),
            tree: src.path.clone(),
        });
        let checksum = settings.checksum;
        let settings_bwlimit = settings.bwlimit;
        // A local directory is its own root; its name is added below.
        let contents = true;
        let walking = {
            let root = root.clone();
            let place = place.clone();
            tokio::task::spawn_blocking(move || {
                let mut index = match (&place, checksum) {
                    (Some(place), true) => Some(place.load()),
                    _ => None,
                };
                let walked = walk::walk(&root, &top, contents, &mut filter, index.as_mut());
                if let (Some(place), Some(index)) = (&place, &index) {
                    place.save(index);
                }
                walked
            })
        };
        let mut walked = walking
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
            .map_err(Error::Files)?;
        if walked.is_dir && !src.contents {
            walked.into = own_name(&src.path);
        }
        let head = ManifestHead {
            into: walked.into.as_deref().map(WirePath::from_bytes),
            is_dir: walked.is_dir,
            entries: walked.manifest.entries.len() as u64,
            total_bytes: walked.manifest.total_bytes,
        };
        let request = SyncRequest {
            path: WirePath::from_bytes(dest),
            push: true,
            head: Some(head),
            contents: false,
            settings,
        };
        let progress: Arc<dyn Progress> = match settings_bwlimit {
            Some(rate) => Arc::new(Paced {
                inner: progress,
                limit: RateLimit::new(rate),
            }),
            None => progress,
        };
        let mut report = SyncReport {
            left_out: walked.manifest.skipped.clone(),
            warnings: walked.problems,
            ..SyncReport::default()
        };
        let body = Bytes::from(to_json_lines(&walked.manifest.entries));
        self.connection()
            .send(Request::Sync(request).to_header(), body)
            .await?;
        send::send(
            self.connection(),
            Direction::Put,
            walked.manifest,
            root,
            MAX_LIST_BYTES,
            place,
            progress.as_ref(),
        )
        .await
        .map_err(Error::from)?;
        let reader = self.connection().reader();
        let header = expect_ok(reader.expect_header().await?)?;
        report.changes = read_lines(reader, &header).await?;
        let result: SyncResult = header
            .to_message()
            .map_err(|e| Error::Protocol(format!("bad sync result: {e}")))?;
        report.summary = result.summary;
        report.changes_left_out = result.changes_left_out;
        Ok(report)
    }

    /// Makes the local `dest` the same as the server's `src` (relative to
    /// its root; `contents` for `SRC/`).
    pub async fn sync_pull(
        &mut self,
        src: &[u8],
        contents: bool,
        dest: &Path,
        settings: SyncSettings,
        state_dir: Option<&Path>,
        progress: Arc<dyn Progress>,
    ) -> Result<SyncReport, Error> {
        if let Err(err) = settings.filter() {
            return Err(Error::Usage(err.to_string()));
        }
        let request = SyncRequest {
            path: WirePath::from_bytes(src),
            push: false,
            head: None,
            contents,
            settings: settings.clone(),
        };
        self.connection()
            .send(Request::Sync(request).to_header(), Bytes::new())
            .await?;
        let reader = self.connection().reader();
        let header = expect_ok(reader.expect_header().await?)?;
        let entries: Vec<Entry> = read_lines(reader, &header).await?;
        let head: ManifestHead = header
            .to_message()
            .map_err(|e| Error::Protocol(format!("bad sync manifest: {e}")))?;
        let mut target = dest.to_path_buf();
        if let Some(into) = &head.into {
            let name = into.to_bytes().map_err(Error::Protocol)?;
            let rel = RelPath::parse(&name).map_err(|e| Error::Protocol(e.to_string()))?;
            if rel.names().len() != 1 {
                return Err(Error::Protocol(
                    "the server named a path to sync into, not a name".into(),
                ));
            }
            target = target.join(rel.to_path());
        }
        if !settings.dry_run {
            std::fs::create_dir_all(&target).map_err(|e| {
                Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", target.display()),
                ))
            })?;
        }
        let dest_root = match Root::new(&target) {
            Ok(root) => Arc::new(root),
            // A dry run into a directory that does not exist yet: every
            // entry would be new.
            Err(_) if settings.dry_run => Arc::new(empty_root()?),
            Err(e) => {
                return Err(Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot open {}: {e}", target.display()),
                )))
            }
        };
        let receiving = receive::Receiving {
            dest: dest_root,
            entries,
            is_dir: head.is_dir,
            settings,
            trust_sent_modes: false,
            index: state_dir.map(|dir| IndexPlace {
                state_dir: dir.to_path_buf(),
                tree: target.clone(),
            }),
        };
        let received = receive::receive(
            self.connection(),
            Direction::Get,
            receiving,
            progress.as_ref(),
        )
        .await
        .map_err(Error::from)?;
        Ok(SyncReport {
            summary: received.summary,
            changes: received.changes,
            ..SyncReport::default()
        })
    }
}

/// The name a directory synced without a trailing slash goes under:
/// its last component (none for `.`, `..` or `/`, whose contents go).
fn own_name(path: &Path) -> Option<Vec<u8>> {
    match path.components().next_back()? {
        std::path::Component::Normal(name) => Some(name.as_encoded_bytes().to_vec()),
        _ => None,
    }
}

/// An empty directory to compare against, for a dry run into nothing.
fn empty_root() -> Result<Root, Error> {
    let dir = tempfile::tempdir().map_err(Error::Io)?;
    let root = Root::new(dir.path()).map_err(Error::Io)?;
    // The handle stays valid after the directory is removed.
    Ok(root)
}

/// The root a local source is walked beneath, and its top inside it: the
/// source itself for a directory (so nothing above it is reachable), its
/// parent for a file.
fn local_root(path: &Path) -> Result<(Arc<Root>, RelPath), Error> {
    let cannot = |e: std::io::Error| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", path.display()),
        ))
    };
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if meta.is_dir() {
        let root = Root::new(path).map_err(cannot)?;
        // Walked as `into` under its own name unless written as `DIR/`:
        // the top is the root, and the walk names it from the path.
        return Ok((Arc::new(root), RelPath::root()));
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{} names no file", path.display())))?;
    let root = Root::new(parent).map_err(cannot)?;
    let top = RelPath::parse(name.as_encoded_bytes()).map_err(|e| Error::Usage(e.to_string()))?;
    Ok((Arc::new(root), top))
}

impl SyncReport {
    /// The outcome as the exit status gives it: an error when anything
    /// failed, or when the deletes asked for were skipped or refused, so a
    /// sync that exits 0 left the destination exactly as asked.
    pub fn outcome(&self) -> Result<(), Error> {
        if self.summary.failed > 0 {
            return Err(Error::TransferFailed {
                failed: self.summary.failed as usize,
            });
        }
        if let Some(why) = &self.summary.deletes_skipped {
            return Err(Error::Remote(crate::protocol::ErrorReply::new(
                crate::protocol::ErrorCode::NotAllowed,
                why.clone(),
            )));
        }
        Ok(())
    }
}

pub use crate::engine::sync::{Change, ChangeKind, SyncSettings, SyncSummary, WireRule};

/// The rules of an `--exclude-from` file, read as rsync reads it.
pub fn rules_from_file(text: &str) -> Vec<WireRule> {
    crate::engine::filter::Rule::parse_file(text)
        .into_iter()
        .map(|rule| match rule {
            crate::engine::filter::Rule::Include(p) => WireRule::Include(p),
            crate::engine::filter::Rule::Exclude(p) => WireRule::Exclude(p),
        })
        .collect()
}
