//! The file service's messages, as pure code. Both directions of a transfer
//! use one exchange, with the roles of sender and receiver swapped between
//! `get` and `put`:
//!
//! 1. the sender's **manifest**: one [`Entry`] per directory and file, as
//!    JSON lines in a body;
//! 2. the receiver's **wants**: one [`Want`] per file it needs, with the
//!    offset to resume from and the hash of the prefix it kept;
//! 3. the sender's **data**: for each wanted file a [`FileHead`] frame whose
//!    body is the file from `offset`, then a [`FileEnd`] frame with the
//!    BLAKE3 of the whole file; then an end frame. Each is a
//!    [`DataFrame`], parsed once.
//!
//! Which frames carry the manifest and the wants, and the steps both
//! peers run, are in `transfer/exchange.rs`.
//!
//! So a tree of any size costs one round trip, not one per file.
//!
//! Paths are relative, `/`-separated, and travel as `path` when they are
//! UTF-8 and as `path_b64` (standard base64) when they are not.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use base64::Engine;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::protocol::message::StreamFrame;
use crate::protocol::Header;

/// A path in a header or a JSON line: text when it is UTF-8, base64 under
/// `path_b64` when it is not, so any Unix name survives the trip. Boxed
/// strings, not `String`s: a manifest holds one per entry, and the spare
/// capacity and length of a `String` would be a sixth of its memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePath {
    /// The path as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Box<str>>,
    /// The path's bytes, base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_b64: Option<Box<str>>,
}

impl WirePath {
    /// Encodes path bytes.
    pub fn from_bytes(bytes: &[u8]) -> WirePath {
        match std::str::from_utf8(bytes) {
            Ok(text) => WirePath {
                path: Some(text.into()),
                path_b64: None,
            },
            Err(_) => WirePath {
                path: None,
                path_b64: Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(bytes)
                        .into(),
                ),
            },
        }
    }

    /// Encodes an OS path.
    pub fn from_os(path: &std::ffi::OsStr) -> WirePath {
        WirePath::from_bytes(path.as_bytes())
    }

    /// The path's bytes; an error when neither or both forms are given or
    /// the base64 is invalid.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.path, &self.path_b64) {
            (Some(text), None) => Ok(text.as_bytes().to_vec()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| "`path_b64` is not valid base64".to_string()),
            (None, None) => Err("missing `path`".into()),
            (Some(_), Some(_)) => Err("give `path` or `path_b64`, not both".into()),
        }
    }

    /// The path as an OS string.
    pub fn to_os(&self) -> Result<OsString, String> {
        self.to_bytes().map(OsString::from_vec)
    }
}

/// What a manifest entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A directory, created before the files in it.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link, kept as a link (`ferry sync` only): its target is
    /// [`Entry::link_target`], never followed by the sender.
    Symlink,
}

/// One line of a manifest: a directory or file to transfer, its path
/// relative to the destination, and the metadata to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Directory or file.
    pub kind: EntryKind,
    /// Where it goes, relative to the destination directory.
    #[serde(flatten)]
    pub path: WirePath,
    /// The file's length in bytes (0 for directories).
    #[serde(default)]
    pub file_size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, whole seconds since the epoch.
    pub mtime: i64,
    /// The nanoseconds of the modification time.
    #[serde(default)]
    pub mtime_ns: u32,
    /// What only `ferry sync` sends: a symlink's target, a file's hash.
    /// Boxed, so an entry of get or put pays one pointer for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Box<SyncFields>>,
}

/// The fields of a manifest entry that only `ferry sync` sends, as
/// `"sync": {...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFields {
    /// A symlink's target, as the link holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<WirePath>,
    /// The file's BLAKE3, hex, when `--checksum` compares content instead
    /// of size and mtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<Box<str>>,
}

impl Entry {
    /// A symlink's target, as sent.
    pub fn link_target(&self) -> Option<&WirePath> {
        self.sync.as_ref()?.target.as_ref()
    }

    /// The file's BLAKE3 as sent (`--checksum`).
    pub fn content_hash(&self) -> Option<&str> {
        self.sync.as_ref()?.blake3.as_deref()
    }
}

impl Entry {
    /// Checks what a receiver could not apply: an mtime whose nanoseconds
    /// are a whole second or more (the kernel refuses it when the file is
    /// sealed, after its data has moved).
    pub fn check_times(&self) -> Result<(), String> {
        if self.mtime_ns >= 1_000_000_000 {
            return Err(format!(
                "mtime_ns {} is not under one second",
                self.mtime_ns
            ));
        }
        Ok(())
    }
}

/// One line of the receiver's answer to a manifest, for one file entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want {
    /// The entry's index in the manifest, counting from 0.
    pub i: u64,
    /// What the receiver wants done with it.
    #[serde(flatten)]
    pub action: WantAction,
}

/// What the receiver wants for one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WantAction {
    /// Send the file from `offset`; the receiver kept `offset` bytes from an
    /// earlier attempt, whose BLAKE3 is `prefix_blake3`. The sender checks
    /// that hash against its own prefix and sends from 0 if it differs.
    Send {
        /// Bytes the receiver already has.
        #[serde(default)]
        offset: u64,
        /// BLAKE3 of those bytes, hex; absent when `offset` is 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_blake3: Option<String>,
    },
    /// Send the file as ranges over the extra streams of a striped
    /// transfer (PROTOCOL.md, "Striping"), all but the ranges at `kept`,
    /// which the receiver verified in an earlier attempt; `kept_blake3` is
    /// the BLAKE3 of those ranges' bytes one after the other. The sender
    /// fails the file (`changed`) if its own ranges hash otherwise. On the
    /// first stream only the file's end frame travels.
    Stripe {
        /// Offsets of the kept ranges, in file order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept: Vec<u64>,
        /// BLAKE3 of the kept ranges' bytes, hex; absent when none are.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept_blake3: Option<String>,
    },
    /// The receiver already has this file (same size and mtime).
    Skip,
    /// The receiver has an older version, or some of its chunks: the file
    /// travels as a delta after the whole files (`ferry sync`,
    /// `engine/sync/delta.rs`), not in the data phase.
    Delta,
    /// The receiver refuses this entry; nothing is sent for it.
    Refuse {
        /// A stable error code.
        code: String,
        /// What is wrong, for a person.
        message: String,
    },
}

/// The header of one file's data: its body is the file from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHead {
    /// The entry's index in the manifest.
    pub file: u64,
    /// Where in the file the body starts.
    pub offset: u64,
}

/// The frame after a file's data: its BLAKE3 (and md5 if asked), or why
/// the sender could not send it after all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEnd {
    /// The entry's index in the manifest.
    pub file_end: u64,
    /// BLAKE3 of the whole file, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// md5 of the whole file, hex, when the request asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Set when the file could not be sent whole (it changed, vanished or
    /// could not be read); the receiver discards what it got. With no data
    /// before it, the end frame alone says the file will not come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's stable code (`changed`, `not_found`,
    /// `permission_denied`, ...), with `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// One frame of the data phase, told apart by the one field only its kind
/// carries: `end` (true), `file_end` or `file`. The frames share no tag
/// field, and the wire stays as it is, so the kind is chosen by that field
/// first and the frame parsed once, as that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFrame {
    /// `{"file", "offset", "size"}`: a file's data follows, as the body.
    Head(FileHead),
    /// `{"file_end", ...}`: a file's hashes, or why it could not be sent.
    End(FileEnd),
    /// `{"end": true}`: no more files.
    Done,
}

impl DataFrame {
    /// Reads a data-phase frame's header; an error says what is wrong.
    pub fn from_header(header: &Header) -> Result<DataFrame, String> {
        if header.get("end") == Some(&serde_json::Value::Bool(true)) {
            return Ok(DataFrame::Done);
        }
        let parsed = if header.get("file_end").is_some() {
            header.to_message().map(DataFrame::End)
        } else if header.get("file").is_some() {
            header.to_message().map(DataFrame::Head)
        } else {
            return Err("expected a file head, file end or end frame".into());
        };
        parsed.map_err(|err| format!("bad data frame: {err}"))
    }

    /// The frame's header; `size` is the body's length, for a head.
    pub fn to_header(&self, size: u64) -> Header {
        match self {
            DataFrame::Head(head) => Header::from_message(head).with_size(size),
            DataFrame::End(end) => Header::from_message(end),
            DataFrame::Done => StreamFrame::end_header(&serde_json::json!({})),
        }
    }
}

/// The header of one range of a striped file: its body is the file's
/// bytes from `offset`, one range of the grid (`engine::ranges`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeHead {
    /// The entry's index in the manifest.
    pub range: u64,
    /// Where in the file the range starts.
    pub offset: u64,
}

/// The frame after a range's data: the BLAKE3 of the range's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeEnd {
    /// The entry's index in the manifest.
    pub range_end: u64,
    /// Where the range starts.
    pub offset: u64,
    /// BLAKE3 of the range's bytes, hex.
    pub blake3: String,
}

/// One frame of an extra stream of a striped transfer, told apart by the
/// field only its kind carries, as [`DataFrame`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeFrame {
    /// `{"range", "offset", "size"}`: a range's bytes follow.
    Head(RangeHead),
    /// `{"range_end", "offset", "blake3"}`: the range's hash.
    End(RangeEnd),
    /// `{"end": true}`: no more ranges on this stream.
    Done,
}

impl RangeFrame {
    /// Reads a range frame's header; an error says what is wrong.
    pub fn from_header(header: &Header) -> Result<RangeFrame, String> {
        if header.get("end") == Some(&serde_json::Value::Bool(true)) {
            return Ok(RangeFrame::Done);
        }
        let parsed = if header.get("range_end").is_some() {
            header.to_message().map(RangeFrame::End)
        } else if header.get("range").is_some() {
            header.to_message().map(RangeFrame::Head)
        } else {
            return Err("expected a range, range end or end frame".into());
        };
        parsed.map_err(|err| format!("bad range frame: {err}"))
    }

    /// The frame's header; `size` is the body's length, for a head.
    pub fn to_header(&self, size: u64) -> Header {
        match self {
            RangeFrame::Head(head) => Header::from_message(head).with_size(size),
            RangeFrame::End(end) => Header::from_message(end),
            RangeFrame::Done => StreamFrame::end_header(&serde_json::json!({})),
        }
    }
}

impl FileEnd {
    /// The end frame of a file that could not be sent, with its code.
    pub fn failed(file_end: u64, code: crate::protocol::ErrorCode, message: String) -> FileEnd {
        FileEnd {
            file_end,
            blake3: None,
            md5: None,
            error: Some(message),
            code: Some(code.as_str().into()),
        }
    }
}

/// A failure for one entry, in a transfer's final result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryError {
    /// The entry's index in the manifest.
    pub i: u64,
    /// A stable error code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// Serializes items as JSON lines, the body format of manifests, wants and
/// listings.
pub fn to_json_lines<T: Serialize>(items: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * 96);
    for item in items {
        // Our wire types always serialize.
        let _ = serde_json::to_writer(&mut out, item);
        out.push(b'\n');
    }
    out
}

/// Parses a JSON-lines body; blank lines are ignored.
pub fn from_json_lines<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, String> {
    let mut lines = JsonLines::default();
    lines.push(body)?;
    lines.finish()
}

/// A JSON-lines body parsed as its chunks arrive, so a large manifest is
/// never held as text and as values at once: only the line a chunk cut in
/// two waits for the next chunk. Blank lines are ignored.
#[derive(Debug)]
pub struct JsonLines<T> {
    items: Vec<T>,
    /// The start of a line whose end has not arrived.
    partial: Vec<u8>,
    /// Lines seen, blank ones included, for messages.
    line: usize,
}

impl<T> Default for JsonLines<T> {
    fn default() -> JsonLines<T> {
        JsonLines {
            items: Vec::new(),
            partial: Vec::new(),
            line: 0,
        }
    }
}

/// The shortest line that can hold a value: `{"i":0}` and the newline.
const MIN_LINE_BYTES: u64 = 8;

impl<T: DeserializeOwned> JsonLines<T> {
    /// A parser for a body of `body_bytes`, with room for as many values
    /// as it could hold, so the list never grows by copying itself (a copy
    /// that would cost its old size again, and which the allocator may
    /// keep). Room never written to costs no memory.
    pub fn for_body(body_bytes: u64) -> JsonLines<T> {
        JsonLines {
            items: Vec::with_capacity((body_bytes / MIN_LINE_BYTES) as usize),
            ..JsonLines::default()
        }
    }

    /// Parses the complete lines `chunk` ends or holds.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.parse(&chunk[..end])?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..end]);
                self.parse(&line)?;
            }
            chunk = &chunk[end + 1..];
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// The values, once the body has ended (a last line needs no newline).
    pub fn finish(mut self) -> Result<Vec<T>, String> {
        let last = std::mem::take(&mut self.partial);
        self.parse(&last)?;
        Ok(self.items)
    }

    fn parse(&mut self, line: &[u8]) -> Result<(), String> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.line += 1;
        let item =
            serde_json::from_slice(line).map_err(|err| format!("line {}: {err}", self.line))?;
        self.items.push(item);
        Ok(())
    }
}

/// Gives the one top-level name that every entry lies under (`a`, `a/...`)
/// the name `to`, for a copy made under a new name, as `cp a b` makes one.
/// `to` must be one plain name.
pub fn rename_top(entries: &mut [Entry], to: &[u8]) -> Result<(), String> {
    if to.is_empty() || to.contains(&b'/') || to.contains(&0) || to == b"." || to == b".." {
        return Err(format!(
            "{:?} is not a plain file name",
            String::from_utf8_lossy(to)
        ));
    }
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let first = first.path.to_bytes()?;
    let top = first
        .split(|&b| b == b'/')
        .next()
        .unwrap_or_default()
        .to_vec();
    for entry in entries.iter_mut() {
        let path = entry.path.to_bytes()?;
        let rest = match path.strip_prefix(top.as_slice()) {
            Some(rest) if rest.is_empty() || rest.first() == Some(&b'/') => rest,
            _ => return Err("the entries do not lie under one name".into()),
        };
        entry.path = WirePath::from_bytes(&[to, rest].concat());
    }
    Ok(())
}

/// Parses a lowercase or uppercase hex BLAKE3.
pub fn parse_hash(hex: &str) -> Result<blake3::Hash, String> {
    blake3::Hash::from_hex(hex).map_err(|_| format!("`{hex}` is not a BLAKE3 hash"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_paths_travel_as_text_and_others_as_base64() {
        let text = WirePath::from_bytes("dir/ünï cödé.txt".as_bytes());
        assert_eq!(text.path.as_deref(), Some("dir/ünï cödé.txt"));
        let raw = WirePath::from_bytes(b"bad\xffname");
        assert!(raw.path.is_none());
        assert_eq!(raw.to_bytes().unwrap(), b"bad\xffname");
        assert!(WirePath::default().to_bytes().is_err());
        let both = WirePath {
            path: Some("a".into()),
            path_b64: Some("YQ".into()),
        };
        assert!(both.to_bytes().is_err());
    }

    #[test]
    fn entries_and_wants_round_trip_as_json_lines() {
        let entries = vec![
            Entry {
                kind: EntryKind::Dir,
                path: WirePath::from_bytes(b"d"),
                file_size: 0,
                mode: 0o755,
                mtime: 1,
                mtime_ns: 0,
                sync: None,
            },
            Entry {
                kind: EntryKind::File,
                path: WirePath::from_bytes(b"d/\xff"),
                file_size: 5_000_000_000,
                mode: 0o644,
                mtime: 2,
                mtime_ns: 3,
                sync: None,
            },
        ];
        let body = to_json_lines(&entries);
        assert_eq!(from_json_lines::<Entry>(&body).unwrap(), entries);
        let wants = vec![
            Want {
                i: 1,
                action: WantAction::Send {
                    offset: 10,
                    prefix_blake3: Some(blake3::hash(b"x").to_hex().to_string()),
                },
            },
            Want {
                i: 2,
                action: WantAction::Skip,
            },
            Want {
                i: 3,
                action: WantAction::Refuse {
                    code: "exists".into(),
                    message: "m".into(),
                },
            },
        ];
        let body = to_json_lines(&wants);
        assert_eq!(from_json_lines::<Want>(&body).unwrap(), wants);
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(r#"{"i":1,"action":"send","offset":10,"prefix_blake3":""#));
    }

    proptest::proptest! {
        #[test]
        fn json_lines_parse_the_same_however_the_body_is_cut(
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let entries: Vec<Entry> = (0..5)
                .map(|i| Entry {
                    kind: EntryKind::File,
                    path: WirePath::from_bytes(format!("d/f{i}").as_bytes()),
                    file_size: i,
                    mode: 0o644,
                    mtime: 1,
                    mtime_ns: 2,
                    sync: None,
                })
                .collect();
            let mut body = to_json_lines(&entries);
            body.extend_from_slice(b"\n  \n");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut lines = JsonLines::<Entry>::default();
            let mut from = 0;
            for cut in cuts.into_iter().chain([body.len()]) {
                lines.push(&body[from..cut]).unwrap();
                from = cut;
            }
            proptest::prop_assert_eq!(lines.finish().unwrap(), entries);
        }
    }

    #[test]
    fn a_copy_under_a_new_name_renames_its_top_only() {
        let entry = |path: &[u8]| Entry {
            kind: EntryKind::File,
            path: WirePath::from_bytes(path),
            file_size: 0,
            mode: 0o644,
            mtime: 0,
            mtime_ns: 0,
            sync: None,
        };
        let mut entries = vec![
            entry(b"photos"),
            entry(b"photos/a"),
            entry(b"photos/photos"),
        ];
        rename_top(&mut entries, b"pics").unwrap();
        let paths: Vec<Vec<u8>> = entries.iter().map(|e| e.path.to_bytes().unwrap()).collect();
        assert_eq!(paths, [&b"pics"[..], b"pics/a", b"pics/photos"]);
        let mut file = vec![entry(b"a.txt")];
        rename_top(&mut file, b"\xffb.txt").unwrap();
        assert_eq!(file[0].path.to_bytes().unwrap(), b"\xffb.txt");
        for bad in [&b""[..], b"a/b", b"..", b"."] {
            assert!(rename_top(&mut file, bad).is_err(), "{bad:?}");
        }
        let mut two = vec![entry(b"a"), entry(b"ab")];
        assert!(rename_top(&mut two, b"c").is_err());
    }

    #[test]
    fn data_frames_keep_their_wire_bytes_and_read_back_by_their_one_field() {
        let head = DataFrame::Head(FileHead {
            file: 2,
            offset: 1_048_576,
        });
        let end = DataFrame::End(FileEnd {
            file_end: 2,
            blake3: Some("ab".into()),
            md5: None,
            error: None,
            code: None,
        });
        let failed = DataFrame::End(FileEnd {
            file_end: 3,
            blake3: None,
            md5: None,
            error: Some("cannot open".into()),
            code: Some("not_found".into()),
        });
        let cases = [
            (&head, 7, r#"{"file":2,"offset":1048576,"size":7}"#),
            (&end, 0, r#"{"blake3":"ab","file_end":2}"#),
            (
                &failed,
                0,
                r#"{"code":"not_found","error":"cannot open","file_end":3}"#,
            ),
            (&DataFrame::Done, 0, r#"{"end":true}"#),
        ];
        for (frame, size, wire) in cases {
            let header = frame.to_header(size);
            assert_eq!(String::from_utf8(header.to_json()).unwrap(), wire);
            let parsed = Header::parse(wire.as_bytes()).unwrap();
            assert_eq!(&DataFrame::from_header(&parsed).unwrap(), frame);
        }
    }

    #[test]
    fn frames_that_are_no_data_frame_or_a_bad_one_are_errors() {
        let parse = |wire: &str| DataFrame::from_header(&Header::parse(wire.as_bytes()).unwrap());
        for wire in [
            r#"{}"#,
            r#"{"end":false}"#,
            r#"{"ok":true}"#,
            r#"{"wants":true}"#,
        ] {
            let err = parse(wire).unwrap_err();
            assert!(err.starts_with("expected a file head"), "{wire}: {err}");
        }
        for wire in [
            r#"{"file":"x","offset":0}"#,
            r#"{"file":0}"#,
            r#"{"file_end":-1}"#,
            r#"{"file_end":0,"blake3":5}"#,
        ] {
            let err = parse(wire).unwrap_err();
            assert!(err.starts_with("bad data frame"), "{wire}: {err}");
        }
    }

    #[test]
    fn range_frames_round_trip_and_strangers_are_refused() {
        let head = RangeFrame::Head(RangeHead {
            range: 1,
            offset: 4096,
        });
        let end = RangeFrame::End(RangeEnd {
            range_end: 1,
            offset: 4096,
            blake3: "ab".into(),
        });
        for (frame, size, wire) in [
            (&head, 9, r#"{"offset":4096,"range":1,"size":9}"#),
            (&end, 0, r#"{"blake3":"ab","offset":4096,"range_end":1}"#),
            (&RangeFrame::Done, 0, r#"{"end":true}"#),
        ] {
            assert_eq!(
                String::from_utf8(frame.to_header(size).to_json()).unwrap(),
                wire
            );
            let parsed = Header::parse(wire.as_bytes()).unwrap();
            assert_eq!(&RangeFrame::from_header(&parsed).unwrap(), frame);
        }
        for wire in [r#"{"file":0,"offset":0}"#, r#"{"range":"x","offset":0}"#] {
            let parsed = Header::parse(wire.as_bytes()).unwrap();
            assert!(RangeFrame::from_header(&parsed).is_err(), "{wire}");
        }
        let want = Want {
            i: 3,
            action: WantAction::Stripe {
                kept: vec![0, 4096],
                kept_blake3: Some("cd".into()),
            },
        };
        let line = String::from_utf8(to_json_lines(std::slice::from_ref(&want))).unwrap();
        assert_eq!(
            line,
            "{\"i\":3,\"action\":\"stripe\",\"kept\":[0,4096],\"kept_blake3\":\"cd\"}\n"
        );
        assert_eq!(from_json_lines::<Want>(line.as_bytes()).unwrap(), [want]);
    }

    #[test]
    fn malformed_json_lines_name_the_line() {
        let err = from_json_lines::<Entry>(b"\n{\"kind\":\"dir\"}\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
    }
}
