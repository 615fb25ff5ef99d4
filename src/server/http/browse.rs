//! A folder in a browser: its listing as a page or as JSON (name, size,
//! mtime; sorted by a query parameter, so it works with JavaScript off),
//! and the whole folder as a tar that streams. Partial files are never
//! listed, and a walk moves only through directory handles it already
//! holds (`openat` with `O_NOFOLLOW` on names read from the directory), so
//! no link leads it out of the share.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response};
use base64::Engine;
use rustix::fs::{AtFlags, Mode, OFlags};
use serde_json::json;

use super::tar::{self, EntryKind};
use super::text::{encode_path, html, shown_name};
use crate::engine::atomic::is_reserved_name;
use crate::engine::root::{list_fd, Kind, RelPath, Stat};
use crate::limits::{HttpLimits, HTTP_STREAM_CHUNK_BYTES};

/// One listed name.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The name in its directory.
    pub name: OsString,
    /// What it is, links followed while they stay in the share.
    pub stat: Stat,
}

/// How a listing is ordered (`?sort=name|size|mtime&order=asc|desc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// The column.
    pub by: Column,
    /// Largest, newest or last first.
    pub descending: bool,
}

/// A listing's sort column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// By name (folders first).
    Name,
    /// By size.
    Size,
    /// By modification time.
    Mtime,
}

impl Order {
    /// The order a query asks for; anything unknown is by name, ascending.
    pub fn from_query(sort: Option<&str>, order: Option<&str>) -> Order {
        let by = match sort {
            Some("size") => Column::Size,
            Some("mtime") => Column::Mtime,
            _ => Column::Name,
        };
        Order {
            by,
            descending: order == Some("desc"),
        }
    }

    /// Sorts `entries`: folders before files, then by the column.
    pub fn sort(self, entries: &mut [Listed]) {
        entries.sort_by(|a, b| {
            let dirs_first = (b.stat.kind == Kind::Dir).cmp(&(a.stat.kind == Kind::Dir));
            let by = match self.by {
                Column::Name => a.name.cmp(&b.name),
                Column::Size => a.stat.len.cmp(&b.stat.len).then(a.name.cmp(&b.name)),
                Column::Mtime => a.stat.mtime.cmp(&b.stat.mtime).then(a.name.cmp(&b.name)),
            };
            dirs_first.then(if self.descending { by.reverse() } else { by })
        });
    }
}

/// The entries of the open directory `dir`, partial files left out, at
/// most `max` (the second value says whether some were cut). A name whose
/// link leads out of the share is listed as what it is (a link).
pub fn list(dir: OwnedFd, max: usize) -> std::io::Result<(Vec<Listed>, bool)> {
    let names = list_fd(dir.try_clone()?)?;
    let mut entries = Vec::new();
    let mut cut = false;
    for name in names {
        if is_reserved_name(&name) {
            continue;
        }
        if entries.len() >= max {
            cut = true;
            break;
        }
        let stat = stat_beneath(&dir, &name)
            .or_else(|_| rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW))
            .map(|st| Stat::from_raw(&st));
        if let Ok(stat) = stat {
            entries.push(Listed { name, stat });
        }
    }
    Ok((entries, cut))
}

/// `stat` of `name` in `dir`, following links only while they stay
/// beneath `dir`.
fn stat_beneath(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<rustix::fs::Stat> {
    let flags = rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_MAGICLINKS;
    let fd = rustix::fs::openat2(
        dir,
        name,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        flags,
    )?;
    rustix::fs::fstat(&fd)
}

/// A listing as JSON: `{"path", "entries": [{"name", "kind", "size",
/// "mtime"}], "truncated"}`. A name that is not UTF-8 goes as
/// `name_base64` instead of `name`.
pub fn json(path: &RelPath, entries: &[Listed], cut: bool) -> serde_json::Value {
    let entries: Vec<_> = entries
        .iter()
        .map(|e| {
            let mut entry = json!({
                "kind": crate::services::files::ops::kind_name(e.stat.kind),
                "size": e.stat.len,
                "mtime": e.stat.mtime.0,
            });
            match std::str::from_utf8(e.name.as_bytes()) {
                Ok(name) => entry["name"] = json!(name),
                Err(_) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(e.name.as_bytes());
                    entry["name_base64"] = json!(b64);
                }
            }
            entry
        })
        .collect();
    json!({
        "path": String::from_utf8_lossy(&path.to_bytes()),
        "entries": entries,
        "truncated": cut,
    })
}

/// What a listing page needs besides its entries.
pub struct PageContext<'a> {
    /// The URL prefix the share is under (`/files` or `/s/SECRET`).
    pub base: &'a str,
    /// The folder shown.
    pub path: &'a RelPath,
    /// How it is sorted.
    pub order: Order,
    /// Whether the upload form is shown.
    pub upload: bool,
    /// The session's CSRF token, for its forms and the upload script.
    pub csrf: Option<&'a str>,
    /// Some entries were left out.
    pub cut: bool,
}

/// The listing page.
pub fn page(ctx: &PageContext<'_>, entries: &[Listed]) -> String {
    let here = folder_url(ctx.base, ctx.path);
    let mut body = String::new();
    body.push_str("<nav class=\"crumbs\">");
    body.push_str(&format!("<a href=\"{}/\">share</a>", html(ctx.base)));
    let mut sofar = RelPath::root();
    for name in ctx.path.names() {
        sofar = sofar.join(name).unwrap_or_default();
        body.push_str(&format!(
            " / <a href=\"{}\">{}</a>",
            html(&folder_url(ctx.base, &sofar)),
            shown_name(name)
        ));
    }
    body.push_str("</nav>\n");
    body.push_str(&format!(
        "<p class=\"actions\"><a href=\"{}?tar\">download this folder (tar)</a> · \
         <a href=\"{}?json\">JSON</a></p>\n",
        html(&here),
        html(&here)
    ));
    body.push_str("<table>\n<thead><tr>");
    for (column, label) in [
        (Column::Name, "name"),
        (Column::Size, "size"),
        (Column::Mtime, "modified"),
    ] {
        let descending = ctx.order.by == column && !ctx.order.descending;
        let mark = match (ctx.order.by == column, ctx.order.descending) {
            (true, false) => " ▲",
            (true, true) => " ▼",
            _ => "",
        };
        let sort = match column {
            Column::Name => "name",
            Column::Size => "size",
            Column::Mtime => "mtime",
        };
        let order = if descending { "desc" } else { "asc" };
        body.push_str(&format!(
            "<th><a href=\"?sort={sort}&amp;order={order}\">{label}</a>{mark}</th>"
        ));
    }
    body.push_str("</tr></thead>\n<tbody>\n");
    if !ctx.path.is_root() {
        body.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for entry in entries {
        let encoded = super::text::percent_encode(entry.name.as_bytes());
        let (href, slash, size) = match entry.stat.kind {
            Kind::Dir => (format!("{encoded}/"), "/", String::new()),
            _ => (encoded, "", human_size(entry.stat.len)),
        };
        body.push_str(&format!(
            "<tr><td><a href=\"{}\">{}{slash}</a></td><td class=\"size\">{size}</td>\
             <td>{}</td></tr>\n",
            html(&href),
            shown_name(&entry.name),
            html(&format_time(entry.stat.mtime.0))
        ));
    }
    body.push_str("</tbody></table>\n");
    if ctx.cut {
        body.push_str(
            "<p>This folder holds more entries than a page shows; the rest are left out.</p>\n",
        );
    }
    if ctx.upload {
        body.push_str(&format!(
            "<section id=\"upload\" data-endpoint=\"{}\">\n<h2>Upload here</h2>\n\
             <p class=\"drop\">Drop files or folders here, or pick\n\
             <label>files <input type=\"file\" id=\"files\" multiple></label> or\n\
             <label>a folder <input type=\"file\" id=\"folder\" webkitdirectory multiple>\
             </label></p>\n<ul id=\"progress\"></ul>\n\
             <noscript>Uploads need JavaScript (they resume after a dropped \
             connection).</noscript>\n</section>\n\
             <script src=\"/assets/blake3.js\"></script>\n\
             <script src=\"/assets/upload.js\"></script>\n",
            html(&here)
        ));
    }
    let title = if ctx.path.is_root() {
        "share".to_string()
    } else {
        shown_name(OsStr::from_bytes(&ctx.path.to_bytes()))
    };
    super::page::layout(&title, &body, ctx.csrf)
}

/// The URL of a folder, with its trailing slash.
pub fn folder_url(base: &str, path: &RelPath) -> String {
    if path.is_root() {
        format!("{base}/")
    } else {
        format!("{base}/{}/", encode_path(path))
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn format_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// The folder `dir` (named `name` in the archive) as a streamed tar: a
/// blocking thread walks it and sends chunks through a queue of
/// `limits.tar_queue_chunks`, so a slow reader holds at most that many.
pub fn tar_body(dir: OwnedFd, name: OsString, limits: HttpLimits) -> Body {
    let (tx, rx) =
        tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(limits.tar_queue_chunks);
    tokio::task::spawn_blocking(move || {
        let mut out = TarOut {
            tx,
            buf: Vec::with_capacity(HTTP_STREAM_CHUNK_BYTES),
        };
        let mut path = name.as_bytes().to_vec();
        let walked = walk(&dir, &mut path, 0, &mut out, &limits);
        let ended = walked.and_then(|()| {
            out.write(&tar::END)?;
            out.flush()
        });
        if let Err(err) = ended {
            // The client left (the queue is closed), or a read failed: the
            // archive is cut short, which a tar reader reports.
            let _ = out.tx.blocking_send(Err(err));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

/// The tar bytes on their way to the socket, in chunks.
struct TarOut {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl TarOut {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let room = HTTP_STREAM_CHUNK_BYTES - self.buf.len();
            let n = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == HTTP_STREAM_CHUNK_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(HTTP_STREAM_CHUNK_BYTES));
        self.tx
            .blocking_send(Ok(bytes::Bytes::from(chunk)))
            .map_err(|_| std::io::Error::other("the client left"))
    }
}

/// Writes the directory `dir` (at `path` in the archive) and everything
/// in it. Links are left out, and so are FIFOs, sockets and devices.
fn walk(
    dir: &OwnedFd,
    path: &mut Vec<u8>,
    depth: usize,
    out: &mut TarOut,
    limits: &HttpLimits,
) -> std::io::Result<()> {
    let st = Stat::from_raw(&rustix::fs::fstat(dir)?);
    out.write(&tar::header(&tar::Entry {
        path,
        kind: EntryKind::Dir,
        size: 0,
        mode: st.mode,
        mtime: st.mtime.0,
    }))?;
    if depth >= limits.max_tar_depth {
        tracing::info!("http: a folder download left out what lies {depth} folders deep");
        return Ok(());
    }
    let mut names = list_fd(dir.try_clone()?)?;
    names.sort();
    for name in names {
        if is_reserved_name(&name) {
            continue;
        }
        let Ok(raw) = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let len = path.len();
        path.push(b'/');
        path.extend_from_slice(name.as_bytes());
        let result = match Kind::of(raw.st_mode) {
            Kind::Dir => {
                let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                match rustix::fs::openat(dir, &name, flags, Mode::empty()) {
                    Ok(sub) => walk(&sub, path, depth + 1, out, limits),
                    Err(_) => Ok(()),
                }
            }
            Kind::File => write_file(dir, &name, path, out),
            Kind::Symlink | Kind::Special => Ok(()),
        };
        path.truncate(len);
        result?;
    }
    Ok(())
}

/// One file's header and bytes. The size is the one the header promised:
/// a file that grows is cut there, one that shrinks is padded with zeros.
fn write_file(dir: &OwnedFd, name: &OsStr, path: &[u8], out: &mut TarOut) -> std::io::Result<()> {
    use std::io::Read;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
        return Ok(());
    };
    let st = Stat::from_raw(&rustix::fs::fstat(&fd)?);
    if st.kind != Kind::File {
        return Ok(());
    }
    out.write(&tar::header(&tar::Entry {
        path,
        kind: EntryKind::File,
        size: st.len,
        mode: st.mode,
        mtime: st.mtime.0,
    }))?;
    let mut file = std::fs::File::from(fd).take(st.len);
    let mut left = st.len;
    let mut buf = vec![0u8; HTTP_STREAM_CHUNK_BYTES];
    while left > 0 {
        let n = match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.write(&buf[..n])?;
        left -= n as u64;
    }
    let zeros = [0u8; tar::BLOCK];
    while left > 0 {
        let n = left.min(tar::BLOCK as u64) as usize;
        out.write(&zeros[..n])?;
        left -= n as u64;
    }
    out.write(&zeros[..tar::padding(st.len)])
}

/// The headers of a tar download named `name`.
pub fn tar_headers(response: &mut Response<Body>, name: &[u8]) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    let mut file = name.to_vec();
    file.extend_from_slice(b".tar");
    let value = format!("attachment; {}", super::text::disposition_filename(&file));
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, kind: Kind, len: u64, mtime: i64) -> Listed {
        Listed {
            name: name.into(),
            stat: Stat {
                kind,
                len,
                mode: 0o644,
                mtime: (mtime, 0),
                dev_ino: (0, 0),
            },
        }
    }

    #[test]
    fn folders_come_first_then_the_column() {
        let mut entries = vec![
            listed("b", Kind::File, 1, 30),
            listed("a", Kind::File, 3, 10),
            listed("z", Kind::Dir, 0, 20),
        ];
        let names = |e: &[Listed]| {
            e.iter()
                .map(|e| e.name.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        Order::from_query(None, None).sort(&mut entries);
        assert_eq!(names(&entries), ["z", "a", "b"]);
        Order::from_query(Some("size"), Some("desc")).sort(&mut entries);
        assert_eq!(names(&entries), ["z", "a", "b"]);
        Order::from_query(Some("mtime"), None).sort(&mut entries);
        assert_eq!(names(&entries), ["z", "a", "b"]);
        Order::from_query(Some("mtime"), Some("desc")).sort(&mut entries);
        assert_eq!(names(&entries), ["z", "b", "a"]);
        Order::from_query(Some("name"), Some("desc")).sort(&mut entries);
        assert_eq!(names(&entries), ["z", "b", "a"]);
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(10), "10 B");
    }

    #[test]
    fn a_listing_stops_at_its_cap_and_hides_partials() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["a", "b", "c", ".ferry-partial-x"] {
            std::fs::write(tmp.path().join(name), b"x").unwrap();
        }
        let open = || {
            crate::engine::root::Root::new(tmp.path())
                .unwrap()
                .open_dir(&RelPath::root())
                .unwrap()
        };
        let (entries, cut) = list(open(), 10).unwrap();
        assert_eq!((entries.len(), cut), (3, false));
        let (entries, cut) = list(open(), 2).unwrap();
        assert_eq!((entries.len(), cut), (2, true));
    }

    #[test]
    fn a_tar_walk_stops_at_its_depth() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b/c")).unwrap();
        std::fs::write(tmp.path().join("a/top.txt"), b"1").unwrap();
        std::fs::write(tmp.path().join("a/b/c/deep.txt"), b"2").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let mut out = TarOut {
            tx,
            buf: Vec::new(),
        };
        let limits = HttpLimits {
            max_tar_depth: 2,
            ..crate::limits::HTTP
        };
        let dir = rustix::fs::open(
            tmp.path(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
        walk(&dir, &mut b"share".to_vec(), 0, &mut out, &limits).unwrap();
        out.flush().unwrap();
        drop(out);
        let mut archive = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            archive.extend_from_slice(&chunk.unwrap());
        }
        let names: Vec<String> = archive
            .chunks(tar::BLOCK)
            .filter(|block| &block[257..262] == b"ustar")
            .map(|block| {
                String::from_utf8_lossy(&block[..100])
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            ["share/", "share/a/", "share/a/b/", "share/a/top.txt"]
        );
    }

    #[test]
    fn a_listing_page_shows_names_as_text() {
        let path = RelPath::parse(b"d<i>r").unwrap();
        let ctx = PageContext {
            base: "/files",
            path: &path,
            order: Order::from_query(None, None),
            upload: false,
            csrf: None,
            cut: false,
        };
        let entries = [listed("<script>alert(1)</script>", Kind::File, 5, 0)];
        let page = page(&ctx, &entries);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("href=\"%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""));
        assert!(page.contains("d&lt;i&gt;r"));
        let value = json(&path, &entries, false);
        assert_eq!(value["entries"][0]["name"], "<script>alert(1)</script>");
    }
}
