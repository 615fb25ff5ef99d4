//! Printing what the other end sent. Peer bytes never reach a terminal raw:
//! they pass [`ferry::client::escape_for_terminal`] so a hostile server cannot move the cursor,
//! retitle the window or hide text. Output to a pipe or file is exact, so
//! scripts get the bytes they asked for.

use std::io::{self, IsTerminal, Write};

pub use ferry::client::{escape_for_terminal, escape_line};

/// Writes a line of peer text (names, listings) to stdout with control
/// characters always escaped, so a hostile name cannot forge lines or
/// drive the terminal; `--json` output is the lossless form.
pub fn print_escaped_line(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let written = (|| {
        out.write_all(escape_line(&String::from_utf8_lossy(bytes)).as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    })();
    written.map_err(stdout_error)
}

/// Writes peer bytes and a newline to stdout: escaped when stdout is a
/// terminal, exact otherwise.
pub fn print_peer_bytes(bytes: &[u8]) -> io::Result<()> {
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let mut out = stdout.lock();
    let written = (|| {
        if terminal {
            out.write_all(escape_for_terminal(bytes).as_bytes())?;
        } else {
            out.write_all(bytes)?;
        }
        out.write_all(b"\n")?;
        out.flush()
    })();
    written.map_err(stdout_error)
}

/// A failed write to stdout, saying so: `cannot write to stdout: No space
/// left on device`. The kind is kept, so a closed pipe is still one.
fn stdout_error(err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("cannot write to stdout: {err}"))
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
}
