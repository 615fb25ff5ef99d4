//! Detachable commands: an `exec` or `shell` sent with `detachable` runs as
//! a job that outlives its connection.
//!
//! The job's own task drives the command (a `ChildSide`) and keeps its
//! output in a bounded buffer, each stream's bytes at absolute offsets; a
//! connection *follows* the job: it sends the output from the offsets the
//! client asks for and passes the client's stdin on. When the following
//! connection drops, the command goes on for the job's linger time; a
//! client of the same identity that attaches in time (`attach`, with the
//! offsets it has printed) gets the rest, nothing lost or repeated unless
//! the buffer overflowed, which the offsets then show. Past the linger the
//! command's process group is killed. Once a follower has delivered the end
//! frame, the job is gone. Stdin sent into a dropped connection is lost, not
//! replayed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::relay::{ChildEvent, ChildSide};
use super::{finish, next_stdin, process, ExecEnd, StdinItem};
use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::limits;
use crate::protocol::message::{ok_header, StreamFrame};
use crate::protocol::{ErrorCode, Refusal};
use crate::services::{Outcome, ServiceContext};

/// The output channels a job keeps, by index.
const CHANNELS: [&str; 2] = ["stdout", "stderr"];

/// What a buffered chunk costs beyond its bytes, counted against the
/// buffer's bound so that a command printing a byte at a time cannot make
/// the bookkeeping outgrow it.
const CHUNK_OVERHEAD_BYTES: usize = 64;

/// The longest command line `jobs` shows, in bytes: a line may be as long
/// as a header allows, and eight of those would not fit in one reply.
const LISTED_COMMAND_BYTES: usize = 256;

/// `{"cmd": "attach", "job": ID, "stdout_from": N, "stderr_from": M}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    /// The job's id, as the reply to its `exec` or `shell` gave it.
    #[serde(default)]
    pub job: String,
    /// The first stdout byte (offset from the command's start) to send.
    #[serde(default)]
    pub stdout_from: u64,
    /// The first stderr byte to send.
    #[serde(default)]
    pub stderr_from: u64,
}

/// `{"cmd": "jobs"}`: the caller's detachable jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsRequest {}

/// One job as `jobs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The id to attach with.
    pub job: String,
    /// The command line, or `shell`.
    pub command: String,
    /// Whether it runs on a pseudo-terminal (`shell`): an attach then wants
    /// the local terminal raw and its window size.
    #[serde(default)]
    pub terminal: bool,
    /// Seconds since the Unix epoch when it started.
    pub started: u64,
    /// Whether a connection follows it now.
    pub attached: bool,
    /// How it ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<ExecEnd>,
}

/// The reply to `jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobList {
    /// The caller's jobs, oldest first.
    pub jobs: Vec<JobInfo>,
}

/// The server's detachable jobs, by id.
#[derive(Debug)]
pub struct Jobs {
    table: Mutex<HashMap<String, Arc<Job>>>,
    /// Output kept per job, in bytes (`--job-buffer`).
    buffer_bytes: usize,
}

impl Jobs {
    /// An empty table whose jobs keep up to `buffer_bytes` of output each.
    pub fn new(buffer_bytes: usize) -> Jobs {
        Jobs {
            table: Mutex::new(HashMap::new()),
            buffer_bytes,
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job `id` if `owner` started it: another identity's job is "not
    /// found", as one that does not exist, so ids do not leak.
    fn find(&self, id: &str, owner: &str) -> Option<Arc<Job>> {
        self.table()
            .get(id)
            .filter(|job| job.owner == owner)
            .cloned()
    }

    fn remove(&self, id: &str) {
        self.table().remove(id);
    }

    /// `owner`'s jobs, oldest first.
    pub fn list(&self, owner: &str) -> Vec<JobInfo> {
        let mut jobs: Vec<JobInfo> = self
            .table()
            .values()
            .filter(|job| job.owner == owner)
            .map(|job| job.info())
            .collect();
        jobs.sort_by(|a, b| (a.started, &a.job).cmp(&(b.started, &b.job)));
        jobs
    }
}

/// Input for the command, from whichever connection follows the job.
#[derive(Debug)]
enum JobInput {
    Data(Bytes),
    Resize(u16, u16),
    End,
}

/// One detachable command.
#[derive(Debug)]
struct Job {
    id: String,
    owner: String,
    command: String,
    terminal: bool,
    started: SystemTime,
    linger: Duration,
    state: Mutex<JobState>,
    /// Told of new output, the end, and a follower leaving.
    changed: Notify,
    input: mpsc::Sender<JobInput>,
    /// When the command is killed (or its result dropped) for want of a
    /// follower; `None` while one follows.
    linger_until: watch::Sender<Option<Instant>>,
    /// Cancelled once a follower delivered the end: the job is done.
    collected: CancellationToken,
}

/// A piece of output kept for followers.
#[derive(Debug)]
struct Chunk {
    channel: usize,
    offset: u64,
    bytes: Bytes,
}

#[derive(Debug)]
struct JobState {
    /// Output, oldest first; chunk `i` has sequence number `first_seq + i`.
    chunks: VecDeque<Chunk>,
    first_seq: u64,
    /// What `chunks` costs, against the bound.
    kept: usize,
    bound: usize,
    /// Bytes each stream has printed: the offset of its next byte.
    written: [u64; 2],
    end: Option<ExecEnd>,
    /// The follower now (its number and what stops it), to be stopped
    /// when another attaches.
    follower: Option<(u64, CancellationToken)>,
    /// Followers so far, to number the next.
    followers: u64,
}

impl JobState {
    fn record(&mut self, channel: usize, bytes: Bytes) {
        let offset = self.written[channel];
        self.written[channel] += bytes.len() as u64;
        self.kept += bytes.len() + CHUNK_OVERHEAD_BYTES;
        self.chunks.push_back(Chunk {
            channel,
            offset,
            bytes,
        });
        // The newest chunk stays whatever the bound: the end of the output
        // is never lost.
        while self.kept > self.bound && self.chunks.len() > 1 {
            let Some(oldest) = self.chunks.pop_front() else {
                break;
            };
            self.first_seq += 1;
            self.kept -= oldest.bytes.len() + CHUNK_OVERHEAD_BYTES;
        }
    }

    /// The next output at or after `pos` from chunk `cursor` on, as (its
    /// chunk, channel, offset, bytes); skips what `pos` already has.
    fn next_after(&self, pos: [u64; 2], cursor: u64) -> Option<(u64, usize, u64, Bytes)> {
        let mut seq = cursor.max(self.first_seq);
        while let Some(chunk) = self.chunks.get((seq - self.first_seq) as usize) {
            let end = chunk.offset + chunk.bytes.len() as u64;
            let have = pos[chunk.channel];
            if end > have {
                let skip = have.saturating_sub(chunk.offset) as usize;
                let offset = chunk.offset.max(have);
                return Some((seq, chunk.channel, offset, chunk.bytes.slice(skip..)));
            }
            seq += 1;
        }
        None
    }
}

impl Job {
    fn state(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self) -> JobInfo {
        let state = self.state();
        let mut command = self.command.clone();
        if command.len() > LISTED_COMMAND_BYTES {
            let mut cut = LISTED_COMMAND_BYTES;
            while !command.is_char_boundary(cut) {
                cut -= 1;
            }
            command.truncate(cut);
            command.push_str("...");
        }
        JobInfo {
            job: self.id.clone(),
            command,
            terminal: self.terminal,
            started: self
                .started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            attached: state.follower.is_some(),
            end: state.end.clone(),
        }
    }

    /// Waits for output past `pos` (from chunk `cursor` on) or the end once
    /// `pos` has all. Cancel-safe: it changes nothing.
    async fn next_output(&self, pos: [u64; 2], cursor: u64) -> Next {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state();
                if let Some((seq, channel, offset, bytes)) = state.next_after(pos, cursor) {
                    return Next::Data {
                        seq,
                        channel,
                        offset,
                        bytes,
                    };
                }
                // Nothing more is kept past `pos` and nothing more comes.
                if let Some(end) = &state.end {
                    return Next::End(end.clone());
                }
            }
            notified.await;
        }
    }

    /// Follower `id` left without collecting the end: unless another has
    /// taken its place, the linger starts.
    fn detach(&self, id: u64) {
        let mut state = self.state();
        if state.follower.as_ref().is_some_and(|(now, _)| *now == id) {
            state.follower = None;
            self.linger_until
                .send_replace(Some(Instant::now() + self.linger));
        }
    }

    /// A new follower takes the job over: the one before it (a connection
    /// that may be half-dead) is told to stop, and the linger is off.
    fn take_over(&self) -> (u64, CancellationToken) {
        let mut state = self.state();
        state.followers += 1;
        let id = state.followers;
        let token = CancellationToken::new();
        if let Some((_, before)) = state.follower.replace((id, token.clone())) {
            before.cancel();
        }
        self.linger_until.send_replace(None);
        (id, token)
    }
}

enum Next {
    Data {
        seq: u64,
        channel: usize,
        offset: u64,
        bytes: Bytes,
    },
    End(ExecEnd),
}

/// What a job is started with, apart from its command.
pub(crate) struct JobStart {
    /// The command line, or `shell`, as `jobs` lists it.
    pub command: String,
    /// Whether it runs on a pseudo-terminal.
    pub terminal: bool,
    /// When the command is killed, if ever.
    pub deadline: Option<Instant>,
    /// How long it outlives its connection.
    pub linger: Duration,
    /// Its slot under `--max-commands`, held while it runs.
    pub slot: OwnedSemaphorePermit,
}

/// Checks that `linger_secs`, if given, is a linger the server allows.
pub(crate) fn linger(linger_secs: Option<f64>) -> Result<Duration, Refusal> {
    let Some(secs) = linger_secs else {
        return Ok(limits::DEFAULT_JOB_LINGER);
    };
    if secs.is_finite() && secs > 0.0 && secs <= limits::MAX_JOB_LINGER.as_secs_f64() {
        return Ok(Duration::from_secs_f64(secs));
    }
    Err(Refusal::new(
        ErrorCode::BadRequest,
        format!(
            "`linger_secs` {secs} is not between 0 and {} seconds",
            limits::MAX_JOB_LINGER.as_secs()
        ),
    ))
}

/// Whether `owner` may start another job: to ask before the command is
/// spawned, so that a refused one never runs.
pub(crate) fn room(context: &ServiceContext) -> Result<(), Refusal> {
    room_in(&context.jobs.table(), &context.owner)
}

fn room_in(table: &HashMap<String, Arc<Job>>, owner: &str) -> Result<(), Refusal> {
    let own = table.values().filter(|j| j.owner == owner).count();
    if own >= limits::MAX_JOBS_PER_CLIENT || table.len() >= limits::MAX_JOBS {
        return Err(Refusal::new(
            ErrorCode::ExecLimit,
            format!(
                "too many detachable jobs (at most {} per client, {} in all); \
                 attach to one (`ferry jobs`) and let it end",
                limits::MAX_JOBS_PER_CLIENT,
                limits::MAX_JOBS
            ),
        ));
    }
    Ok(())
}

/// Starts `child` as a job of the caller's, answers ok with its id, and
/// follows it on `conn` from the start.
pub(crate) async fn start<S, C>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    child: C,
    start: JobStart,
) -> Result<Outcome, ConnectionError>
where
    S: ByteStream,
    C: ChildSide + Send + 'static,
{
    let jobs = context.jobs.clone();
    let admitted = (|| -> Result<Arc<Job>, Refusal> {
        let mut table = jobs.table();
        // Checked before the spawn too (`room`); again here, for a race.
        room_in(&table, &context.owner)?;
        let (input, input_rx) = mpsc::channel(4);
        let job = Arc::new(Job {
            id: new_id(),
            owner: context.owner.clone(),
            command: start.command.clone(),
            terminal: start.terminal,
            started: SystemTime::now(),
            linger: start.linger,
            state: Mutex::new(JobState {
                chunks: VecDeque::new(),
                first_seq: 0,
                kept: 0,
                bound: jobs.buffer_bytes,
                written: [0, 0],
                end: None,
                follower: None,
                followers: 0,
            }),
            changed: Notify::new(),
            input,
            linger_until: watch::Sender::new(None),
            collected: CancellationToken::new(),
        });
        table.insert(job.id.clone(), job.clone());
        let task = run(
            job.clone(),
            jobs.clone(),
            child,
            input_rx,
            start,
            context.shutdown.clone(),
        );
        tokio::spawn(task);
        Ok(job)
    })();
    let job = match admitted {
        Ok(job) => job,
        Err(refusal) => {
            conn.send_error(&refusal).await?;
            return Ok(Outcome::Refused(refusal.code));
        }
    };
    let reply = serde_json::json!({ "job": job.id });
    follow(conn, &job, &jobs, [0, 0], ok_header(&reply)).await
}

/// Serves `attach`: the caller's job from the offsets it asks for.
pub async fn attach<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: AttachRequest,
) -> Result<Outcome, ConnectionError> {
    let found = if context.allow_exec {
        context.jobs.find(&request.job, &context.owner)
    } else {
        None
    };
    let Some(job) = found else {
        let refusal = Refusal::new(
            ErrorCode::NotFound,
            "no such job of yours on this server (it ended, its linger passed, or it \
             belongs to another client); `ferry jobs` lists yours",
        );
        conn.send_error(&refusal).await?;
        return Ok(Outcome::Refused(refusal.code));
    };
    let reply = serde_json::json!({ "job": job.id, "command": job.command });
    let from = [request.stdout_from, request.stderr_from];
    follow(conn, &job, &context.jobs, from, ok_header(&reply)).await
}

/// Serves `jobs`: the caller's jobs.
pub async fn list<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
) -> Result<Outcome, ConnectionError> {
    let list = JobList {
        jobs: context.jobs.list(&context.owner),
    };
    conn.send(ok_header(&list), Bytes::new()).await?;
    Ok(Outcome::Ok)
}

/// An id nobody can guess: 128 random bits, in hex.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system's randomness failing is not something to run on.
        panic!("no system randomness for a job id");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The job's task: drives the command, keeps its output, kills it when
/// its linger passes without a follower (or its timeout, or at shutdown),
/// then keeps its end until a follower collects it or the linger passes.
async fn run<C: ChildSide>(
    job: Arc<Job>,
    jobs: Arc<Jobs>,
    mut child: C,
    mut input: mpsc::Receiver<JobInput>,
    start: JobStart,
    shutdown: CancellationToken,
) {
    let mut linger_until = job.linger_until.subscribe();
    let mut pending: Option<Bytes> = None;
    let mut input_open = true;
    let mut status = None;
    let mut timed_out = false;
    let mut killed = false;
    while child.output_open() || status.is_none() {
        let linger = *linger_until.borrow_and_update();
        tokio::select! {
            event = child.next(&mut pending) => match event {
                Ok(ChildEvent::Output(channel, bytes)) => {
                    let channel = usize::from(channel == "stderr");
                    job.state().record(channel, bytes);
                    job.changed.notify_waiters();
                }
                Ok(ChildEvent::Exited(exited)) => status = Some(exited),
                Ok(ChildEvent::OutputClosed | ChildEvent::Input(Ok(()))) => {}
                Ok(ChildEvent::Input(Err(_))) => pending = None,
                Err(_) => {
                    child.kill();
                    child.reap().await;
                    break;
                }
            },
            item = input.recv(), if pending.is_none() && input_open => match item {
                Some(JobInput::Data(bytes)) => {
                    if child.input_open() {
                        pending = Some(bytes);
                    }
                }
                Some(JobInput::Resize(rows, cols)) => child.resize(rows, cols),
                Some(JobInput::End) | None => {
                    input_open = false;
                    child.end_input();
                }
            },
            () = sleep_until(start.deadline), if start.deadline.is_some() && !timed_out => {
                timed_out = true;
                child.kill();
            }
            () = sleep_until(linger), if linger.is_some() && !killed => {
                killed = true;
                child.kill();
            }
            () = shutdown.cancelled(), if !killed => {
                killed = true;
                child.kill();
            }
            _ = linger_until.changed() => {}
        }
    }
    child.disarm();
    drop(start.slot);
    let (exit_code, signal) = status.map(process::describe).unwrap_or((None, None));
    job.state().end = Some(ExecEnd {
        exit_code,
        signal,
        timed_out,
    });
    job.changed.notify_waiters();
    // The end waits for a follower, as long as the linger allows.
    loop {
        let linger = *linger_until.borrow_and_update();
        tokio::select! {
            () = job.collected.cancelled() => break,
            () = shutdown.cancelled() => break,
            () = sleep_until(linger), if linger.is_some() => break,
            _ = linger_until.changed() => {}
        }
    }
    jobs.remove(&job.id);
}

/// Follows `job` on `conn`: answers `reply`, then sends its output from
/// `pos` and passes the client's stdin on, until the end frame (then the
/// job is done) or the connection fails (then the job lingers).
async fn follow<S: ByteStream>(
    conn: &mut Connection<S>,
    job: &Arc<Job>,
    jobs: &Jobs,
    mut pos: [u64; 2],
    reply: crate::protocol::Header,
) -> Result<Outcome, ConnectionError> {
    let (id, stop) = job.take_over();
    let followed = async {
        conn.send(reply, Bytes::new()).await?;
        let (reader, writer) = conn.split();
        let old_timeout = writer.set_timeout(limits::STALLED_CLIENT_TIMEOUT);
        let mut cursor = 0u64;
        let mut body_left = 0u64;
        let mut client_done = false;
        let mut pending: Option<JobInput> = None;
        let end = loop {
            tokio::select! {
                () = stop.cancelled() => {
                    return Err(ConnectionError::Unexpected(
                        "the job was attached from another connection".into(),
                    ));
                }
                next = job.next_output(pos, cursor) => match next {
                    Next::Data { seq, channel, offset, bytes } => {
                        cursor = seq;
                        let len = bytes.len() as u64;
                        let mut header = StreamFrame::data_header(CHANNELS[channel], 0);
                        header.insert("offset", offset);
                        writer.send(header, bytes).await?;
                        pos[channel] = offset + len;
                    }
                    Next::End(end) => break end,
                },
                permit = job.input.reserve(), if pending.is_some() => {
                    if let (Ok(permit), Some(item)) = (permit, pending.take()) {
                        permit.send(item);
                    }
                }
                item = next_stdin(reader, body_left, client_done), if pending.is_none() => {
                    match item? {
                        StdinItem::Frame(size) => body_left = size,
                        StdinItem::Data { chunk, left } => {
                            body_left = left;
                            if !chunk.is_empty() {
                                pending = Some(JobInput::Data(chunk));
                            }
                        }
                        StdinItem::Resize { rows, cols } => {
                            pending = Some(JobInput::Resize(rows, cols));
                        }
                        StdinItem::Eof => {
                            client_done = true;
                            pending = Some(JobInput::End);
                        }
                    }
                }
            }
        };
        // What stdin is still queued goes to a command that has ended.
        conn.writer().set_timeout(old_timeout);
        finish(conn, &end, client_done).await
    };
    let followed = followed.await;
    match &followed {
        Ok(_) => {
            job.collected.cancel();
            jobs.remove(&job.id);
        }
        Err(_) => job.detach(id),
    }
    followed
}

/// Waits until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(bound: usize) -> JobState {
        JobState {
            chunks: VecDeque::new(),
            first_seq: 0,
            kept: 0,
            bound,
            written: [0, 0],
            end: None,
            follower: None,
            followers: 0,
        }
    }

    /// Everything `state` has past `pos`, as `channel@offset:text`.
    fn drain(state: &JobState, mut pos: [u64; 2]) -> Vec<String> {
        let mut cursor = 0;
        let mut got = Vec::new();
        while let Some((seq, channel, offset, bytes)) = state.next_after(pos, cursor) {
            got.push(format!(
                "{}@{offset}:{}",
                CHANNELS[channel],
                String::from_utf8_lossy(&bytes)
            ));
            pos[channel] = offset + bytes.len() as u64;
            cursor = seq;
        }
        got
    }

    #[test]
    fn output_resumes_from_each_streams_offset_in_the_order_it_was_printed() {
        let mut state = state(1 << 20);
        state.record(0, Bytes::from_static(b"hello "));
        state.record(1, Bytes::from_static(b"oops"));
        state.record(0, Bytes::from_static(b"world"));
        assert_eq!(
            drain(&state, [0, 0]),
            ["stdout@0:hello ", "stderr@0:oops", "stdout@6:world"]
        );
        // A client that printed "hel" and all of stderr gets the rest once.
        assert_eq!(drain(&state, [3, 4]), ["stdout@3:lo ", "stdout@6:world"]);
        assert!(drain(&state, [11, 4]).is_empty());
    }

    #[test]
    fn offsets_past_what_was_printed_get_nothing_until_output_reaches_them() {
        let mut state = state(1 << 20);
        state.record(0, Bytes::from_static(b"abc"));
        assert!(drain(&state, [u64::MAX, u64::MAX]).is_empty());
        assert!(drain(&state, [10, 0]).is_empty());
        state.record(0, Bytes::from_static(b"defghijklmn"));
        assert_eq!(drain(&state, [10, 0]), ["stdout@10:klmn"]);
    }

    #[test]
    fn past_the_bound_the_oldest_goes_and_the_offsets_show_the_gap() {
        let bound = 2 * (4 + CHUNK_OVERHEAD_BYTES);
        let mut state = state(bound);
        for chunk in [&b"aaaa"[..], b"bbbb", b"cccc"] {
            state.record(0, Bytes::copy_from_slice(chunk));
        }
        assert!(state.kept <= bound);
        assert_eq!(drain(&state, [0, 0]), ["stdout@4:bbbb", "stdout@8:cccc"]);
    }

    #[test]
    fn the_newest_output_is_kept_even_over_the_bound() {
        let mut state = state(16);
        state.record(0, Bytes::from(vec![b'x'; 100]));
        state.record(1, Bytes::from_static(b"last"));
        assert_eq!(drain(&state, [0, 0]), ["stderr@0:last"]);
    }

    #[test]
    fn a_linger_must_be_positive_and_at_most_the_cap() {
        assert_eq!(linger(None), Ok(limits::DEFAULT_JOB_LINGER));
        assert_eq!(linger(Some(2.5)), Ok(Duration::from_millis(2500)));
        let too_long = limits::MAX_JOB_LINGER.as_secs_f64() + 1.0;
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, too_long] {
            assert!(linger(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_ids_are_128_random_bits() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
