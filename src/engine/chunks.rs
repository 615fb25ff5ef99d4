//! Content-defined chunks of a file, each named by its BLAKE3, for `ferry
//! sync`'s deltas. Boundaries come from FastCDC (the 2020 algorithm of the
//! `fastcdc` crate): a cut depends only on the bytes just before it, so an
//! insertion moves the boundaries near it and no others, and both peers cut
//! the same bytes the same way without talking.
//!
//! Chunking a reader streams: memory stays under a few maximum chunks
//! whatever the file's size ([`CHUNKS_IN_FLIGHT`]). It uses two threads, so
//! a big file keeps two cores busy: one reads and cuts (FastCDC's gear hash,
//! the slower half), the other hashes each chunk and the whole file (the
//! BLAKE3 every ferry write checks).
//!
//! Nothing here touches the network or the clock; [`super::hash_tree`]
//! builds the tree of hashes that the peers compare.

use std::io::{self, Read};
use std::sync::mpsc;
use std::thread;

use fastcdc::v2020::{FastCDC, StreamCDC};

/// The smallest chunk FastCDC cuts, except a file's last. A quarter of the
/// average, as FastCDC's authors suggest: it skips a quarter of the gear
/// hashing and bounds how many chunks a 1 GiB file can have (65,536).
pub const MIN_CHUNK_BYTES: usize = 16 * 1024;

/// The average chunk FastCDC aims at (it lands near 78 KiB: nothing is cut
/// in the first 16). An edit costs about one chunk of data on the wire, and
/// a file one hash and length per chunk in the index and the tree: at this
/// size the 1 GiB bench (two small edits) sends three chunks, about
/// 300 KB (rsync: 393 KB), while the index keeps about 14,000 chunks per GiB
/// (560 KB) and the tree stands 4 levels above them.
pub const AVG_CHUNK_BYTES: usize = 64 * 1024;

/// The largest chunk: four times the average, so a run of bytes with no
/// natural cut (zeros, say) still comes in bounded pieces. Also the most a
/// peer may name in one chunk, and the streaming chunker's buffer.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Chunks queued between the cutting thread and the hashing thread: enough
/// to ride out a slow read, few enough that memory stays bounded (this many
/// maximum chunks, 2 MiB, plus the cutter's own buffer).
pub const CHUNKS_IN_FLIGHT: usize = 8;

/// A BLAKE3 hash.
pub type Hash32 = [u8; 32];

/// One chunk of a file: where it is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// Its first byte's offset in the file.
    pub offset: u64,
    /// Its length, at most [`MAX_CHUNK_BYTES`].
    pub len: u32,
    /// The BLAKE3 of its bytes.
    pub hash: Hash32,
}

/// A file cut into chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkedFile {
    /// The chunks in file order; none for an empty file.
    pub chunks: Vec<Chunk>,
    /// The file's length.
    pub len: u64,
    /// The BLAKE3 of the whole file, as every ferry write checks it.
    pub file_hash: Hash32,
}

/// Chunks bytes already in memory, on this thread: for small files and
/// tests. Cuts exactly where [`chunk_reader`] cuts the same bytes.
pub fn chunk_bytes(data: &[u8]) -> ChunkedFile {
    let chunks = FastCDC::new(data, MIN_CHUNK_BYTES, AVG_CHUNK_BYTES, MAX_CHUNK_BYTES)
        .map(|cut| {
            let bytes = &data[cut.offset..cut.offset + cut.length];
            Chunk {
                offset: cut.offset as u64,
                len: cut.length as u32,
                hash: *blake3::hash(bytes).as_bytes(),
            }
        })
        .collect();
    ChunkedFile {
        chunks,
        len: data.len() as u64,
        file_hash: *blake3::hash(data).as_bytes(),
    }
}

/// Chunks everything `reader` yields, in bounded memory, on two threads
/// (see the module docs). An error reading stops both threads and is
/// returned as it came.
pub fn chunk_reader<R: Read + Send>(reader: R) -> io::Result<ChunkedFile> {
    thread::scope(|scope| {
        let (to_hasher, from_cutter) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        // The hasher thread also keeps the whole-file hash: FastCDC's gear
        // hash is the slower half, so the cutter does that alone.
        let hasher = scope.spawn(move || {
            let mut whole = blake3::Hasher::new();
            let chunks = from_cutter
                .into_iter()
                .map(|data| {
                    whole.update(&data);
                    (*blake3::hash(&data).as_bytes(), data.len() as u32)
                })
                .collect::<Vec<_>>();
            (chunks, whole.finalize())
        });

        let mut len = 0u64;
        let mut cut_error = None;
        for cut in StreamCDC::new(reader, MIN_CHUNK_BYTES, AVG_CHUNK_BYTES, MAX_CHUNK_BYTES) {
            let cut = match cut {
                Ok(cut) => cut,
                Err(err) => {
                    cut_error = Some(io::Error::from(err));
                    break;
                }
            };
            len += cut.data.len() as u64;
            if to_hasher.send(cut.data).is_err() {
                break; // the hasher is gone; its join says why
            }
        }
        // Closing the channel ends the hasher, on error as on success.
        drop(to_hasher);
        let (hashed, whole) = hasher
            .join()
            .map_err(|_| io::Error::other("the chunk hashing thread failed"))?;
        if let Some(err) = cut_error {
            return Err(err);
        }

        let mut offset = 0u64;
        let chunks = hashed
            .into_iter()
            .map(|(hash, chunk_len)| {
                let chunk = Chunk {
                    offset,
                    len: chunk_len,
                    hash,
                };
                offset += u64::from(chunk_len);
                chunk
            })
            .collect();
        Ok(ChunkedFile {
            chunks,
            len,
            file_hash: *whole.as_bytes(),
        })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `len` bytes that look random and are the same for the same seed, so
    /// CDC finds natural cuts as in real data.
    pub(crate) fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut data);
        data
    }

    fn check_cover(file: &ChunkedFile, data: &[u8]) {
        let mut offset = 0u64;
        for (i, chunk) in file.chunks.iter().enumerate() {
            assert_eq!(chunk.offset, offset);
            let len = chunk.len as usize;
            assert!(len <= MAX_CHUNK_BYTES);
            if i + 1 < file.chunks.len() {
                assert!(len >= MIN_CHUNK_BYTES, "chunk {i} is {len} bytes");
            }
            let bytes = &data[offset as usize..offset as usize + len];
            assert_eq!(chunk.hash, *blake3::hash(bytes).as_bytes());
            offset += u64::from(chunk.len);
        }
        assert_eq!(offset, data.len() as u64);
        assert_eq!(file.len, data.len() as u64);
        assert_eq!(file.file_hash, *blake3::hash(data).as_bytes());
    }

    #[test]
    fn an_empty_file_has_no_chunks() {
        let file = chunk_reader(&b""[..]).unwrap();
        assert!(file.chunks.is_empty());
        assert_eq!(file, chunk_bytes(b""));
    }

    #[test]
    fn chunks_cover_the_file_within_the_size_bounds() {
        let data = pseudo_random(1, 3 * 1024 * 1024 + 77);
        let file = chunk_reader(&data[..]).unwrap();
        check_cover(&file, &data);
        let expected = data.len() / AVG_CHUNK_BYTES;
        assert!(
            file.chunks.len() > expected / 2 && file.chunks.len() < expected * 2,
            "{} chunks for {expected} expected",
            file.chunks.len()
        );
    }

    #[test]
    fn a_run_without_natural_cuts_comes_in_maximum_chunks() {
        let data = vec![0u8; 5 * MAX_CHUNK_BYTES / 2];
        let file = chunk_reader(&data[..]).unwrap();
        check_cover(&file, &data);
        let lens: Vec<u32> = file.chunks.iter().map(|c| c.len).collect();
        let max = MAX_CHUNK_BYTES as u32;
        assert_eq!(lens, [max, max, max / 2]);
    }

    /// A reader that gives a few bytes at a time, then fails.
    struct FailingReader {
        left: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.left).min(1000);
            buf[..n].fill(7);
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_is_returned_not_swallowed() {
        let err = chunk_reader(FailingReader { left: 600_000 }).unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    proptest! {
        // A fixed seed: the bounds above are statistical (a resync can be
        // delayed), so a run must not draw new cases and fail by chance.
        #![proptest_config(ProptestConfig {
            cases: 24,
            rng_seed: proptest::test_runner::RngSeed::Fixed(16),
            ..ProptestConfig::default()
        })]

        /// Both peers must cut the same bytes the same way, whichever
        /// chunker they use and however the reads are split.
        #[test]
        fn chunking_is_deterministic(seed in any::<u64>(), len in 0usize..1_500_000, step in 1usize..70_000) {
            let data = pseudo_random(seed, len);
            let in_memory = chunk_bytes(&data);
            check_cover(&in_memory, &data);
            let streamed = chunk_reader(io::BufReader::with_capacity(step, &data[..])).unwrap();
            prop_assert_eq!(&streamed, &in_memory);
            prop_assert_eq!(chunk_bytes(&data), in_memory);
        }

        /// An insertion changes the chunks around it, never the rest: the
        /// chunks before the one it falls in and after the cuts resync are
        /// the same. FastCDC's normalization (a stricter cut test before the
        /// average size) can delay the resync by a chunk or two, so "near" is
        /// a few maximum chunks, and the count a handful.
        #[test]
        fn an_insertion_changes_only_the_chunks_near_it(
            seed in any::<u64>(),
            at_fraction in 0.0f64..1.0,
            inserted_len in 1usize..5000,
        ) {
            let data = pseudo_random(seed, 2 * 1024 * 1024);
            let at = (data.len() as f64 * at_fraction) as usize;
            let mut edited = data[..at].to_vec();
            edited.extend(pseudo_random(seed ^ 0xface, inserted_len));
            edited.extend_from_slice(&data[at..]);

            let old = chunk_bytes(&data);
            let new = chunk_bytes(&edited);
            let old_hashes: std::collections::HashSet<_> = old.chunks.iter().map(|c| c.hash).collect();
            let changed: Vec<&Chunk> = new.chunks.iter().filter(|c| !old_hashes.contains(&c.hash)).collect();
            prop_assert!(changed.len() <= 6, "{} of {} chunks changed", changed.len(), new.chunks.len());
            let near = (at.saturating_sub(MAX_CHUNK_BYTES) as u64)..((at + inserted_len + 4 * MAX_CHUNK_BYTES) as u64);
            for chunk in changed {
                prop_assert!(near.contains(&chunk.offset), "changed chunk at {} for an insertion at {}", chunk.offset, at);
            }
        }
    }
}
