//! The client's side of a striped transfer: how many streams to ask for,
//! and the extra connections that carry the big files' ranges beside the
//! first one (PROTOCOL.md, "Striping").
//!
//! When the streams were chosen automatically, ranges flow on one or two
//! extra connections first; the others join held, and go only once the
//! first ones' rate says the link can use them (`ramp.rs`), else they
//! close.
//!
//! An extra connection that cannot join (the server is at its connection
//! limit, the ticket ran out) costs only its share of speed: the ranges are
//! taken from one queue by whichever streams are up. Ranges that never
//! arrive leave their file failed and its verified ranges kept, so running
//! the transfer again continues from them.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use tracing::debug;

use super::ramp::{End, Ramp, MAX_MEASURING};
use super::{Client, ClientOptions, Joins};
use crate::engine::manifest::Manifest;
use crate::engine::transfer::{
    self, Direction, Progress, RangeSender, ReceivePlan, ReceiveSummary, SendSummary,
    StripeReceiver, TransferError, TransferEvent, Wants,
};
use crate::engine::wire::Want;
use crate::limits::MAX_STREAMS;
use crate::services::files::stripe::Go;

/// Round trips shorter than this are a LAN's: one stream fills the link.
const ONE_STREAM_BELOW: Duration = Duration::from_millis(5);

/// Round trip worth one more stream: at 50 ms a get opens 8. Each new
/// stream starts slow (TCP's initial window), so the more of them, the
/// sooner together they fill a long fat link; bench/wan.sh measured 3, 5
/// and 8 streams at 50 ms and 1 Gbit/s, and 8 came nearest four parallel
/// raw streams (bench/RESULTS.md, "Over a long link").
const RTT_PER_STREAM: Duration = Duration::from_millis(6);

/// Streams a get's ranges start on before its ramp decides about the
/// others: two carry a fast link's first round trips twice as fast as one
/// and find its rate a round trip sooner, and on a link one stream fills
/// they cost about nothing (bench/RESULTS.md, "Ramping up"). A put's ramp,
/// which can only trust its rate once it stops growing, starts on one.
const FIRST_STREAMS: u32 = 2;

/// How many streams a transfer asks for when `--streams` is not given,
/// from the round trip of the hello exchange. A TCP stream moves at most
/// one window per round trip (with 4 MiB windows, 80 MB/s at 50 ms), so
/// the longer the round trip, the more streams a fast link needs; on this
/// machine, or under 5 ms, one stream already fills it and more would only
/// cost connections. So: 1 when `local` or under 5 ms, else one stream per
/// 6 ms of round trip, at least 2 and at most [`MAX_STREAMS`]. Only files
/// of [`STRIPE_MIN_BYTES`](crate::engine::ranges::STRIPE_MIN_BYTES) and
/// more are spread; the rest keep to the first stream.
pub fn auto_streams(hello_rtt: Duration, local: bool) -> u32 {
    if local || hello_rtt < ONE_STREAM_BELOW {
        return 1;
    }
    let streams = hello_rtt.as_millis() / RTT_PER_STREAM.as_millis();
    (streams as u32).clamp(2, MAX_STREAMS)
}

impl Client {
    /// The streams a transfer asks for: `requested` (at most
    /// [`MAX_STREAMS`]), or [`auto_streams`]'s choice.
    pub(super) fn streams_for(&self, requested: Option<u32>) -> u32 {
        match requested {
            Some(streams) => streams.clamp(1, MAX_STREAMS),
            None => auto_streams(self.hello_rtt, self.local),
        }
    }

    /// How the streams of a transfer that asked for `requested` and gets
    /// `streams` start: all at once when the user asked for them; else
    /// ranges flow on the first (two for a get), and the others, joined
    /// held, go only if their rate, measured at `end`, says the link can
    /// use them.
    pub(super) fn ramp_for(&self, requested: Option<u32>, streams: u32, end: End) -> Option<Ramp> {
        (requested.is_none() && streams > 1).then(|| Ramp::new(self.hello_rtt, end))
    }

    /// Starts opening a get's extra connections with `ticket`, while the
    /// transfer plans: they are up by the time its wants go out. With a
    /// `ramp`, all but [`FIRST_STREAMS`] are held until it decides.
    pub(super) fn open_extra(&self, ticket: &str, streams: u32, ramp: Option<Ramp>) -> Joining {
        Joining::start(&self.options, ticket, (streams, FIRST_STREAMS), ramp)
    }

    /// Receives a get's data: the small files on this connection, the
    /// striped ones over the extra connections `joining` opens; then
    /// settles the striped files.
    pub(super) async fn receive_striped(
        &mut self,
        (plan, mut wants): (ReceivePlan, Wants),
        joining: Joining,
        progress: &dyn Progress,
        list_files: bool,
    ) -> Result<(Wants, ReceiveSummary), TransferError> {
        let stripes = Arc::new(plan.stripes());
        if stripes.is_empty() {
            // Told there is nothing for them, the server ends them.
            tokio::spawn(joining.close());
            let conn = self.connection();
            return transfer::receive_wanted(conn, Direction::Get, plan, wants, progress).await;
        }
        progress.begin(wants.bytes_wanted);
        transfer::send_wants(self.connection().writer(), Direction::Get, &mut wants).await?;
        let first = plan.receive(self.connection().reader(), progress);
        let counted = Counted::new(progress);
        let extra = joining.run(&counted, |client, go| {
            receive_on_extra(client, &stripes, &counted, go)
        });
        let (first, cuts) = tokio::join!(first, extra);
        self.stripe_cut = cuts.into_iter().flatten().next();
        let mut summary = first?;
        let summary = tokio::task::spawn_blocking(move || {
            stripes.finish(&mut summary, list_files);
            summary
        })
        .await
        .map_err(|err| TransferError::Protocol(format!("settling ranges failed: {err}")))?;
        Ok((wants, summary))
    }

    /// Sends a put's data: the small files on this connection, the ranges
    /// of `ranges` over up to `streams` extra connections let in by
    /// `ticket`; this connection's end frame goes once they are done.
    pub(super) async fn send_striped(
        &mut self,
        (manifest, wants): (Arc<Manifest>, Vec<Want>),
        (ticket, streams, ranges): (&str, u32, Arc<RangeSender>),
        ramp: Option<Ramp>,
        progress: &dyn Progress,
    ) -> Result<SendSummary, TransferError> {
        let streams = streams.min(ranges.ranges_left() as u32).max(1);
        let joining = Joining::start(&self.options, ticket, (streams, 1), ramp);
        let cut = std::sync::Mutex::new(None);
        let counted = Counted::new(progress);
        let extra = async {
            let send = |client, go| send_on_extra(client, &ranges, &counted, go);
            let cuts = joining.run(&counted, send).await;
            *cut.lock().unwrap_or_else(|p| p.into_inner()) = cuts.into_iter().flatten().next();
        };
        let conn = self.connection();
        let sent = transfer::send_wanted_alongside(conn, (manifest, wants), progress, extra).await;
        self.stripe_cut = cut.into_inner().unwrap_or_else(|p| p.into_inner());
        sent
    }
}

/// Extra connections as they joined, or why they could not.
type Extra = Vec<Result<Client, crate::error::Error>>;

/// A transfer's extra connections being opened: those that carry ranges
/// at once, and those held until the ramp decides.
pub(super) struct Joining {
    opened: tokio::task::JoinHandle<Extra>,
    held: tokio::task::JoinHandle<Extra>,
    ramp: Option<Ramp>,
}

impl Joining {
    /// Starts joining `streams` extra connections with `ticket`: all at
    /// once without a `ramp`, else `first` of them, the others held.
    fn start(
        options: &ClientOptions,
        ticket: &str,
        (streams, first): (u32, u32),
        ramp: Option<Ramp>,
    ) -> Joining {
        let ramp = ramp.filter(|_| streams > first);
        let now = if ramp.is_some() { first } else { streams };
        Joining {
            opened: join_extra(options, ticket, now, false),
            held: join_extra(options, ticket, streams - now, true),
            ramp,
        }
    }

    /// Runs `work` on each connection opened at once and, if the ramp
    /// says the link can use them, on the held ones (told to go); else
    /// closes those. Each stream's cut, for a retry.
    async fn run<W, F>(self, counted: &Counted<'_>, work: W) -> Vec<Option<crate::error::Error>>
    where
        W: Fn(Result<Client, crate::error::Error>, bool) -> F,
        F: Future<Output = Option<crate::error::Error>>,
    {
        let Joining { opened, held, ramp } = self;
        let work = &work;
        let opened = async {
            let joined = opened.await.unwrap_or_default();
            join_all(joined.into_iter().map(|client| work(client, false))).await
        };
        let more = |go| async move {
            let held = held.await.unwrap_or_default();
            if go {
                join_all(held.into_iter().map(|client| work(client, true))).await
            } else {
                join_all(held.into_iter().flatten().map(Client::close)).await;
                Vec::new()
            }
        };
        ramp_up(opened, ramp, counted, more).await
    }

    /// Closes every connection as it joins: the transfer has no ranges
    /// for them (the server ends them too).
    async fn close(self) {
        let (opened, held) = tokio::join!(self.opened, self.held);
        for client in opened.into_iter().chain(held).flatten().flatten() {
            client.close().await;
        }
    }
}

/// Starts joining `count` extra connections with `ticket`, `hold`ing them
/// if asked.
fn join_extra(
    options: &ClientOptions,
    ticket: &str,
    count: u32,
    hold: bool,
) -> tokio::task::JoinHandle<Extra> {
    let (options, ticket) = (options.clone(), ticket.to_string());
    tokio::spawn(async move {
        let joins = Joins {
            ticket: &ticket,
            hold,
        };
        join_all((0..count).map(|_| Client::join(&options, joins))).await
    })
}

/// Runs the extra streams opened at once (`first`); with a `ramp`,
/// measures their rate (`counted`) and, once it decides, `more(true)`
/// beside them if the link can use the held ones, else `more(false)`. Each
/// stream's cut, for a retry.
async fn ramp_up<F, M>(
    first: F,
    ramp: Option<Ramp>,
    counted: &Counted<'_>,
    more: impl FnOnce(bool) -> M,
) -> Vec<Option<crate::error::Error>>
where
    F: Future<Output = Vec<Option<crate::error::Error>>>,
    M: Future<Output = Vec<Option<crate::error::Error>>>,
{
    let Some(mut ramp) = ramp else {
        let (mut cuts, more) = tokio::join!(first, more(false));
        cuts.extend(more);
        return cuts;
    };
    tokio::pin!(first);
    let go = tokio::select! {
        mut done = &mut first => {
            done.extend(more(false).await);
            return done;
        }
        go = measure(&mut ramp, counted) => go,
    };
    if go {
        debug!("striping: the first streams are held back by their windows; the others go too");
    } else {
        debug!("striping: the first streams are enough for this link");
    }
    let (mut cuts, more) = tokio::join!(first, more(go));
    cuts.extend(more);
    cuts
}

/// Feeds `ramp` the bytes moved every interval until it decides, or
/// [`MAX_MEASURING`] passed.
async fn measure(ramp: &mut Ramp, counted: &Counted<'_>) -> bool {
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(ramp.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let at = start.elapsed();
        if let Some(more) = ramp.observe(at, counted.moved.load(Ordering::Relaxed)) {
            return more;
        }
        if at >= MAX_MEASURING {
            return false;
        }
    }
}

/// A transfer's progress, counting the bytes the extra streams move.
struct Counted<'a> {
    inner: &'a dyn Progress,
    moved: AtomicU64,
}

impl<'a> Counted<'a> {
    fn new(inner: &'a dyn Progress) -> Counted<'a> {
        Counted {
            inner,
            moved: AtomicU64::new(0),
        }
    }
}

impl Progress for Counted<'_> {
    fn begin(&self, total_bytes: u64) {
        self.inner.begin(total_bytes);
    }

    fn file_started(&self, path: &[u8], size: u64) {
        self.inner.file_started(path, size);
    }

    fn advanced(&self, bytes: u64) {
        self.moved.fetch_add(bytes, Ordering::Relaxed);
        self.inner.advanced(bytes);
    }

    fn delay_for(&self, bytes: u64) -> Option<Duration> {
        self.inner.delay_for(bytes)
    }

    fn event(&self, event: &TransferEvent) {
        self.inner.event(event);
    }
}

/// One extra connection of a get: receives ranges until the server ends
/// them. A failure is the files' to report, not the stream's; a cut is
/// returned, for a retry.
async fn receive_on_extra(
    joined: Result<Client, crate::error::Error>,
    stripes: &StripeReceiver,
    progress: &dyn Progress,
    go: bool,
) -> Option<crate::error::Error> {
    on_extra(joined, go, async |client: &mut Client| {
        let reader = client.connection().reader();
        stripes.receive(reader, progress).await
    })
    .await
}

/// One extra connection of a put: sends ranges until none is left; a cut
/// is returned, for a retry.
async fn send_on_extra(
    joined: Result<Client, crate::error::Error>,
    ranges: &Arc<RangeSender>,
    progress: &dyn Progress,
    go: bool,
) -> Option<crate::error::Error> {
    on_extra(joined, go, async |client: &mut Client| {
        ranges.send(client.connection().writer(), progress).await
    })
    .await
}

/// Runs `work` on an extra connection that `joined` (first telling a held
/// one to go, when `go`), and closes it; a cut is returned, for a retry.
async fn on_extra(
    joined: Result<Client, crate::error::Error>,
    go: bool,
    work: impl AsyncFnOnce(&mut Client) -> Result<(), TransferError>,
) -> Option<crate::error::Error> {
    let mut client = match joined {
        Ok(client) => client,
        Err(err) => {
            debug!("an extra stream could not join: {err}");
            return super::retry::is_cut(&err).then_some(err);
        }
    };
    let worked = match say_go(&mut client, go).await {
        Ok(()) => work(&mut client).await.map_err(crate::error::Error::from),
        Err(err) => Err(err),
    };
    client.close().await;
    let err = worked.err()?;
    debug!("an extra stream stopped: {err}");
    super::retry::is_cut(&err).then_some(err)
}

/// Tells a held connection to go, when `go`.
async fn say_go(client: &mut Client, go: bool) -> Result<(), crate::error::Error> {
    if go {
        client.connection().send(Go::header(), Bytes::new()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transfer::NoProgress;
    use std::sync::atomic::AtomicU32;

    /// A stream that moves `rate_mb` MB/s for `secs`, in steps of 10 ms.
    async fn stream_at(
        counted: &Counted<'_>,
        rate_mb: f64,
        secs: f64,
    ) -> Vec<Option<crate::error::Error>> {
        let step = Duration::from_millis(10);
        for _ in 0..(secs / step.as_secs_f64()) as u32 {
            tokio::time::sleep(step).await;
            counted.advanced((rate_mb * 1e6 * step.as_secs_f64()) as u64);
        }
        vec![None]
    }

    /// Streams run by [`ramp_up`] for a first stream at `rate_mb` for
    /// `secs`, at 50 ms, with 7 more held.
    async fn streams_run(rate_mb: f64, secs: f64) -> usize {
        let counted = Counted::new(&NoProgress);
        let (went, declined) = (AtomicU32::new(0), AtomicU32::new(0));
        let ramp = Some(Ramp::new(Duration::from_millis(50), End::Receiving));
        let more = |go| {
            match go {
                true => went.fetch_add(7, Ordering::Relaxed),
                false => declined.fetch_add(7, Ordering::Relaxed),
            };
            async move { (0..if go { 7 } else { 0 }).map(|_| None).collect() }
        };
        let cuts = ramp_up(stream_at(&counted, rate_mb, secs), ramp, &counted, more).await;
        let (went, declined) = (went.into_inner(), declined.into_inner());
        assert_eq!(
            went + declined,
            7,
            "the held streams go or are declined, once"
        );
        assert_eq!(cuts.len() as u32, 1 + went);
        cuts.len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_stream_held_back_by_its_window_brings_the_rest() {
        assert_eq!(streams_run(80.0, 3.0).await, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_stream_that_fills_a_slow_link_stays_alone() {
        assert_eq!(streams_run(10.0, 3.0).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transfer_done_before_the_link_is_measured_opens_nothing_more() {
        assert_eq!(streams_run(80.0, 0.05).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn streams_the_user_asked_for_are_all_opened_at_once_without_measuring() {
        let counted = Counted::new(&NoProgress);
        let more = |go: bool| async move {
            assert!(!go, "nothing is held");
            Vec::new()
        };
        let first = async { (0..4).map(|_| None).collect() };
        assert_eq!(ramp_up(first, None, &counted, more).await.len(), 4);
    }

    #[test]
    fn one_stream_on_this_machine_or_a_lan_and_more_the_longer_the_round_trip() {
        let ms = Duration::from_millis;
        assert_eq!(auto_streams(ms(50), true), 1, "loopback");
        assert_eq!(auto_streams(Duration::from_micros(300), false), 1);
        assert_eq!(auto_streams(ms(4), false), 1);
        assert_eq!(auto_streams(ms(5), false), 2);
        assert_eq!(auto_streams(ms(10), false), 2);
        assert_eq!(auto_streams(ms(30), false), 5);
        assert_eq!(auto_streams(ms(50), false), MAX_STREAMS);
        assert_eq!(auto_streams(ms(100), false), MAX_STREAMS);
        assert_eq!(auto_streams(Duration::from_secs(3), false), MAX_STREAMS);
    }
}
