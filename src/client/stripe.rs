//! The client's side of a striped transfer: how many streams to ask for,
//! and the extra connections that carry the big files' ranges beside the
//! first one (PROTOCOL.md, "Striping").
//!
//! An extra connection that cannot join (the server is at its connection
//! limit, the ticket ran out) costs only its share of speed: the ranges are
//! taken from one queue by whichever streams are up. Ranges that never
//! arrive leave their file failed and its verified ranges kept, so running
//! the transfer again continues from them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tracing::debug;

use super::{Client, ClientOptions};
use crate::engine::manifest::Manifest;
use crate::engine::transfer::{
    self, Direction, Progress, RangeSender, ReceivePlan, ReceiveSummary, SendSummary,
    StripeReceiver, TransferError, Wants,
};
use crate::engine::wire::Want;
use crate::limits::MAX_STREAMS;

/// Round trips shorter than this are a LAN's: one stream fills the link.
const ONE_STREAM_BELOW: Duration = Duration::from_millis(5);

/// Round trip worth one more stream: at 50 ms a get opens 8. Each new
/// stream starts slow (TCP's initial window), so the more of them, the
/// sooner together they fill a long fat link; bench/wan.sh measured 3, 5
/// and 8 streams at 50 ms and 1 Gbit/s, and 8 came nearest four parallel
/// raw streams (bench/RESULTS.md, "Over a long link").
const RTT_PER_STREAM: Duration = Duration::from_millis(6);

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

    /// Starts opening a get's `streams` extra connections with `ticket`,
    /// while the transfer plans: they are up by the time its wants go out.
    pub(super) fn open_extra(&self, ticket: &str, streams: u32) -> Joining {
        let (options, ticket) = (self.options.clone(), ticket.to_string());
        tokio::spawn(async move {
            join_all((0..streams).map(|_| Client::join(&options, &ticket))).await
        })
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
            tokio::spawn(async move {
                for client in joining.await.into_iter().flatten().flatten() {
                    client.close().await;
                }
            });
            let conn = self.connection();
            return transfer::receive_wanted(conn, Direction::Get, plan, wants, progress).await;
        }
        progress.begin(wants.bytes_wanted);
        transfer::send_wants(self.connection().writer(), Direction::Get, &mut wants).await?;
        let first = plan.receive(self.connection().reader(), progress);
        let extra = async {
            let joined = joining.await.unwrap_or_default();
            let streams = joined.into_iter();
            join_all(streams.map(|client| receive_on_extra(client, &stripes, progress))).await
        };
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
        progress: &dyn Progress,
    ) -> Result<SendSummary, TransferError> {
        let options = self.options.clone();
        let streams = streams.min(ranges.ranges_left() as u32).max(1);
        let cut = std::sync::Mutex::new(None);
        let extra = async {
            let cuts =
                join_all((0..streams).map(|_| send_on_extra(&options, ticket, &ranges, progress)))
                    .await;
            *cut.lock().unwrap_or_else(|p| p.into_inner()) = cuts.into_iter().flatten().next();
        };
        let conn = self.connection();
        let sent = transfer::send_wanted_alongside(conn, (manifest, wants), progress, extra).await;
        self.stripe_cut = cut.into_inner().unwrap_or_else(|p| p.into_inner());
        sent
    }
}

/// A get's extra connections being opened.
pub(super) type Joining = tokio::task::JoinHandle<Vec<Result<Client, crate::error::Error>>>;

/// One extra connection of a get: receives ranges until the server ends
/// them, closes. A failure is the files' to report, not the stream's; a
/// cut is returned, for a retry.
async fn receive_on_extra(
    joined: Result<Client, crate::error::Error>,
    stripes: &StripeReceiver,
    progress: &dyn Progress,
) -> Option<crate::error::Error> {
    match joined {
        Ok(mut client) => {
            let received = stripes
                .receive(client.connection().reader(), progress)
                .await;
            client.close().await;
            let err = crate::error::Error::from(received.err()?);
            debug!("an extra stream stopped: {err}");
            super::retry::is_cut(&err).then_some(err)
        }
        Err(err) => {
            debug!("an extra stream could not join: {err}");
            super::retry::is_cut(&err).then_some(err)
        }
    }
}

/// One extra connection of a put: joins, sends ranges until none is left,
/// closes; a cut is returned, for a retry.
async fn send_on_extra(
    options: &ClientOptions,
    ticket: &str,
    ranges: &Arc<RangeSender>,
    progress: &dyn Progress,
) -> Option<crate::error::Error> {
    match Client::join(options, ticket).await {
        Ok(mut client) => {
            let sent = ranges.send(client.connection().writer(), progress).await;
            client.close().await;
            let err = crate::error::Error::from(sent.err()?);
            debug!("an extra stream stopped: {err}");
            super::retry::is_cut(&err).then_some(err)
        }
        Err(err) => {
            debug!("an extra stream could not join: {err}");
            super::retry::is_cut(&err).then_some(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
