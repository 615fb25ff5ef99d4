//! The client side of the file service. The client trusts the server no
//! more than the server trusts it: a `get` names output files from its own
//! request (every entry must sit under the requested name), writes them
//! beneath the local destination through the same confined root and atomic
//! partial files the server uses, and checks every file's BLAKE3.
//!
//! A report says on which side each failed file failed, and, only when
//! asked ([`TransferOptions::list_files`]), what happened to every other
//! file: a transfer of a vast tree keeps nothing per file otherwise.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow::Break;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use super::ramp::End;
use super::retry::{Attempts, Retry};
use super::{expect_ok, Client};
use crate::engine::error::{show, FileError};
use crate::engine::manifest::Manifest;
use crate::engine::root::{RelPath, Root};
use crate::engine::transfer::{self, Direction, Progress, ReceiveOptions, ReceivePlan};
use crate::engine::wire::{
    from_json_lines, rename_top, to_json_lines, Entry, EntryError, Want, WantAction, WirePath,
};
use crate::error::Error;
use crate::protocol::Header;
use crate::services::files::glob::{matches_path, GlobRequest};
use crate::services::files::ops::{
    FileInfo, LsReply, LsRequest, MkdirRequest, RmReply, RmRequest, StatRequest,
};
use crate::services::files::{GetReply, GetRequest, PutRequest, PutResult};
use crate::services::Request;

/// Largest listing or manifest the client accepts from a server.
pub const MAX_LIST_BYTES: u64 = 256 * 1024 * 1024;

/// How a transfer treats the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOptions {
    /// Directories and everything under them.
    pub recursive: bool,
    /// Overwrite files that exist and differ.
    pub force: bool,
    /// Continue from partial files of an earlier attempt.
    pub resume: bool,
    /// Keep modes and mtimes.
    pub preserve: bool,
    /// Each file's md5 (get only): the sender's for a file it sends, one
    /// computed here for a file skipped as up to date.
    pub md5: bool,
    /// Report every file's outcome ([`TransferReport::files_done`]).
    pub list_files: bool,
    /// Connections to spread big files over (`--streams`); `None` picks
    /// them from the round trip ([`super::stripe::auto_streams`]).
    pub streams: Option<u32>,
    /// What a dropped or stalled connection does ([`super::retry`]).
    pub retry: Retry,
}

/// The end of a transfer a failure happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This machine: a local file, directory or disk.
    Local,
    /// The server.
    Server,
}

impl Side {
    /// `local` or `server`, as messages and `--json` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Local => "local",
            Side::Server => "server",
        }
    }
}

/// One file that did not make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its path in the transfer.
    pub path: Vec<u8>,
    /// A stable error code.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// Where it went wrong.
    pub side: Side,
}

/// What happened to a file that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// Sent whole.
    Sent,
    /// Already in place (same size and mtime): nothing sent.
    Skipped,
    /// Sent from this offset: the bytes before it were kept from an
    /// earlier, interrupted attempt.
    Resumed {
        /// Bytes that were already there.
        from: u64,
    },
}

/// One file's outcome, for a per-file report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    /// Its path in the transfer.
    pub path: Vec<u8>,
    /// Its size in bytes.
    pub size: u64,
    /// What happened to it.
    pub action: FileAction,
}

/// What a transfer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    /// Files written.
    pub files: u64,
    /// Bytes moved (resumed bytes not counted).
    pub bytes: u64,
    /// Bytes of the files written that an earlier attempt had moved.
    pub resumed_bytes: u64,
    /// Files already in place.
    pub skipped: u64,
    /// Files that failed.
    pub failures: Vec<Failure>,
    /// Paths the sender left out (not regular files or directories).
    pub left_out: u64,
    /// Each file's path and md5, in manifest order, when asked for.
    pub md5s: Vec<(Vec<u8>, String)>,
    /// With [`TransferOptions::list_files`]: every file written or
    /// skipped, in manifest order (failures are in `failures`).
    pub files_done: Vec<FileOutcome>,
}

impl TransferReport {
    /// Adds `other`'s counts and lists to this report's.
    pub fn add(&mut self, other: TransferReport) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.resumed_bytes += other.resumed_bytes;
        self.skipped += other.skipped;
        self.failures.extend(other.failures);
        self.left_out += other.left_out;
        self.md5s.extend(other.md5s);
        self.files_done.extend(other.files_done);
    }
}

impl Client {
    /// Uploads local files and, with `recursive`, directories into `to`
    /// (relative to the server's root, created if missing).
    pub async fn put(
        &mut self,
        locals: &[PathBuf],
        to: &[u8],
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<TransferReport, Error> {
        let manifest = local_manifest(locals, options.recursive).await?;
        self.put_manifest(manifest, to, options, progress).await
    }

    /// Uploads one local file (or with `recursive`, directory) into the
    /// directory `to` under the name `name`, as `cp a.txt dir/b.txt` does:
    /// the manifest names it so, and the server's put is unchanged.
    pub async fn put_as(
        &mut self,
        local: &Path,
        to: &[u8],
        name: &[u8],
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<TransferReport, Error> {
        let mut manifest = local_manifest(&[local.to_path_buf()], options.recursive).await?;
        rename_top(&mut manifest.entries, name)
            .map_err(|why| Error::Usage(format!("{}: {why}", show(name))))?;
        self.put_manifest(manifest, to, options, progress).await
    }

    /// Sends `manifest` and what the server wants of it; after a cut,
    /// again over a new connection, as [`super::retry`] says.
    async fn put_manifest(
        &mut self,
        manifest: Manifest,
        to: &[u8],
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<TransferReport, Error> {
        let manifest = Arc::new(manifest);
        let mut attempts = Attempts::new(options.retry);
        self.set_stall_timeout(options.retry.stall_timeout);
        loop {
            let options = attempts.options(options);
            let put = self.put_once(&manifest, to, options, &progress, &mut attempts);
            let put = put.await;
            if let Break(ended) = self.after(put, &mut attempts, progress.as_ref()).await {
                return ended;
            }
        }
    }

    async fn put_once(
        &mut self,
        manifest: &Arc<Manifest>,
        to: &[u8],
        options: TransferOptions,
        progress: &Arc<dyn Progress>,
        attempts: &mut Attempts,
    ) -> Result<TransferReport, Error> {
        debug!(
            entries = manifest.entries.len(),
            bytes = manifest.total_bytes,
            left_out = manifest.skipped.len(),
            "put: manifest to {}",
            show(to)
        );
        let streams = self.streams_for(options.streams);
        let request = PutRequest {
            path: WirePath::from_bytes(to),
            force: options.force,
            resume: options.resume,
            preserve: options.preserve,
            streams,
        };
        let body = Bytes::from(to_json_lines(&manifest.entries));
        let progress = progress.clone();
        self.connection()
            .send(Request::Put(request).to_header(), body)
            .await?;
        let reader = self.connection().reader();
        let (wants, ticket) =
            transfer::read_wants_and_ticket(reader, Direction::Put, MAX_LIST_BYTES)
                .await
                .map_err(Error::from)?;
        let mut report = TransferReport {
            left_out: manifest.skipped.len() as u64,
            ..TransferReport::default()
        };
        // Refused by the server's plan: the destination there says no.
        report.failures.extend(refusals(&manifest.entries, &wants));
        report.skipped = wants
            .iter()
            .filter(|w| matches!(w.action, WantAction::Skip))
            .count() as u64;
        debug!(
            wants = wants.len(),
            bytes = transfer::bytes_wanted(&manifest.entries, &wants),
            skipped = report.skipped,
            refused = report.failures.len(),
            "put: the server's answer"
        );
        attempts.planned(&manifest.entries, wants.iter(), progress.as_ref());
        let listed = options.list_files.then(|| wants.clone());
        let manifest = manifest.clone();
        let ranges = ticket.and_then(|ticket| {
            let ranges = transfer::RangeSender::new(manifest.clone(), None, &wants)?;
            Some((ticket, ranges))
        });
        let sent = match ranges {
            Some((ticket, ranges)) => {
                let striped = (manifest.clone(), wants);
                let ramp = self.ramp_for(options.streams, streams, End::Sending);
                self.send_striped(striped, (&ticket, streams, ranges), ramp, progress.as_ref())
                    .await
            }
            None => {
                let conn = self.connection();
                let manifest = manifest.clone();
                let progress = progress.as_ref();
                transfer::send_wanted(conn, Direction::Put, manifest, None, wants, false, progress)
                    .await
            }
        }
        .map_err(Error::from)?;
        let reader = self.connection().reader();
        let result = expect_ok(reader.expect_header().await?)?;
        let errors: Vec<EntryError> = read_lines(reader, &result).await?;
        let result: PutResult = result
            .to_message()
            .map_err(|e| Error::Protocol(format!("bad put result: {e}")))?;
        debug!(
            files = result.files,
            bytes = result.bytes,
            failed = result.failed,
            "put: the server's result"
        );
        report.files = result.files;
        report.bytes = result.bytes;
        // The server reports every failure; those this side sent as failed
        // (a local file gone or changed) are local.
        let failed_here: HashSet<u64> = sent.failed.iter().copied().collect();
        let failed: HashSet<u64> = errors.iter().map(|e| e.i).collect();
        report.failures.extend(errors.into_iter().map(|e| {
            let side = if failed_here.contains(&e.i) {
                Side::Local
            } else {
                Side::Server
            };
            failure(&manifest.entries, e, side)
        }));
        let resumed: HashMap<u64, u64> = sent
            .resumed
            .into_iter()
            .filter(|(i, _)| !failed.contains(i))
            .collect();
        report.resumed_bytes = resumed.values().sum();
        if let Some(wants) = listed {
            report.files_done = wants
                .iter()
                .filter(|w| !failed.contains(&w.i))
                .filter_map(|w| {
                    let action = match w.action {
                        WantAction::Skip => FileAction::Skipped,
                        WantAction::Send { .. } | WantAction::Stripe { .. } => {
                            match resumed.get(&w.i) {
                                Some(&from) => FileAction::Resumed { from },
                                None => FileAction::Sent,
                            }
                        }
                        WantAction::Refuse { .. } | WantAction::Delta => return None,
                    };
                    Some(outcome(&manifest.entries, w.i, action))
                })
                .collect();
        }
        self.answered();
        Ok(report)
    }

    /// Downloads `remote` (a file, or with `recursive` a directory) into the
    /// local directory `to`, created if missing.
    pub async fn get(
        &mut self,
        remote: &[u8],
        to: &Path,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<TransferReport, Error> {
        self.get_into(remote, to, None, options, progress).await
    }

    /// Downloads `remote` into the local directory `to` under the name
    /// `name`, as `cp dir/a.txt b.txt` does. The server's entries are
    /// checked against the name asked for first, then renamed here.
    pub async fn get_as(
        &mut self,
        remote: &[u8],
        to: &Path,
        name: &[u8],
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<TransferReport, Error> {
        self.get_into(remote, to, Some(name), options, progress)
            .await
    }

    /// Gets `remote`; after a cut, again over a new connection, as
    /// [`super::retry`] says.
    async fn get_into(
        &mut self,
        remote: &[u8],
        to: &Path,
        rename: Option<&[u8]>,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<TransferReport, Error> {
        let mut attempts = Attempts::new(options.retry);
        self.set_stall_timeout(options.retry.stall_timeout);
        loop {
            let options = attempts.options(options);
            let get = self.get_once(remote, to, rename, options, &progress, &mut attempts);
            let get = get.await;
            if let Break(ended) = self.after(get, &mut attempts, progress.as_ref()).await {
                return ended;
            }
        }
    }

    async fn get_once(
        &mut self,
        remote: &[u8],
        to: &Path,
        rename: Option<&[u8]>,
        options: TransferOptions,
        progress: &Arc<dyn Progress>,
        attempts: &mut Attempts,
    ) -> Result<TransferReport, Error> {
        let requested =
            RelPath::parse(remote).map_err(|e| Error::Usage(format!("{}: {e}", show(remote))))?;
        let streams = self.streams_for(options.streams);
        let request = GetRequest {
            path: WirePath::from_bytes(remote),
            recursive: options.recursive,
            md5: options.md5,
            streams,
        };
        self.connection()
            .send(Request::Get(request).to_header(), Bytes::new())
            .await?;
        let reader = self.connection().reader();
        let reply_header = expect_ok(reader.expect_header().await?)?;
        let mut entries: Vec<Entry> = read_lines(reader, &reply_header).await?;
        let reply: GetReply = reply_header
            .to_message()
            .map_err(|e| Error::Protocol(format!("bad get reply: {e}")))?;
        debug!(
            entries = reply.entries,
            bytes = reply.total_bytes,
            left_out = reply.skipped,
            "get {}: the server's manifest",
            show(remote)
        );
        check_names(&requested, &entries)?;
        if let Some(name) = rename {
            if requested.is_root() {
                return Err(Error::Usage(
                    "the served root has no name to give another; get it into a directory".into(),
                ));
            }
            rename_top(&mut entries, name)
                .map_err(|why| Error::Usage(format!("{}: {why}", show(name))))?;
        }

        let joining = reply.ticket.as_ref().map(|ticket| {
            self.open_extra(
                ticket,
                streams,
                self.ramp_for(options.streams, streams, End::Receiving),
            )
        });
        let local = |err: std::io::Error| {
            Error::Files(FileError::io(to.as_os_str().as_encoded_bytes(), &err))
        };
        std::fs::create_dir_all(to).map_err(local)?;
        let dest = Arc::new(Root::new(to).map_err(local)?);
        let receive_options = ReceiveOptions {
            force: options.force,
            resume: options.resume,
            preserve: options.preserve,
            // A server's modes pass through the user's umask.
            trust_sent_modes: false,
            // The md5 of a skipped file is computed here.
            list_files: options.list_files || options.md5,
            links: false,
            stripe: reply.ticket.is_some(),
        };
        let planned_entries = entries.clone();
        let planned_dest = dest.clone();
        let (plan, wants) = tokio::task::spawn_blocking(move || {
            ReceivePlan::new(
                planned_dest,
                &RelPath::root(),
                planned_entries,
                receive_options,
            )
        })
        .await
        .map_err(|e| Error::Protocol(e.to_string()))?
        .map_err(Error::Files)?;
        let mut report = TransferReport {
            left_out: reply.skipped,
            ..TransferReport::default()
        };
        // Refused by this side's plan: the destination here says no.
        report.failures.extend(
            wants
                .refused
                .iter()
                .map(|refused| failure(&entries, refused.clone(), Side::Local)),
        );
        report.skipped = wants.skipped;
        if options.retry.retries > 0 {
            // Our own plan's lines: they parse.
            let asked: Vec<Want> = from_json_lines(&wants.body).unwrap_or_default();
            attempts.planned(&entries, asked.iter(), progress.as_ref());
        }
        debug!(
            bytes = wants.bytes_wanted,
            skipped = wants.skipped,
            refused = wants.refused.len(),
            "get: asking for the files not in place"
        );
        let (wants, summary) = match joining {
            Some(joining) => {
                let list = receive_options.list_files;
                self.receive_striped((plan, wants), joining, progress.as_ref(), list)
                    .await
            }
            None => {
                let conn = self.connection();
                transfer::receive_wanted(conn, Direction::Get, plan, wants, progress.as_ref()).await
            }
        }
        .map_err(Error::from)?;
        debug!(
            files = summary.files,
            bytes = summary.bytes,
            resumed_bytes = summary.resumed_bytes,
            failed = summary.errors.len(),
            "get: received"
        );
        report.files = summary.files;
        report.bytes = summary.bytes;
        report.resumed_bytes = summary.resumed_bytes;
        let mut md5s = summary.md5s;
        if options.md5 {
            let (computed, failed) = md5s_here(dest, &entries, &wants.skipped_files).await?;
            md5s.extend(computed);
            report.failures.extend(failed);
        }
        md5s.sort_unstable_by_key(|(i, _)| *i);
        report.md5s = md5s
            .into_iter()
            .map(|(i, md5)| (entry_path(&entries, i), md5))
            .collect();
        report
            .failures
            .extend(summary.errors.into_iter().map(|failed| {
                let side = if failed.by_sender {
                    Side::Server
                } else {
                    Side::Local
                };
                failure(&entries, failed.error, side)
            }));
        if options.list_files {
            let skipped = wants
                .skipped_files
                .iter()
                .map(|&i| (i, FileAction::Skipped));
            let published = summary.published.iter().map(|&(i, from)| match from {
                0 => (i, FileAction::Sent),
                from => (i, FileAction::Resumed { from }),
            });
            let mut done: Vec<(u64, FileAction)> = skipped.chain(published).collect();
            done.sort_unstable_by_key(|(i, _)| *i);
            report.files_done = done
                .into_iter()
                .map(|(i, action)| outcome(&entries, i, action))
                .collect();
        }
        self.answered();
        Ok(report)
    }

    /// Lists a directory (or describes a file) on the server.
    pub async fn ls(&mut self, path: &[u8]) -> Result<Vec<FileInfo>, Error> {
        let request = LsRequest {
            path: WirePath::from_bytes(path),
        };
        self.listing(Request::Ls(request)).await
    }

    /// One request answered by a listing: `entries` and as many lines.
    async fn listing(&mut self, request: Request) -> Result<Vec<FileInfo>, Error> {
        let cmd = request.cmd();
        self.connection()
            .send(request.to_header(), Bytes::new())
            .await?;
        let reader = self.connection().reader();
        let reply = expect_ok(reader.expect_header().await?)?;
        let infos: Vec<FileInfo> = read_lines(reader, &reply).await?;
        let expected = reply
            .to_message::<LsReply>()
            .map(|r| r.entries)
            .unwrap_or(0);
        if infos.len() as u64 != expected {
            return Err(Error::Protocol(format!(
                "the {cmd} listing's length does not match its header"
            )));
        }
        self.answered();
        Ok(infos)
    }

    /// The paths a pattern (`logs/*.log`) matches on the server, described
    /// as [`Client::ls`] describes entries but named by their whole path.
    /// A pattern that matches nothing is the server's `not_found`.
    pub async fn glob(&mut self, pattern: &[u8]) -> Result<Vec<FileInfo>, Error> {
        let request = GlobRequest {
            path: WirePath::from_bytes(pattern),
        };
        let infos = self.listing(Request::Glob(request)).await?;
        for info in &infos {
            let path = info.name.to_bytes().map_err(Error::Protocol)?;
            if !matches_path(pattern, &path) {
                return Err(Error::Protocol(format!(
                    "the server matched {} for the pattern {}",
                    show(&path),
                    show(pattern)
                )));
            }
        }
        Ok(infos)
    }

    /// Describes one path on the server, with its BLAKE3 if asked.
    pub async fn stat(&mut self, path: &[u8], blake3: bool) -> Result<FileInfo, Error> {
        let request = StatRequest {
            path: WirePath::from_bytes(path),
            blake3,
        };
        let reply = self.call(Request::Stat(request)).await?;
        reply
            .to_message()
            .map_err(|e| Error::Protocol(format!("bad stat reply: {e}")))
    }

    /// Creates a directory on the server (and its parents, with `parents`).
    pub async fn mkdir(&mut self, path: &[u8], parents: bool) -> Result<(), Error> {
        let request = MkdirRequest {
            path: WirePath::from_bytes(path),
            parents,
        };
        self.call(Request::Mkdir(request)).await.map(drop)
    }

    /// Removes a file, or with `recursive` a tree; returns entries removed.
    pub async fn rm(&mut self, path: &[u8], recursive: bool) -> Result<u64, Error> {
        let request = RmRequest {
            path: WirePath::from_bytes(path),
            recursive,
        };
        let reply = self.call(Request::Rm(request)).await?;
        Ok(reply
            .to_message::<RmReply>()
            .map(|r| r.removed)
            .unwrap_or(0))
    }

    /// One request without a body, one reply without a body.
    async fn call(&mut self, request: Request) -> Result<Header, Error> {
        let cmd = request.cmd();
        self.connection()
            .send(request.to_header(), Bytes::new())
            .await?;
        let reply = expect_ok(self.connection().reader().expect_header().await?)?;
        if reply.size() != 0 {
            return Err(Error::Protocol(format!(
                "unexpected body in the {cmd} reply"
            )));
        }
        self.answered();
        Ok(reply)
    }
}

/// The manifest of local paths, built off the async threads.
async fn local_manifest(locals: &[PathBuf], recursive: bool) -> Result<Manifest, Error> {
    let owned = locals.to_vec();
    tokio::task::spawn_blocking(move || Manifest::from_local(&owned, recursive))
        .await
        .map_err(|e| Error::Protocol(e.to_string()))?
        .map_err(Error::Files)
}

/// Every entry a server sends for `get` must lie under the name the client
/// asked for, so a hostile server cannot choose where files land.
pub(crate) fn check_names(requested: &RelPath, entries: &[Entry]) -> Result<(), Error> {
    let Some(name) = requested.file_name() else {
        return Ok(()); // the root: entries land directly in the destination
    };
    let name = std::os::unix::ffi::OsStrExt::as_bytes(name);
    for entry in entries {
        let path = entry.path.to_bytes().map_err(Error::Protocol)?;
        let under = path == name || (path.starts_with(name) && path.get(name.len()) == Some(&b'/'));
        if !under {
            return Err(Error::Protocol(format!(
                "the server sent {} for a request of {}",
                show(&path),
                show(name)
            )));
        }
    }
    Ok(())
}

/// The files a server's plan refused (a put's destination there says no).
fn refusals(entries: &[Entry], wants: &[Want]) -> Vec<Failure> {
    wants
        .iter()
        .filter_map(|w| match &w.action {
            WantAction::Refuse { code, message } => Some(Failure {
                path: entry_path(entries, w.i),
                code: code.clone(),
                message: message.clone(),
                side: Side::Server,
            }),
            _ => None,
        })
        .collect()
}

fn failure(entries: &[Entry], error: EntryError, side: Side) -> Failure {
    Failure {
        path: entry_path(entries, error.i),
        code: error.code,
        message: error.message,
        side,
    }
}

fn outcome(entries: &[Entry], i: u64, action: FileAction) -> FileOutcome {
    FileOutcome {
        path: entry_path(entries, i),
        size: entries.get(i as usize).map_or(0, |e| e.file_size),
        action,
    }
}

/// The md5s of files skipped as up to date, computed from the copies here
/// (the server sent nothing for them), each read beneath `dest` without
/// following a symlink. A file that cannot be read fails, locally.
async fn md5s_here(
    dest: Arc<Root>,
    entries: &[Entry],
    skipped: &[u64],
) -> Result<(Vec<(u64, String)>, Vec<Failure>), Error> {
    let targets: Vec<(u64, Vec<u8>)> = skipped
        .iter()
        .map(|&i| (i, entry_path(entries, i)))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut md5s = Vec::with_capacity(targets.len());
        let mut failures = Vec::new();
        for (i, path) in targets {
            match transfer::md5_beneath(&dest, &path) {
                Ok(md5) => md5s.push((i, md5)),
                Err(err) => failures.push(Failure {
                    path,
                    code: err.code.as_str().to_string(),
                    message: err.message,
                    side: Side::Local,
                }),
            }
        }
        (md5s, failures)
    })
    .await
    .map_err(|e| Error::Protocol(e.to_string()))
}

fn entry_path(entries: &[Entry], i: u64) -> Vec<u8> {
    entries
        .get(i as usize)
        .and_then(|e| e.path.to_bytes().ok())
        .unwrap_or_default()
}

pub(crate) async fn read_lines<T: serde::de::DeserializeOwned, R: tokio::io::AsyncRead + Unpin>(
    reader: &mut crate::connection::FrameReader<R>,
    header: &Header,
) -> Result<Vec<T>, Error> {
    if header.size() > MAX_LIST_BYTES {
        return Err(Error::Protocol(format!(
            "a listing of {} bytes is over the client's cap of {MAX_LIST_BYTES}",
            header.size()
        )));
    }
    transfer::read_json_lines(reader)
        .await?
        .map_err(Error::Protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            kind: crate::engine::wire::EntryKind::File,
            path: WirePath::from_bytes(path.as_bytes()),
            file_size: 0,
            mode: 0o644,
            mtime: 0,
            mtime_ns: 0,
            sync: None,
        }
    }

    #[test]
    fn entries_must_lie_under_the_requested_name() {
        let req = RelPath::parse(b"some/dir/photos").unwrap();
        assert!(check_names(&req, &[entry("photos"), entry("photos/a")]).is_ok());
        assert!(check_names(&req, &[entry("photosx")]).is_err());
        assert!(check_names(&req, &[entry("other/a")]).is_err());
        assert!(check_names(&req, &[entry(".bashrc")]).is_err());
        assert!(check_names(&RelPath::root(), &[entry("anything")]).is_ok());
    }
}
