use std::fs::{File, FileTimes};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::*;
use crate::engine::chunks::chunk_bytes;
use crate::engine::chunks::tests::pseudo_random;

fn entry(seed: u64, len: usize, inode: u64) -> IndexEntry {
    let stat = Stat {
        size: len as u64,
        mtime: 1_700_000_000 + seed as i64,
        mtime_ns: 123_456_789,
        inode,
    };
    IndexEntry::new(stat, chunk_bytes(&pseudo_random(seed, len)))
}

fn sample() -> Index {
    let mut index = Index::new();
    index.insert(b"a.txt", entry(1, 10, 11));
    index.insert(b"dir/big.bin", entry(2, 700_000, 12));
    index.insert(b"empty", entry(3, 0, 13));
    index.insert(b"dir/\xff name", entry(4, 5000, 14));
    index
}

fn saved(dir: &Path) -> PathBuf {
    let path = Index::path_for(dir, dir, "nas").unwrap();
    sample().save(&path).unwrap();
    path
}

fn discarded_because(path: &Path) -> String {
    match Index::load(path) {
        (index, LoadOutcome::Discarded(reason)) => {
            assert!(index.is_empty());
            reason
        }
        (_, outcome) => panic!("loaded a broken index: {outcome:?}"),
    }
}

#[test]
fn an_index_survives_a_save_and_a_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let (index, outcome) = Index::load(&path);
    assert_eq!(outcome, LoadOutcome::Loaded);
    assert_eq!(index, sample());
    assert_eq!(index.len(), 4);
}

#[test]
fn the_index_is_private_and_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert!(path.starts_with(dir.path().join(INDEX_DIR)));
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [path.file_name().unwrap()], "no temporary file left");
}

#[test]
fn the_index_is_keyed_by_canonical_tree_and_peer() {
    let state = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    fs::create_dir(tree.path().join("sub")).unwrap();
    let plain = Index::path_for(state.path(), tree.path(), "nas").unwrap();
    let roundabout = tree.path().join("sub/..");
    assert_eq!(
        Index::path_for(state.path(), &roundabout, "nas").unwrap(),
        plain
    );
    assert_ne!(
        Index::path_for(state.path(), tree.path(), "laptop").unwrap(),
        plain
    );
    assert_ne!(
        Index::path_for(state.path(), &tree.path().join("sub"), "nas").unwrap(),
        plain
    );
    assert!(Index::path_for(state.path(), &tree.path().join("gone"), "nas").is_err());
}

#[test]
fn a_missing_index_loads_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (index, outcome) = Index::load(&dir.path().join("sync/none.index"));
    assert!(index.is_empty());
    assert_eq!(outcome, LoadOutcome::Missing);
}

#[test]
fn a_corrupt_index_is_discarded_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let good = fs::read(&path).unwrap();

    let mut flipped = good.clone();
    flipped[40] ^= 1;
    fs::write(&path, &flipped).unwrap();
    assert!(discarded_because(&path).contains("checksum mismatch"));

    fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert!(discarded_because(&path).contains("corrupt"));

    fs::write(&path, b"").unwrap();
    assert!(discarded_because(&path).contains("too short"));

    fs::write(&path, b"{\"json\": \"from some other tool, long enough\"}").unwrap();
    assert!(discarded_because(&path).contains("corrupt"));
}

/// Bytes with a valid checksum, as a careless writer could leave them: the
/// checks behind the checksum still hold.
fn sealed(body: &[u8]) -> Vec<u8> {
    let mut bytes = body.to_vec();
    bytes.extend_from_slice(blake3::hash(body).as_bytes());
    bytes
}

#[test]
fn counts_and_lengths_are_checked_before_they_are_believed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.index");
    let mut huge = MAGIC.to_vec();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    fs::write(&path, sealed(&huge)).unwrap();
    assert!(discarded_because(&path).contains("entry count past the end"));

    let mut index = Index::new();
    index.insert(b"f", entry(5, 100_000, 1));
    let body = index.encode();
    let body = &body[..body.len() - 32];
    // The size field lies: the chunks cover 100,000 bytes.
    let size_at = MAGIC.len() + 8 + 4 + 1;
    let mut lying = body.to_vec();
    lying[size_at..size_at + 8].copy_from_slice(&99_999u64.to_le_bytes());
    fs::write(&path, sealed(&lying)).unwrap();
    assert!(discarded_because(&path).contains("do not cover"));

    for bad_path in [&b"../escape"[..], b"/abs", b"a//b", b""] {
        let mut index = Index::new();
        index.insert(bad_path, entry(6, 10, 1));
        let body = index.encode();
        fs::write(&path, sealed(&body[..body.len() - 32])).unwrap();
        assert!(discarded_because(&path).contains("not relative"));
    }
}

#[test]
fn an_unreadable_index_is_discarded_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.index");
    fs::create_dir(&path).unwrap();
    assert!(discarded_because(&path).contains("cannot read"));
}

#[test]
fn unchanged_means_size_mtime_and_inode_all_match() {
    let index = sample();
    let known = index.get(b"a.txt").unwrap().clone();
    let stat = known.stat;
    assert_eq!(index.lookup(b"a.txt", &stat), Lookup::Unchanged(&known));
    for changed in [
        Stat { size: 11, ..stat },
        Stat {
            mtime: stat.mtime + 1,
            ..stat
        },
        Stat {
            mtime_ns: stat.mtime_ns + 1,
            ..stat
        },
        Stat {
            inode: stat.inode + 1,
            ..stat
        },
    ] {
        assert_eq!(index.lookup(b"a.txt", &changed), Lookup::Changed(&known));
    }
    assert_eq!(index.lookup(b"new.txt", &stat), Lookup::Unknown);
}

#[test]
fn a_file_whose_metadata_lies_is_caught_only_by_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.txt");
    fs::write(&path, b"the old content").unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(mtime))
        .unwrap();
    let mut index = Index::new();
    let (lookup, chunked) = index
        .lookup_checksum(b"report.txt", File::open(&path).unwrap())
        .unwrap();
    assert_eq!(lookup, Lookup::Unknown);
    let stat = Stat::of(&fs::metadata(&path).unwrap());
    index.insert(b"report.txt", IndexEntry::new(stat, chunked));

    // Same size, same inode, mtime put back: only the content changed.
    let mut file = File::options().write(true).open(&path).unwrap();
    file.write_all(b"the new content").unwrap();
    file.set_times(FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(file);
    let stat_now = Stat::of(&fs::metadata(&path).unwrap());
    assert_eq!(stat_now, stat);

    assert!(matches!(
        index.lookup(b"report.txt", &stat_now),
        Lookup::Unchanged(_)
    ));
    let (lookup, chunked) = index
        .lookup_checksum(b"report.txt", File::open(&path).unwrap())
        .unwrap();
    assert!(matches!(lookup, Lookup::Changed(_)), "{lookup:?}");
    assert_eq!(
        chunked.file_hash,
        *blake3::hash(b"the new content").as_bytes()
    );
}

#[test]
fn retain_forgets_what_the_walk_did_not_meet() {
    let mut index = sample();
    index.retain(|path| path.starts_with(b"dir/"));
    assert_eq!(index.len(), 2);
    assert!(index.get(b"a.txt").is_none());
    assert!(index.remove(b"dir/big.bin").is_some());
    assert_eq!(index.len(), 1);
}

#[test]
fn every_known_chunk_has_a_source_to_read_it_from() {
    let index = sample();
    let sources = index.chunk_sources();
    for (path, chunk) in [
        (
            &b"dir/big.bin"[..],
            index.get(b"dir/big.bin").unwrap().chunks[3],
        ),
        (&b"a.txt"[..], index.get(b"a.txt").unwrap().chunks[0]),
    ] {
        assert_eq!(sources[&chunk.hash], (path, chunk));
    }
}
