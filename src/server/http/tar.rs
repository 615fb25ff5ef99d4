//! The headers of a folder download: ustar (POSIX.1-1988) entries, with a
//! pax extended header (POSIX.1-2001) in front of any entry whose path is
//! longer than ustar's 100 bytes or whose size is past its 8 GiB. Written
//! here rather than through the `tar` crate because a download streams:
//! the header goes out, then the file's bytes as they are read, so no file
//! (and no archive) is ever held in memory or in a temporary file. Pure:
//! bytes in, bytes out.

/// A tar block; headers and data are padded to it.
pub const BLOCK: usize = 512;

/// What ends an archive: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// Largest size ustar's 11 octal digits hold.
const MAX_USTAR_SIZE: u64 = 0o777_7777_7777;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its `size` bytes follow the header.
    File,
    /// A directory; nothing follows.
    Dir,
}

/// One entry's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path inside the archive, `/`-separated, without a leading `/`.
    pub path: &'a [u8],
    /// File or directory.
    pub kind: EntryKind,
    /// Bytes that follow (0 for a directory).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Seconds since the epoch; an earlier time is written as 0.
    pub mtime: i64,
}

/// The header blocks of `entry`: one ustar block, or a pax header, its
/// records and then the ustar block.
pub fn header(entry: &Entry<'_>) -> Vec<u8> {
    let mut path = entry.path.to_vec();
    if entry.kind == EntryKind::Dir && !path.ends_with(b"/") {
        path.push(b'/');
    }
    let mut records = Vec::new();
    if path.len() > 100 {
        records.extend(pax_record("path", &path));
    }
    if entry.size > MAX_USTAR_SIZE {
        records.extend(pax_record("size", entry.size.to_string().as_bytes()));
    }
    let mut out = Vec::with_capacity(3 * BLOCK);
    if !records.is_empty() {
        let pax = Entry {
            path: b"././@PaxHeader",
            kind: EntryKind::File,
            size: records.len() as u64,
            mode: 0o644,
            mtime: entry.mtime,
        };
        out.extend(ustar_block(&pax, pax.path, b'x'));
        out.extend_from_slice(&records);
        out.resize(out.len() + padding(records.len() as u64), 0);
    }
    let short = &path[..path.len().min(100)];
    let flag = match entry.kind {
        EntryKind::File => b'0',
        EntryKind::Dir => b'5',
    };
    out.extend(ustar_block(entry, short, flag));
    out
}

/// Zero bytes that pad `size` bytes of data to a whole block.
pub fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// One pax record: `LEN KEY=VALUE\n`, where LEN counts the whole record,
/// its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = 1 + key.len() + 1 + value.len() + 1; // " key=value\n"
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn ustar_block(entry: &Entry<'_>, name: &[u8], flag: u8) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..name.len()].copy_from_slice(name);
    octal(&mut block[100..108], u64::from(entry.mode & 0o7777));
    octal(&mut block[108..116], 0);
    octal(&mut block[116..124], 0);
    octal(&mut block[124..136], entry.size.min(MAX_USTAR_SIZE));
    octal(&mut block[136..148], entry.mtime.max(0) as u64);
    block[156] = flag;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    // The checksum counts its own field as spaces.
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(digits.as_bytes());
    block
}

/// Writes `value` as zero-padded octal digits and a NUL into `field`;
/// a value too large for the field is cut to its largest.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let max = (1u64 << (3 * digits as u32)) - 1;
    let text = format!("{:0width$o}", value.min(max), width = digits);
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(block: &[u8], range: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&block[range])
            .unwrap()
            .trim_end_matches('\0')
    }

    fn checksum_holds(block: &[u8]) -> bool {
        let mut copy = block.to_vec();
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        u32::from_str_radix(field(block, 148..154), 8).unwrap() == sum
    }

    #[test]
    fn a_short_file_gets_one_ustar_block() {
        let block = header(&Entry {
            path: b"dir/a.txt",
            kind: EntryKind::File,
            size: 1234,
            mode: 0o640,
            mtime: 1_700_000_000,
        });
        assert_eq!(block.len(), BLOCK);
        assert_eq!(field(&block, 0..100), "dir/a.txt");
        assert_eq!(field(&block, 100..107), "0000640");
        assert_eq!(
            u64::from_str_radix(field(&block, 124..135), 8).unwrap(),
            1234
        );
        assert_eq!(
            i64::from_str_radix(field(&block, 136..147), 8).unwrap(),
            1_700_000_000
        );
        assert_eq!(block[156], b'0');
        assert_eq!(&block[257..265], b"ustar\x0000");
        assert!(checksum_holds(&block));
        assert_eq!(padding(1234), 1536 - 1234);
        assert_eq!(padding(0), 0);
        assert_eq!(padding(512), 0);
    }

    #[test]
    fn a_directory_ends_in_a_slash() {
        let block = header(&Entry {
            path: b"dir",
            kind: EntryKind::Dir,
            size: 0,
            mode: 0o755,
            mtime: -5,
        });
        assert_eq!(field(&block, 0..100), "dir/");
        assert_eq!(block[156], b'5');
        assert_eq!(field(&block, 136..147), "00000000000");
        assert!(checksum_holds(&block));
    }

    #[test]
    fn a_long_path_or_a_huge_size_goes_in_a_pax_header() {
        let long = "d/".repeat(80) + "file";
        let blocks = header(&Entry {
            path: long.as_bytes(),
            kind: EntryKind::File,
            size: 10 << 30,
            mode: 0o644,
            mtime: 0,
        });
        assert_eq!(blocks.len(), 3 * BLOCK);
        assert_eq!(blocks[156], b'x');
        assert!(checksum_holds(&blocks[..BLOCK]));
        let records_len = u64::from_str_radix(field(&blocks, 124..135), 8).unwrap() as usize;
        let records = std::str::from_utf8(&blocks[BLOCK..BLOCK + records_len]).unwrap();
        // Each record's length counts the whole record.
        for record in records.split_inclusive('\n') {
            let (len, _) = record.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), record.len(), "{record:?}");
        }
        assert!(records.contains(&format!(" path={long}\n")), "{records}");
        assert!(
            records.contains(&format!(" size={}\n", 10u64 << 30)),
            "{records}"
        );
        let ustar = &blocks[2 * BLOCK..];
        assert!(checksum_holds(ustar));
        assert_eq!(ustar[156], b'0');
    }

    #[test]
    fn pax_record_lengths_cross_a_digit_boundary() {
        // " k=" plus value plus "\n" is 96..=100 bytes here: the length's
        // own digits push some records from two digits to three.
        for n in 90..100 {
            let record = pax_record("k", &vec![b'v'; n]);
            let text = std::str::from_utf8(&record).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), record.len(), "{n}");
        }
    }
}
