//! The one table of wire error codes. Each code is a stable snake_case id that
//! scripts and other clients may match on; its description is what PROTOCOL.md
//! lists, and a unit test keeps the two in step. Whether the server closes the
//! connection after sending the code is part of the contract, so it lives here
//! too.

use std::fmt;

/// What the server does with the connection after answering with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// The request is refused; the connection goes on with the next frame.
    GoesOn,
    /// The connection is closed right after the error frame.
    Closes,
}

macro_rules! error_codes {
    ($( $variant:ident => $id:literal, $after:ident, $desc:literal; )*) => {
        /// A stable, machine-readable error code carried in error frames.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( #[doc = $desc] $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The wire id, e.g. `header_too_large`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $id,)* }
            }

            /// One line saying when the code is sent.
            pub fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => $desc,)* }
            }

            /// Whether the connection survives this error.
            pub fn after(self) -> After {
                match self { $(ErrorCode::$variant => After::$after,)* }
            }

            /// Looks a wire id up; `None` for codes this build does not know.
            pub fn from_wire(id: &str) -> Option<ErrorCode> {
                match id { $($id => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    EmptyHeader => "empty_header", Closes,
        "The 4-byte header length was zero.";
    HeaderTooLarge => "header_too_large", Closes,
        "The header length is over the server's cap (64 KiB unless configured).";
    HeaderNotUtf8 => "header_not_utf8", Closes,
        "The header bytes are not valid UTF-8.";
    HeaderNotJson => "header_not_json", Closes,
        "The header is not valid JSON.";
    HeaderNotObject => "header_not_object", Closes,
        "The header is JSON but not an object.";
    BadSize => "bad_size", Closes,
        "The header's `size` is not an unsigned 64-bit integer, so the body cannot be framed.";
    HelloRequired => "hello_required", Closes,
        "The first frame of a connection was not `hello`.";
    UnsupportedVersion => "unsupported_version", Closes,
        "The client's protocol version is not one this server speaks.";
    BadToken => "bad_token", Closes,
        "The access token is missing or wrong.";
    Busy => "busy", Closes,
        "The server is at its connection limit; try again later.";
    Timeout => "timeout", Closes,
        "A deadline passed: hello, idle or request timeout.";
    ShuttingDown => "shutting_down", Closes,
        "The server is shutting down and takes no new requests (or, in place of a shell's end frame, it hung up the shell).";
    MissingCmd => "missing_cmd", GoesOn,
        "The header has no string `cmd`; the frame's body is skipped.";
    UnknownCmd => "unknown_cmd", GoesOn,
        "The `cmd` is not one this server offers; the frame's body is skipped.";
    BadRequest => "bad_request", GoesOn,
        "A known `cmd` with missing or invalid fields; the frame's body is skipped.";
    BadPath => "bad_path", GoesOn,
        "The path is not allowed: absolute, `..`, NUL, too long, a reserved name, or leading out of the served root.";
    NotFound => "not_found", GoesOn,
        "No such file or directory.";
    IsADirectory => "is_a_directory", GoesOn,
        "The path is a directory where a file is needed (or `-r` was not given).";
    NotADirectory => "not_a_directory", GoesOn,
        "A directory was needed and the path is something else.";
    Exists => "exists", GoesOn,
        "The target exists and differs; nothing was changed (pass `--force` to overwrite).";
    NotRegular => "not_regular", GoesOn,
        "Only regular files and directories are served, not FIFOs, sockets or devices.";
    PermissionDenied => "permission_denied", GoesOn,
        "The server's user is not allowed to do this.";
    NoSpace => "no_space", GoesOn,
        "The disk is full; the partial file was removed.";
    ChecksumMismatch => "checksum_mismatch", GoesOn,
        "The data received does not hash to what the sender computed; it was not kept.";
    Changed => "changed", GoesOn,
        "The file changed or vanished while being sent; it was not kept.";
    NotSent => "not_sent", GoesOn,
        "The sender ended the transfer without sending a file the receiver asked for.";
    InProgress => "in_progress", GoesOn,
        "Another transfer of the same file to the same place is in progress.";
    TooLarge => "too_large", GoesOn,
        "A manifest or listing is over the server's cap.";
    IoError => "io_error", GoesOn,
        "The filesystem failed; the message says how.";
    NotAllowed => "not_allowed", GoesOn,
        "The server does not offer this; for `exec`, it was started without `--allow-exec`.";
    ExecLimit => "exec_limit", GoesOn,
        "The server is running its maximum of commands at once; try again.";
    NameTaken => "name_taken", GoesOn,
        "Someone in the chat already has that name; pick another.";
    NoSuchUser => "no_such_user", GoesOn,
        "Nobody in the chat has that name.";
    PairFailed => "pair_failed", Closes,
        "The pairing code is wrong, expired or already used; run `ferry invite` for a new one.";
    Internal => "internal", Closes,
        "The server failed in a way that is not the client's fault; see its log.";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_ids_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
            assert!(seen.insert(code.as_str()), "duplicate id {code}");
            assert!(code
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        }
        assert_eq!(ErrorCode::from_wire("no_such_code"), None);
    }

    /// PROTOCOL.md's table must list every code with the same description and
    /// connection behaviour, and nothing else.
    #[test]
    fn protocol_md_table_matches_the_enum() {
        let doc = include_str!("../../PROTOCOL.md");
        let section = doc
            .split("\n## ")
            .find(|s| s.starts_with("Error codes"))
            .expect("PROTOCOL.md has an `## Error codes` section");
        let rows: Vec<(String, String, String)> = section
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                // | `code` | closes/goes on | description |
                if cells.len() == 5 && cells[1].starts_with('`') && cells[1].ends_with('`') {
                    Some((
                        cells[1].trim_matches('`').to_string(),
                        cells[2].to_string(),
                        cells[3].to_string(),
                    ))
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            rows.len(),
            ErrorCode::ALL.len(),
            "PROTOCOL.md rows: {rows:?}"
        );
        for (code, (id, after, desc)) in ErrorCode::ALL.iter().zip(&rows) {
            assert_eq!(code.as_str(), id);
            let expected_after = match code.after() {
                After::Closes => "closes",
                After::GoesOn => "goes on",
            };
            assert_eq!(after, expected_after, "connection behaviour of {id}");
            assert_eq!(code.description(), desc, "description of {id}");
        }
    }
}
