//! Names between the disk and a web page: a URL path percent-decoded into
//! the bytes of a [`RelPath`], a name percent-encoded back into a link,
//! and any name escaped as HTML text, so a file called `<script>` shows
//! as those eight characters and never runs. Pure.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::engine::atomic::is_reserved_name;
use crate::engine::root::RelPath;

/// Why a URL path names nothing we serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadPath {
    /// A `%` not followed by two hex digits.
    Encoding,
    /// `..`, absolute, NUL, too long: the root's rules.
    Refused(String),
    /// A partial file's reserved name: as if nothing were there.
    Reserved,
}

/// Decodes `%XX` escapes into bytes; `+` stays a `+` (it means a space
/// only in a query).
pub fn percent_decode(raw: &str) -> Result<Vec<u8>, BadPath> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(BadPath::Encoding)?;
            let text = std::str::from_utf8(hex).map_err(|_| BadPath::Encoding)?;
            let byte = u8::from_str_radix(text, 16).map_err(|_| BadPath::Encoding)?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The path a URL names beneath its base, decoded and checked: what the
/// root's rules refuse (`..`, absolute, NUL) is refused here before any
/// system call, and so is a partial file's name. Encoded forms
/// (`%2e%2e`, `%2F`) are decoded first, so they meet the same rules.
pub fn rel_path(raw: &str) -> Result<RelPath, BadPath> {
    let bytes = percent_decode(raw)?;
    let rel = RelPath::parse(&bytes).map_err(|err| BadPath::Refused(err.to_string()))?;
    if rel.names().iter().any(|n| is_reserved_name(n)) {
        return Err(BadPath::Reserved);
    }
    Ok(rel)
}

/// [`rel_path`] for a path given as bytes (an upload's file name), not
/// percent-encoded.
pub fn rel_path_of_bytes(bytes: &[u8]) -> Result<RelPath, String> {
    let rel = RelPath::parse(bytes).map_err(|err| err.to_string())?;
    if rel.names().iter().any(|n| is_reserved_name(n)) {
        return Err("that file name is reserved for partial files".into());
    }
    Ok(rel)
}

/// A name as a URL path segment: every byte but the unreserved ones
/// escaped, so any name (a `?`, a `#`, bytes that are not UTF-8) links
/// back to itself.
pub fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path as a URL path, each name encoded, joined with `/`.
pub fn encode_path(path: &RelPath) -> String {
    let names: Vec<String> = path
        .names()
        .iter()
        .map(|n| percent_encode(n.as_bytes()))
        .collect();
    names.join("/")
}

/// Text made safe inside HTML text and quoted attributes.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name as a page shows it: bytes that are not UTF-8 as U+FFFD, control
/// and format characters as their escapes (a right-to-left override must
/// not turn `exe.txt` around), then HTML-escaped.
pub fn shown_name(name: &OsStr) -> String {
    let text = String::from_utf8_lossy(name.as_bytes());
    let visible: String = text
        .chars()
        .map(|c| {
            if c.is_control() || crate::escape::is_format_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    html(&visible)
}

/// A quoted header parameter value and its RFC 5987 form, for
/// `Content-Disposition`: `filename="ascii"; filename*=UTF-8''encoded`.
pub fn disposition_filename(name: &[u8]) -> String {
    let ascii: String = String::from_utf8_lossy(name)
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    format!(
        "filename=\"{ascii}\"; filename*=UTF-8''{}",
        percent_encode(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_dot_dot_and_absolute_paths_are_refused() {
        for raw in [
            "..",
            "a/../b",
            "%2e%2e",
            "%2E%2E/etc",
            "a/%2e%2e/%2e%2e",
            "/etc/passwd",
            "%2Fetc%2Fpasswd",
            "a%00b",
        ] {
            assert!(matches!(rel_path(raw), Err(BadPath::Refused(_))), "{raw}");
        }
        assert_eq!(rel_path("a%zz"), Err(BadPath::Encoding));
        assert_eq!(rel_path("a%2"), Err(BadPath::Encoding));
        let partial = format!("dir/{}", crate::engine::atomic::PARTIAL_PREFIX);
        assert_eq!(rel_path(&partial), Err(BadPath::Reserved));
        assert_eq!(rel_path("a/b%20c/").unwrap().to_bytes(), b"a/b c");
        assert!(rel_path("").unwrap().is_root());
    }

    #[test]
    fn any_name_round_trips_through_a_link() {
        let names: [&[u8]; 5] = [
            b"plain.txt",
            b"a b?c#d%e",
            b"<script>",
            b"\xff\xfe",
            "é/ü".as_bytes(),
        ];
        for name in names {
            let encoded = percent_encode(name);
            assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded}");
            assert_eq!(percent_decode(&encoded).unwrap(), name);
        }
    }

    #[test]
    fn names_are_text_in_a_page() {
        let shown = shown_name(OsStr::new("<script>alert('x')</script>&\""));
        assert_eq!(
            shown,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(shown_name(OsStr::new("a\u{202e}b\n")), "a\\u{202e}b\\u{a}");
        assert_eq!(shown_name(OsStr::from_bytes(b"\xffx")), "\u{fffd}x");
    }

    #[test]
    fn a_download_name_cannot_break_its_header() {
        let value = disposition_filename(b"a\"b\r\n\xc3\xa9.txt");
        assert!(!value.contains('\r') && !value.contains('\n'));
        assert!(value.starts_with("filename=\"a_b___.txt\""), "{value}");
        assert!(value.ends_with("UTF-8''a%22b%0D%0A%C3%A9.txt"), "{value}");
    }
}
