//! `ferry sync`'s server side. A push makes the server the receiver (the
//! client's manifest rides on the request, the wants on the ok reply, a
//! result with every change ends it); a pull makes it the sender (its
//! manifest rides on the ok reply, the client answers with its wants).
//! Both run the shared engine in [`crate::engine::sync`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::engine::error::FileError;
use crate::engine::root::RelPath;
use crate::engine::sync::{
    receive, send, walk, IndexPlace, ManifestHead, SyncSettings, SyncSummary,
};
use crate::engine::transfer::{read_json_lines, Direction, NoProgress, Paced, Progress, RateLimit};
use crate::engine::wire::{to_json_lines, Entry, WirePath};
use crate::protocol::message::ok_header;
use crate::protocol::ErrorCode;

use super::files::{blocking, parse_path, refuse};
use super::{Outcome, ServiceContext};

/// `{"cmd": "sync", "path": P, "push": bool, ...}`: the server's side of
/// the tree, and which way the files move. A push's body is the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The destination (push) or source (pull), relative to the root.
    #[serde(flatten)]
    pub path: WirePath,
    /// The client sends; otherwise the server does.
    #[serde(default)]
    pub push: bool,
    /// A push's manifest head: where its entries go and what the source is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<ManifestHead>,
    /// A pull of a directory sends its contents (`SRC/`), not the
    /// directory itself under its name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contents: bool,
    /// How the sync runs.
    #[serde(flatten)]
    pub settings: SyncSettings,
}

/// The result a push ends with; its body lists every change as JSON lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResult {
    /// The numbers.
    #[serde(flatten)]
    pub summary: SyncSummary,
    /// Changes left out of the body, which has a cap.
    #[serde(default)]
    pub changes_left_out: u64,
}

/// Serves `sync`, either way.
pub async fn serve<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: SyncRequest,
    size: u64,
) -> Result<Outcome, ConnectionError> {
    if request.push {
        push(conn, context, request, size).await
    } else {
        pull(conn, context, request).await
    }
}

async fn push<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: SyncRequest,
    size: u64,
) -> Result<Outcome, ConnectionError> {
    let early = if context.read_only {
        Some(FileError::new(
            ErrorCode::NotAllowed,
            "`sync` into the server is not allowed: this client's token is read-only",
        ))
    } else if size > context.max_list_bytes as u64 {
        Some(FileError::new(
            ErrorCode::TooLarge,
            format!(
                "a manifest of {size} bytes is over the cap of {}; sync the tree in parts",
                context.max_list_bytes
            ),
        ))
    } else {
        None
    };
    if let Some(err) = early {
        conn.reader().discard_body().await?;
        return refuse(conn, err).await;
    }
    let entries: Vec<Entry> = match read_json_lines(conn.reader()).await? {
        Ok(entries) => entries,
        Err(message) => {
            let err = FileError::new(ErrorCode::BadRequest, format!("bad manifest: {message}"));
            return refuse(conn, err).await;
        }
    };
    let head = request.head.unwrap_or_default();
    let dest = match destination(&request.path, head.into.as_ref()) {
        Ok(dest) => dest,
        Err(err) => return refuse(conn, err).await,
    };
    if let Err(err) = request.settings.filter() {
        return refuse(conn, FileError::new(ErrorCode::BadRequest, err.to_string())).await;
    }
    let root = context.root.clone();
    let made = {
        let dest = dest.clone();
        blocking(move || {
            if !dest.is_root() {
                root.mkdir_all(&dest, 0o755)
                    .map_err(|e| FileError::io(&dest.to_bytes(), &e))?;
            }
            root.subdir(&dest)
                .map_err(|e| FileError::io(&dest.to_bytes(), &e))
        })
        .await
    };
    let dest_root = match made {
        Ok(root) => std::sync::Arc::new(root),
        Err(err) => return refuse(conn, err).await,
    };
    let receiving = receive::Receiving {
        dest: dest_root,
        entries,
        is_dir: head.is_dir,
        settings: request.settings,
        // The user's own files: modes are kept as sent.
        trust_sent_modes: true,
        index: index_place(context, &dest),
    };
    let received = receive::receive(conn, Direction::Put, receiving, &NoProgress)
        .await
        .map_err(ConnectionError::from)?;
    let mut body = Vec::new();
    let mut left_out = 0u64;
    for change in &received.changes {
        let line = to_json_lines(std::slice::from_ref(change));
        if body.len() + line.len() > context.max_list_bytes {
            left_out += 1;
            continue;
        }
        body.extend_from_slice(&line);
    }
    let result = SyncResult {
        summary: received.summary,
        changes_left_out: left_out,
    };
    conn.send(ok_header(&result), Bytes::from(body)).await?;
    Ok(Outcome::Ok)
}

async fn pull<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: SyncRequest,
) -> Result<Outcome, ConnectionError> {
    let top = match parse_path(&request.path) {
        Ok(top) => top,
        Err(err) => return refuse(conn, err).await,
    };
    let mut filter = match request.settings.filter() {
        Ok(filter) => filter,
        Err(err) => {
            return refuse(conn, FileError::new(ErrorCode::BadRequest, err.to_string())).await
        }
    };
    let place = index_place(context, &top);
    let root = context.root.clone();
    let checksum = request.settings.checksum;
    let contents = request.contents;
    let walking = {
        let top = top.clone();
        let place = place.clone();
        blocking(move || {
            let mut index = match (&place, checksum) {
                (Some(place), true) => Some(place.load()),
                _ => None,
            };
            let walked = walk::walk(&root, &top, contents, &mut filter, index.as_mut())?;
            if let (Some(place), Some(index)) = (&place, &index) {
                place.save(index);
            }
            Ok(walked)
        })
    };
    let walked = match walking.await {
        Ok(walked) => walked,
        Err(err) => return refuse(conn, err).await,
    };
    let body = to_json_lines(&walked.manifest.entries);
    if body.len() > context.max_list_bytes {
        let err = FileError::new(
            ErrorCode::TooLarge,
            format!(
                "a manifest of {} bytes is over the cap of {}; sync the tree in parts",
                body.len(),
                context.max_list_bytes
            ),
        );
        return refuse(conn, err).await;
    }
    let head = ManifestHead {
        into: walked.into.as_deref().map(WirePath::from_bytes),
        is_dir: walked.is_dir,
        entries: walked.manifest.entries.len() as u64,
        total_bytes: walked.manifest.total_bytes,
    };
    conn.send(ok_header(&head), Bytes::from(body)).await?;
    let progress: Box<dyn Progress> = match request.settings.bwlimit {
        Some(rate) => Box::new(Paced {
            inner: std::sync::Arc::new(NoProgress),
            limit: RateLimit::new(rate),
        }),
        None => Box::new(NoProgress),
    };
    send::send(
        conn,
        Direction::Get,
        walked.manifest,
        context.root.clone(),
        context.max_list_bytes as u64,
        place,
        progress.as_ref(),
    )
    .await
    .map_err(ConnectionError::from)?;
    Ok(Outcome::Ok)
}

/// The destination beneath the root: the request's path, and the name the
/// sender put its entries under (one plain name).
fn destination(path: &WirePath, into: Option<&WirePath>) -> Result<RelPath, FileError> {
    let base = parse_path(path)?;
    let Some(into) = into else { return Ok(base) };
    let name = parse_path(into)?;
    if name.names().len() != 1 {
        return Err(FileError::new(
            ErrorCode::BadPath,
            "`into` must be one plain name",
        ));
    }
    Ok(base.concat(&name)?)
}

/// Where the server keeps its index of the tree at `path`.
fn index_place(context: &ServiceContext, path: &RelPath) -> Option<IndexPlace> {
    context.state_dir.as_ref().map(|state_dir| IndexPlace {
        state_dir: state_dir.clone(),
        tree: context.root_path.join(path.to_path()),
    })
}
