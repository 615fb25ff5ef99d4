//! One file as an HTTP download: Content-Type from a small table of
//! extensions, Content-Disposition, an ETag from the file's identity,
//! `Range` (one range: 206, or 416 past the end) with `If-Range`, and
//! `If-None-Match` (304). The file is opened beneath the root, checked to
//! be a regular file on the open handle, and streamed from that handle, so
//! what was checked is what is sent.

use std::os::unix::ffi::OsStrExt;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use rustix::fs::{Mode, OFlags};

use super::reply;
use super::text::disposition_filename;
use crate::engine::root::{fstat, Kind, RelPath, Root, Stat};
use crate::limits::HTTP_STREAM_CHUNK_BYTES;

/// What a `Range` header asks of a file of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The whole file: no range, a range we do not serve (several), or
    /// one we cannot read.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// Reads one `bytes=` range against a file of `len` bytes. Several
/// ranges get the whole file, as RFC 9110 allows; a malformed header is
/// ignored.
pub fn wanted(range: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse::<u64>().ok()
        }
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Wanted::Unsatisfiable,
            Some(_) if len == 0 => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => Wanted::Whole,
        },
        (start, "") => match number(start) {
            Some(start) if start >= len => Wanted::Unsatisfiable,
            Some(start) => Wanted::Part {
                start,
                end: len - 1,
            },
            None => Wanted::Whole,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(start), Some(end)) if start > end => Wanted::Whole,
            (Some(start), Some(_)) if start >= len => Wanted::Unsatisfiable,
            (Some(start), Some(end)) => Wanted::Part {
                start,
                end: end.min(len - 1),
            },
            _ => Wanted::Whole,
        },
    }
}

/// The ETag of a file: its length, mtime and inode. A file rewritten
/// (ferry publishes by rename: a new inode) gets a new one.
pub fn etag(stat: &Stat) -> String {
    format!(
        "\"{:x}-{:x}.{:x}-{:x}\"",
        stat.len, stat.mtime.0, stat.mtime.1, stat.dev_ino.1
    )
}

/// Whether an `If-None-Match` or `If-Range` list names `tag` (weak
/// comparison for the first, as RFC 9110 says; `*` matches).
fn matches_etag(list: &str, tag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/") == tag
    })
}

/// An HTTP date (IMF-fixdate) for a time in seconds since the epoch.
pub fn http_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// The Content-Type of a name, by extension; what the table does not
/// know is a byte stream.
pub fn content_type(name: &[u8]) -> &'static str {
    let ext = name
        .rsplit(|&b| b == b'.')
        .next()
        .filter(|_| name.contains(&b'.'))
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_slice() {
        b"txt" | b"log" | b"md" | b"rs" | b"py" | b"sh" | b"toml" | b"c" | b"h" => {
            "text/plain; charset=utf-8"
        }
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"css" => "text/css",
        b"js" | b"mjs" => "text/javascript",
        b"json" => "application/json",
        b"xml" => "application/xml",
        b"csv" => "text/csv",
        b"pdf" => "application/pdf",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"avif" => "image/avif",
        b"svg" => "image/svg+xml",
        b"ico" => "image/x-icon",
        b"mp3" => "audio/mpeg",
        b"ogg" | b"oga" => "audio/ogg",
        b"flac" => "audio/flac",
        b"wav" => "audio/wav",
        b"mp4" | b"m4v" => "video/mp4",
        b"webm" => "video/webm",
        b"mkv" => "video/x-matroska",
        b"zip" => "application/zip",
        b"gz" | b"tgz" => "application/gzip",
        b"tar" => "application/x-tar",
        b"zst" => "application/zstd",
        b"xz" => "application/x-xz",
        _ => "application/octet-stream",
    }
}

/// Whether a browser may show a type in the page instead of saving it:
/// only types that cannot run script. HTML, SVG, XML and JavaScript from
/// the share would run with the share's origin, so they are always saved.
fn shown_inline(content_type: &str) -> bool {
    let plain = content_type.starts_with("text/plain") || content_type == "application/pdf";
    let media = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| content_type.starts_with(p));
    plain || (media && content_type != "image/svg+xml")
}

/// Serves `path` beneath `root` (`head`: headers only).
pub async fn serve(root: &Root, path: &RelPath, headers: &HeaderMap, head: bool) -> Response<Body> {
    let opened = root.open(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty());
    let fd = match opened {
        Ok(fd) => fd,
        Err(err) => return reply::io_error(&err),
    };
    let stat = match fstat(&fd) {
        Ok(stat) if stat.kind == Kind::File => stat,
        Ok(_) => return reply::status(StatusCode::NOT_FOUND, "not a file"),
        Err(err) => return reply::io_error(&err),
    };
    let name = path
        .file_name()
        .map(|n| n.as_bytes())
        .unwrap_or(b"download");
    let tag = etag(&stat);
    let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    if text(header::IF_NONE_MATCH).is_some_and(|list| matches_etag(list, &tag)) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        set(response.headers_mut(), header::ETAG, &tag);
        return response;
    }
    let range_applies = match text(header::IF_RANGE) {
        None => true,
        // Only a strong tag of this very file keeps the range.
        Some(if_range) => if_range.trim() == tag,
    };
    let range = if range_applies {
        wanted(text(header::RANGE), stat.len)
    } else {
        Wanted::Whole
    };
    let kind = content_type(name);
    let mut response = Response::new(Body::empty());
    let out = response.headers_mut();
    set(out, header::CONTENT_TYPE, kind);
    set(out, header::ETAG, &tag);
    set(out, header::LAST_MODIFIED, &http_date(stat.mtime.0));
    set(out, header::ACCEPT_RANGES, "bytes");
    let disposition = if shown_inline(kind) {
        "inline"
    } else {
        "attachment"
    };
    set(
        out,
        header::CONTENT_DISPOSITION,
        &format!("{disposition}; {}", disposition_filename(name)),
    );
    // Whatever the file holds, it never runs as this origin's page.
    set(out, header::CONTENT_SECURITY_POLICY, "sandbox");
    let (start, len) = match range {
        Wanted::Whole => (0, stat.len),
        Wanted::Part { start, end } => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let value = format!("bytes {start}-{end}/{}", stat.len);
            set(response.headers_mut(), header::CONTENT_RANGE, &value);
            (start, end - start + 1)
        }
        Wanted::Unsatisfiable => {
            let mut response = reply::status(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "the range starts past the end of the file",
            );
            let value = format!("bytes */{}", stat.len);
            set(response.headers_mut(), header::CONTENT_RANGE, &value);
            return response;
        }
    };
    set(
        response.headers_mut(),
        header::CONTENT_LENGTH,
        &len.to_string(),
    );
    if !head {
        *response.body_mut() = file_body(std::fs::File::from(fd), start, len);
    }
    response
}

/// `len` bytes of `file` from `start`, read on the blocking pool in
/// chunks, one in flight: memory per download is one chunk.
fn file_body(file: std::fs::File, start: u64, len: u64) -> Body {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let stream = futures_util::stream::unfold(
        (None::<tokio::fs::File>, Some(file), len),
        move |(mut open, mut fresh, left)| async move {
            if left == 0 {
                return None;
            }
            if let Some(file) = fresh.take() {
                let mut file = tokio::fs::File::from_std(file);
                if let Err(err) = file.seek(std::io::SeekFrom::Start(start)).await {
                    return Some((Err(err), (None, None, 0)));
                }
                open = Some(file);
            }
            let file = open.as_mut()?;
            let want = left.min(HTTP_STREAM_CHUNK_BYTES as u64) as usize;
            let mut buf = vec![0u8; want];
            match file.read(&mut buf).await {
                // The file shrank: the length promised cannot be sent, so
                // the response is cut, and the client sees it short.
                Ok(0) => Some((
                    Err(std::io::Error::other("the file shrank while it was sent")),
                    (None, None, 0),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), (open, None, left - n as u64)))
                }
                Err(err) => Some((Err(err), (None, None, 0))),
            }
        },
    );
    Body::from_stream(stream)
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let part = |start, end| Wanted::Part { start, end };
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-9"), 100), part(0, 9));
        assert_eq!(wanted(Some("bytes=90-"), 100), part(90, 99));
        assert_eq!(wanted(Some("bytes=-10"), 100), part(90, 99));
        assert_eq!(wanted(Some("bytes=-1000"), 100), part(0, 99));
        assert_eq!(wanted(Some("bytes=50-1000"), 100), part(50, 99));
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=100-200"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=9-1"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=a-b"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=+1-2"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 100), Wanted::Whole);
        assert_eq!(
            wanted(Some("bytes=0-99999999999999999999999"), 100),
            Wanted::Whole
        );
    }

    #[test]
    fn types_come_from_the_extension_and_scripts_never_show_inline() {
        assert_eq!(content_type(b"a.TXT"), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"photo.jpeg"), "image/jpeg");
        assert_eq!(content_type(b"noext"), "application/octet-stream");
        assert_eq!(content_type(b".bashrc"), "application/octet-stream");
        assert!(shown_inline(content_type(b"a.png")));
        for name in [&b"a.html"[..], b"a.svg", b"a.js", b"a.xml", b"a.bin"] {
            assert!(!shown_inline(content_type(name)), "{name:?}");
        }
    }

    #[test]
    fn etags_match_weakly_for_if_none_match() {
        assert!(matches_etag("\"a\", W/\"b\"", "\"b\""));
        assert!(matches_etag("*", "\"x\""));
        assert!(!matches_etag("\"a\"", "\"b\""));
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
