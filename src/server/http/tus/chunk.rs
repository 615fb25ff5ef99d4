//! One `PATCH`: its offset and checksum checked, its bytes written to the
//! partial file in batches on the blocking pool, committed (or rolled
//! back), and after the last byte the file sealed and published.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Response, StatusCode};
use futures_util::StreamExt;
use tracing::info;

use super::fields::{Checksum, ChunkHasher};
use super::uploads::Upload;
use super::{reply, text, tus, with, write_error, CHECKSUM_MISMATCH, WRITE_BATCH_BYTES};
use crate::engine::atomic::{FileMeta, PartialFile, WriteError};
use crate::limits::HttpLimits;

/// One chunk: checked, written, committed; the file published after its
/// last byte.
pub(super) async fn patch(
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
pub(super) async fn finish(upload: &mut Upload) -> Result<(), Response<Body>> {
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
