//! The exchange both directions of a transfer run (PROTOCOL.md, "get and
//! put"): the side that has the files sends its manifest, the side that
//! receives answers with its wants, and the side that has the files sends
//! what they ask for. `get` and `put` swap the roles of server and client,
//! and differ only in the frames that carry the first two steps:
//!
//! ```text
//!           get: the server has the files     put: the client has them
//! manifest  server {"ok": true, ...} + lines  client {"cmd": "put", ...} + lines
//! wants     client {"wants": true} + lines    server {"ok": true} + lines
//! data      server {"file"}, {"file_end"}...  client: the same
//!           then {"end": true}
//! result    -                                 server {"ok": true, ...} + failures
//! ```
//!
//! The manifest rides on the service's own request or reply, so each
//! service sends and reads it. From the wants on, both peers call the
//! functions here: the side that has the files [`read_wants`], then
//! [`send_wanted`]; the side that receives [`receive_wanted`] (or, for one
//! file into a stream, [`send_wants`]). [`Direction`] is the one place
//! that knows which frame carries the wants.

use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::connection::{ByteStream, Connection, ConnectionError, FrameReader, FrameWriter};
use crate::protocol::message::{ok_header, Reply};
use crate::protocol::Header;

use super::super::manifest::Manifest;
use super::super::ranges::range_len;
use super::super::root::Root;
use super::super::wire::{DataFrame, Entry, JsonLines, Want, WantAction};
use super::send::send_file_frames;
use super::{send_files, Progress, ReceivePlan, ReceiveSummary, SendSummary, TransferError, Wants};

/// Which way the files move: it fixes which peer has them and which frame
/// carries the wants. A get's client answers the server's manifest with a
/// frame of its own; a put's server answers the client's request, so its
/// wants are its ok reply (or, instead, its refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Server to client.
    Get,
    /// Client to server.
    Put,
}

impl Direction {
    /// The header of the frame that carries the wants (its `size` is set
    /// when it is sent).
    pub fn wants_header(self) -> Header {
        match self {
            Direction::Get => {
                let mut header = Header::default();
                header.insert("wants", true);
                header
            }
            Direction::Put => ok_header(&serde_json::json!({})),
        }
    }

    /// Checks that `header` carries the wants.
    fn check_wants_header(self, header: Header) -> Result<(), TransferError> {
        match self {
            Direction::Get if header.get("wants") == Some(&serde_json::Value::Bool(true)) => Ok(()),
            Direction::Get => Err(TransferError::Protocol(
                "expected the wants frame of a get".into(),
            )),
            Direction::Put => match Reply::from_header(header) {
                Some(Reply::Ok(_)) => Ok(()),
                Some(Reply::Error(refusal)) => Err(TransferError::Refused(refusal)),
                None => Err(TransferError::Protocol("expected a reply frame".into())),
            },
        }
    }
}

/// The side that has the files, once its manifest went out: reads the
/// receiver's answer, one [`Want`] per line, of at most `max_bytes`.
pub async fn read_wants<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    direction: Direction,
    max_bytes: u64,
) -> Result<Vec<Want>, TransferError> {
    Ok(read_wants_and_ticket(reader, direction, max_bytes).await?.0)
}

/// [`read_wants`], and the ticket for a striped put's extra connections
/// that came with them.
pub async fn read_wants_and_ticket<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    direction: Direction,
    max_bytes: u64,
) -> Result<(Vec<Want>, Option<String>), TransferError> {
    let header = reader.expect_header().await?;
    let size = header.size();
    let ticket = header
        .get("ticket")
        .and_then(|t| t.as_str())
        .map(str::to_string);
    direction.check_wants_header(header)?;
    if size > max_bytes {
        return Err(TransferError::Protocol(format!(
            "a body of {size} bytes is over the cap of {max_bytes}"
        )));
    }
    let wants = read_json_lines(reader)
        .await?
        .map_err(TransferError::Protocol)?;
    Ok((wants, ticket))
}

/// [`send_wanted`] for a put whose big files travel on extra streams:
/// `alongside` sends them while this connection sends the rest, and the
/// end frame goes only once both are done, so the server settles the
/// striped files after every range was sent.
pub async fn send_wanted_alongside<S: ByteStream>(
    conn: &mut Connection<S>,
    (manifest, wants): (Arc<Manifest>, Vec<Want>),
    progress: &dyn Progress,
    alongside: impl std::future::Future<Output = ()>,
) -> Result<SendSummary, TransferError> {
    progress.begin(bytes_wanted(&manifest.entries, &wants));
    let writer = conn.writer();
    let (sent, ()) = tokio::join!(
        send_file_frames(writer, manifest, None, wants, false, progress),
        alongside
    );
    let sent = sent?;
    writer.send_header(&DataFrame::Done.to_header(0)).await?;
    writer.flush().await?;
    Ok(sent)
}

/// The side that has the files sends what `wants` ask for of `manifest`,
/// read beneath `root` or from local paths, then the end frame.
///
/// A get's client says nothing until the data ends, so while the server
/// sends, anything its client does (above all, leaving) stops the work
/// done for it. A put's server answers after the data; a failure there is
/// read as that answer.
pub async fn send_wanted<S: ByteStream>(
    conn: &mut Connection<S>,
    direction: Direction,
    manifest: Arc<Manifest>,
    root: Option<Arc<Root>>,
    wants: Vec<Want>,
    md5: bool,
    progress: &dyn Progress,
) -> Result<SendSummary, TransferError> {
    progress.begin(bytes_wanted(&manifest.entries, &wants));
    let (reader, writer) = conn.split();
    let send = send_files(writer, manifest, root, wants, md5, progress);
    match direction {
        Direction::Put => send.await,
        Direction::Get => tokio::select! {
            sent = send => sent,
            _ = reader.read_header() => Err(TransferError::Protocol(
                "the client left, or spoke, in the middle of a get's data".into(),
            )),
        },
    }
}

/// The side that receives, once it has planned: answers the manifest with
/// its wants, then takes the data until the end frame. Returns the wants
/// (their body sent and gone) and what was received.
pub async fn receive_wanted<S: ByteStream>(
    conn: &mut Connection<S>,
    direction: Direction,
    plan: ReceivePlan,
    mut wants: Wants,
    progress: &dyn Progress,
) -> Result<(Wants, ReceiveSummary), TransferError> {
    progress.begin(wants.bytes_wanted);
    send_wants(conn.writer(), direction, &mut wants).await?;
    let summary = plan.receive(conn.reader(), progress).await?;
    Ok((wants, summary))
}

/// Sends the wants' body in the frame `direction` puts them in. The body
/// is gone once sent: a large tree's answer is not held while its data
/// arrives.
pub async fn send_wants<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    direction: Direction,
    wants: &mut Wants,
) -> Result<(), ConnectionError> {
    let body = Bytes::from(std::mem::take(&mut wants.body));
    let mut header = direction.wants_header();
    if let Some(ticket) = &wants.ticket {
        header.insert("ticket", ticket.as_str());
    }
    writer.send(header, body).await
}

/// Bytes the sender will send: each wanted file from its offset.
pub fn bytes_wanted(entries: &[Entry], wants: &[Want]) -> u64 {
    wants
        .iter()
        .filter_map(|w| match w.action {
            WantAction::Send { offset, .. } => entries
                .get(w.i as usize)
                .map(|e| e.file_size.saturating_sub(offset)),
            WantAction::Stripe { ref kept, .. } => entries.get(w.i as usize).map(|e| {
                let kept: u64 = kept.iter().map(|&at| range_len(e.file_size, at)).sum();
                e.file_size.saturating_sub(kept)
            }),
            _ => None,
        })
        .sum()
}

/// Reads the current frame's body as JSON lines (a manifest, wants, a
/// listing), parsing each chunk as it arrives, so a manifest is never held
/// as text and as values at once. A malformed line is reported after the
/// whole body has been read, so the connection stays at a frame boundary.
pub async fn read_json_lines<T: DeserializeOwned, R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<Result<Vec<T>, String>, ConnectionError> {
    let mut lines = JsonLines::for_body(reader.body_remaining());
    let mut malformed = None;
    while let Some(chunk) = reader.read_body_chunk().await? {
        if malformed.is_none() {
            if let Err(message) = lines.push(&chunk) {
                malformed = Some(message);
                lines = JsonLines::default();
            }
        }
    }
    Ok(match malformed {
        Some(message) => Err(message),
        None => lines.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::root::RelPath;
    use crate::engine::transfer::{NoProgress, ReceiveOptions};
    use crate::protocol::{ErrorCode, ErrorReply};

    fn pair() -> (
        Connection<tokio::io::DuplexStream>,
        Connection<tokio::io::DuplexStream>,
    ) {
        crate::connection::test_pair(64 * 1024)
    }

    const OPTIONS: ReceiveOptions = ReceiveOptions {
        force: false,
        resume: true,
        preserve: true,
        trust_sent_modes: true,
        list_files: false,
        links: false,
        stripe: false,
    };

    #[test]
    fn the_wants_travel_in_a_frame_of_their_own_for_get_and_as_the_ok_reply_for_put() {
        let wire = |direction: Direction| {
            let header = direction.wants_header().with_size(9);
            String::from_utf8(header.to_json()).unwrap()
        };
        assert_eq!(wire(Direction::Get), r#"{"wants":true,"size":9}"#);
        assert_eq!(wire(Direction::Put), r#"{"ok":true,"size":9}"#);
    }

    #[tokio::test]
    async fn wants_in_the_wrong_frame_or_over_the_cap_are_refused_and_a_refusal_is_kept() {
        let wants = |direction: Direction, header: Header, body: &'static [u8], cap: u64| async move {
            let (mut ours, mut theirs) = pair();
            theirs.send(header, Bytes::from_static(body)).await.unwrap();
            read_wants(ours.reader(), direction, cap).await
        };
        let line = b"{\"i\":0,\"action\":\"skip\"}\n";
        let got = wants(Direction::Get, Direction::Get.wants_header(), line, 1024).await;
        assert_eq!(got.unwrap().len(), 1);
        let got = wants(Direction::Put, Direction::Put.wants_header(), line, 1024).await;
        assert_eq!(got.unwrap().len(), 1);
        // A get's client that answers as a put's server would.
        let got = wants(Direction::Get, Direction::Put.wants_header(), line, 1024).await;
        assert!(matches!(got, Err(TransferError::Protocol(m)) if m.contains("wants frame")));
        let got = wants(Direction::Put, Direction::Get.wants_header(), line, 1024).await;
        assert!(matches!(got, Err(TransferError::Protocol(m)) if m.contains("reply frame")));
        let refusal = ErrorReply::new(ErrorCode::NotADirectory, "backup is a file");
        let got = wants(Direction::Put, refusal.to_header(), b"", 1024).await;
        assert!(matches!(got, Err(TransferError::Refused(r)) if r == refusal));
        let got = wants(Direction::Get, Direction::Get.wants_header(), line, 8).await;
        assert!(matches!(got, Err(TransferError::Protocol(m)) if m.contains("over the cap")));
        let got = wants(
            Direction::Get,
            Direction::Get.wants_header(),
            b"{\"i\":\n",
            1024,
        )
        .await;
        assert!(matches!(got, Err(TransferError::Protocol(m)) if m.starts_with("line 1")));
    }

    /// Both sides of the exchange, as both peers call them, in each
    /// direction: the tree arrives, and only what was wanted moved.
    #[tokio::test]
    async fn both_sides_of_the_exchange_move_a_tree_in_either_direction() {
        for direction in [Direction::Get, Direction::Put] {
            let from = tempfile::tempdir().unwrap();
            let to = tempfile::tempdir().unwrap();
            std::fs::create_dir(from.path().join("d")).unwrap();
            std::fs::write(from.path().join("d/new"), b"new bytes").unwrap();
            std::fs::write(from.path().join("d/there"), b"same").unwrap();
            std::fs::create_dir(to.path().join("d")).unwrap();
            std::fs::write(to.path().join("d/there"), b"mine, longer").unwrap();
            let src = Arc::new(Root::new(from.path()).unwrap());
            let dst = Arc::new(Root::new(to.path()).unwrap());
            let manifest = Manifest::from_root(&src, &RelPath::parse(b"d").unwrap(), true).unwrap();
            let (plan, wants) =
                ReceivePlan::new(dst, &RelPath::root(), manifest.entries.clone(), OPTIONS).unwrap();
            let (mut sender, mut receiver) = pair();
            let send = tokio::spawn(async move {
                let wants = read_wants(sender.reader(), direction, 1024).await.unwrap();
                let asked = wants.len();
                let manifest = Arc::new(manifest);
                send_wanted(
                    &mut sender,
                    direction,
                    manifest,
                    Some(src),
                    wants,
                    false,
                    &NoProgress,
                )
                .await
                .unwrap();
                asked
            });
            let (wants, summary) =
                receive_wanted(&mut receiver, direction, plan, wants, &NoProgress)
                    .await
                    .unwrap();
            assert_eq!(send.await.unwrap(), 2, "{direction:?}: one want per file");
            assert!(wants.body.is_empty(), "the body went out");
            assert_eq!(wants.refused.len(), 1, "{direction:?}: d/there differs");
            assert_eq!((summary.files, summary.bytes), (1, 9), "{direction:?}");
            assert_eq!(
                std::fs::read(to.path().join("d/new")).unwrap(),
                b"new bytes"
            );
            assert_eq!(
                std::fs::read(to.path().join("d/there")).unwrap(),
                b"mine, longer"
            );
        }
    }
}
