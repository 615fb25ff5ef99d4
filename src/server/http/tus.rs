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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use base64::Engine;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::reply;
use crate::engine::atomic::{FileMeta, PartialFile, SourceId, WriteError};
use crate::engine::root::{Kind, RelPath, Root};
use crate::limits::HttpLimits;

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

/// Who began an upload: it goes on only while they still may.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    /// The shared token.
    Shared,
    /// A client token, by name and hash (a re-issued token is another).
    Client { name: String, sha256: String },
    /// A share link, by id.
    Link { id: String },
}

/// What the state directory keeps of an upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The file it makes, beneath its owner's root.
    pub target: String,
    /// Its length in bytes.
    pub length: u64,
    /// The BLAKE3 the whole file must have, hex, if the client said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Who made it.
    pub owner: Owner,
}

/// One upload in progress.
struct Upload {
    record: Record,
    /// The partial file, open once a chunk or `HEAD` needed it.
    partial: Option<PartialFile>,
    touched: Instant,
}

/// The uploads in progress.
pub(crate) struct Uploads {
    dir: PathBuf,
    limits: HttpLimits,
    table: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
}

impl Uploads {
    /// The uploads recorded in `state_dir`, from an earlier run too.
    pub(crate) fn load(state_dir: &std::path::Path, limits: HttpLimits) -> Uploads {
        let dir = state_dir.join(UPLOADS_DIR);
        let mut table = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = name.strip_suffix(".json") else {
                    continue;
                };
                let record = std::fs::read(entry.path())
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok());
                match record {
                    Some(record) if table.len() < limits.max_uploads => {
                        let upload = Upload {
                            record,
                            partial: None,
                            touched: Instant::now(),
                        };
                        table.insert(id.to_string(), Arc::new(tokio::sync::Mutex::new(upload)));
                    }
                    _ => {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        Uploads {
            dir,
            limits,
            table: Mutex::new(table),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Upload>>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Upload>>> {
        self.lock().get(id).cloned()
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.json")));
    }

    /// Uploads in progress now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

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

/// `Upload-Metadata`: `key BASE64` pairs separated by commas.
pub fn metadata(value: &str) -> Result<HashMap<String, Vec<u8>>, String> {
    let mut pairs = HashMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| format!("Upload-Metadata: {key:?} is not base64"))?;
        pairs.insert(key.to_string(), decoded);
    }
    Ok(pairs)
}

/// A chunk's `Upload-Checksum`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// BLAKE3 of the chunk.
    Blake3([u8; 32]),
    /// SHA-1 of the chunk.
    Sha1([u8; 20]),
}

impl Checksum {
    /// Reads `ALGORITHM BASE64`.
    pub fn parse(value: &str) -> Result<Checksum, String> {
        let (algorithm, encoded) = value
            .trim()
            .split_once(' ')
            .ok_or("Upload-Checksum is `ALGORITHM BASE64`")?;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| "Upload-Checksum: the digest is not base64".to_string())?;
        let wrong = || format!("Upload-Checksum: a {algorithm} digest has another length");
        match algorithm {
            "blake3" => Ok(Checksum::Blake3(digest.try_into().map_err(|_| wrong())?)),
            "sha1" => Ok(Checksum::Sha1(digest.try_into().map_err(|_| wrong())?)),
            other => Err(format!(
                "Upload-Checksum: {other:?} is not supported; use one of {CHECKSUMS}"
            )),
        }
    }
}

/// Hashes one chunk as it arrives, for its `Upload-Checksum`.
enum ChunkHasher {
    Blake3(Box<blake3::Hasher>),
    Sha1(aws_lc_rs::digest::Context),
}

impl ChunkHasher {
    fn new(checksum: &Checksum) -> ChunkHasher {
        match checksum {
            Checksum::Blake3(_) => ChunkHasher::Blake3(Box::default()),
            Checksum::Sha1(_) => ChunkHasher::Sha1(aws_lc_rs::digest::Context::new(
                &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            )),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            ChunkHasher::Blake3(hasher) => {
                hasher.update(bytes);
            }
            ChunkHasher::Sha1(context) => context.update(bytes),
        }
    }

    fn matches(self, checksum: &Checksum) -> bool {
        match (self, checksum) {
            (ChunkHasher::Blake3(hasher), Checksum::Blake3(want)) => {
                hasher.finalize().as_bytes() == want
            }
            (ChunkHasher::Sha1(context), Checksum::Sha1(want)) => {
                context.finish().as_ref() == want.as_slice()
            }
            _ => false,
        }
    }
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

fn parse_blake3(value: &[u8]) -> Result<blake3::Hash, String> {
    let text = std::str::from_utf8(value).unwrap_or_default();
    blake3::Hash::from_hex(text.trim())
        .map_err(|_| "Upload-Metadata: `blake3` is 64 hex digits".to_string())
}

fn save_record(dir: &std::path::Path, id: &str, record: &Record) -> std::io::Result<()> {
    crate::engine::state::create_dir(dir)?;
    let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    crate::engine::state::write_private(&dir.join(format!("{id}.json")), &json)
}

/// Forgets uploads that no chunk touched within the upload TTL, removing
/// their partial files.
fn sweep(uploads: &Uploads) {
    let ttl = uploads.limits.upload_ttl;
    let stale: Vec<(String, Arc<tokio::sync::Mutex<Upload>>)> = uploads
        .lock()
        .iter()
        .filter(|(_, u)| u.try_lock().is_ok_and(|u| u.touched.elapsed() >= ttl))
        .map(|(id, u)| (id.clone(), u.clone()))
        .collect();
    for (id, upload) in stale {
        if let Ok(mut upload) = upload.try_lock() {
            if let Some(mut partial) = upload.partial.take() {
                partial.remove();
            }
        }
        info!("http: an upload left untouched for {ttl:?} was given up");
        uploads.forget(&id);
    }
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

/// One chunk: checked, written, committed; the file published after its
/// last byte.
async fn patch(
    upload: &mut Upload,
    request: Request,
    offset: u64,
    limits: &HttpLimits,
    chunk_timeout: std::time::Duration,
) -> Response<Body> {
    let headers = request.headers();
    let offset_given = text(headers, "upload-offset").and_then(|v| v.parse::<u64>().ok());
    if text(headers, "content-type") != Some("application/offset+octet-stream") {
        return tus(reply::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a chunk is sent as application/offset+octet-stream",
        ));
    }
    let Some(given) = offset_given else {
        return tus(reply::status(StatusCode::BAD_REQUEST, "send Upload-Offset"));
    };
    if given != offset {
        let message = format!("the upload is at offset {offset}, not {given}; resume from there");
        return tus(with(
            reply::status(StatusCode::CONFLICT, &message),
            "upload-offset",
            offset,
        ));
    }
    let checksum = match text(headers, "upload-checksum").map(Checksum::parse) {
        None => None,
        Some(Ok(checksum)) => Some(checksum),
        Some(Err(message)) => return tus(reply::status(StatusCode::BAD_REQUEST, &message)),
    };
    let remaining = upload.record.length - offset;
    let most = remaining.min(limits.max_chunk_bytes);
    let declared = text(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > most) {
        let message = format!(
            "a chunk here is at most {most} bytes (the rest of the upload, and at most {} per PATCH)",
            limits.max_chunk_bytes
        );
        return tus(reply::status(StatusCode::PAYLOAD_TOO_LARGE, &message));
    }
    let Some(mut partial) = upload.partial.take() else {
        return reply::status(StatusCode::INTERNAL_SERVER_ERROR, "the upload failed");
    };
    let checkpoint = partial.checkpoint();
    let mut chunk_hasher = checksum.as_ref().map(ChunkHasher::new);
    let mut body = request.into_body().into_data_stream();
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH_BYTES);
    let mut received = 0u64;
    let mut failure: Option<Response<Body>> = None;
    loop {
        let next = match tokio::time::timeout(chunk_timeout, body.next()).await {
            Ok(next) => next,
            Err(_) => {
                failure = Some(reply::status(
                    StatusCode::REQUEST_TIMEOUT,
                    "the chunk stalled",
                ));
                break;
            }
        };
        let bytes = match next {
            None => break,
            Some(Ok(bytes)) => bytes,
            Some(Err(_)) => {
                failure = Some(reply::status(
                    StatusCode::BAD_REQUEST,
                    "the chunk was cut off",
                ));
                break;
            }
        };
        received += bytes.len() as u64;
        if received > most {
            failure = Some(reply::status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the chunk runs past the upload's length or the chunk limit",
            ));
            break;
        }
        if let Some(hasher) = chunk_hasher.as_mut() {
            hasher.update(&bytes);
        }
        batch.extend_from_slice(&bytes);
        if batch.len() >= WRITE_BATCH_BYTES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH_BYTES));
            match write_batch(partial, full).await {
                Ok(back) => partial = back,
                Err(response) => return response,
            }
        }
    }
    // A chunk that broke off keeps what arrived unless it came with a
    // checksum, which a part of it cannot be held to: a dropped connection
    // then resumes from the last byte that reached the disk.
    if (failure.is_none() || checksum.is_none()) && !batch.is_empty() {
        match write_batch(partial, batch).await {
            Ok(back) => partial = back,
            Err(response) => return response,
        }
    }
    let verified = match (&checksum, chunk_hasher) {
        (Some(checksum), Some(hasher)) if failure.is_none() => hasher.matches(checksum),
        _ => true,
    };
    let keep = verified && (failure.is_none() || checksum.is_none());
    let settled = tokio::task::spawn_blocking(move || {
        let result = if keep {
            partial.commit()
        } else {
            partial.rollback(checkpoint).and_then(|()| partial.commit())
        };
        (partial, result)
    })
    .await;
    let (partial, result) = match settled {
        Ok(settled) => settled,
        Err(_) => return reply::status(StatusCode::INTERNAL_SERVER_ERROR, "the upload failed"),
    };
    let offset = partial.len();
    upload.partial = Some(partial);
    if let Err(err) = result {
        return write_error(&WriteError::Io(err));
    }
    if !verified {
        let response = reply::status(
            StatusCode::from_u16(CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST),
            "the chunk does not match its Upload-Checksum; send it again",
        );
        return tus(with(response, "upload-offset", offset));
    }
    if let Some(failure) = failure {
        return tus(with(failure, "upload-offset", offset));
    }
    if offset == upload.record.length {
        if let Err(refused) = finish(upload).await {
            return refused;
        }
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    tus(with(response, "upload-offset", offset))
}

/// Writes `batch` on the blocking pool; hands the file back.
async fn write_batch(
    mut partial: PartialFile,
    batch: Vec<u8>,
) -> Result<PartialFile, Response<Body>> {
    let written = tokio::task::spawn_blocking(move || {
        let result = partial.write(&batch);
        (partial, result)
    })
    .await;
    match written {
        Ok((partial, Ok(()))) => Ok(partial),
        Ok((_, Err(err))) => Err(write_error(&err)),
        Err(_) => Err(reply::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the upload failed",
        )),
    }
}

/// Seals the complete file against its expected BLAKE3 (or as received),
/// makes it durable and publishes it. The upload's partial is gone
/// afterwards, published or removed.
async fn finish(upload: &mut Upload) -> Result<(), Response<Body>> {
    let Some(partial) = upload.partial.take() else {
        return Err(reply::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the upload failed",
        ));
    };
    let expected = upload.record.blake3.clone();
    let published = tokio::task::spawn_blocking(move || {
        let meta = FileMeta::fresh();
        let sealed = match expected.as_deref().map(blake3::Hash::from_hex) {
            Some(Ok(hash)) => partial.seal(&hash, &meta)?,
            Some(Err(_)) | None => partial.seal_as_received(&meta)?,
        };
        sealed.sync()?;
        sealed.publish(true)?;
        Ok::<_, WriteError>(())
    })
    .await;
    match published {
        Ok(Ok(())) => {
            info!(target = %crate::log::peer_text(&upload.record.target), "http: upload published");
            Ok(())
        }
        Ok(Err(err)) => Err(write_error(&err)),
        Err(_) => Err(reply::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the upload failed",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_checksums_are_read_strictly() {
        let meta = metadata("filename ZGlyL2EudHh0, blake3 ,empty").unwrap();
        assert_eq!(meta["filename"], b"dir/a.txt");
        assert!(meta["blake3"].is_empty() && meta["empty"].is_empty());
        assert!(metadata("filename !!!").is_err());
        let sha1 = base64::engine::general_purpose::STANDARD.encode([1u8; 20]);
        assert_eq!(
            Checksum::parse(&format!("sha1 {sha1}")),
            Ok(Checksum::Sha1([1; 20]))
        );
        let b3 = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
        assert_eq!(
            Checksum::parse(&format!("blake3 {b3}")),
            Ok(Checksum::Blake3([2; 32]))
        );
        assert!(Checksum::parse(&format!("md5 {b3}"))
            .unwrap_err()
            .contains("not supported"));
        assert!(
            Checksum::parse(&format!("sha1 {b3}")).is_err(),
            "wrong length"
        );
        assert!(Checksum::parse("sha1").is_err());
    }

    #[test]
    fn a_chunk_hash_matches_only_its_bytes() {
        let want = Checksum::Blake3(*blake3::hash(b"chunk").as_bytes());
        let mut hasher = ChunkHasher::new(&want);
        hasher.update(b"chu");
        hasher.update(b"nk");
        assert!(hasher.matches(&want));
        let mut hasher = ChunkHasher::new(&want);
        hasher.update(b"chunk!");
        assert!(!hasher.matches(&want));
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, b"x");
        let want = Checksum::Sha1(sha1.as_ref().try_into().unwrap());
        let mut hasher = ChunkHasher::new(&want);
        hasher.update(b"x");
        assert!(hasher.matches(&want));
    }
}
