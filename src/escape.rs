//! Peer text made safe to show. What the other end sent (names, messages,
//! paths, errors) never reaches a terminal raw: control characters, Unicode
//! format characters and invalid UTF-8 become visible escapes, so a hostile
//! peer cannot move the cursor, retitle the window, forge lines, turn text
//! around with a bidi override or hide characters inside a word. Pure code
//! in the library, so that the server can use it too where its peer is a
//! bare terminal.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` is a Unicode format character (general category Cf):
/// invisible, yet it changes how the text around it shows. Zero-width
/// spaces and joiners, bidi overrides and isolates (U+202A..U+202E,
/// U+2066..U+2069), the byte-order mark, the soft hyphen, tag characters.
pub fn is_format_char(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// Escapes control characters (but not newline or tab), format characters
/// and invalid UTF-8 for display, in the style of Rust's `escape_debug`:
/// `\u{1b}`, `\u{202e}`, `\xff`.
pub fn escape_for_terminal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if (c.is_control() && c != '\n' && c != '\t') || is_format_char(c) {
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

    #[test]
    fn format_characters_are_escaped() {
        assert_eq!(
            escape_for_terminal("a\u{202e}b\u{200b}c\u{2066}d\u{feff}\u{ad}".as_bytes()),
            "a\\u{202e}b\\u{200b}c\\u{2066}d\\u{feff}\\u{ad}"
        );
        // Letters, marks and spaces of every script stay as they are.
        let text = "naïve café 狗哥 עברית e\u{301} x y";
        assert_eq!(escape_for_terminal(text.as_bytes()), text);
    }

    #[test]
    fn every_format_character_is_known_as_one() {
        // The Cf ranges of Unicode 16, the bidi and zero-width ones first.
        let ranges = [
            (0x200b, 0x200f),
            (0x202a, 0x202e),
            (0x2060, 0x2064),
            (0x2066, 0x206f),
            (0xfeff, 0xfeff),
            (0x00ad, 0x00ad),
            (0x0600, 0x0605),
            (0x061c, 0x061c),
            (0x06dd, 0x06dd),
            (0x070f, 0x070f),
            (0x180e, 0x180e),
            (0xfff9, 0xfffb),
            (0x110bd, 0x110bd),
            (0x1bca0, 0x1bca3),
            (0x1d173, 0x1d17a),
            (0xe0001, 0xe0001),
            (0xe0020, 0xe007f),
        ];
        for (first, last) in ranges {
            for code in first..=last {
                let c = char::from_u32(code).unwrap();
                assert!(is_format_char(c), "U+{code:04X}");
                assert_eq!(
                    escape_for_terminal(c.to_string().as_bytes()),
                    format!("\\u{{{code:x}}}")
                );
            }
        }
        for c in ['a', ' ', '\u{3000}', '\u{301}', '\u{1b}', '😀', '\u{2028}'] {
            assert!(!is_format_char(c), "{c:?}");
        }
    }
}
