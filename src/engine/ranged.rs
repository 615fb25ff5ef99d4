//! A partial file written at offsets, by ranges that arrive on several
//! streams at once ([`super::ranges`]), and the record of its verified
//! ranges beside it, so a rerun continues from them.
//!
//! It is the partial file of `atomic.rs` (same reserved name, created
//! 0600 and exclusively, adopted only when this user made it, locked, and
//! published only while its name leads to the file written here), grown
//! by the ranges as they land. The record, `<partial>.ranges`, is replaced
//! whole after each verified range: written under a name of its own,
//! created exclusively without following links (so nothing planted there
//! is written through), then renamed over the old one, so a process
//! killed at any point leaves one record or the other. A record is a
//! hint: each range it names is hashed again before it is trusted, so a
//! record that outlived its data (a crash before the data reached the
//! disk) costs a resend, never a wrong byte.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};

use super::atomic::{
    identity_at, is_reserved_name, open_own_partial, partial_name, FileMeta, SealedFile, WriteError,
};
use super::ranges::{range_len, KeptRanges, RangeBook};
use super::root::{fstat, Kind};

/// Largest record of kept ranges read back: 64 bytes a range, so 16 MiB
/// covers a 1 TiB file.
const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

/// A partial file written at offsets.
#[derive(Debug)]
pub struct RangedPartial {
    dir: Arc<OwnedFd>,
    name: OsString,
    final_name: OsString,
    identity: (u64, u64),
    file: File,
}

impl RangedPartial {
    /// Opens (or adopts) the partial file for `final_name` in `dir`, cut
    /// to the source's `size` if it is longer.
    pub fn open_in(
        dir: Arc<OwnedFd>,
        final_name: &OsStr,
        size: u64,
    ) -> Result<RangedPartial, WriteError> {
        if is_reserved_name(final_name) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "reserved file name").into());
        }
        let name = partial_name(final_name);
        let fd = open_own_partial(&dir, &name)?;
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(WriteError::Busy);
        }
        let st = fstat(&fd)?;
        let file = File::from(fd);
        // Longer than the source: another source's. Shorter is fine: ranges
        // extend it as they land, and a sparse file of a claimed size is
        // never made up front.
        if st.len > size {
            file.set_len(size)?;
        }
        Ok(RangedPartial {
            dir,
            name,
            final_name: final_name.to_os_string(),
            identity: st.dev_ino,
            file,
        })
    }

    /// Writes `bytes` at `offset`.
    pub fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    /// Reads the `len` bytes at `offset` into `buf` (cleared first).
    fn read_range(&self, offset: u64, len: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        buf.resize(len as usize, 0);
        self.file.read_exact_at(buf, offset)
    }

    /// The BLAKE3 of the `len` bytes at `offset`.
    pub fn hash_range(&self, offset: u64, len: u64) -> io::Result<blake3::Hash> {
        let mut buf = Vec::new();
        self.read_range(offset, len, &mut buf)?;
        Ok(blake3::hash(&buf))
    }

    /// The ranges an earlier attempt recorded for this source, each hashed
    /// again here; those whose bytes no longer match are dropped. Also the
    /// BLAKE3 of the kept ranges' bytes one after the other, for the
    /// sender to check against its own.
    pub fn kept(&self, size: u64, mtime: (i64, u32)) -> (RangeBook, blake3::Hash) {
        let recorded = self.read_record().unwrap_or_default().to_book(size, mtime);
        let mut book = RangeBook::new(size);
        let mut all = blake3::Hasher::new();
        let mut buf = Vec::new();
        for (offset, len, hash) in recorded.verified() {
            if self.read_range(offset, len, &mut buf).is_err() || blake3::hash(&buf) != hash {
                continue;
            }
            all.update(&buf);
            let _ = book.keep(offset, hash);
        }
        (book, all.finalize())
    }

    fn record_name(&self) -> OsString {
        let mut name = self.name.clone();
        name.push(".ranges");
        name
    }

    /// The record beside the partial, if this user wrote it.
    fn read_record(&self) -> Option<KeptRanges> {
        let fd = rustix::fs::openat(
            &*self.dir,
            self.record_name(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        let ours = Kind::of(st.st_mode) == Kind::File
            && st.st_uid == rustix::process::geteuid().as_raw()
            && st.st_nlink == 1
            && st.st_mode & 0o077 == 0;
        if !ours {
            return None;
        }
        let mut text = Vec::new();
        File::from(fd)
            .take(MAX_RECORD_BYTES)
            .read_to_end(&mut text)
            .ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Records `book`'s verified ranges for the source of `mtime`.
    pub fn record(&self, book: &RangeBook, mtime: (i64, u32)) -> io::Result<()> {
        let name = self.record_name();
        let mut new = name.clone();
        new.push(".new");
        match rustix::fs::unlinkat(&*self.dir, &new, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(errno) => return Err(errno.into()),
        }
        let fd = rustix::fs::openat(
            &*self.dir,
            &new,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let text = serde_json::to_vec(&KeptRanges::of(book, mtime)).map_err(io::Error::other)?;
        File::from(fd).write_all_at(&text, 0)?;
        // A process killed at any point leaves the old record or the new
        // one, never none.
        rustix::fs::renameat(&*self.dir, &new, &*self.dir, &name)?;
        Ok(())
    }

    /// Removes the record (best effort).
    fn remove_record(&self) {
        let name = self.record_name();
        let mut new = name.clone();
        new.push(".new");
        for name in [name, new] {
            let _ = rustix::fs::unlinkat(&*self.dir, name, AtFlags::empty());
        }
    }

    /// Removes the record of ranges kept for `final_name` in `dir`, for a
    /// transfer that sends the file whole instead: the record would outlive
    /// the partial it describes.
    pub fn forget_ranges(dir: &OwnedFd, final_name: &OsStr) {
        let mut name = partial_name(final_name);
        name.push(".ranges");
        let _ = rustix::fs::unlinkat(dir, &name, AtFlags::empty());
    }

    /// Removes the partial and its record (best effort): given up on.
    pub fn remove(&self) {
        let _ = rustix::fs::unlinkat(&*self.dir, &self.name, AtFlags::empty());
        self.remove_record();
    }

    /// Reads the range at `offset` of a `size`-byte file into `hasher`,
    /// for a caller that hashes the whole file in order as ranges land.
    pub fn hash_into(
        &self,
        hasher: &mut blake3::Hasher,
        size: u64,
        offset: u64,
    ) -> io::Result<u64> {
        let len = range_len(size, offset);
        let mut buf = Vec::new();
        self.read_range(offset, len, &mut buf)?;
        hasher.update(&buf);
        Ok(len)
    }

    /// Checks `received`, the BLAKE3 of the whole file as written (read
    /// back by [`RangedPartial::hash_into`]), against the sender's
    /// `expected`, and sets mode and mtime. On a mismatch the partial and
    /// its record are removed: the sender's ranges and its whole hash
    /// disagree, so none of it can be trusted.
    pub fn seal(
        &self,
        received: &blake3::Hash,
        expected: &blake3::Hash,
        meta: &FileMeta,
    ) -> Result<SealedFile, WriteError> {
        if received != expected {
            self.remove();
            return Err(WriteError::HashMismatch);
        }
        if let Err(err) = self.finish(meta) {
            self.remove();
            return Err(err.into());
        }
        self.remove_record();
        Ok(SealedFile::of_parts(
            self.dir.clone(),
            (self.name.clone(), self.final_name.clone()),
            self.identity,
            self.file.try_clone()?,
            *received,
        ))
    }

    fn finish(&self, meta: &FileMeta) -> io::Result<()> {
        super::atomic::set_meta(&self.file, meta)?;
        // Still the file this transfer wrote.
        if identity_at(&self.dir, &self.name)? != self.identity {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the partial file was replaced by someone else while it was written; not kept",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ranges::RANGE_BYTES;
    use super::*;

    fn dir_of(tmp: &tempfile::TempDir) -> Arc<OwnedFd> {
        Arc::new(OwnedFd::from(File::open(tmp.path()).unwrap()))
    }

    #[test]
    fn ranges_written_in_any_order_publish_once_the_whole_hash_matches() {
        let tmp = tempfile::tempdir().unwrap();
        let size = RANGE_BYTES + 10;
        let data: Vec<u8> = (0..size).map(|n| (n % 251) as u8).collect();
        let partial = RangedPartial::open_in(dir_of(&tmp), OsStr::new("f"), size).unwrap();
        partial
            .write_at(&data[RANGE_BYTES as usize..], RANGE_BYTES)
            .unwrap();
        partial.write_at(&data[..RANGE_BYTES as usize], 0).unwrap();
        let whole = |partial: &RangedPartial| {
            let mut hasher = blake3::Hasher::new();
            let mut offset = 0;
            while offset < size {
                offset += partial.hash_into(&mut hasher, size, offset).unwrap();
            }
            hasher.finalize()
        };
        let wrong = blake3::hash(b"other");
        let meta = FileMeta::fresh();
        let again = RangedPartial::open_in(dir_of(&tmp), OsStr::new("g"), size).unwrap();
        again.write_at(&data, 0).unwrap();
        assert!(matches!(
            again.seal(&whole(&again), &wrong, &meta),
            Err(WriteError::HashMismatch)
        ));
        assert_eq!(whole(&partial), blake3::hash(&data));
        let sealed = partial
            .seal(&whole(&partial), &blake3::hash(&data), &meta)
            .unwrap();
        sealed.sync().unwrap();
        sealed.publish(true).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), data);
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"], "no partial or record left");
    }

    #[test]
    fn recorded_ranges_are_kept_only_while_their_bytes_still_match() {
        let tmp = tempfile::tempdir().unwrap();
        let size = 3 * RANGE_BYTES;
        let partial = RangedPartial::open_in(dir_of(&tmp), OsStr::new("f"), size).unwrap();
        let mut book = RangeBook::new(size);
        for (offset, byte) in [(0, 1u8), (2 * RANGE_BYTES, 3)] {
            let bytes = vec![byte; RANGE_BYTES as usize];
            partial.write_at(&bytes, offset).unwrap();
            book.begin(offset, RANGE_BYTES).unwrap();
            let hash = blake3::hash(&bytes);
            book.land(offset, hash, hash).unwrap();
        }
        partial.record(&book, (5, 0)).unwrap();
        drop(partial);
        // The second kept range is overwritten behind the record's back.
        let partial = RangedPartial::open_in(dir_of(&tmp), OsStr::new("f"), size).unwrap();
        partial.write_at(b"x", 2 * RANGE_BYTES).unwrap();
        let (kept, all) = partial.kept(size, (5, 0));
        assert_eq!(kept.verified().map(|(o, _, _)| o).collect::<Vec<_>>(), [0]);
        assert_eq!(all, blake3::hash(&vec![1u8; RANGE_BYTES as usize]));
        // Another source (a new mtime) keeps nothing.
        assert!(partial.kept(size, (6, 0)).0.verified().next().is_none());
        // A transfer that sends the file whole forgets the record.
        let dir = File::open(tmp.path()).unwrap();
        RangedPartial::forget_ranges(&OwnedFd::from(dir), OsStr::new("f"));
        assert!(partial.read_record().is_none());
    }
}
