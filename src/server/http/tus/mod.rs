//! Resumable uploads, tus 1.0.0 (<https://tus.io/protocols/resumable-upload>):
//! core, creation, termination and checksum. A folder's URL is the
//! creation endpoint (`POST` with `Upload-Length` and `Upload-Metadata:
//! filename BASE64[,blake3 BASE64]`); the upload is then `/uploads/ID`,
//! where `HEAD` tells its offset, `PATCH` appends a chunk of at most
//! [`crate::limits::HttpLimits::max_chunk_bytes`], and `DELETE` gives it up.
//!
//! The bytes go to the target's partial file ([`crate::engine::atomic`]),
//! beside it, hashed with BLAKE3 as they arrive; each chunk is committed to
//! disk before its answer, so the offset a resume gets is on disk. A chunk
//! with `Upload-Checksum` (`blake3` or `sha1`) that does not match is
//! rolled back (460). When the last byte arrives the file is sealed against
//! the BLAKE3 the metadata gave (or, without one, as received), made
//! durable and published by rename; until then the target is untouched.
//!
//! An upload's record (target, length, expected hash, who made it) is a
//! JSON file in the state directory (`http-uploads/`), so an upload
//! survives a restart of the server: its offset is then the partial file's
//! length, whose bytes are hashed once again. Who made it must still hold
//! (a revoked client token or link stops it). The upload's id is 256
//! random bits, so knowing it is the right to send its chunks; a page of
//! another site cannot send a `PATCH` or `DELETE` at all without a CORS
//! preflight, which this server never grants.
//!
//! - `uploads.rs`: the uploads in progress and their records.
//! - `fields.rs`: `Upload-Metadata` and `Upload-Checksum`, parsed.
//! - `chunk.rs`: one `PATCH`, and the publish after the last byte.

mod chunk;
mod fields;
mod uploads;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use tracing::{info, warn};

use super::reply;
use crate::engine::atomic::{PartialFile, SourceId, WriteError};
use crate::engine::root::{Kind, RelPath, Root};
use crate::limits::HttpLimits;
use chunk::{finish, patch};
pub use fields::Checksum;
use fields::{metadata, parse_blake3};
pub(crate) use uploads::Uploads;
use uploads::{save_record, sweep, Upload};
pub use uploads::{Owner, Record};

/// The protocol version spoken.
pub const VERSION: &str = "1.0.0";
/// The extensions announced.
pub const EXTENSIONS: &str = "creation,termination,checksum";
/// The checksum algorithms a chunk may carry.
pub const CHECKSUMS: &str = "blake3,sha1";
/// The status for a chunk whose checksum does not match (tus checksum
/// extension).
const CHECKSUM_MISMATCH: u16 = 460;
/// The folder of upload records in the state directory.
pub const UPLOADS_DIR: &str = "http-uploads";
/// Bytes gathered before they go to the file thread.
const WRITE_BATCH_BYTES: usize = 1024 * 1024;

/// The headers of every tus answer.
fn tus(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert("tus-resumable", HeaderValue::from_static(VERSION));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn with(mut response: Response<Body>, name: &'static str, value: u64) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        response.headers_mut().insert(name, value);
    }
    response
}

fn text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `OPTIONS` on a folder: what this server speaks.
pub(crate) fn options(limits: &HttpLimits) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    headers.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static(CHECKSUMS),
    );
    tus(with(response, "tus-max-size", limits.max_upload_bytes))
}

/// The `Tus-Resumable` check every request but `OPTIONS` passes.
fn check_version(headers: &HeaderMap) -> Result<(), Response<Body>> {
    if text(headers, "tus-resumable") == Some(VERSION) {
        return Ok(());
    }
    let mut response = reply::status(
        StatusCode::PRECONDITION_FAILED,
        "send Tus-Resumable: 1.0.0 (this server speaks tus 1.0.0)",
    );
    response
        .headers_mut()
        .insert("tus-version", HeaderValue::from_static(VERSION));
    Err(tus(response))
}

/// What a creation needs of the request's access.
pub(crate) struct Creator {
    /// The root the upload is made in.
    pub root: Arc<Root>,
    /// Who makes it.
    pub owner: Owner,
}

/// `POST` on a folder: makes an upload of `Upload-Length` bytes named by
/// the metadata's `filename` (a relative path, for a folder's files)
/// beneath `folder`.
pub(crate) async fn create(
    uploads: &Uploads,
    creator: Creator,
    folder: &RelPath,
    headers: &HeaderMap,
) -> Response<Body> {
    if let Err(refused) = check_version(headers) {
        return refused;
    }
    let limits = &uploads.limits;
    let Some(length) = text(headers, "upload-length").and_then(|v| v.parse::<u64>().ok()) else {
        let message = "send Upload-Length (Upload-Defer-Length is not supported)";
        return tus(reply::status(StatusCode::BAD_REQUEST, message));
    };
    if length > limits.max_upload_bytes {
        let message = format!(
            "the upload is larger than this server's {} bytes",
            limits.max_upload_bytes
        );
        return tus(reply::status(StatusCode::PAYLOAD_TOO_LARGE, &message));
    }
    let meta = match metadata(text(headers, "upload-metadata").unwrap_or("")) {
        Ok(meta) => meta,
        Err(message) => return tus(reply::status(StatusCode::BAD_REQUEST, &message)),
    };
    let Some(name) = meta.get("filename") else {
        return tus(reply::status(
            StatusCode::BAD_REQUEST,
            "Upload-Metadata needs `filename`",
        ));
    };
    let target = match std::str::from_utf8(name)
        .map_err(|_| "the file name is not UTF-8".to_string())
        .and_then(|name| super::text::rel_path_of_bytes(name.as_bytes()))
        .and_then(|rel| folder.concat(&rel).map_err(|e| e.to_string()))
    {
        Ok(target) if !target.is_root() && target != *folder => target,
        Ok(_) => {
            return tus(reply::status(
                StatusCode::BAD_REQUEST,
                "the file name is empty",
            ))
        }
        Err(message) => return tus(reply::status(StatusCode::BAD_REQUEST, &message)),
    };
    let blake3 = match meta.get("blake3").map(|v| parse_blake3(v)) {
        None => None,
        Some(Ok(hash)) => Some(hash.to_hex().to_string()),
        Some(Err(message)) => return tus(reply::status(StatusCode::BAD_REQUEST, &message)),
    };
    sweep(uploads);
    if uploads.len() >= limits.max_uploads {
        let message = "too many uploads are in progress; try again later";
        return tus(reply::status(StatusCode::SERVICE_UNAVAILABLE, message));
    }
    let record = Record {
        target: String::from_utf8_lossy(&target.to_bytes()).into_owned(),
        length,
        blake3,
        owner: creator.owner,
    };
    let id = match crate::engine::state::new_token() {
        Ok(id) => id,
        Err(err) => return reply::io_error(&err),
    };
    let root = creator.root;
    let opened = tokio::task::spawn_blocking(move || {
        if let Ok(stat) = root.stat(&target) {
            if stat.kind == Kind::Dir {
                return Err(WriteError::Io(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a folder of that name is in the way",
                )));
            }
        }
        root.mkdir_all(&target.parent(), 0o777)?;
        let source = SourceId {
            file_size: length,
            mtime: (0, 0),
        };
        PartialFile::open(&root, &target, &source, false)
    })
    .await;
    let partial = match opened {
        Ok(Ok(partial)) => partial,
        Ok(Err(err)) => return write_error(&err),
        Err(_) => return reply::status(StatusCode::INTERNAL_SERVER_ERROR, "the upload failed"),
    };
    if let Err(err) = save_record(&uploads.dir, &id, &record) {
        warn!("http: cannot record an upload: {err}");
        return reply::io_error(&err);
    }
    info!(target = %crate::log::peer_text(&record.target), length, "http: upload begun");
    let mut upload = Upload {
        record,
        partial: Some(partial),
        touched: Instant::now(),
    };
    if length == 0 {
        // Nothing will follow: the empty file is complete now.
        if let Err(refused) = finish(&mut upload).await {
            uploads.forget(&id);
            return refused;
        }
        let _ = std::fs::remove_file(uploads.dir.join(format!("{id}.json")));
    } else {
        uploads
            .lock()
            .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(upload)));
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::CREATED;
    if let Ok(location) = HeaderValue::from_str(&format!("/uploads/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    tus(response)
}

/// The answer to a failure to write.
fn write_error(err: &WriteError) -> Response<Body> {
    match err {
        WriteError::Busy => tus(reply::status(
            StatusCode::CONFLICT,
            "another upload of this file is in progress",
        )),
        WriteError::HashMismatch => tus(reply::status(
            StatusCode::from_u16(CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST),
            "the file does not hash to the BLAKE3 given; it was not kept",
        )),
        WriteError::Io(err) => tus(reply::io_error(err)),
    }
}

/// What `/uploads/ID` needs to check its owner: a root for it, or the
/// answer when it may no longer upload.
pub(crate) type OwnerRoot<'a> = &'a (dyn Fn(&Owner) -> Result<Arc<Root>, Response<Body>> + Sync);

/// `HEAD`, `PATCH` and `DELETE` on `/uploads/ID`.
pub(crate) async fn resource(
    uploads: &Uploads,
    id: &str,
    request: Request,
    owner_root: OwnerRoot<'_>,
    chunk_timeout: std::time::Duration,
) -> Response<Body> {
    let method = request.method().clone();
    if method == axum::http::Method::OPTIONS {
        return options(&uploads.limits);
    }
    if let Err(refused) = check_version(request.headers()) {
        return refused;
    }
    let Some(upload) = uploads.get(id) else {
        return tus(reply::status(
            StatusCode::NOT_FOUND,
            "no such upload; it may have finished or expired",
        ));
    };
    let Ok(mut upload) = upload.try_lock() else {
        return tus(reply::status(
            StatusCode::CONFLICT,
            "another request is writing this upload; ask its offset with HEAD",
        ));
    };
    let root = match owner_root(&upload.record.owner) {
        Ok(root) => root,
        Err(refused) => return tus(refused),
    };
    upload.touched = Instant::now();
    if let Err(refused) = open_partial(&mut upload, root.clone()).await {
        return refused;
    }
    let offset = upload.partial.as_ref().map_or(0, PartialFile::len);
    match method {
        axum::http::Method::HEAD => {
            let response = with(Response::new(Body::empty()), "upload-offset", offset);
            tus(with(response, "upload-length", upload.record.length))
        }
        axum::http::Method::DELETE => {
            if let Some(mut partial) = upload.partial.take() {
                partial.remove();
            }
            drop(upload);
            uploads.forget(id);
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            tus(response)
        }
        axum::http::Method::PATCH => {
            let response =
                patch(&mut upload, request, offset, &uploads.limits, chunk_timeout).await;
            let done = upload.partial.is_none();
            drop(upload);
            if done {
                uploads.forget(id);
            }
            response
        }
        _ => {
            let mut response =
                reply::status(StatusCode::METHOD_NOT_ALLOWED, "HEAD, PATCH or DELETE");
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("HEAD, PATCH, DELETE, OPTIONS"),
            );
            tus(response)
        }
    }
}

/// Opens the upload's partial file if it is not open (after a restart):
/// its bytes are hashed again and the upload goes on from its end.
async fn open_partial(upload: &mut Upload, root: Arc<Root>) -> Result<(), Response<Body>> {
    if upload.partial.is_some() {
        return Ok(());
    }
    let record = upload.record.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let target = RelPath::parse(record.target.as_bytes())
            .map_err(|err| WriteError::Io(std::io::Error::other(err.to_string())))?;
        let source = SourceId {
            file_size: record.length,
            mtime: (0, 0),
        };
        PartialFile::open(&root, &target, &source, true)
    })
    .await;
    match opened {
        Ok(Ok(partial)) => {
            upload.partial = Some(partial);
            Ok(())
        }
        Ok(Err(err)) => Err(write_error(&err)),
        Err(_) => Err(reply::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the upload failed",
        )),
    }
}
