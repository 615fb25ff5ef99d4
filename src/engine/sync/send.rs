//! The side that has the source tree, once its manifest went out: reads
//! the receiver's wants, sends the whole files as get and put do, then the
//! delta files.

use std::fs::File;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};

use crate::connection::{ByteStream, Connection};

use super::super::chunks::{chunk_reader, ChunkedFile};
use super::super::error::{show, FileError};
use super::super::index::{IndexEntry, Lookup};
use super::super::manifest::Manifest;
use super::super::root::{fstat, RelPath, Root};
use super::super::transfer::{read_wants, send_wanted, Direction, Progress, TransferError};
use super::super::wire::WantAction;
use super::delta::{self, DeltaSent, SourceFile};
use super::walk::path_key;
use super::{index_stat, IndexPlace};

/// What the sending side sent.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// Files this end failed to send whole (changed, unreadable).
    pub failed: Vec<u64>,
    /// Files sent as deltas.
    pub delta_files: u64,
    /// What went into the deltas.
    pub delta: DeltaSent,
}

/// Runs the sending side: wants, whole files, deltas. `root` is what the
/// manifest's paths are read beneath; `index` where this end keeps its
/// chunks, if it keeps them.
pub async fn send<S: ByteStream>(
    conn: &mut Connection<S>,
    direction: Direction,
    manifest: Manifest,
    root: Arc<Root>,
    max_wants_bytes: u64,
    index: Option<IndexPlace>,
    progress: &dyn Progress,
) -> Result<Sent, TransferError> {
    let wants = read_wants(conn.reader(), direction, max_wants_bytes).await?;
    let deltas: Vec<u64> = wants
        .iter()
        .filter(|w| matches!(w.action, WantAction::Delta))
        .map(|w| w.i)
        .collect();
    let manifest = Arc::new(manifest);
    let summary = send_wanted(
        conn,
        direction,
        manifest.clone(),
        Some(root.clone()),
        wants,
        false,
        progress,
    )
    .await?;
    let mut sent = Sent {
        failed: summary.failed,
        delta_files: deltas.len() as u64,
        ..Sent::default()
    };
    if deltas.is_empty() {
        return Ok(sent);
    }
    let chunking_root = root.clone();
    let files = tokio::task::spawn_blocking(move || {
        chunk_sources(&chunking_root, &manifest, &deltas, index.as_ref())
    })
    .await
    .map_err(|err| TransferError::Protocol(format!("chunking failed: {err}")))??;
    sent.delta = delta::send(conn, root, files, progress).await?;
    Ok(sent)
}

/// Cuts each delta file into chunks, or takes its chunks from the index
/// when its stat is unchanged, and records what it cut.
fn chunk_sources(
    root: &Root,
    manifest: &Manifest,
    deltas: &[u64],
    place: Option<&IndexPlace>,
) -> Result<Vec<SourceFile>, TransferError> {
    let mut index = place.map(IndexPlace::load).unwrap_or_default();
    let mut files = Vec::with_capacity(deltas.len());
    for &i in deltas {
        let entry = manifest.entries.get(i as usize).ok_or_else(|| {
            TransferError::Protocol(format!("a delta wanted for entry {i}, which is not there"))
        })?;
        let rel = entry
            .path
            .to_bytes()
            .map_err(TransferError::Protocol)
            .and_then(|p| RelPath::parse(&p).map_err(|e| TransferError::Protocol(e.to_string())))?;
        let path = manifest
            .in_root
            .concat(&rel)
            .map_err(|e| TransferError::Protocol(e.to_string()))?;
        let shown = path.to_bytes();
        let key = path_key(&manifest.in_root, &path);
        let opened = root
            .open(
                &path,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
                Mode::empty(),
            )
            .map(File::from)
            .and_then(|file| Ok((fstat(&file)?, file)));
        let chunked = match opened {
            Ok((st, file)) => {
                let stat = index_stat(&st);
                match index.lookup(&key, &stat) {
                    Lookup::Unchanged(known) => Ok(ChunkedFile {
                        chunks: known.chunks.clone(),
                        len: known.stat.size,
                        file_hash: known.file_hash,
                    }),
                    _ => chunk_reader(file)
                        .inspect(|chunked| {
                            index.insert(&key, IndexEntry::new(stat, chunked.clone()))
                        })
                        .map_err(|e| FileError::io(&shown, &e)),
                }
            }
            Err(err) => Err(FileError::io(&shown, &err)),
        };
        // A file that cannot be read now, or changed size since the walk,
        // is withdrawn: the receiver is told so instead of its tree.
        let (chunked, failure) = match chunked {
            Ok(chunked) if chunked.len == entry.file_size => (chunked, None),
            Ok(_) => (
                ChunkedFile::default(),
                Some(FileError::new(
                    crate::protocol::ErrorCode::Changed,
                    format!(
                        "{}: its size changed while it was synced; sync again",
                        show(&shown)
                    ),
                )),
            ),
            Err(err) => (ChunkedFile::default(), Some(err)),
        };
        files.push(SourceFile {
            i,
            path,
            chunked,
            failure,
        });
    }
    if let Some(place) = place {
        place.save(&index);
    }
    Ok(files)
}
