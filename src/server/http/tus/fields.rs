//! The tus headers that carry data: `Upload-Metadata` (the file's name
//! and BLAKE3) and a chunk's `Upload-Checksum`, parsed strictly, and the
//! hash of a chunk as it arrives. Pure.

use std::collections::HashMap;

use base64::Engine;

use super::CHECKSUMS;

/// `Upload-Metadata`: `key BASE64` pairs separated by commas.
pub fn metadata(value: &str) -> Result<HashMap<String, Vec<u8>>, String> {
    let mut pairs = HashMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| format!("Upload-Metadata: {key:?} is not base64"))?;
        pairs.insert(key.to_string(), decoded);
    }
    Ok(pairs)
}

/// A chunk's `Upload-Checksum`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// BLAKE3 of the chunk.
    Blake3([u8; 32]),
    /// SHA-1 of the chunk.
    Sha1([u8; 20]),
}

impl Checksum {
    /// Reads `ALGORITHM BASE64`.
    pub fn parse(value: &str) -> Result<Checksum, String> {
        let (algorithm, encoded) = value
            .trim()
            .split_once(' ')
            .ok_or("Upload-Checksum is `ALGORITHM BASE64`")?;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| "Upload-Checksum: the digest is not base64".to_string())?;
        let wrong = || format!("Upload-Checksum: a {algorithm} digest has another length");
        match algorithm {
            "blake3" => Ok(Checksum::Blake3(digest.try_into().map_err(|_| wrong())?)),
            "sha1" => Ok(Checksum::Sha1(digest.try_into().map_err(|_| wrong())?)),
            other => Err(format!(
                "Upload-Checksum: {other:?} is not supported; use one of {CHECKSUMS}"
            )),
        }
    }
}

/// Hashes one chunk as it arrives, for its `Upload-Checksum`.
pub(super) enum ChunkHasher {
    Blake3(Box<blake3::Hasher>),
    Sha1(aws_lc_rs::digest::Context),
}

impl ChunkHasher {
    pub(super) fn new(checksum: &Checksum) -> ChunkHasher {
        match checksum {
            Checksum::Blake3(_) => ChunkHasher::Blake3(Box::default()),
            Checksum::Sha1(_) => ChunkHasher::Sha1(aws_lc_rs::digest::Context::new(
                &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            )),
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        match self {
            ChunkHasher::Blake3(hasher) => {
                hasher.update(bytes);
            }
            ChunkHasher::Sha1(context) => context.update(bytes),
        }
    }

    pub(super) fn matches(self, checksum: &Checksum) -> bool {
        match (self, checksum) {
            (ChunkHasher::Blake3(hasher), Checksum::Blake3(want)) => {
                hasher.finalize().as_bytes() == want
            }
            (ChunkHasher::Sha1(context), Checksum::Sha1(want)) => {
                context.finish().as_ref() == want.as_slice()
            }
            _ => false,
        }
    }
}

pub(super) fn parse_blake3(value: &[u8]) -> Result<blake3::Hash, String> {
    let text = std::str::from_utf8(value).unwrap_or_default();
    blake3::Hash::from_hex(text.trim())
        .map_err(|_| "Upload-Metadata: `blake3` is 64 hex digits".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_checksums_are_read_strictly() {
        let meta = metadata("filename ZGlyL2EudHh0, blake3 ,empty").unwrap();
        assert_eq!(meta["filename"], b"dir/a.txt");
        assert!(meta["blake3"].is_empty() && meta["empty"].is_empty());
        assert!(metadata("filename !!!").is_err());
        let sha1 = base64::engine::general_purpose::STANDARD.encode([1u8; 20]);
        assert_eq!(
            Checksum::parse(&format!("sha1 {sha1}")),
            Ok(Checksum::Sha1([1; 20]))
        );
        let b3 = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
        assert_eq!(
            Checksum::parse(&format!("blake3 {b3}")),
            Ok(Checksum::Blake3([2; 32]))
        );
        assert!(Checksum::parse(&format!("md5 {b3}"))
            .unwrap_err()
            .contains("not supported"));
        assert!(
            Checksum::parse(&format!("sha1 {b3}")).is_err(),
            "wrong length"
        );
        assert!(Checksum::parse("sha1").is_err());
    }

    #[test]
    fn a_chunk_hash_matches_only_its_bytes() {
        let want = Checksum::Blake3(*blake3::hash(b"chunk").as_bytes());
        let mut hasher = ChunkHasher::new(&want);
        hasher.update(b"chu");
        hasher.update(b"nk");
        assert!(hasher.matches(&want));
        let mut hasher = ChunkHasher::new(&want);
        hasher.update(b"chunk!");
        assert!(!hasher.matches(&want));
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, b"x");
        let want = Checksum::Sha1(sha1.as_ref().try_into().unwrap());
        let mut hasher = ChunkHasher::new(&want);
        hasher.update(b"x");
        assert!(hasher.matches(&want));
    }
}
