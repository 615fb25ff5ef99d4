//! Both ends of the delta exchange over an in-memory pipe: honest deltas
//! arrive exact and send only what changed; a lying sender is refused and
//! the old file stays as it was.

use super::*;
use crate::engine::chunks::chunk_bytes;
use crate::engine::wire::{EntryKind, WirePath};

fn pair() -> (
    Connection<tokio::io::DuplexStream>,
    Connection<tokio::io::DuplexStream>,
) {
    crate::connection::test_pair(1024 * 1024)
}

/// Bytes that chunk the same way every run.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn entry(path: &str, len: u64) -> Entry {
    Entry {
        kind: EntryKind::File,
        path: WirePath::from_bytes(path.as_bytes()),
        file_size: len,
        mode: 0o644,
        mtime: 1_700_000_000,
        mtime_ns: 0,
        sync: None,
    }
}

fn target(i: u64, path: &str, len: u64) -> DeltaTarget {
    DeltaTarget {
        i,
        path: RelPath::parse(path.as_bytes()).unwrap(),
        entry: entry(path, len),
        meta: FileMeta {
            mode: 0o644,
            mtime: Some((1_700_000_000, 0)),
        },
    }
}

struct Ends {
    from: tempfile::TempDir,
    to: tempfile::TempDir,
}

impl Ends {
    fn new() -> Ends {
        Ends {
            from: tempfile::tempdir().unwrap(),
            to: tempfile::tempdir().unwrap(),
        }
    }

    fn source(&self, i: u64, name: &str, bytes: &[u8]) -> SourceFile {
        std::fs::write(self.from.path().join(name), bytes).unwrap();
        SourceFile {
            i,
            path: RelPath::parse(name.as_bytes()).unwrap(),
            chunked: chunk_bytes(bytes),
            failure: None,
        }
    }

    /// A file the receiver has, known by its chunks.
    fn known(&self, known: &mut KnownChunks, name: &str, bytes: &[u8]) {
        std::fs::write(self.to.path().join(name), bytes).unwrap();
        known.add(
            RelPath::parse(name.as_bytes()).unwrap(),
            chunk_bytes(bytes).chunks,
        );
    }

    async fn run(
        &self,
        files: Vec<SourceFile>,
        targets: Vec<DeltaTarget>,
        known: KnownChunks,
    ) -> (
        Result<DeltaSent, TransferError>,
        Result<DeltaReceived, TransferError>,
    ) {
        let (mut sender, mut receiver) = pair();
        let from = Arc::new(Root::new(self.from.path()).unwrap());
        let to = Arc::new(Root::new(self.to.path()).unwrap());
        let send = async move {
            send(
                &mut sender,
                from,
                files,
                &crate::engine::transfer::NoProgress,
            )
            .await
        };
        let receive = receive(&mut receiver, to, targets, Arc::new(known));
        tokio::join!(send, receive)
    }
}

#[tokio::test]
async fn an_edited_file_arrives_exact_and_only_its_changed_chunks_travel() {
    let ends = Ends::new();
    let old = data(4 << 20, 1);
    let mut new = old.clone();
    // 100 bytes inserted at 1 MiB, 4 KiB overwritten at 3 MiB.
    new.splice(1 << 20..1 << 20, data(100, 2));
    new[3 << 20..(3 << 20) + 4096].copy_from_slice(&data(4096, 3));
    let mut known = KnownChunks::default();
    ends.known(&mut known, "f", &old);
    let files = vec![ends.source(7, "f", &new)];
    let (sent, got) = ends
        .run(files, vec![target(7, "f", new.len() as u64)], known)
        .await;
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!(std::fs::read(ends.to.path().join("f")).unwrap(), new);
    assert_eq!(got.published.len(), 1);
    assert_eq!(got.published[0].1.file_hash, *blake3::hash(&new).as_bytes());
    // A few chunks of at most 256 KiB each, and the rest reused.
    assert!(sent.chunk_bytes < 6 * MAX_CHUNK_BYTES as u64, "{sent:?}");
    assert!(got.copied_bytes > new.len() as u64 - 6 * MAX_CHUNK_BYTES as u64);
    assert!(sent.tree_bytes < 20_000, "{sent:?}");
    assert!(got.failed.is_empty());
}

#[tokio::test]
async fn a_renamed_file_costs_no_chunk_and_an_empty_file_costs_nothing() {
    let ends = Ends::new();
    let bytes = data(1 << 20, 4);
    let mut known = KnownChunks::default();
    ends.known(&mut known, "old-name", &bytes);
    let files = vec![
        ends.source(0, "new-name", &bytes),
        ends.source(1, "empty", b""),
    ];
    let targets = vec![
        target(0, "new-name", bytes.len() as u64),
        target(1, "empty", 0),
    ];
    let (sent, got) = ends.run(files, targets, known).await;
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!(sent.chunk_bytes, 0);
    assert_eq!(got.copied_bytes, bytes.len() as u64);
    assert_eq!(
        std::fs::read(ends.to.path().join("new-name")).unwrap(),
        bytes
    );
    assert_eq!(std::fs::read(ends.to.path().join("empty")).unwrap(), b"");
}

#[tokio::test]
async fn a_withdrawn_file_fails_alone_and_the_next_one_still_arrives() {
    let ends = Ends::new();
    let mut gone = ends.source(0, "gone", &data(100_000, 5));
    gone.failure = Some(FileError::new(ErrorCode::Changed, "gone: it changed"));
    let fine = data(200_000, 6);
    let files = vec![gone, ends.source(1, "fine", &fine)];
    let targets = vec![target(0, "gone", 100_000), target(1, "fine", 200_000)];
    let (_, got) = ends.run(files, targets, KnownChunks::default()).await;
    let got = got.unwrap();
    assert_eq!(got.failed.len(), 1);
    assert_eq!(got.failed[0].error.code, "changed");
    assert!(got.failed[0].by_sender);
    assert!(!ends.to.path().join("gone").exists());
    assert_eq!(std::fs::read(ends.to.path().join("fine")).unwrap(), fine);
}

#[tokio::test]
async fn a_source_that_changed_after_it_was_cut_fails_as_changed_and_nothing_is_published() {
    let ends = Ends::new();
    let old = data(600_000, 7);
    let mut known = KnownChunks::default();
    ends.known(&mut known, "f", &old);
    let new = data(600_000, 8);
    let source = ends.source(0, "f", &new);
    // The file changes on disk after its chunks were cut.
    std::fs::write(ends.from.path().join("f"), data(600_000, 9)).unwrap();
    let (_, got) = ends
        .run(vec![source], vec![target(0, "f", 600_000)], known)
        .await;
    let got = got.unwrap();
    assert_eq!(got.failed.len(), 1, "{:?}", got.failed);
    assert_eq!(got.failed[0].error.code, "changed");
    assert_eq!(std::fs::read(ends.to.path().join("f")).unwrap(), old);
}

/// A sender that answers the receiver's questions itself, frame by frame.
async fn lying_sender(
    mut conn: Connection<tokio::io::DuplexStream>,
    frames: Vec<(Header, Vec<u8>)>,
) {
    for (header, body) in frames {
        if header.get("sync_tree").is_some() && header.get("sync_tree") != Some(&0.into()) {
            // Read the receiver's answer to the round before.
            let asked = conn.reader().expect_header().await;
            if asked.is_err() {
                return;
            }
            let _ = conn.reader().discard_body().await;
        }
        if conn.send(header, Bytes::from(body)).await.is_err() {
            return;
        }
    }
    // Read whatever comes until the receiver hangs up.
    while let Ok(Some(_)) = conn.read_header().await {
        let _ = conn.reader().discard_body().await;
    }
}

fn group(level: u8, children: &[(Hash32, u64)]) -> Vec<u8> {
    let mut body = vec![level];
    body.extend_from_slice(&(children.len() as u16).to_le_bytes());
    for (hash, bytes) in children {
        body.extend_from_slice(hash);
        body.extend_from_slice(&bytes.to_le_bytes());
    }
    body
}

fn tree_frame(round: u32) -> Header {
    Header::from_message(&TreeFrame { sync_tree: round })
}

async fn against_liar(frames: Vec<(Header, Vec<u8>)>, len: u64) -> (TransferError, Vec<u8>) {
    let to = tempfile::tempdir().unwrap();
    let old = data(len as usize, 10);
    std::fs::write(to.path().join("f"), &old).unwrap();
    let (liar, mut receiver) = pair();
    let lie = tokio::spawn(lying_sender(liar, frames));
    let root = Arc::new(Root::new(to.path()).unwrap());
    let got = receive(
        &mut receiver,
        root,
        vec![target(0, "f", len)],
        Arc::new(KnownChunks::default()),
    )
    .await;
    drop(receiver);
    lie.await.unwrap();
    let err = got.expect_err("the lie is refused");
    // Nothing was published over the old file, and no partial is left.
    assert_eq!(std::fs::read(to.path().join("f")).unwrap(), old);
    let names: Vec<_> = std::fs::read_dir(to.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no partial file is left");
    (err, old)
}

#[tokio::test]
async fn children_that_do_not_hash_to_the_node_asked_about_are_refused() {
    let root = (*blake3::hash(b"a node").as_bytes(), 300_000u64);
    let children = [
        (*blake3::hash(b"one").as_bytes(), 150_000u64),
        (*blake3::hash(b"two").as_bytes(), 150_000u64),
    ];
    let frames = vec![
        (tree_frame(0), group(1, &[root])),
        (tree_frame(1), group(0, &children)),
    ];
    let (err, _) = against_liar(frames, 300_000).await;
    assert!(err.to_string().contains("do not hash"), "{err}");
}

#[tokio::test]
async fn a_root_that_does_not_cover_the_file_or_a_chunk_over_the_cap_is_refused() {
    let hash = *blake3::hash(b"x").as_bytes();
    let (err, _) = against_liar(vec![(tree_frame(0), group(0, &[(hash, 10)]))], 300_000).await;
    assert!(err.to_string().contains("does not describe"), "{err}");
    let big = 2 * MAX_CHUNK_BYTES as u64;
    let (err, _) = against_liar(vec![(tree_frame(0), group(0, &[(hash, big)]))], big).await;
    assert!(err.to_string().contains("chunks are 1 to"), "{err}");
    // A group that claims more children than a node may have.
    let mut body = vec![1u8];
    body.extend_from_slice(&(MAX_FAN_OUT as u16 + 1).to_le_bytes());
    let (err, _) = against_liar(vec![(tree_frame(0), body)], 300_000).await;
    assert!(err.to_string().contains("at most"), "{err}");
}

#[tokio::test]
async fn a_chunk_whose_bytes_are_not_its_leaf_is_refused() {
    let chunk = data(100_000, 11);
    let leaf = (*blake3::hash(&chunk).as_bytes(), chunk.len() as u64);
    let mut other = chunk.clone();
    other[0] ^= 1;
    let frames = vec![
        (tree_frame(0), group(0, &[leaf])),
        (Header::from_message(&ChunkFrame { sync_chunk: 0 }), other),
    ];
    let (err, _) = against_liar(frames, 100_000).await;
    assert!(
        err.to_string().contains("not the one its tree names"),
        "{err}"
    );
}

#[tokio::test]
async fn a_root_deeper_than_the_level_cap_is_refused() {
    let hash = *blake3::hash(b"deep").as_bytes();
    let level = crate::limits::SYNC_MAX_TREE_LEVELS as u8;
    let (err, _) = against_liar(
        vec![(tree_frame(0), group(level, &[(hash, 300_000)]))],
        300_000,
    )
    .await;
    assert!(err.to_string().contains("does not describe"), "{err}");
}

#[tokio::test]
async fn a_reused_file_that_changed_behind_the_index_fails_the_delta_and_is_forgotten() {
    let ends = Ends::new();
    let old = data(1_000_000, 12);
    let mut known = KnownChunks::default();
    ends.known(&mut known, "other", &old);
    // Same length, other bytes, after it was indexed.
    std::fs::write(ends.to.path().join("other"), data(1_000_000, 13)).unwrap();
    let files = vec![ends.source(0, "copy", &old)];
    let (_, got) = ends
        .run(files, vec![target(0, "copy", old.len() as u64)], known)
        .await;
    let got = got.unwrap();
    assert_eq!(got.failed.len(), 1, "{:?}", got.failed);
    assert_eq!(got.failed[0].error.code, "changed");
    assert!(!got.failed[0].by_sender);
    assert_eq!(got.stale, [RelPath::parse(b"other").unwrap()]);
    assert!(
        !ends.to.path().join("copy").exists(),
        "nothing wrong is published"
    );
}
