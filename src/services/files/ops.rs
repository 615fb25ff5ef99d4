//! The small file operations: `ls`, `stat`, `mkdir` and `rm`. Each is one
//! request and one reply; the work runs off the async threads, beneath the
//! root handle.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::protocol::message::ok_header;
use crate::protocol::ErrorCode;

use super::super::{Outcome, ServiceContext};
use super::{blocking, parse_path, refuse};
use crate::engine::atomic::is_reserved_name;
use crate::engine::error::{show, FileError};
use crate::engine::root::{Kind, RelPath, Root, Stat};
use crate::engine::wire::{to_json_lines, WirePath};

/// `{"cmd": "ls", "path": P}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsRequest {
    /// A directory (listed) or a file (one entry); empty for the root.
    #[serde(flatten)]
    pub path: WirePath,
}

/// `{"cmd": "stat", "path": P, "blake3": bool}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatRequest {
    /// What to describe.
    #[serde(flatten)]
    pub path: WirePath,
    /// Also hash a file's content.
    #[serde(default)]
    pub blake3: bool,
}

/// `{"cmd": "mkdir", "path": P, "parents": bool}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirRequest {
    /// The directory to create.
    #[serde(flatten)]
    pub path: WirePath,
    /// Create missing parents; an existing directory is fine.
    #[serde(default)]
    pub parents: bool,
}

/// `{"cmd": "rm", "path": P, "recursive": bool}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmRequest {
    /// What to remove; never the root.
    #[serde(flatten)]
    pub path: WirePath,
    /// Remove a directory and everything under it.
    #[serde(default)]
    pub recursive: bool,
}

/// What `ls` and `stat` say about one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The name (in `ls`) or the path asked about (in `stat`).
    #[serde(flatten)]
    pub name: WirePath,
    /// `file`, `dir`, `symlink` or `special`.
    pub kind: String,
    /// Length in bytes.
    pub file_size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    #[serde(default)]
    pub mtime_ns: u32,
    /// BLAKE3 of the content, hex, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

impl FileInfo {
    /// The entry's name as bytes, as the server sent it.
    pub fn name_bytes(&self) -> Vec<u8> {
        self.name.to_bytes().unwrap_or_default()
    }

    pub(crate) fn new(name: &[u8], st: &Stat) -> FileInfo {
        FileInfo {
            name: WirePath::from_bytes(name),
            kind: kind_name(st.kind).to_string(),
            file_size: st.len,
            mode: st.mode,
            mtime: st.mtime.0,
            mtime_ns: st.mtime.1,
            blake3: None,
        }
    }
}

/// The wire name of a kind.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
        Kind::Special => "special",
    }
}

/// The ok reply to `ls`: its body is one [`FileInfo`] per line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsReply {
    /// How many entries the body holds.
    pub entries: u64,
}

/// Serves `ls`: a directory's entries sorted by name (partial files
/// hidden; symlinks described by what they point to inside the root, or as
/// `symlink` when that is outside), or a file's own entry.
pub async fn ls<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: LsRequest,
) -> Result<Outcome, ConnectionError> {
    let root = context.root.clone();
    let cap = context.max_list_bytes;
    let listed = blocking(move || {
        let rel = parse_path(&request.path)?;
        let shown = rel.to_bytes();
        let st = root.stat(&rel).map_err(|e| FileError::io(&shown, &e))?;
        if st.kind != Kind::Dir {
            let name = rel.file_name().map(|n| n.as_bytes()).unwrap_or_default();
            return Ok(vec![FileInfo::new(name, &st)]);
        }
        let mut names = root.list(&rel).map_err(|e| FileError::io(&shown, &e))?;
        names.retain(|n| !is_reserved_name(n));
        names.sort();
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            let child = rel.join(&name)?;
            let st = describe(&root, &child).map_err(|e| FileError::io(&child.to_bytes(), &e))?;
            infos.push(FileInfo::new(name.as_bytes(), &st));
        }
        Ok(infos)
    })
    .await;
    match listed {
        Ok(infos) => send_listing(conn, &infos, cap).await,
        Err(err) => refuse(conn, err).await,
    }
}

/// Facts about `path` as a listing shows them: of what a symlink points to
/// while that is beneath the root, else of the link itself.
pub(crate) fn describe(root: &Root, path: &RelPath) -> std::io::Result<Stat> {
    root.stat(path).or_else(|_| root.lstat(path))
}

/// Answers with `infos` as a listing: `{"ok": true, "entries": N}` and
/// one JSON line each, or `too_large` past `cap` bytes.
pub(crate) async fn send_listing<S: ByteStream>(
    conn: &mut Connection<S>,
    infos: &[FileInfo],
    cap: usize,
) -> Result<Outcome, ConnectionError> {
    let body = to_json_lines(infos);
    if body.len() > cap {
        let message = format!("the listing is {} bytes, over the cap of {cap}", body.len());
        return refuse(conn, FileError::new(ErrorCode::TooLarge, message)).await;
    }
    let reply = LsReply {
        entries: infos.len() as u64,
    };
    conn.send(ok_header(&reply), Bytes::from(body)).await?;
    Ok(Outcome::Ok)
}

/// Serves `stat`: kind, size, mode, mtime, and BLAKE3 on request.
pub async fn stat<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: StatRequest,
) -> Result<Outcome, ConnectionError> {
    let root = context.root.clone();
    let described = blocking(move || {
        let rel = parse_path(&request.path)?;
        let shown = rel.to_bytes();
        let st = root.stat(&rel).map_err(|e| FileError::io(&shown, &e))?;
        let mut info = FileInfo::new(&shown, &st);
        if request.blake3 && st.kind == Kind::File {
            let fd = root
                .open(&rel, OFlags::RDONLY, Mode::empty())
                .map_err(|e| FileError::io(&shown, &e))?;
            let mut file = std::fs::File::from(fd);
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(|e| FileError::io(&shown, &e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            info.blake3 = Some(hasher.finalize().to_hex().to_string());
        }
        Ok(info)
    })
    .await;
    match described {
        Ok(info) => {
            conn.send(ok_header(&info), Bytes::new()).await?;
            Ok(Outcome::Ok)
        }
        Err(err) => refuse(conn, err).await,
    }
}

/// Serves `mkdir`.
pub async fn mkdir<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: MkdirRequest,
) -> Result<Outcome, ConnectionError> {
    let root = context.root.clone();
    let made = blocking(move || {
        let rel = parse_path(&request.path)?;
        let shown = rel.to_bytes();
        if rel.is_root() {
            return if request.parents {
                Ok(())
            } else {
                Err(FileError::new(ErrorCode::Exists, "the root exists"))
            };
        }
        let made = if request.parents {
            root.mkdir_all(&rel, 0o755)
        } else {
            root.mkdir(&rel, 0o755)
        };
        made.map_err(|e| FileError::io(&shown, &e))
    })
    .await;
    match made {
        Ok(()) => {
            conn.send(ok_header(&serde_json::json!({})), Bytes::new())
                .await?;
            Ok(Outcome::Ok)
        }
        Err(err) => refuse(conn, err).await,
    }
}

/// The ok reply to `rm`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmReply {
    /// Entries removed (files, links and directories).
    pub removed: u64,
}

/// Serves `rm`: a file or symlink, or with `recursive` a directory tree.
/// The root itself is refused.
pub async fn rm<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: RmRequest,
) -> Result<Outcome, ConnectionError> {
    let root = context.root.clone();
    let removed = blocking(move || {
        let rel: RelPath = parse_path(&request.path)?;
        if rel.is_root() {
            return Err(FileError::new(
                ErrorCode::BadPath,
                "the root itself cannot be removed",
            ));
        }
        let shown = rel.to_bytes();
        let st = root.lstat(&rel).map_err(|e| FileError::io(&shown, &e))?;
        if st.kind == Kind::Dir && !request.recursive {
            return Err(FileError::new(
                ErrorCode::IsADirectory,
                format!("{} is a directory; use -r to remove it", show(&shown)),
            ));
        }
        let removed = root
            .remove_all(&rel)
            .map_err(|e| FileError::io(&shown, &e))?;
        // An interrupted upload's partial goes with the file it was for.
        if let (Some(name), Ok(dir)) = (rel.file_name(), root.open_dir(&rel.parent())) {
            let partial = crate::engine::atomic::partial_name(name);
            let _ = rustix::fs::unlinkat(&dir, &partial, rustix::fs::AtFlags::empty());
        }
        Ok(removed)
    })
    .await;
    match removed {
        Ok(removed) => {
            conn.send(ok_header(&RmReply { removed }), Bytes::new())
                .await?;
            Ok(Outcome::Ok)
        }
        Err(err) => refuse(conn, err).await,
    }
}
