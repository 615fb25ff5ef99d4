//! Files that exist on both ends and differ travel as deltas, after the
//! whole files (PROTOCOL.md, "sync"). Both ends cut their files into
//! content-defined chunks ([`super::super::chunks`]) and the receiver learns
//! which chunks it lacks by walking the sender's tree of hashes from the
//! top ([`super::super::hash_tree`]): an unchanged region costs one hash.
//!
//! ```text
//! sender    {"sync_tree": 0} + one group per delta file: its root
//! receiver  {"sync_open": 0} + one bit per node: open it (or, for a
//!           chunk, send it)
//! sender    {"sync_tree": 1} + one group per opened node: its children
//! ...       until the receiver opens no node above the chunks
//! sender    per delta file: {"sync_chunk": i} + a chunk's bytes, for each
//!           chunk asked for, in file order; then {"file_end": i, "blake3"}
//!           (or with `error`); then {"end": true}
//! ```
//!
//! A group is `level: u8`, `count: u16 LE`, then `count` children of 40
//! bytes each (BLAKE3, then the bytes beneath it as u64 LE). The receiver
//! checks every group against the node it asked about (children hash to
//! it, their bytes add up to it, one level down), every chunk against its
//! leaf, and the whole file against the sender's BLAKE3 before it publishes.
//! Chunks it already has are copied from its own files; the whole file's
//! BLAKE3, checked before it is published, catches a copied chunk whose file
//! changed behind the index's back (the index is only a cache), and the
//! index then forgets the files that file reused.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::connection::{ByteStream, Connection};
use crate::limits::{SYNC_MAX_NODES_PER_ROUND, SYNC_MAX_TREE_LEVELS};
use crate::protocol::{ErrorCode, Header};

use super::super::atomic::{FileMeta, PartialFile, SourceId, WriteError};
use super::super::chunks::{Chunk, ChunkedFile, Hash32, MAX_CHUNK_BYTES};
use super::super::error::{show, FileError};
use super::super::hash_tree::{parent_hash, Node, Tree, MAX_FAN_OUT};
use super::super::root::{RelPath, Root};
use super::super::transfer::{FailedFile, Progress, TransferError};
use super::super::wire::{parse_hash, DataFrame, Entry, EntryError, FileEnd};

/// Pieces queued for the file writer, and again for the whole-file hasher:
/// enough that neither stage waits on the one before, few enough that
/// memory stays a few MiB.
const PIPELINE_QUEUE: usize = 8;

/// Bytes of a receiver's own file read and written at once when a run of
/// its chunks is reused: a few system calls and one message to the hasher
/// per MiB, not per chunk.
const COPY_BYTES: usize = 1024 * 1024;

/// Bytes of one child record in a group.
const CHILD_BYTES: usize = 40;
/// Bytes of a group's level and count.
const GROUP_HEAD_BYTES: usize = 3;

/// `{"sync_tree": round}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TreeFrame {
    sync_tree: u32,
}

/// `{"sync_open": round}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenFrame {
    sync_open: u32,
}

/// `{"sync_chunk": i}`: one chunk of file `i`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkFrame {
    sync_chunk: u64,
}

/// A file the sender has cut into chunks, ready for the compare.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its index in the manifest.
    pub i: u64,
    /// Where it is read from: beneath the sender's root.
    pub path: RelPath,
    /// Its chunks and whole-file hash, from the index or just cut.
    pub chunked: ChunkedFile,
    /// Why it cannot be sent after all: it is withdrawn.
    pub failure: Option<FileError>,
}

/// The level byte of a group that withdraws its file: the sender cannot
/// send it (it changed or cannot be read), and says why in its end frame.
const WITHDRAWN: u8 = u8::MAX;

/// A node the sender sent and the receiver may open: which file, which
/// level, and the node itself.
#[derive(Debug, Clone, Copy)]
struct SentNode {
    file: usize,
    level: usize,
    node: Node,
}

/// The sender's side: the tree rounds, then the chunks asked for. `files`
/// are the delta files in the order of the wants, read beneath `root`.
pub async fn send<S: ByteStream>(
    conn: &mut Connection<S>,
    root: Arc<Root>,
    files: Vec<SourceFile>,
    progress: &dyn Progress,
) -> Result<DeltaSent, TransferError> {
    let trees: Vec<Tree> = files
        .iter()
        .map(|f| Tree::build(&f.chunked.chunks))
        .collect();
    let mut frontier: Vec<SentNode> = Vec::new();
    let mut body = BytesMut::new();
    for (file, tree) in trees.iter().enumerate() {
        if files[file].failure.is_some() {
            body.put_u8(WITHDRAWN);
            body.put_u16_le(0);
            continue;
        }
        match tree.root_node() {
            Some((level, node)) => {
                put_group(&mut body, level, std::slice::from_ref(node));
                frontier.push(SentNode {
                    file,
                    level,
                    node: *node,
                });
            }
            None => put_group(&mut body, 0, &[]),
        }
    }
    let mut wanted: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
    let mut sent = DeltaSent::default();
    for round in 0..=SYNC_MAX_TREE_LEVELS as u32 {
        sent.tree_bytes += body.len() as u64;
        conn.send(
            Header::from_message(&TreeFrame { sync_tree: round }),
            body.split().freeze(),
        )
        .await?;
        if frontier.is_empty() {
            break;
        }
        let bits = read_open(conn, round, frontier.len()).await?;
        let mut next = Vec::new();
        for (k, sent_node) in frontier.iter().enumerate() {
            if bits[k / 8] & (1 << (k % 8)) == 0 {
                continue;
            }
            if sent_node.level == 0 {
                wanted[sent_node.file].push(sent_node.node.first_chunk);
                continue;
            }
            let children = trees[sent_node.file].children(sent_node.level, &sent_node.node);
            put_group(&mut body, sent_node.level - 1, children);
            next.extend(children.iter().map(|child| SentNode {
                file: sent_node.file,
                level: sent_node.level - 1,
                node: *child,
            }));
        }
        if next.is_empty() {
            break;
        }
        if next.len() > SYNC_MAX_NODES_PER_ROUND {
            return Err(TransferError::Protocol(format!(
                "the receiver opened {} nodes in one round, over the cap of {SYNC_MAX_NODES_PER_ROUND}",
                next.len()
            )));
        }
        frontier = next;
    }
    send_chunks(conn, root, files, wanted, &mut sent, progress).await?;
    Ok(sent)
}

/// What the sender sent of its deltas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaSent {
    /// Bytes of tree frames' bodies.
    pub tree_bytes: u64,
    /// Bytes of chunks.
    pub chunk_bytes: u64,
    /// Files the sender could not send (changed or unreadable).
    pub failed: Vec<u64>,
}

fn put_group(body: &mut BytesMut, level: usize, children: &[Node]) {
    body.put_u8(level as u8);
    body.put_u16_le(children.len() as u16);
    for child in children {
        body.put_slice(&child.hash);
        body.put_u64_le(child.bytes);
    }
}

async fn read_open<S: ByteStream>(
    conn: &mut Connection<S>,
    round: u32,
    nodes: usize,
) -> Result<Vec<u8>, TransferError> {
    let reader = conn.reader();
    let header = reader.expect_header().await?;
    let frame: OpenFrame = header
        .to_message()
        .map_err(|_| TransferError::Protocol("expected a sync_open frame".into()))?;
    let expected = nodes.div_ceil(8) as u64;
    if frame.sync_open != round || header.size() != expected {
        return Err(TransferError::Protocol(format!(
            "expected sync_open {round} of {expected} bytes, got round {} of {} bytes",
            frame.sync_open,
            header.size()
        )));
    }
    Ok(reader.read_body().await?.to_vec())
}

/// Reads the asked chunks off the disk on a blocking thread and sends them,
/// each file's followed by its end frame.
async fn send_chunks<S: ByteStream>(
    conn: &mut Connection<S>,
    root: Arc<Root>,
    files: Vec<SourceFile>,
    mut wanted: Vec<Vec<usize>>,
    sent: &mut DeltaSent,
    progress: &dyn Progress,
) -> Result<(), TransferError> {
    let (tx, mut rx) = mpsc::channel::<(Header, Bytes)>(4);
    let reader = tokio::task::spawn_blocking(move || {
        for (file, source) in files.iter().enumerate() {
            wanted[file].sort_unstable();
            wanted[file].dedup();
            let read = match &source.failure {
                Some(err) => Err(Some(err.clone())),
                None => read_wanted_chunks(&root, source, &wanted[file], &tx),
            };
            let end = match read {
                Ok(()) => FileEnd {
                    file_end: source.i,
                    blake3: Some(
                        blake3::Hash::from(source.chunked.file_hash)
                            .to_hex()
                            .to_string(),
                    ),
                    md5: None,
                    error: None,
                    code: None,
                },
                Err(None) => return,
                Err(Some(err)) => FileEnd::failed(source.i, err.code, err.message),
            };
            if tx
                .blocking_send((DataFrame::End(end).to_header(0), Bytes::new()))
                .is_err()
            {
                return;
            }
        }
        let _ = tx.blocking_send((DataFrame::Done.to_header(0), Bytes::new()));
    });
    while let Some((header, body)) = rx.recv().await {
        if let Ok(end) = header.to_message::<FileEnd>() {
            if header.get("file_end").is_some() && end.error.is_some() {
                sent.failed.push(end.file_end);
            }
        }
        sent.chunk_bytes += body.len() as u64;
        progress.advanced(body.len() as u64);
        if let Some(wait) = progress.delay_for(body.len() as u64) {
            if !wait.is_zero() {
                conn.writer().flush().await?;
                tokio::time::sleep(wait).await;
            }
        }
        conn.writer()
            .send_header(&header.with_size(body.len() as u64))
            .await?;
        if !body.is_empty() {
            conn.writer().send_body(body).await?;
        }
    }
    conn.writer().flush().await?;
    reader
        .await
        .map_err(|err| TransferError::Protocol(format!("the chunk reader failed: {err}")))?;
    Ok(())
}

/// Sends file `source`'s chunks at `wanted` (indexes in its chunk list).
/// `Err(None)`: the connection side went away.
fn read_wanted_chunks(
    root: &Root,
    source: &SourceFile,
    wanted: &[usize],
    tx: &mpsc::Sender<(Header, Bytes)>,
) -> Result<(), Option<FileError>> {
    if wanted.is_empty() {
        return Ok(());
    }
    let shown = source.path.to_bytes();
    let file = root
        .open(
            &source.path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|e| Some(FileError::io(&shown, &e)))?;
    for &k in wanted {
        let Some(chunk) = source.chunked.chunks.get(k) else {
            return Err(Some(FileError::new(ErrorCode::Internal, "no such chunk")));
        };
        let mut buf = vec![0u8; chunk.len as usize];
        file.read_exact_at(&mut buf, chunk.offset)
            .map_err(|e| Some(changed(&shown, &e.to_string())))?;
        if *blake3::hash(&buf).as_bytes() != chunk.hash {
            return Err(Some(changed(
                &shown,
                "its content changed while it was synced",
            )));
        }
        let header = Header::from_message(&ChunkFrame {
            sync_chunk: source.i,
        });
        tx.blocking_send((header, Bytes::from(buf)))
            .map_err(|_| None)?;
    }
    Ok(())
}

fn changed(shown: &[u8], why: &str) -> FileError {
    FileError::new(
        ErrorCode::Changed,
        format!("{}: {why}; sync again", show(shown)),
    )
}

/// Chunks the receiver holds in its own files, by the hash of every node
/// of their trees, so a region it has anywhere costs one hash.
#[derive(Debug, Default)]
pub struct KnownChunks {
    files: Vec<(RelPath, Vec<Chunk>)>,
    nodes: HashMap<Hash32, KnownRef>,
}

/// Where a known node's chunks are: a file and a run of its chunks.
#[derive(Debug, Clone, Copy)]
struct KnownRef {
    file: usize,
    first_chunk: usize,
    chunk_count: usize,
}

impl KnownChunks {
    /// Adds the chunks of the file at `path` (beneath the receiver's root).
    pub fn add(&mut self, path: RelPath, chunks: Vec<Chunk>) {
        let file = self.files.len();
        for (_, node) in Tree::build(&chunks).nodes() {
            self.nodes.entry(node.hash).or_insert(KnownRef {
                file,
                first_chunk: node.first_chunk,
                chunk_count: node.chunk_count,
            });
        }
        self.files.push((path, chunks));
    }

    /// Whether no chunk is known.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// One delta file the receiver writes.
#[derive(Debug, Clone)]
pub struct DeltaTarget {
    /// Its index in the manifest.
    pub i: u64,
    /// Where it goes, beneath the receiver's root.
    pub path: RelPath,
    /// Its manifest entry.
    pub entry: Entry,
    /// Mode and mtime it gets.
    pub meta: FileMeta,
}

/// A piece of a delta file, in file order.
#[derive(Debug, Clone, Copy)]
enum Piece {
    /// Copied from a file the receiver has: these chunks of `known.files`.
    Copy(KnownRef),
    /// Sent by the sender.
    Receive { hash: Hash32, len: u32 },
}

/// A node the receiver asked to open.
#[derive(Debug, Clone, Copy)]
struct AskedNode {
    file: usize,
    level: usize,
    hash: Hash32,
    bytes: u64,
    offset: u64,
}

/// What the receiver did with its delta files.
#[derive(Debug, Default)]
pub struct DeltaReceived {
    /// Each published file's index and chunks (for the index, without
    /// reading it again).
    pub published: Vec<(u64, ChunkedFile)>,
    /// Files that failed, and why.
    pub failed: Vec<FailedFile>,
    /// Bytes of chunks received.
    pub chunk_bytes: u64,
    /// Bytes copied from the receiver's own files.
    pub copied_bytes: u64,
    /// Bytes of tree frames received.
    pub tree_bytes: u64,
    /// Files of this end whose chunks a failed file reused: the index
    /// must forget them.
    pub stale: Vec<RelPath>,
}

/// The receiver's side: walks the sender's trees against `known`, then
/// writes each target from its own chunks and the sender's, publishing
/// each only once its whole-file BLAKE3 matches.
pub async fn receive<S: ByteStream>(
    conn: &mut Connection<S>,
    dest: Arc<Root>,
    targets: Vec<DeltaTarget>,
    known: Arc<KnownChunks>,
) -> Result<DeltaReceived, TransferError> {
    let mut pieces: Vec<Vec<(u64, Piece)>> = vec![Vec::new(); targets.len()];
    let mut asked: Vec<AskedNode> = Vec::new();
    let mut received = DeltaReceived::default();
    let mut withdrawn = vec![false; targets.len()];
    for round in 0..=SYNC_MAX_TREE_LEVELS as u32 {
        let groups = if round == 0 {
            targets.len()
        } else {
            asked.len()
        };
        let body = read_tree(conn, round, groups, &mut received).await?;
        let mut at = &body[..];
        let mut next = Vec::new();
        let mut bits = vec![0u8; 0];
        let mut k = 0usize;
        for g in 0..groups {
            let (level, children) = take_group(&mut at)?;
            let (file, mut offset) = if round == 0 {
                if level == WITHDRAWN as usize && children.is_empty() {
                    withdrawn[g] = true;
                    continue;
                }
                check_root(&targets[g], level, &children)?;
                (g, 0)
            } else {
                let parent = asked[g];
                check_children(&parent, level, &children)?;
                (parent.file, parent.offset)
            };
            for &(hash, bytes) in &children {
                if level == 0 && (bytes == 0 || bytes > MAX_CHUNK_BYTES as u64) {
                    return Err(TransferError::Protocol(format!(
                        "a chunk of {bytes} bytes; chunks are 1 to {MAX_CHUNK_BYTES}"
                    )));
                }
                let open = match known.nodes.get(&hash) {
                    Some(found) if bytes_of(&known, found) == bytes => {
                        pieces[file].push((offset, Piece::Copy(*found)));
                        false
                    }
                    _ if level == 0 => {
                        pieces[file].push((
                            offset,
                            Piece::Receive {
                                hash,
                                len: bytes as u32,
                            },
                        ));
                        true
                    }
                    _ => {
                        next.push(AskedNode {
                            file,
                            level,
                            hash,
                            bytes,
                            offset,
                        });
                        true
                    }
                };
                if k.is_multiple_of(8) {
                    bits.push(0);
                }
                if open {
                    bits[k / 8] |= 1 << (k % 8);
                }
                k += 1;
                offset += bytes;
            }
        }
        if !at.is_empty() {
            return Err(TransferError::Protocol(
                "bytes after the last group of a sync_tree frame".into(),
            ));
        }
        if k == 0 {
            break;
        }
        if next.len() > SYNC_MAX_NODES_PER_ROUND {
            return Err(TransferError::Protocol(format!(
                "{} nodes to open in one round, over the cap of {SYNC_MAX_NODES_PER_ROUND}; \
                 sync this file in smaller pieces",
                next.len()
            )));
        }
        conn.send(
            Header::from_message(&OpenFrame { sync_open: round }),
            Bytes::from(bits),
        )
        .await?;
        if next.is_empty() {
            break;
        }
        if round as usize == SYNC_MAX_TREE_LEVELS {
            return Err(TransferError::Protocol(format!(
                "a tree of more than {SYNC_MAX_TREE_LEVELS} levels"
            )));
        }
        asked = next;
    }
    write_all(conn, dest, targets, known, (pieces, withdrawn), received).await
}

async fn read_tree<S: ByteStream>(
    conn: &mut Connection<S>,
    round: u32,
    groups: usize,
    received: &mut DeltaReceived,
) -> Result<Bytes, TransferError> {
    let reader = conn.reader();
    let header = reader.expect_header().await?;
    let frame: TreeFrame = header
        .to_message()
        .map_err(|_| TransferError::Protocol("expected a sync_tree frame".into()))?;
    let cap = groups as u64 * (GROUP_HEAD_BYTES + MAX_FAN_OUT * CHILD_BYTES) as u64;
    if frame.sync_tree != round || header.size() > cap {
        return Err(TransferError::Protocol(format!(
            "expected sync_tree {round} of at most {cap} bytes, got round {} of {} bytes",
            frame.sync_tree,
            header.size()
        )));
    }
    received.tree_bytes += header.size();
    Ok(reader.read_body().await?)
}

/// One group of a `sync_tree` body: the children's level and the children.
pub type Group = (usize, Vec<(Hash32, u64)>);

/// Parses a whole `sync_tree` body of exactly `groups` groups, as the
/// receiver reads it (pure: for the fuzz target and the tests).
pub fn parse_groups(body: &[u8], groups: usize) -> Result<Vec<Group>, String> {
    let mut at = body;
    let mut out = Vec::with_capacity(groups.min(body.len() / GROUP_HEAD_BYTES + 1));
    for _ in 0..groups {
        out.push(take_group(&mut at).map_err(|e| e.to_string())?);
    }
    if !at.is_empty() {
        return Err("bytes after the last group of a sync_tree frame".into());
    }
    Ok(out)
}

fn take_group(at: &mut &[u8]) -> Result<Group, TransferError> {
    let short = || TransferError::Protocol("a sync_tree frame ends inside a group".into());
    if at.len() < GROUP_HEAD_BYTES {
        return Err(short());
    }
    let level = at[0] as usize;
    let count = u16::from_le_bytes([at[1], at[2]]) as usize;
    *at = &at[GROUP_HEAD_BYTES..];
    if count > MAX_FAN_OUT {
        return Err(TransferError::Protocol(format!(
            "a node of {count} children; at most {MAX_FAN_OUT}"
        )));
    }
    if at.len() < count * CHILD_BYTES {
        return Err(short());
    }
    let children = at[..count * CHILD_BYTES]
        .chunks_exact(CHILD_BYTES)
        .map(|record| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&record[..32]);
            let bytes = u64::from_le_bytes(record[32..].try_into().expect("8 bytes"));
            (hash, bytes)
        })
        .collect();
    *at = &at[count * CHILD_BYTES..];
    Ok((level, children))
}

fn check_root(
    target: &DeltaTarget,
    level: usize,
    children: &[(Hash32, u64)],
) -> Result<(), TransferError> {
    let size = target.entry.file_size;
    let fits = match children {
        [] => size == 0,
        [(_, bytes)] => *bytes == size && size > 0,
        _ => false,
    };
    if !fits || level >= SYNC_MAX_TREE_LEVELS {
        return Err(TransferError::Protocol(format!(
            "file {}: a root that does not describe its {size} bytes",
            target.i
        )));
    }
    Ok(())
}

fn check_children(
    parent: &AskedNode,
    level: usize,
    children: &[(Hash32, u64)],
) -> Result<(), TransferError> {
    let total: Option<u64> = children
        .iter()
        .try_fold(0u64, |sum, (_, bytes)| sum.checked_add(*bytes));
    if children.is_empty()
        || level + 1 != parent.level
        || total != Some(parent.bytes)
        || parent_hash(parent.level, children) != parent.hash
    {
        return Err(TransferError::Protocol(
            "children that do not hash to the node asked about".into(),
        ));
    }
    Ok(())
}

fn bytes_of(known: &KnownChunks, found: &KnownRef) -> u64 {
    known.files[found.file].1[found.first_chunk..found.first_chunk + found.chunk_count]
        .iter()
        .map(|c| u64::from(c.len))
        .sum()
}

/// What the socket side hands the file thread.
enum Arrived {
    Chunk(u64, Bytes),
    End(FileEnd),
}

async fn write_all<S: ByteStream>(
    conn: &mut Connection<S>,
    dest: Arc<Root>,
    targets: Vec<DeltaTarget>,
    known: Arc<KnownChunks>,
    (pieces, withdrawn): (Vec<Vec<(u64, Piece)>>, Vec<bool>),
    mut received: DeltaReceived,
) -> Result<DeltaReceived, TransferError> {
    let (tx, rx) = mpsc::channel::<Arrived>(8);
    let writer = tokio::task::spawn_blocking(move || {
        write_files(&dest, &targets, &known, (pieces, withdrawn), rx)
    });
    let reading = async move {
        let reader = conn.reader();
        let mut chunk_bytes = 0u64;
        loop {
            let header = reader.expect_header().await?;
            if let Some(i) = header.get("sync_chunk").and_then(|v| v.as_u64()) {
                if header.size() > MAX_CHUNK_BYTES as u64 {
                    return Err(TransferError::Protocol(format!(
                        "a chunk of {} bytes; chunks are at most {MAX_CHUNK_BYTES}",
                        header.size()
                    )));
                }
                let body = reader.read_body().await?;
                chunk_bytes += body.len() as u64;
                if tx.send(Arrived::Chunk(i, body)).await.is_err() {
                    return Ok(chunk_bytes);
                }
                continue;
            }
            match DataFrame::from_header(&header).map_err(TransferError::Protocol)? {
                DataFrame::End(end) => {
                    if tx.send(Arrived::End(end)).await.is_err() {
                        return Ok(chunk_bytes);
                    }
                }
                DataFrame::Done => return Ok(chunk_bytes),
                DataFrame::Head(_) => {
                    return Err(TransferError::Protocol(
                        "a whole file's data in the delta phase".into(),
                    ))
                }
            }
        }
    };
    let mut writer = writer;
    tokio::pin!(reading);
    // The file thread ends first only when it refused what it was sent:
    // that error is the answer, whatever the socket side is waiting for.
    let (read, written) = tokio::select! {
        read = &mut reading => (read, (&mut writer).await),
        written = &mut writer => (Ok(0), written),
    };
    let written = written
        .map_err(|err| TransferError::Protocol(format!("the delta writer failed: {err}")))?;
    let written = written?;
    received.chunk_bytes += read?;
    received.published = written.published;
    received.failed = written.failed;
    received.copied_bytes = written.copied_bytes;
    received.stale = written.stale;
    Ok(received)
}

struct Written {
    published: Vec<(u64, ChunkedFile)>,
    failed: Vec<FailedFile>,
    copied_bytes: u64,
    stale: Vec<RelPath>,
}

/// The file thread: each target in order, its pieces in file order.
fn write_files(
    dest: &Root,
    targets: &[DeltaTarget],
    known: &KnownChunks,
    (pieces, withdrawn): (Vec<Vec<(u64, Piece)>>, Vec<bool>),
    mut rx: mpsc::Receiver<Arrived>,
) -> Result<Written, TransferError> {
    let mut written = Written {
        published: Vec::new(),
        failed: Vec::new(),
        copied_bytes: 0,
        stale: Vec::new(),
    };
    let mut sources: HashMap<usize, Option<File>> = HashMap::new();
    for ((target, mut pieces), withdrawn) in targets.iter().zip(pieces).zip(withdrawn) {
        if withdrawn {
            match rx.blocking_recv() {
                Some(Arrived::End(end)) if end.file_end == target.i && end.error.is_some() => {
                    written.failed.push(FailedFile {
                        error: EntryError {
                            i: target.i,
                            code: sender_failed(&end).code.as_str().into(),
                            message: sender_failed(&end).message,
                        },
                        by_sender: true,
                    });
                    continue;
                }
                _ => {
                    return Err(TransferError::Protocol(format!(
                        "file {} was withdrawn without saying why",
                        target.i
                    )))
                }
            }
        }
        pieces.sort_by_key(|(offset, _)| *offset);
        let mut file = FileWrite {
            dest,
            target,
            known,
            rx: &mut rx,
            sources: &mut sources,
            copied_bytes: 0,
            used_sources: Vec::new(),
        };
        match file.write(&pieces)? {
            Ok(chunked) => written.published.push((target.i, chunked)),
            Err(failure) => {
                // Whatever it reused may be what changed: the index
                // forgets those files, so the next sync cuts them anew.
                for &source in &file.used_sources {
                    written.stale.push(known.files[source].0.clone());
                }
                written.failed.push(FailedFile {
                    error: EntryError {
                        i: target.i,
                        code: failure.error.code.as_str().into(),
                        message: failure.error.message,
                    },
                    by_sender: failure.by_sender,
                })
            }
        }
        written.copied_bytes += file.copied_bytes;
    }
    match rx.blocking_recv() {
        None => Ok(written),
        Some(_) => Err(TransferError::Protocol(
            "data after the last delta file".into(),
        )),
    }
}

/// Bytes for the whole-file hasher: a copy buffer it hands back, or a
/// chunk as it came off the wire.
enum Hashed {
    Copied(Vec<u8>),
    Received(Bytes),
}

/// The head of a delta file's pipeline: pieces go out to the thread that
/// writes them and on to the one that hashes them; copy buffers come back.
struct PipelineFeed {
    to_writer: std::sync::mpsc::SyncSender<Hashed>,
    pool: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl PipelineFeed {
    /// A buffer of `len` bytes for the next copy, reused when the hasher
    /// is done with one (its old bytes are overwritten, not zeroed): at
    /// most twice [`PIPELINE_QUEUE`] and a few are ever allocated.
    fn buffer(&self, len: usize) -> Vec<u8> {
        let mut buf = self
            .pool
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(COPY_BYTES));
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf.truncate(len);
        buf
    }

    /// Hands bytes to the writer; `false` when it has stopped on an error,
    /// which its join returns.
    fn send(&self, piece: Hashed) -> bool {
        self.to_writer.send(piece).is_ok()
    }
}

impl Hashed {
    fn bytes(&self) -> &[u8] {
        match self {
            Hashed::Copied(buf) => buf,
            Hashed::Received(body) => body,
        }
    }
}

/// One delta file being written.
struct FileWrite<'a> {
    dest: &'a Root,
    target: &'a DeltaTarget,
    known: &'a KnownChunks,
    rx: &'a mut mpsc::Receiver<Arrived>,
    sources: &'a mut HashMap<usize, Option<File>>,
    copied_bytes: u64,
    /// The known files this one took chunks from.
    used_sources: Vec<usize>,
}

/// Why one delta file was not kept; the transfer goes on.
struct FileFailure {
    error: FileError,
    by_sender: bool,
}

/// Where the file's frames stand when it fails: whether its end frame was
/// read, so the rest are skipped exactly once.
enum Pending {
    EndToCome,
    EndRead,
}

impl FileWrite<'_> {
    /// Writes the file; every frame the sender sent for it is read,
    /// whatever happens. `Err` only when the sender broke the protocol.
    fn write(
        &mut self,
        pieces: &[(u64, Piece)],
    ) -> Result<Result<ChunkedFile, FileFailure>, TransferError> {
        let shown = self.target.path.to_bytes();
        let (dir, name) = match self.dest.parent_of(&self.target.path) {
            Ok(found) => found,
            Err(err) => return self.fail(FileError::io(&shown, &err), false, Pending::EndToCome),
        };
        let source_id = SourceId {
            file_size: self.target.entry.file_size,
            mtime: (self.target.entry.mtime, self.target.entry.mtime_ns),
        };
        let mut partial = match PartialFile::open_in(Arc::new(dir), name, &source_id, false) {
            Ok(partial) => partial,
            Err(err) => {
                let error = FileError::new(ErrorCode::IoError, format!("{}: {err}", show(&shown)));
                return self.fail(error, false, Pending::EndToCome);
            }
        };
        // Three stages on their own threads, so a run copied from the old
        // file keeps both cores busy: this one reads (and takes chunks off
        // the wire and checks them), one writes, one computes the whole
        // file's BLAKE3. Copy buffers come back from the hasher.
        let (to_writer, to_write) = std::sync::mpsc::sync_channel::<Hashed>(PIPELINE_QUEUE);
        let (to_hasher, to_hash) = std::sync::mpsc::sync_channel::<Hashed>(PIPELINE_QUEUE);
        let (to_pool, pool) = std::sync::mpsc::channel::<Vec<u8>>();
        let hasher = std::thread::spawn(move || {
            let mut hasher = blake3::Hasher::new();
            for piece in to_hash {
                hasher.update(piece.bytes());
                if let Hashed::Copied(buf) = piece {
                    let _ = to_pool.send(buf);
                }
            }
            hasher.finalize()
        });
        let (written, wrote) = std::thread::scope(|scope| {
            let partial = &mut partial;
            let writer = scope.spawn(move || {
                for piece in to_write {
                    partial.write_unhashed(piece.bytes())?;
                    // If the hasher is gone the file's hash will not match
                    // and it is not published: nothing to do here.
                    let _ = to_hasher.send(piece);
                }
                Ok::<(), WriteError>(())
            });
            let feed = PipelineFeed { to_writer, pool };
            let written = self.write_pieces(pieces, &shown, &feed);
            drop(feed);
            (written, writer.join())
        });
        let wrote = match wrote {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!("{}: {err}", show(&shown))),
            Err(_) => Some(format!("{}: the file writing thread failed", show(&shown))),
        };
        let chunks = match (written, wrote) {
            (Err(err), _) => {
                partial.remove();
                return Err(err);
            }
            (Ok(Err((failure, pending))), None) => {
                partial.remove();
                return self.fail(failure.error, failure.by_sender, pending);
            }
            (Ok(Err((_, pending))), Some(message)) => {
                partial.remove();
                return self.fail(FileError::new(ErrorCode::IoError, message), false, pending);
            }
            (Ok(Ok(_)), Some(message)) => {
                partial.remove();
                let error = FileError::new(ErrorCode::IoError, message);
                return self.fail(error, false, Pending::EndToCome);
            }
            (Ok(Ok(chunks)), None) => chunks,
        };
        let end = match self.rx.blocking_recv() {
            Some(Arrived::End(end)) if end.file_end == self.target.i => end,
            _ => {
                partial.remove();
                return Err(TransferError::Protocol(format!(
                    "expected the end of file {}",
                    self.target.i
                )));
            }
        };
        if end.error.is_some() {
            partial.remove();
            return Ok(Err(FileFailure {
                error: sender_failed(&end),
                by_sender: true,
            }));
        }
        let Some(Ok(expected)) = end.blake3.as_deref().map(parse_hash) else {
            partial.remove();
            return Err(TransferError::Protocol(format!(
                "file {}: an end frame without a BLAKE3",
                self.target.i
            )));
        };
        let Ok(hash) = hasher.join() else {
            partial.remove();
            return Err(TransferError::Protocol("the file hasher failed".into()));
        };
        let sealed = match partial.seal_hashed(&hash, &expected, &self.target.meta) {
            Ok(sealed) => sealed,
            // Every chunk sent matched its leaf, so a file that does not
            // hash right took a chunk from a file of this end that changed
            // since it was indexed.
            Err(_) if !self.used_sources.is_empty() => {
                let error = FileError::new(
                    ErrorCode::Changed,
                    format!(
                        "{}: a file whose chunks were reused changed since it was indexed; \
                         sync again",
                        show(&shown)
                    ),
                );
                return self.fail(error, false, Pending::EndRead);
            }
            Err(err) => {
                let error = FileError::new(
                    ErrorCode::ChecksumMismatch,
                    format!("{}: {err}", show(&shown)),
                );
                return self.fail(error, true, Pending::EndRead);
            }
        };
        if let Err(err) = sealed.sync().and_then(|()| sealed.publish(true)) {
            return self.fail(FileError::io(&shown, &err), false, Pending::EndRead);
        }
        Ok(Ok(ChunkedFile {
            len: self.target.entry.file_size,
            chunks,
            file_hash: *expected.as_bytes(),
        }))
    }

    /// Writes the pieces in order: copied chunks as read (the whole-file
    /// hash checks them),
    /// received chunks checked against their leaf.
    #[allow(clippy::type_complexity)]
    fn write_pieces(
        &mut self,
        pieces: &[(u64, Piece)],
        shown: &[u8],
        feed: &PipelineFeed,
    ) -> Result<Result<Vec<Chunk>, (FileFailure, Pending)>, TransferError> {
        let i = self.target.i;
        let local = |error: FileError| {
            Ok(Err((
                FileFailure {
                    error,
                    by_sender: false,
                },
                Pending::EndToCome,
            )))
        };
        let mut chunks = Vec::new();
        let mut at = 0u64;
        for &(offset, piece) in pieces {
            if offset != at {
                return Err(TransferError::Protocol(format!(
                    "file {i}: a delta with a gap"
                )));
            }
            match piece {
                Piece::Copy(found) => {
                    let (path, source_chunks) = &self.known.files[found.file];
                    let file = self
                        .sources
                        .entry(found.file)
                        .or_insert_with(|| open_source(self.dest, path));
                    let run =
                        &source_chunks[found.first_chunk..found.first_chunk + found.chunk_count];
                    self.used_sources.push(found.file);
                    // A run of chunks is one range of the source: read and
                    // written a MiB at a time. Not hashed chunk by chunk:
                    // the whole file's BLAKE3, checked before it is
                    // published, catches a source that changed behind the
                    // index's back.
                    let (Some(first), Some(last)) = (run.first(), run.last()) else {
                        continue;
                    };
                    let end = last.offset + u64::from(last.len);
                    let mut from = first.offset;
                    while from < end {
                        let len = (end - from).min(COPY_BYTES as u64) as usize;
                        let mut buf = feed.buffer(len);
                        let read = file
                            .as_ref()
                            .is_some_and(|file| file.read_exact_at(&mut buf, from).is_ok());
                        if !read {
                            return local(copy_changed(shown, path));
                        }
                        if !feed.send(Hashed::Copied(buf)) {
                            return local(writer_stopped(shown));
                        }
                        from += len as u64;
                    }
                    for chunk in run {
                        chunks.push(Chunk {
                            offset: at,
                            len: chunk.len,
                            hash: chunk.hash,
                        });
                        at += u64::from(chunk.len);
                        self.copied_bytes += u64::from(chunk.len);
                    }
                }
                Piece::Receive { hash, len } => match self.rx.blocking_recv() {
                    Some(Arrived::Chunk(j, body)) if j == i => {
                        if body.len() != len as usize || *blake3::hash(&body).as_bytes() != hash {
                            return Err(TransferError::Protocol(format!(
                                "file {i}: a chunk that is not the one its tree names"
                            )));
                        }
                        if !feed.send(Hashed::Received(body)) {
                            return local(writer_stopped(shown));
                        }
                        chunks.push(Chunk {
                            offset: at,
                            len,
                            hash,
                        });
                        at += u64::from(len);
                    }
                    Some(Arrived::End(end)) if end.file_end == i && end.error.is_some() => {
                        let failure = FileFailure {
                            error: sender_failed(&end),
                            by_sender: true,
                        };
                        return Ok(Err((failure, Pending::EndRead)));
                    }
                    _ => {
                        return Err(TransferError::Protocol(format!(
                            "expected a chunk of file {i}"
                        )))
                    }
                },
            }
        }
        if at != self.target.entry.file_size {
            return Err(TransferError::Protocol(format!(
                "file {i}: its pieces cover {at} of {} bytes",
                self.target.entry.file_size
            )));
        }
        Ok(Ok(chunks))
    }

    /// Fails the file, first skipping what the sender still sends for it.
    fn fail(
        &mut self,
        error: FileError,
        by_sender: bool,
        pending: Pending,
    ) -> Result<Result<ChunkedFile, FileFailure>, TransferError> {
        if let Pending::EndToCome = pending {
            let i = self.target.i;
            loop {
                match self.rx.blocking_recv() {
                    Some(Arrived::Chunk(j, _)) if j == i => {}
                    Some(Arrived::End(end)) if end.file_end == i => break,
                    _ => {
                        return Err(TransferError::Protocol(format!(
                            "expected the rest of file {i}"
                        )))
                    }
                }
            }
        }
        Ok(Err(FileFailure { error, by_sender }))
    }
}

fn open_source(dest: &Root, path: &RelPath) -> Option<File> {
    dest.open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()
    .map(|fd: OwnedFd| File::from(fd))
}

/// The file writer stopped on an error; its join says which, and that is
/// what the file fails with.
fn writer_stopped(shown: &[u8]) -> FileError {
    FileError::new(
        ErrorCode::IoError,
        format!("{}: the file could not be written", show(shown)),
    )
}

fn copy_changed(shown: &[u8], source: &RelPath) -> FileError {
    FileError::new(
        ErrorCode::Changed,
        format!(
            "{}: {} changed while its chunks were reused; sync again",
            show(shown),
            show(&source.to_bytes())
        ),
    )
}

fn sender_failed(end: &FileEnd) -> FileError {
    let code = end
        .code
        .as_deref()
        .and_then(ErrorCode::from_wire)
        .unwrap_or(ErrorCode::Changed);
    FileError::new(code, end.error.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests;
