//! Printing what the other end sent. Peer bytes never reach a terminal raw:
//! control characters are escaped so a hostile server cannot move the
//! cursor, retitle the window or hide text. Output to a pipe or file is
//! exact, so scripts get the bytes they asked for.

use std::io::{self, IsTerminal, Write};

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

/// Writes a line of peer text (names, listings) to stdout with control
/// characters always escaped, so a hostile name cannot forge lines or
/// drive the terminal; `--json` output is the lossless form.
pub fn print_escaped_line(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(escape_line(&String::from_utf8_lossy(bytes)).as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes peer bytes and a newline to stdout: escaped when stdout is a
/// terminal, exact otherwise.
pub fn print_peer_bytes(bytes: &[u8]) -> io::Result<()> {
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let mut out = stdout.lock();
    if terminal {
        out.write_all(escape_for_terminal(bytes).as_bytes())?;
    } else {
        out.write_all(bytes)?;
    }
    out.write_all(b"\n")?;
    out.flush()
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC, for `ls -l` and
/// `stat` (calendar arithmetic after Howard Hinnant's `civil_from_days`).
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_right_across_eras() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_764_165_789), "2025-11-26 14:03:09");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59");
    }

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
