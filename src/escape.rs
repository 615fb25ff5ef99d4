//! Peer text made safe to show. What the other end sent (names, messages,
//! paths, errors) never reaches a terminal raw: control characters and
//! invalid UTF-8 become visible escapes, so a hostile peer cannot move the
//! cursor, retitle the window or forge lines. Pure code in the library, so
//! that the server can use it too where its peer is a bare terminal.

/// Escapes control characters (but not newline or tab) and invalid UTF-8 for
/// display, in the style of Rust's `escape_debug`: `\u{1b}`, `\xff`.
pub fn escape_for_terminal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() && c != '\n' && c != '\t' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// Escapes a message from the peer for one line of stderr: newlines too.
pub fn escape_line(text: &str) -> String {
    escape_for_terminal(text.as_bytes()).replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bad_utf8_are_escaped() {
        assert_eq!(escape_for_terminal(b"ok\ttab\nline"), "ok\ttab\nline");
        assert_eq!(escape_for_terminal(b"\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape_for_terminal(b"a\xffb"), "a\\xffb");
        assert_eq!(escape_for_terminal("\u{9b}x".as_bytes()), "\\u{9b}x");
        assert_eq!(escape_for_terminal("héllo".as_bytes()), "héllo");
        assert_eq!(escape_line("two\nlines\r"), "two\\nlines\\r");
    }
}
