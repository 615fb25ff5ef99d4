//! The file service: get, put, ls, stat, mkdir and rm, confined to the
//! served root. What both peers run of a transfer (confinement, atomic
//! writes, the manifest, the data phase) is in [`crate::engine`].
//!
//! - `ops.rs`: ls, stat, mkdir and rm.
//! - `glob.rs`: patterns such as `logs/*.log`, expanded beneath the root.
//! - `stripe.rs`: tickets for a striped transfer's extra connections, and
//!   what those connections do.

pub mod glob;
pub mod ops;
pub mod stripe;

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::protocol::message::ok_header;
use crate::protocol::{ErrorCode, ErrorReply};

use super::{Outcome, ServiceContext};
use crate::engine::error::FileError;
use crate::engine::manifest::Manifest;
use crate::engine::ranges::STRIPE_MIN_BYTES;
use crate::engine::root::RelPath;
use crate::engine::transfer::RangeSender;
use crate::engine::transfer::{
    read_json_lines, read_wants, receive_wanted, send_wanted, Direction, NoProgress,
    ReceiveOptions, ReceivePlan,
};
use crate::engine::wire::{to_json_lines, Entry, EntryKind, WirePath};
use crate::limits::MAX_STREAMS;
use stripe::{StripeJob, StripeWork};

/// `{"cmd": "get", "path": P, "recursive": bool}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// What to send, relative to the root; empty for the root itself.
    #[serde(flatten)]
    pub path: WirePath,
    /// Send a directory and everything under it.
    #[serde(default)]
    pub recursive: bool,
    /// Also send each file's md5, as the tutorial's header does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub md5: bool,
    /// Streams the client would spread big files over (PROTOCOL.md,
    /// "Striping"); 0 or 1 for the one connection alone.
    #[serde(default, skip_serializing_if = "is_one_stream")]
    pub streams: u32,
}

/// The ok reply to `get`; its body is the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReply {
    /// Entries in the manifest.
    pub entries: u64,
    /// Bytes of all files in it.
    pub total_bytes: u64,
    /// Paths left out (not regular files or directories).
    #[serde(default)]
    pub skipped: u64,
    /// For a striped get: the ticket the extra connections say hello with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// `{"cmd": "put", "path": DIR, ...}`, body the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The destination directory, relative to the root; created if missing.
    #[serde(flatten)]
    pub path: WirePath,
    /// Overwrite files that exist and differ.
    #[serde(default)]
    pub force: bool,
    /// Continue from partial files of an earlier attempt.
    #[serde(default)]
    pub resume: bool,
    /// Keep the sender's modes and mtimes.
    #[serde(default)]
    pub preserve: bool,
    /// Streams the client would spread big files over; 0 or 1 for the one
    /// connection alone.
    #[serde(default, skip_serializing_if = "is_one_stream")]
    pub streams: u32,
}

fn is_one_stream(streams: &u32) -> bool {
    *streams <= 1
}

/// A ticket for a transfer's extra connections, when it asked for several
/// streams, has a file big enough to stripe, and the table has room.
fn mint_for(
    context: &ServiceContext,
    streams: u32,
    entries: &[Entry],
) -> Option<(String, Arc<StripeJob>)> {
    let streams = streams.min(MAX_STREAMS);
    let big = entries
        .iter()
        .any(|e| e.kind == EntryKind::File && e.file_size >= STRIPE_MIN_BYTES);
    if streams < 2 || !big {
        return None;
    }
    context
        .tickets
        .mint(&context.identity, streams, std::time::Instant::now())
}

/// The final reply to `put`; its body lists failures as JSON lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResult {
    /// Files stored.
    pub files: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Files already there.
    pub skipped: u64,
    /// Files that failed after their data was sent.
    pub failed: u64,
}

/// Serves `get`: manifest, wants, data.
pub async fn get<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: GetRequest,
) -> Result<Outcome, ConnectionError> {
    let rel = match parse_path(&request.path) {
        Ok(rel) => rel,
        Err(err) => return refuse(conn, err).await,
    };
    let root = context.root.clone();
    let built = blocking(move || Manifest::from_root(&root, &rel, request.recursive)).await;
    let manifest = match built {
        Ok(manifest) => manifest,
        Err(err) => return refuse(conn, err).await,
    };
    let body = to_json_lines(&manifest.entries);
    if body.len() > context.max_list_bytes {
        return refuse(conn, too_large(body.len(), context.max_list_bytes)).await;
    }
    let minted = mint_for(context, request.streams, &manifest.entries);
    let reply = GetReply {
        entries: manifest.entries.len() as u64,
        total_bytes: manifest.total_bytes,
        skipped: manifest.skipped.len() as u64,
        ticket: minted.as_ref().map(|(ticket, _)| ticket.clone()),
    };
    conn.send(ok_header(&reply), Bytes::from(body)).await?;
    let wants = read_wants(conn.reader(), Direction::Get, context.max_list_bytes as u64)
        .await
        .map_err(ConnectionError::from)?;
    let manifest = Arc::new(manifest);
    let ranges = RangeSender::new(manifest.clone(), Some(context.root.clone()), &wants);
    match (minted, ranges) {
        // The ticket stays until its connections have all come, or it
        // expires: they may join after this stream is done.
        (Some((_, job)), Some(ranges)) => job.set_work(StripeWork::Send(ranges)),
        // Nothing to stripe after all: the client may have opened its extra
        // connections already (and may still be); they are let in and ended.
        (Some((_, job)), None) => job.set_work(StripeWork::Nothing),
        (None, Some(_)) => {
            return Err(ConnectionError::Unexpected(
                "ranges asked for, but this get has no ticket for them".into(),
            ))
        }
        (None, None) => {}
    }
    send_wanted(
        conn,
        Direction::Get,
        manifest,
        Some(context.root.clone()),
        wants,
        request.md5,
        &NoProgress,
    )
    .await
    .map_err(ConnectionError::from)?;
    Ok(Outcome::Ok)
}

/// Serves `put`: manifest, wants, data, result.
pub async fn put<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: PutRequest,
    size: u64,
) -> Result<Outcome, ConnectionError> {
    if size > context.max_list_bytes as u64 {
        conn.send_error(&too_large(size as usize, context.max_list_bytes).to_reply())
            .await?;
        conn.reader().discard_body().await?;
        return Ok(Outcome::Refused(ErrorCode::TooLarge));
    }
    let entries: Vec<Entry> = match read_json_lines(conn.reader()).await? {
        Ok(entries) => entries,
        Err(message) => {
            let err = FileError::new(ErrorCode::BadRequest, format!("bad manifest: {message}"));
            return refuse(conn, err).await;
        }
    };
    let base = match parse_path(&request.path) {
        Ok(base) => base,
        Err(err) => return refuse(conn, err).await,
    };
    let root = context.root.clone();
    let minted = mint_for(context, request.streams, &entries);
    let options = ReceiveOptions {
        force: request.force,
        resume: request.resume,
        preserve: request.preserve,
        // The user's own files: modes are kept as sent.
        trust_sent_modes: true,
        // The client reports per file from its own side.
        list_files: false,
        links: false,
        stripe: minted.is_some(),
    };
    let planned = blocking(move || {
        if !base.is_root() {
            root.mkdir_all(&base, 0o755)
                .map_err(|e| FileError::io(&base.to_bytes(), &e))?;
        }
        ReceivePlan::new(root, &base, entries, options)
    })
    .await;
    let (plan, mut wants) = match planned {
        Ok(planned) => planned,
        Err(err) => {
            if let Some((ticket, _)) = &minted {
                context.tickets.revoke(ticket);
            }
            return refuse(conn, err).await;
        }
    };
    let stripes = Arc::new(plan.stripes());
    let striped = match minted {
        Some((ticket, job)) if !stripes.is_empty() => {
            job.set_work(StripeWork::Receive(stripes.clone()));
            wants.ticket = Some(ticket.clone());
            Some((ticket, job))
        }
        Some((ticket, _)) => {
            context.tickets.revoke(&ticket);
            None
        }
        None => None,
    };
    let received = receive_wanted(conn, Direction::Put, plan, wants, &NoProgress).await;
    let mut summary = match (received, &striped) {
        (Ok((_, summary)), _) => summary,
        (Err(err), Some((ticket, _))) => {
            context.tickets.revoke(ticket);
            return Err(ConnectionError::from(err));
        }
        (Err(err), None) => return Err(ConnectionError::from(err)),
    };
    // The client ends the first stream once its extra ones are done; any
    // still being read here are waited for before the files are settled.
    if let Some((ticket, job)) = striped {
        context.tickets.revoke(&ticket);
        job.wait_for_streams(context.request_timeout).await;
        summary = tokio::task::spawn_blocking(move || {
            stripes.finish(&mut summary, false);
            summary
        })
        .await
        .map_err(|err| ConnectionError::Unexpected(format!("settling ranges failed: {err}")))?;
    }
    let result = PutResult {
        files: summary.files,
        bytes: summary.bytes,
        skipped: summary.skipped,
        failed: summary.errors.len() as u64,
    };
    conn.send(
        ok_header(&result),
        Bytes::from(to_json_lines(&summary.errors)),
    )
    .await?;
    Ok(Outcome::Ok)
}

/// A path from a request, checked for what can never be valid.
pub fn parse_path(path: &WirePath) -> Result<RelPath, FileError> {
    let bytes = path
        .to_bytes()
        .map_err(|m| FileError::new(ErrorCode::BadPath, m))?;
    let rel = RelPath::parse(&bytes)?;
    if rel
        .names()
        .iter()
        .any(|n| crate::engine::atomic::is_reserved_name(n))
    {
        return Err(FileError::new(ErrorCode::BadPath, "reserved name"));
    }
    Ok(rel)
}

/// Answers a request with its error; the connection goes on.
pub(crate) async fn refuse<S: ByteStream>(
    conn: &mut Connection<S>,
    err: FileError,
) -> Result<Outcome, ConnectionError> {
    conn.send_error(&ErrorReply::new(err.code, err.message))
        .await?;
    Ok(Outcome::Refused(err.code))
}

fn too_large(len: usize, cap: usize) -> FileError {
    FileError::new(
        ErrorCode::TooLarge,
        format!("a listing of {len} bytes is over the cap of {cap}; transfer the tree in parts"),
    )
}

/// Runs filesystem work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| Err(FileError::new(ErrorCode::Internal, err.to_string())))
}
