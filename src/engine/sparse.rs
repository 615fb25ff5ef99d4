//! Writes a file's bytes so that zero-filled blocks stay holes: what a
//! partial file ([`super::atomic::PartialFile`]) writes through, so a
//! sparse file received stays sparse on disk.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Zero-filled runs at least this long, aligned, are skipped with a seek
/// instead of written, so sparse files stay sparse.
const HOLE_BYTES: usize = 4096;

/// The writing state of one file: where its position is, and the start of
/// a block not yet complete.
#[derive(Debug, Default)]
pub struct SparseWriter {
    /// Bytes written or seeked over: the file position.
    flushed: u64,
    /// The start of a block not yet complete.
    tail: Vec<u8>,
    /// Whether the last bytes were seeked over, so the length must be set.
    hole_at_end: bool,
}

impl SparseWriter {
    /// A writer continuing a file whose first `len` bytes are in place and
    /// whose position is `len`.
    pub fn at(len: u64) -> SparseWriter {
        SparseWriter {
            flushed: len,
            ..SparseWriter::default()
        }
    }

    /// Writes `chunk` at the file position, seeking over every aligned
    /// block of `HOLE_BYTES` that is all zeros. Socket reads do not arrive
    /// aligned, so the unaligned end of a chunk waits in `tail` until its
    /// block is complete.
    pub fn write(&mut self, file: &mut File, mut chunk: &[u8]) -> io::Result<()> {
        if !self.tail.is_empty() {
            let room = self.block_room() - self.tail.len();
            let take = room.min(chunk.len());
            self.tail.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.tail.len() < self.block_room() {
                return Ok(());
            }
            let block = std::mem::take(&mut self.tail);
            self.emit(file, &block)?;
            self.tail = block;
            self.tail.clear();
        }
        while chunk.len() >= self.block_room() {
            // The longest run of whole blocks of one kind, in one call.
            let first = self.block_room();
            let zeros = first == HOLE_BYTES && is_all_zero(&chunk[..first]);
            let mut run = first;
            while run + HOLE_BYTES <= chunk.len()
                && is_all_zero(&chunk[run..run + HOLE_BYTES]) == zeros
            {
                run += HOLE_BYTES;
            }
            self.emit_run(file, &chunk[..run], zeros)?;
            chunk = &chunk[run..];
        }
        self.tail.extend_from_slice(chunk);
        Ok(())
    }

    /// Bytes from the file position to the next block boundary.
    fn block_room(&self) -> usize {
        HOLE_BYTES - (self.flushed % HOLE_BYTES as u64) as usize
    }

    fn emit(&mut self, file: &mut File, block: &[u8]) -> io::Result<()> {
        let zeros = block.len() == HOLE_BYTES && is_all_zero(block);
        self.emit_run(file, block, zeros)
    }

    fn emit_run(&mut self, file: &mut File, bytes: &[u8], zeros: bool) -> io::Result<()> {
        if zeros {
            file.seek(SeekFrom::Current(bytes.len() as i64))?;
        } else {
            file.write_all(bytes)?;
        }
        self.hole_at_end = zeros;
        self.flushed += bytes.len() as u64;
        Ok(())
    }

    /// Writes out the block still being assembled, so that what was
    /// accepted is on the file (for a resume later).
    pub fn flush_tail(&mut self, file: &mut File) -> io::Result<()> {
        let tail = std::mem::take(&mut self.tail);
        file.write_all(&tail)
    }

    /// Completes the file at `len` bytes: the last partial block written,
    /// or a trailing hole made part of the file by its length.
    pub fn finish(&mut self, file: &mut File, len: u64) -> io::Result<()> {
        if !self.tail.is_empty() {
            self.flush_tail(file)
        } else if self.hole_at_end {
            file.set_len(len)
        } else {
            Ok(())
        }
    }
}

fn is_all_zero(chunk: &[u8]) -> bool {
    let (words, tail) = chunk.as_chunks::<8>();
    words.iter().all(|w| u64::from_ne_bytes(*w) == 0) && tail.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    /// Writes `data` cut at `cuts`, finishes, and reads the file back.
    fn round_trip(data: &[u8], cuts: &[usize]) -> (Vec<u8>, std::fs::Metadata) {
        let mut file = tempfile::tempfile().unwrap();
        let mut writer = SparseWriter::default();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            let cut = cut.clamp(at, data.len());
            writer.write(&mut file, &data[at..cut]).unwrap();
            at = cut;
        }
        writer.finish(&mut file, data.len() as u64).unwrap();
        let meta = file.metadata().unwrap();
        let mut back = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut back).unwrap();
        (back, meta)
    }

    #[test]
    fn aligned_zero_blocks_are_not_allocated_and_a_trailing_hole_keeps_the_length() {
        let mut data = vec![0u8; 64 * HOLE_BYTES];
        data[..10].fill(1);
        let (back, meta) = round_trip(&data, &[3, 5000, 70_000]);
        assert_eq!(back, data);
        assert_eq!(meta.len(), data.len() as u64);
        // One data block at most, where 64 would be without holes.
        assert!(
            meta.blocks() * 512 <= 2 * HOLE_BYTES as u64,
            "{} blocks",
            meta.blocks()
        );
    }

    proptest! {
        #[test]
        fn any_bytes_cut_anywhere_read_back_the_same(
            runs in proptest::collection::vec((any::<bool>(), 1usize..3 * HOLE_BYTES), 0..8),
            cuts in proptest::collection::vec(0usize..24 * HOLE_BYTES, 0..6),
        ) {
            let mut data = Vec::new();
            for (zero, len) in runs {
                data.extend((0..len).map(|i| if zero { 0 } else { (i % 251) as u8 + 1 }));
            }
            let mut cuts = cuts;
            cuts.sort();
            let (back, meta) = round_trip(&data, &cuts);
            prop_assert_eq!(meta.len(), data.len() as u64);
            prop_assert!(back == data);
        }
    }
}
