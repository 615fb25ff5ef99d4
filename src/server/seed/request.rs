//! The seed-compat wire formats as pure code: telling a request's format
//! from its first bytes, parsing it, and building the tutorial's replies.
//! No sockets, files or clock.
//!
//! A request is either a **text command** (`ls`, `get a.txt`), everything
//! the client sent in one go, or a **put frame**:
//!
//! ```text
//! +-----------------+--------------------------------------------------+-----------+
//! | header length   | header                                           | file      |
//! | 4 bytes, i32 LE | {"cmd": "put", "filename": NAME, "filesize": N}  | N bytes   |
//! +-----------------+--------------------------------------------------+-----------+
//! ```
//!
//! The header length of a put frame is at most the header cap (64 KiB), so
//! its high bytes are NUL, and a text command never holds a NUL: a NUL in
//! the first four bytes means a frame. A text command can be two bytes
//! (`ls`), so the decision is made on whatever has arrived, never by
//! waiting for four bytes. The tutorial's client ends a command with
//! nothing, so the session decides where one ends: at a pause of
//! [`crate::limits::COMMAND_PAUSE`], not where a read happened to stop.
//!
//! Replies are `struct.pack('i', len(header))`, the JSON header, then the
//! data: `{"filename", "md5", "total_size"}` for command output and
//! `{"filename", "md5", "file_size"}` for `get`. Sizes are JSON numbers, so
//! they are not bound to 2 GiB as the 4-byte length is.

use serde_json::{json, Value};

/// Bytes of the little-endian header length in front of a put frame and a
/// reply.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// A request, decoded from the bytes that have arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedRequest {
    /// `get NAME`: send a file of the root.
    Get {
        /// The name, as the client wrote it.
        name: String,
    },
    /// Any other text command: run it with `sh -c`.
    Exec {
        /// The command line.
        command: String,
    },
    /// A put frame: `filesize` raw bytes follow, to store as `filename`.
    Put {
        /// The name to store the file under, relative to the root.
        filename: String,
        /// How many bytes follow the header.
        filesize: u64,
    },
    /// A text command that cannot be run; answered in the command format.
    BadCommand {
        /// Why, for the client.
        message: String,
    },
    /// A `get` that names no single file; answered in the get format.
    BadGet {
        /// What followed `get`.
        name: String,
        /// Why, for the client.
        message: String,
    },
}

/// A put frame that cannot be served. The format has no reply for a put, so
/// the server logs it and closes the connection: the client's next send or
/// recv fails, which is the only way left to tell it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutFrameError {
    /// The header length is zero or negative (as `struct 'i'` reads it).
    #[error("the header length {0} is not a positive number")]
    BadLength(i32),
    /// The header length is over the cap.
    #[error("the header length {len} is over the cap of {max} bytes")]
    HeaderTooLarge {
        /// The length the client sent.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The header is not a JSON object.
    #[error("the header is not a JSON object: {0}")]
    NotJson(String),
    /// The header names another `cmd` than `put`.
    #[error("the frame's cmd is {}; this listener takes put frames only", crate::log::peer_text(.0))]
    NotPut(String),
    /// `filename` or `filesize` is missing or of the wrong type.
    #[error("{0}")]
    BadField(String),
}

/// A decoded request and how many bytes of the buffer it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The request.
    pub request: SeedRequest,
    /// Bytes consumed from the front of the buffer; a put frame's file
    /// data is not included.
    pub consumed: usize,
}

/// Whether the bytes that have arrived start a put frame rather than a text
/// command.
pub fn is_frame(first: &[u8]) -> bool {
    first.iter().take(LENGTH_PREFIX_BYTES).any(|&b| b == 0)
}

/// Decodes the request at the front of `buf`. `Ok(None)`: a put frame whose
/// header has not fully arrived (read more). A text command is everything
/// in `buf`: the caller decodes text once the client has paused.
pub fn decode(buf: &[u8], max_header_bytes: usize) -> Result<Option<Decoded>, PutFrameError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if !is_frame(buf) {
        return Ok(Some(Decoded {
            request: parse_text(buf, max_header_bytes),
            consumed: buf.len(),
        }));
    }
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let len = i32::from_le_bytes(*prefix);
    if len <= 0 {
        return Err(PutFrameError::BadLength(len));
    }
    let len = len as usize;
    if len > max_header_bytes {
        return Err(PutFrameError::HeaderTooLarge {
            len,
            max: max_header_bytes,
        });
    }
    let Some(header) = buf.get(LENGTH_PREFIX_BYTES..LENGTH_PREFIX_BYTES + len) else {
        return Ok(None);
    };
    Ok(Some(Decoded {
        request: parse_put_header(header)?,
        consumed: LENGTH_PREFIX_BYTES + len,
    }))
}

/// Parses a put frame's header. Fields other than `cmd`, `filename` and
/// `filesize` are ignored, as the tutorial's server ignores them.
pub fn parse_put_header(header: &[u8]) -> Result<SeedRequest, PutFrameError> {
    let value: Value =
        serde_json::from_slice(header).map_err(|err| PutFrameError::NotJson(err.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(PutFrameError::NotJson(
            "it is JSON but not an object".into(),
        ));
    };
    match fields.get("cmd") {
        Some(Value::String(cmd)) if cmd == "put" => {}
        Some(Value::String(cmd)) => return Err(PutFrameError::NotPut(cmd.clone())),
        _ => {
            return Err(PutFrameError::BadField(
                "`cmd` must be the string \"put\"".into(),
            ))
        }
    }
    let filename = match fields.get("filename") {
        Some(Value::String(name)) => name.clone(),
        _ => {
            return Err(PutFrameError::BadField(
                "`filename` must be a string".into(),
            ))
        }
    };
    let filesize = fields
        .get("filesize")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            PutFrameError::BadField("`filesize` must be a whole number of bytes".into())
        })?;
    Ok(SeedRequest::Put { filename, filesize })
}

/// Parses a text command: `get NAME`, or a command line for the shell.
pub fn parse_text(bytes: &[u8], max_command_bytes: usize) -> SeedRequest {
    if bytes.len() > max_command_bytes {
        return command_too_long(bytes.len(), max_command_bytes);
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return SeedRequest::BadCommand {
            message: "ferry: the command is not UTF-8 text\n".into(),
        };
    };
    if text.contains('\0') {
        return SeedRequest::BadCommand {
            message: "ferry: the command holds a NUL byte\n".into(),
        };
    }
    let mut words = text.split_whitespace();
    match words.next() {
        None => SeedRequest::BadCommand {
            message: "ferry: an empty command\n".into(),
        },
        Some("get") => {
            let rest: Vec<&str> = words.collect();
            match rest.as_slice() {
                [name] => SeedRequest::Get {
                    name: name.to_string(),
                },
                _ => SeedRequest::BadGet {
                    name: rest.join(" "),
                    message: "`get` takes exactly one file name: get NAME".into(),
                },
            }
        }
        Some(_) => SeedRequest::Exec {
            command: text.to_string(),
        },
    }
}

/// The refusal of a text command of `len` bytes, over the cap.
pub fn command_too_long(len: usize, max_command_bytes: usize) -> SeedRequest {
    SeedRequest::BadCommand {
        message: format!(
            "ferry: the command ({len} bytes) is over the cap of {max_command_bytes} bytes\n"
        ),
    }
}

/// A reply's head: `struct.pack('i', len(header))` and the JSON header.
pub fn reply_head(header: &Value) -> Vec<u8> {
    let json = header.to_string();
    let mut out = Vec::with_capacity(LENGTH_PREFIX_BYTES + json.len());
    // Headers here are at most a few hundred KiB: always a positive i32.
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

/// The head of a command's output: `total_size` bytes follow, stdout then
/// stderr. `error` is set when ferry itself refused or cut the command,
/// and the output is then that message.
pub fn output_head(command: &str, md5: &str, total_size: u64, error: Option<&str>) -> Vec<u8> {
    let mut header = json!({"filename": command, "md5": md5, "total_size": total_size});
    if let Some(error) = error {
        header["error"] = Value::String(error.to_string());
    }
    reply_head(&header)
}

/// The head of a file sent for `get`: `file_size` bytes follow.
pub fn file_head(name: &str, md5: &str, file_size: u64) -> Vec<u8> {
    reply_head(&json!({"filename": name, "md5": md5, "file_size": file_size}))
}

/// The head of a refused `get`: no bytes follow, `md5` is empty and
/// `error` says why.
pub fn get_error_head(name: &str, error: &str) -> Vec<u8> {
    reply_head(&json!({"filename": name, "md5": "", "file_size": 0, "error": error}))
}

/// The md5 of `bytes`, as 32 lowercase hex digits.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex(&md5::Md5::digest(bytes))
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 64 * 1024;

    fn put_frame(header: &str) -> Vec<u8> {
        let mut out = (header.len() as i32).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out
    }

    fn request(buf: &[u8]) -> SeedRequest {
        decode(buf, MAX).unwrap().unwrap().request
    }

    #[test]
    fn two_byte_commands_are_decided_at_once() {
        assert_eq!(
            decode(b"ls", MAX).unwrap(),
            Some(Decoded {
                request: SeedRequest::Exec {
                    command: "ls".into()
                },
                consumed: 2
            })
        );
        assert_eq!(
            request(b"w"),
            SeedRequest::Exec {
                command: "w".into()
            }
        );
    }

    #[test]
    fn get_takes_one_name() {
        assert_eq!(
            request(b"get a.txt"),
            SeedRequest::Get {
                name: "a.txt".into()
            }
        );
        assert_eq!(
            request(b"get  a.txt\n"),
            SeedRequest::Get {
                name: "a.txt".into()
            }
        );
        assert!(matches!(request(b"get"), SeedRequest::BadGet { .. }));
        assert!(matches!(request(b"get a b"), SeedRequest::BadGet { name, .. } if name == "a b"));
        // Only the word `get` is a get; `getent` is a command.
        assert!(matches!(request(b"getent hosts"), SeedRequest::Exec { .. }));
    }

    #[test]
    fn a_put_frame_is_told_apart_by_its_nul_bytes() {
        let header = r#"{"cmd": "put", "filename": "a.txt", "filesize": 11}"#;
        let mut frame = put_frame(header);
        let consumed = frame.len();
        frame.extend_from_slice(b"hello world");
        assert_eq!(
            decode(&frame, MAX).unwrap(),
            Some(Decoded {
                request: SeedRequest::Put {
                    filename: "a.txt".into(),
                    filesize: 11
                },
                consumed
            })
        );
    }

    #[test]
    fn a_partial_put_header_asks_for_more() {
        let frame = put_frame(r#"{"cmd": "put", "filename": "a", "filesize": 1}"#);
        for cut in 1..frame.len() {
            // The first byte alone is not a NUL: it reads as text, which is
            // why a frame's length must arrive in one send. Two bytes on,
            // the NUL is there.
            if cut >= 2 {
                assert_eq!(decode(&frame[..cut], MAX), Ok(None), "cut at {cut}");
            }
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(
            decode(&i32::MIN.to_le_bytes(), MAX),
            Err(PutFrameError::BadLength(i32::MIN))
        );
        // A small negative length has no NUL byte: it is text, and not
        // UTF-8 text at that.
        assert!(matches!(
            request(&(-5i32).to_le_bytes()),
            SeedRequest::BadCommand { .. }
        ));
        assert_eq!(decode(&[0, 0, 0, 0], MAX), Err(PutFrameError::BadLength(0)));
        assert_eq!(
            decode(&(70_000i32).to_le_bytes(), MAX),
            Err(PutFrameError::HeaderTooLarge {
                len: 70_000,
                max: MAX
            })
        );
        let refused = |header: &str| decode(&put_frame(header), MAX).unwrap_err();
        assert!(matches!(refused("nope"), PutFrameError::NotJson(_)));
        assert!(matches!(refused("[1]"), PutFrameError::NotJson(_)));
        assert!(matches!(
            refused(r#"{"cmd": "get", "filename": "a"}"#),
            PutFrameError::NotPut(_)
        ));
        for header in [
            r#"{"filename": "a", "filesize": 1}"#,
            r#"{"cmd": "put", "filesize": 1}"#,
            r#"{"cmd": "put", "filename": 7, "filesize": 1}"#,
            r#"{"cmd": "put", "filename": "a", "filesize": -1}"#,
            r#"{"cmd": "put", "filename": "a", "filesize": 1.5}"#,
            r#"{"cmd": "put", "filename": "a"}"#,
        ] {
            assert!(
                matches!(refused(header), PutFrameError::BadField(_)),
                "{header}"
            );
        }
    }

    #[test]
    fn unusable_text_is_refused_in_the_command_format() {
        assert!(matches!(
            request(b"\xff\xfe"),
            SeedRequest::BadCommand { .. }
        ));
        assert!(matches!(request(b"   "), SeedRequest::BadCommand { .. }));
        let long = vec![b'x'; MAX + 1];
        assert!(matches!(
            parse_text(&long, MAX),
            SeedRequest::BadCommand { .. }
        ));
    }

    #[test]
    fn replies_read_back_as_the_tutorial_reads_them() {
        let head = file_head("a.txt", "5d41402abc4b2a76b9719d911017c592", 5 << 30);
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        assert_eq!(len, head.len() - 4);
        let header: Value = serde_json::from_slice(&head[4..]).unwrap();
        assert_eq!(header["file_size"], 5u64 << 30, "sizes over 2 GiB");
        assert_eq!(header["filename"], "a.txt");
        let head = output_head("ls", "x", 3, Some("no"));
        let header: Value = serde_json::from_slice(&head[4..]).unwrap();
        assert_eq!(header["total_size"], 3);
        assert_eq!(header["error"], "no");
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        // From coreutils' md5sum.
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    proptest! {
        /// Text never holds a NUL, so any text is a command and never a
        /// frame, whatever its length (down to one byte).
        #[test]
        fn text_is_never_taken_for_a_frame(text in "[^\u{0}]{1,200}") {
            let decoded = decode(text.as_bytes(), MAX).unwrap().unwrap();
            prop_assert_eq!(decoded.consumed, text.len());
            let is_put = matches!(decoded.request, SeedRequest::Put { .. });
            prop_assert!(!is_put, "text decoded as a put frame");
        }

        /// A put frame decodes to its fields whatever follows it, and a
        /// prefix of it (from three bytes on, where a header under 64 KiB
        /// has its first NUL) asks for more.
        #[test]
        fn put_frames_round_trip(
            filename in "\\PC{0,100}",
            filesize in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
            cut in 3usize..400,
        ) {
            let header = json!({"cmd": "put", "filename": filename, "filesize": filesize});
            let mut frame = reply_head(&header);
            let framed = frame.len();
            frame.extend_from_slice(&data);
            let decoded = decode(&frame, MAX).unwrap().unwrap();
            prop_assert_eq!(decoded.consumed, framed);
            prop_assert_eq!(decoded.request, SeedRequest::Put { filename, filesize });
            if cut < framed {
                prop_assert_eq!(decode(&frame[..cut], MAX), Ok(None));
            }
        }

        /// Any bytes at all decode to a request, a wait, or an error:
        /// never a panic, and never more consumed than given.
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some(decoded)) = decode(&bytes, 256) {
                prop_assert!(decoded.consumed <= bytes.len());
            }
        }
    }
}
