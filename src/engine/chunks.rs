//! Content-defined chunks of a file, each named by its BLAKE3, for `ferry
//! sync`'s deltas. Boundaries come from FastCDC (the 2020 algorithm of the
//! `fastcdc` crate): a cut depends only on the bytes just before it, so an
//! insertion moves the boundaries near it and no others, and both peers cut
//! the same bytes the same way without talking.
//!
//! Chunking a reader streams in bounded memory and keeps both cores busy
//! ([`chunk_reader`]): the file is read in segments, each segment is cut on
//! a worker thread as if a chunk began at its start, and one thread stitches
//! the segments together, cutting afresh from the last true cut until its
//! cuts meet the segment's (a cut depends only on the bytes after the one
//! before, so once they meet they agree to the segment's end). The result is
//! exactly the cuts of one pass over the file ([`chunk_bytes`]).
//!
//! Nothing here touches the network or the clock; [`super::hash_tree`]
//! builds the tree of hashes that the peers compare.

use std::io::{self, Read};
use std::sync::{mpsc, Arc};
use std::thread;

use fastcdc::v2020::FastCDC;

/// The smallest chunk FastCDC cuts, except a file's last. Nothing in a
/// chunk's first bytes can cut it, so the rolling gear hash skips them:
/// three quarters of the average skip half the gear hashing that the
/// authors' quarter does (the cut is the cost of a cold delta's receiver),
/// with the same bytes sent for an edit, and bound how many chunks a 1 GiB
/// file can have (21,845).
pub const MIN_CHUNK_BYTES: usize = 48 * 1024;

/// The average chunk FastCDC aims at (it lands near 91 KiB: nothing is cut
/// in the first 48). An edit costs about one chunk of data on the wire, and
/// a file one hash and length per chunk in the index and the tree: at this
/// size the 1 GiB bench (two small edits) sends three chunks, about
/// 200-300 KB (rsync: 393 KB), while the index keeps about 11,500 chunks per
/// GiB and the tree stands 4 levels above them.
pub const AVG_CHUNK_BYTES: usize = 64 * 1024;

/// The largest chunk: four times the average, so a run of bytes with no
/// natural cut (zeros, say) still comes in bounded pieces. Also the most a
/// peer may name in one chunk, and the streaming chunker's buffer.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Bytes read and cut as one segment: big enough that stitching costs a
/// chunk or two in a hundred, small enough that [`SEGMENTS_IN_FLIGHT`] of
/// them stay a few MiB.
pub const SEGMENT_BYTES: usize = 2 * 1024 * 1024;

/// Segments read but not yet stitched: two per cutting thread, so neither
/// waits on the reader, and memory stays bounded whatever the file's size.
pub const SEGMENTS_IN_FLIGHT: usize = 4;

/// Threads cutting segments: one per core of the machines ferry runs on
/// (two here); the reader and the stitcher take little beside them.
const CUTTERS: usize = 2;

/// How far past a segment's start the stitcher cuts before it gives up on
/// meeting the segment's own cuts and cuts the whole segment itself (data
/// without natural cuts, zeros say, never meets).
const STITCH_WINDOW: usize = 4 * MAX_CHUNK_BYTES;

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

/// Chunks everything `reader` yields, in bounded memory, on several
/// threads (see the module docs). An error reading stops them all and is
/// returned as it came.
pub fn chunk_reader<R: Read + Send>(reader: R) -> io::Result<ChunkedFile> {
    chunk_segments(reader, SEGMENT_BYTES, WholeHash::Keep)
}

/// [`chunk_reader`] without the whole file's hash (left zero): for a file
/// cut only so that its chunks can be reused, as the old version of a file
/// a delta replaces. A quarter less work.
pub fn cut_reader<R: Read + Send>(reader: R) -> io::Result<ChunkedFile> {
    chunk_segments(reader, SEGMENT_BYTES, WholeHash::Skip)
}

/// Whether the whole file's hash is computed while it is cut.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WholeHash {
    Keep,
    Skip,
}

/// A segment of the file as read, and where it starts.
struct Segment {
    start: u64,
    data: Arc<Vec<u8>>,
}

/// A segment cut on its own, as if a chunk began at its start: each chunk's
/// end (from the segment's start) and hash. The last ends at the segment's
/// end, which is a true cut only at the end of the file.
struct CutSegment {
    segment: Segment,
    cuts: Vec<(usize, Hash32)>,
}

fn chunk_segments<R: Read + Send>(
    mut reader: R,
    segment_bytes: usize,
    whole_hash: WholeHash,
) -> io::Result<ChunkedFile> {
    let first = read_segment(&mut reader, segment_bytes)?;
    if first.len() < segment_bytes {
        // The whole file in one read: no thread is worth starting.
        return Ok(chunk_bytes(&first));
    }
    thread::scope(|scope| {
        let mut to_cutters = Vec::new();
        let mut from_cutters = Vec::new();
        for _ in 0..CUTTERS {
            let (to_cutter, segments) = mpsc::sync_channel::<Segment>(SEGMENTS_IN_FLIGHT / CUTTERS);
            let (to_stitcher, cut) = mpsc::sync_channel::<CutSegment>(1);
            scope.spawn(move || {
                for segment in segments {
                    let cuts = cut_alone(&segment.data);
                    if to_stitcher.send(CutSegment { segment, cuts }).is_err() {
                        break;
                    }
                }
            });
            to_cutters.push(to_cutter);
            from_cutters.push(cut);
        }
        let stitcher = scope.spawn(move || {
            let mut stitch = Stitch::default();
            for k in 0.. {
                match from_cutters[k % CUTTERS].recv() {
                    Ok(cut) => stitch.add(cut),
                    Err(_) => break,
                }
            }
            stitch.finish()
        });

        // This thread reads, and hashes the whole file in order.
        let mut whole = blake3::Hasher::new();
        let mut start = 0u64;
        let mut data = first;
        let mut read_error = None;
        for k in 0.. {
            let len = data.len();
            let data_arc = Arc::new(data);
            let segment = Segment {
                start,
                data: data_arc.clone(),
            };
            if to_cutters[k % CUTTERS].send(segment).is_err() {
                break; // a cutter is gone; the stitcher's join says why
            }
            if whole_hash == WholeHash::Keep {
                whole.update(&data_arc);
            }
            drop(data_arc);
            start += len as u64;
            if len < segment_bytes {
                break;
            }
            data = match read_segment(&mut reader, segment_bytes) {
                Ok(data) if data.is_empty() => break,
                Ok(data) => data,
                Err(err) => {
                    read_error = Some(err);
                    break;
                }
            };
        }
        // Closing the channels ends the cutters, then the stitcher.
        drop(to_cutters);
        let chunks = stitcher
            .join()
            .map_err(|_| io::Error::other("the chunk stitching thread failed"))?;
        if let Some(err) = read_error {
            return Err(err);
        }
        Ok(ChunkedFile {
            chunks,
            len: start,
            file_hash: match whole_hash {
                WholeHash::Keep => *whole.finalize().as_bytes(),
                WholeHash::Skip => [0; 32],
            },
        })
    })
}

/// Reads up to `len` bytes: fewer only at the end of the file.
fn read_segment<R: Read>(reader: &mut R, len: usize) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut data)?;
    Ok(data)
}

/// Cuts `data` as if it were a whole file, and hashes each chunk.
fn cut_alone(data: &[u8]) -> Vec<(usize, Hash32)> {
    FastCDC::new(data, MIN_CHUNK_BYTES, AVG_CHUNK_BYTES, MAX_CHUNK_BYTES)
        .map(|cut| {
            let end = cut.offset + cut.length;
            (end, *blake3::hash(&data[cut.offset..end]).as_bytes())
        })
        .collect()
}

/// The stitcher's state: the chunks so far, and the bytes since the last
/// true cut, which the next segment's first chunk begins with.
#[derive(Default)]
struct Stitch {
    chunks: Vec<Chunk>,
    /// Where the last true cut is.
    at: u64,
    /// The bytes from `at` to the end of the segments stitched so far: less
    /// than a maximum chunk, since a run that long always has a cut.
    carry: Vec<u8>,
}

impl Stitch {
    fn push(&mut self, len: usize, hash: Hash32) {
        self.chunks.push(Chunk {
            offset: self.at,
            len: len as u32,
            hash,
        });
        self.at += len as u64;
    }

    /// Stitches the next segment on. Its own cuts hold from the first one
    /// this side's cuts meet; before that, this side cuts the carried bytes
    /// and the segment's first bytes itself: a window of them first, the
    /// whole segment only when the window is not enough.
    fn add(&mut self, CutSegment { segment, cuts }: CutSegment) {
        let data = &segment.data[..];
        // Where the segment's own chunks begin. Its last chunk ends at the
        // segment's end, which is no cut: the next segment may carry it on.
        let own: Vec<usize> = std::iter::once(0)
            .chain(cuts.iter().map(|&(end, _)| end))
            .take(cuts.len())
            .collect();
        let mut met = None;
        for window in [MAX_CHUNK_BYTES, STITCH_WINDOW, data.len()] {
            let window = window.min(data.len());
            met = self.cut_until_met(&data[..window], &own, window == data.len());
            if met.is_some() || window == data.len() {
                break;
            }
        }
        if let Some(k) = met {
            for &(end, hash) in &cuts[k..cuts.len() - 1] {
                let begin = (self.at - segment.start) as usize;
                self.push(end - begin, hash);
            }
            let begin = (self.at - segment.start) as usize;
            self.carry = data[begin..].to_vec();
        }
    }

    /// Cuts `carry` and then `data` (the next segment's first bytes) from
    /// the last true cut until a cut lands where one of the segment's own
    /// chunks begins (`own`, offsets into `data`): pushes every chunk
    /// before it and returns which. If none lands there: when `whole`
    /// (`data` is the whole segment), pushes the cuts made, keeps what
    /// follows the last in `carry`, and returns `None`; else changes
    /// nothing and returns `None`, for a wider try.
    fn cut_until_met(&mut self, data: &[u8], own: &[usize], whole: bool) -> Option<usize> {
        let carried = self.carry.len();
        if carried == 0 {
            return Some(0); // the segment begins at a true cut
        }
        let mut joined = Vec::with_capacity(carried + data.len());
        joined.extend_from_slice(&self.carry);
        joined.extend_from_slice(data);
        let mut made = Vec::new();
        let mut met = None;
        for cut in FastCDC::new(&joined, MIN_CHUNK_BYTES, AVG_CHUNK_BYTES, MAX_CHUNK_BYTES) {
            let end = cut.offset + cut.length;
            if end == joined.len() {
                break; // the data ran out: not a cut
            }
            made.push((
                cut.length,
                *blake3::hash(&joined[cut.offset..end]).as_bytes(),
            ));
            if let Some(k) = end
                .checked_sub(carried)
                .and_then(|at| own.binary_search(&at).ok())
            {
                met = Some(k);
                break;
            }
        }
        if met.is_none() && !whole {
            return None;
        }
        let mut used = 0;
        for (len, hash) in made {
            used += len;
            self.push(len, hash);
        }
        if met.is_none() {
            self.carry = joined[used..].to_vec();
        }
        met
    }

    /// The chunks of the whole file: the carried bytes are its last chunks.
    fn finish(mut self) -> Vec<Chunk> {
        let carry = std::mem::take(&mut self.carry);
        for cut in FastCDC::new(&carry, MIN_CHUNK_BYTES, AVG_CHUNK_BYTES, MAX_CHUNK_BYTES) {
            let bytes = &carry[cut.offset..cut.offset + cut.length];
            self.push(cut.length, *blake3::hash(bytes).as_bytes());
        }
        self.chunks
    }
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

    /// Runs without natural cuts never meet a segment's own cuts: the
    /// stitcher cuts those segments itself, and the result is still one
    /// pass's cuts.
    #[test]
    fn segments_without_natural_cuts_are_stitched_as_one_pass() {
        let mut data = pseudo_random(3, 700_000);
        data.extend(vec![0u8; 3 * 1024 * 1024 + 5]);
        data.extend(pseudo_random(4, 900_000));
        data.extend(vec![9u8; 600_000]);
        for segment in [100_000, MAX_CHUNK_BYTES, 1_000_003, SEGMENT_BYTES] {
            let stitched = chunk_segments(&data[..], segment, WholeHash::Keep).unwrap();
            assert_eq!(stitched, chunk_bytes(&data), "segments of {segment}");
        }
    }

    #[test]
    fn a_file_of_whole_segments_ends_on_its_last_byte() {
        let data = pseudo_random(5, 4 * 300_000);
        let stitched = chunk_segments(&data[..], 300_000, WholeHash::Keep).unwrap();
        assert_eq!(stitched, chunk_bytes(&data));
        check_cover(&stitched, &data);
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

        /// However the file is split into segments, the stitched cuts are
        /// one pass's.
        #[test]
        fn stitched_segments_cut_as_one_pass(seed in any::<u64>(), len in 0usize..3_000_000, segment in 1usize..700_000) {
            let data = pseudo_random(seed, len);
            let stitched = chunk_segments(&data[..], segment, WholeHash::Keep).unwrap();
            prop_assert_eq!(stitched, chunk_bytes(&data));
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
