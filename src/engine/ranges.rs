//! Which ranges of a striped file have arrived, as pure code: no files, no
//! sockets, no clock.
//!
//! A big file sent over several streams is cut on a fixed grid: range `k`
//! is the bytes `[k × RANGE_BYTES, min((k+1) × RANGE_BYTES, size))`. A
//! range off that grid, past the file's end or of another length is
//! refused, so two ranges can only overlap by being the same range; one
//! that was verified may come again only with the same bytes (its hash),
//! and one still arriving on another stream may not come again at all.
//!
//! [`RangeBook`] keeps the verified ranges with their BLAKE3, which is
//! what the receiver records beside the partial file ([`KeptRanges`]) so a
//! rerun continues from them, whichever stream wrote them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The grid a striped file is cut on. 4 MiB: a 128 MiB file makes 32
/// ranges, enough to keep 8 streams busy to the end, and each range's end
/// frame (its hash) costs nothing beside its data.
pub const RANGE_BYTES: u64 = 4 * 1024 * 1024;

/// Files at least this big are striped when a transfer has several
/// streams; smaller ones travel in the first stream's pipeline, where a
/// file costs no round trip, and would gain little from being cut in two.
pub const STRIPE_MIN_BYTES: u64 = 2 * RANGE_BYTES;

/// The length of the range at `offset` of a `size`-byte file: 0 when
/// `offset` is off the grid or past the end.
pub fn range_len(size: u64, offset: u64) -> u64 {
    if offset.is_multiple_of(RANGE_BYTES) && offset < size {
        RANGE_BYTES.min(size - offset)
    } else {
        0
    }
}

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not a range of the grid: off it, past the end, or of a wrong length.
    #[error("the range of {len} bytes at {offset} is not a range of this {size}-byte file")]
    Outside {
        /// Where it starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// The file's size.
        size: u64,
    },
    /// The same range is arriving on another stream.
    #[error("the range at {0} is already arriving on another stream")]
    InFlight(u64),
    /// The range was verified with other bytes.
    #[error("the range at {0} overlaps one already verified with different bytes")]
    Conflict(u64),
    /// Its bytes do not hash to what the sender said.
    #[error("the range at {0} does not match its BLAKE3")]
    Mismatch(u64),
}

/// What to do with a range that may begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Write it.
    New,
    /// Already verified with this hash: check, do not write.
    Verified(blake3::Hash),
}

/// The ranges of one file: verified (with their hash) and arriving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeBook {
    size: u64,
    verified: BTreeMap<u64, blake3::Hash>,
    arriving: BTreeSet<u64>,
}

impl RangeBook {
    /// A file of `size` bytes with nothing verified.
    pub fn new(size: u64) -> RangeBook {
        RangeBook {
            size,
            verified: BTreeMap::new(),
            arriving: BTreeSet::new(),
        }
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many ranges the file has.
    pub fn count(&self) -> u64 {
        self.size.div_ceil(RANGE_BYTES)
    }

    /// The length of the range at `offset`, if `offset` is on the grid.
    fn len_at(&self, offset: u64) -> Option<u64> {
        Some(range_len(self.size, offset)).filter(|&len| len > 0)
    }

    /// A range of `len` bytes at `offset` starts arriving.
    pub fn begin(&mut self, offset: u64, len: u64) -> Result<Begin, RangeError> {
        if self.len_at(offset) != Some(len) {
            return Err(RangeError::Outside {
                offset,
                len,
                size: self.size,
            });
        }
        if let Some(hash) = self.verified.get(&offset) {
            return Ok(Begin::Verified(*hash));
        }
        if !self.arriving.insert(offset) {
            return Err(RangeError::InFlight(offset));
        }
        Ok(Begin::New)
    }

    /// The range at `offset` that began as [`Begin::New`] arrived whole
    /// with the bytes whose BLAKE3 is `received`; `sent` is what the sender
    /// said it is.
    pub fn land(
        &mut self,
        offset: u64,
        received: blake3::Hash,
        sent: blake3::Hash,
    ) -> Result<(), RangeError> {
        self.arriving.remove(&offset);
        if received != sent {
            return Err(RangeError::Mismatch(offset));
        }
        self.verified.insert(offset, received);
        Ok(())
    }

    /// The range at `offset` stopped arriving before it was whole.
    pub fn abandon(&mut self, offset: u64) {
        self.arriving.remove(&offset);
    }

    /// Records a range verified by an earlier attempt.
    pub fn keep(&mut self, offset: u64, hash: blake3::Hash) -> Result<(), RangeError> {
        let len = self.len_at(offset).ok_or(RangeError::Outside {
            offset,
            len: 0,
            size: self.size,
        })?;
        debug_assert!(len > 0);
        self.verified.insert(offset, hash);
        Ok(())
    }

    /// Whether the range at `offset` is verified.
    pub fn is_verified(&self, offset: u64) -> bool {
        self.verified.contains_key(&offset)
    }

    /// Every range verified.
    pub fn is_complete(&self) -> bool {
        self.verified.len() as u64 == self.count()
    }

    /// The verified ranges: offset, length, hash, in file order.
    pub fn verified(&self) -> impl Iterator<Item = (u64, u64, blake3::Hash)> + '_ {
        self.verified
            .iter()
            .map(|(&offset, &hash)| (offset, RANGE_BYTES.min(self.size - offset), hash))
    }

    /// The ranges still to send: offset and length, in file order.
    pub fn missing(&self) -> Vec<(u64, u64)> {
        (0..self.count())
            .map(|k| k * RANGE_BYTES)
            .filter(|offset| !self.verified.contains_key(offset))
            .map(|offset| (offset, RANGE_BYTES.min(self.size - offset)))
            .collect()
    }
}

/// The ranges of a striped file kept so far, as recorded beside its
/// partial file: for the source of this size and mtime, each verified
/// range's offset and BLAKE3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRanges {
    /// The source's size.
    pub file_size: u64,
    /// The source's mtime, seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Offset and hex BLAKE3 of each verified range.
    pub ranges: Vec<(u64, String)>,
}

impl KeptRanges {
    /// What `book` holds, for the source of `mtime`.
    pub fn of(book: &RangeBook, mtime: (i64, u32)) -> KeptRanges {
        KeptRanges {
            file_size: book.size(),
            mtime,
            ranges: book
                .verified()
                .map(|(offset, _, hash)| (offset, hash.to_hex().to_string()))
                .collect(),
        }
    }

    /// A book with these ranges verified, if they were recorded for this
    /// source; ranges that do not fit it are dropped.
    pub fn to_book(&self, file_size: u64, mtime: (i64, u32)) -> RangeBook {
        let mut book = RangeBook::new(file_size);
        if (self.file_size, self.mtime) != (file_size, mtime) {
            return book;
        }
        for (offset, hex) in &self.ranges {
            if let Ok(hash) = blake3::Hash::from_hex(hex) {
                let _ = book.keep(*offset, hash);
            }
        }
        book
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SIZE: u64 = 2 * RANGE_BYTES + 5;

    fn hash(n: u8) -> blake3::Hash {
        blake3::hash(&[n])
    }

    #[test]
    fn a_file_is_cut_on_the_grid_and_the_last_range_is_short() {
        let book = RangeBook::new(SIZE);
        assert_eq!(book.count(), 3);
        assert_eq!(
            book.missing(),
            [
                (0, RANGE_BYTES),
                (RANGE_BYTES, RANGE_BYTES),
                (2 * RANGE_BYTES, 5)
            ]
        );
        assert_eq!(RangeBook::new(0).count(), 0);
        assert!(RangeBook::new(0).is_complete());
    }

    #[test]
    fn ranges_off_the_grid_past_the_end_or_of_another_length_are_refused() {
        let mut book = RangeBook::new(SIZE);
        for (offset, len) in [
            (1, RANGE_BYTES),
            (0, RANGE_BYTES - 1),
            (2 * RANGE_BYTES, 6),
            (3 * RANGE_BYTES, 1),
            (u64::MAX - 3, 4),
        ] {
            assert!(
                matches!(book.begin(offset, len), Err(RangeError::Outside { .. })),
                "{offset} {len}"
            );
        }
        assert_eq!(book.missing().len(), 3, "nothing changed");
    }

    #[test]
    fn a_range_twice_at_once_is_refused_and_again_once_verified_is_checked() {
        let mut book = RangeBook::new(SIZE);
        assert_eq!(book.begin(0, RANGE_BYTES), Ok(Begin::New));
        assert_eq!(book.begin(0, RANGE_BYTES), Err(RangeError::InFlight(0)));
        book.land(0, hash(1), hash(1)).unwrap();
        assert_eq!(book.begin(0, RANGE_BYTES), Ok(Begin::Verified(hash(1))));
        assert_eq!(book.begin(RANGE_BYTES, RANGE_BYTES), Ok(Begin::New));
        assert_eq!(
            book.land(RANGE_BYTES, hash(2), hash(3)),
            Err(RangeError::Mismatch(RANGE_BYTES))
        );
        assert_eq!(book.begin(RANGE_BYTES, RANGE_BYTES), Ok(Begin::New));
        book.abandon(RANGE_BYTES);
        assert_eq!(
            book.missing(),
            [(RANGE_BYTES, RANGE_BYTES), (2 * RANGE_BYTES, 5)]
        );
    }

    #[test]
    fn kept_ranges_come_back_only_for_the_same_source() {
        let mut book = RangeBook::new(SIZE);
        book.begin(RANGE_BYTES, RANGE_BYTES).unwrap();
        book.land(RANGE_BYTES, hash(1), hash(1)).unwrap();
        let kept = KeptRanges::of(&book, (7, 8));
        let json = serde_json::to_string(&kept).unwrap();
        let back: KeptRanges = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_book(SIZE, (7, 8)), book);
        assert_eq!(back.to_book(SIZE, (7, 9)).missing().len(), 3);
        assert_eq!(back.to_book(SIZE + 1, (7, 8)).missing().len(), 3);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Begin(u64, u64),
        Land(u64, u8, u8),
        Abandon(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        let offset = prop_oneof![
            (0u64..4).prop_map(|k| k * RANGE_BYTES),
            0u64..4 * RANGE_BYTES,
        ];
        let len = prop_oneof![Just(RANGE_BYTES), Just(5u64), 0u64..2 * RANGE_BYTES];
        prop_oneof![
            (offset.clone(), len).prop_map(|(o, l)| Step::Begin(o, l)),
            (offset.clone(), 0u8..3, 0u8..3).prop_map(|(o, a, b)| Step::Land(o, a, b)),
            offset.prop_map(Step::Abandon),
        ]
    }

    proptest! {
        /// Whatever ranges arrive, in whatever order and with whatever
        /// hashes: the verified and the missing ranges tile the file
        /// exactly, a verified range never changes its hash, and the book
        /// is complete exactly when nothing is missing.
        #[test]
        fn verified_and_missing_ranges_always_tile_the_file(
            size in 0u64..4 * RANGE_BYTES,
            steps in proptest::collection::vec(step(), 0..40),
        ) {
            let mut book = RangeBook::new(size);
            let mut began = BTreeSet::new();
            let mut seen: BTreeMap<u64, blake3::Hash> = BTreeMap::new();
            for step in steps {
                match step {
                    Step::Begin(offset, len) => {
                        if let Ok(Begin::New) = book.begin(offset, len) {
                            prop_assert!(began.insert(offset));
                        }
                    }
                    Step::Land(offset, a, b) => {
                        if began.remove(&offset) {
                            let landed = book.land(offset, hash(a), hash(b));
                            prop_assert_eq!(landed.is_ok(), a == b);
                        }
                    }
                    Step::Abandon(offset) => {
                        if began.remove(&offset) {
                            book.abandon(offset);
                        }
                    }
                }
                let mut tiles: Vec<(u64, u64)> =
                    book.verified().map(|(o, l, _)| (o, l)).collect();
                for (offset, _, hash) in book.verified() {
                    let before = seen.insert(offset, hash);
                    prop_assert!(before.is_none_or(|h| h == hash));
                }
                tiles.extend(book.missing());
                tiles.sort_unstable();
                let mut next = 0;
                for (offset, len) in tiles {
                    prop_assert_eq!(offset, next);
                    prop_assert!(len > 0 && len <= RANGE_BYTES);
                    next = offset + len;
                }
                prop_assert_eq!(next, size);
                prop_assert_eq!(book.is_complete(), book.missing().is_empty());
            }
        }
    }
}
