//! Whether a striped transfer's automatic streams are worth using, from
//! the rate its first streams reach.
//!
//! More streams help a long link only while one stream is held back by its
//! window: a TCP stream moves at most one window per round trip. On a link
//! slower than that, several streams only share its rate and its losses,
//! and the file waits for the slowest one's last 4 MiB range; at 50 ms,
//! 100 Mbit/s and 1% loss the eight streams the round trip asks for took
//! 1.27x one stream's time (bench/RESULTS.md). So a transfer that chose its
//! streams itself sends ranges on one or two and holds the others, and
//! measures them: as soon as they move a good part of what a window per
//! round trip allows (and more than a link one stream fills), a window
//! holds them back and the others go; if their rate stops growing below
//! that (slow start doubles it every round trip until the link or the
//! window stops it), the link does, and they stay alone.
//!
//! Pure arithmetic over the bytes moved and the times given: no clock, no
//! IO (`stripe.rs` feeds it).

use std::time::Duration;

/// A TCP window as Linux caps it by default (`tcp_wmem`'s largest): a
/// stream moves at most this much per round trip.
const WINDOW_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

/// The share of a window per round trip above which one stream is taken
/// to be held back by its window, not by the link: a sixth, 14 MB/s at 50
/// ms, above what a 100 Mbit/s link carries and below what one stream
/// reaches on a 1 Gbit/s one.
const WINDOW_SHARE: f64 = 1.0 / 6.0;

/// The rate one stream must reach however long the round trip, in bytes
/// per second (14 MB/s, a sixth of a window per 50 ms). Below it the link
/// is one a single stream fills, and striping only costs: each 4 MiB range
/// crawls at an eighth of the link and the last ones keep the file waiting
/// (at 100 ms, 100 Mbit/s and 1% loss eight streams took 1.15x one stream's
/// time in bench/RESULTS.md, "Ramping up").
const MIN_RATE: f64 = WINDOW_SHARE * WINDOW_BYTES / 0.050;

/// Growth between two measurements below which the rate has stopped
/// growing.
const GROWTH: f64 = 1.25;

/// The shortest measurement: a round trip (two for a sender), but at least
/// this (twice this). A receiver's go is taken over three measurements,
/// long enough that the pieces bytes arrive in are not noise (over two, a
/// burst on a 100 Mbit/s link passed for a fast one), short enough that a
/// fast link is seen early.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How long the first stream is measured at most: one that has neither
/// reached a sixth of a window per round trip nor stopped growing by then
/// is on a link it can fill alone, and the held streams are closed.
pub const MAX_MEASURING: Duration = Duration::from_secs(4);

/// Which end of the streams the measuring client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It receives (a get): bytes are counted as they arrive, at the
    /// link's rate, and the rest go as soon as the rate is high enough.
    Receiving,
    /// It sends (a put): bytes are counted as its socket takes them, ahead
    /// of the link by as much as the socket buffers while the window grows.
    /// So the rate decides only once it stopped growing, and over
    /// measurements of two round trips.
    Sending,
}

/// Measures the first stream's rate, and decides once.
#[derive(Debug)]
pub struct Ramp {
    end: End,
    round_trip: Duration,
    interval: Duration,
    /// The start of the measurement under way: when (since any fixed
    /// moment), and the bytes moved by then.
    mark: Option<(Duration, u64)>,
    /// The last measurements' rates in bytes per second, newest last.
    rates: Vec<f64>,
}

impl Ramp {
    /// For a link with this round trip (the hello's), measured at `end`.
    pub fn new(round_trip: Duration, end: End) -> Ramp {
        let round_trips = match end {
            End::Receiving => 1,
            End::Sending => 2,
        };
        Ramp {
            end,
            round_trip,
            interval: (round_trips * round_trip).max(round_trips * MIN_INTERVAL),
            mark: None,
            rates: Vec::new(),
        }
    }

    /// How often [`Ramp::observe`] wants to be told.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Records that `moved` bytes in all had moved at `at` (since any fixed
    /// moment; called about every [`Ramp::interval`]; the first call with
    /// bytes moved starts the clock). Receiving, `Some(true)` as soon as
    /// the rate over the last three measurements reaches a sixth of a window
    /// per round trip (the rest of the streams would help). Once the rate
    /// stopped growing (two measurements in a row under 1.25x the one
    /// before), `Some` of whether it reached that.
    pub fn observe(&mut self, at: Duration, moved: u64) -> Option<bool> {
        let Some((then_at, then)) = self.mark else {
            if moved > 0 {
                self.mark = Some((at, moved));
            }
            return None;
        };
        let elapsed = at.saturating_sub(then_at);
        if elapsed.is_zero() {
            return None;
        }
        self.mark = Some((at, moved));
        self.rates
            .push(moved.saturating_sub(then) as f64 / elapsed.as_secs_f64());
        if self.rates.len() > 3 {
            self.rates.remove(0);
        }
        match self.rates[..] {
            [a, b, c] if self.end == End::Receiving && self.more_help((a + b + c) / 3.0) => {
                Some(true)
            }
            [a, b, c] if b < GROWTH * a && c < GROWTH * b => Some(self.more_help((b + c) / 2.0)),
            _ => None,
        }
    }

    /// Whether one stream at `rate` is held back by its window.
    fn more_help(&self, rate: f64) -> bool {
        rate >= MIN_RATE && rate * self.round_trip.as_secs_f64() >= WINDOW_SHARE * WINDOW_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1_000_000.0;

    /// The decision after one stream moved at these rates (MB/s), a
    /// measurement interval each, starting from its first byte.
    fn measured_at(end: End, round_trip_ms: u64, rates_mb: &[f64]) -> (Ramp, Option<bool>) {
        let mut ramp = Ramp::new(Duration::from_millis(round_trip_ms), end);
        let step = ramp.interval;
        assert_eq!(
            ramp.observe(Duration::ZERO, 0),
            None,
            "nothing moved: no clock yet"
        );
        let mut moved = 1u64;
        let mut at = step;
        let mut decided = ramp.observe(at, moved);
        for rate in rates_mb {
            moved += (rate * MB * step.as_secs_f64()) as u64;
            at += step;
            decided = ramp.observe(at, moved);
            if decided.is_some() {
                break;
            }
        }
        (ramp, decided)
    }

    fn measured(round_trip_ms: u64, rates_mb: &[f64]) -> (Ramp, Option<bool>) {
        measured_at(End::Receiving, round_trip_ms, rates_mb)
    }

    #[test]
    fn a_sender_decides_only_once_the_rate_stops_growing() {
        // A put's socket takes bytes ahead of a 100 Mbit/s link while its
        // buffer grows: only the plateau is the link's rate.
        let (_, decided) = measured_at(End::Sending, 50, &[1.0, 6.0, 18.0, 12.0, 12.0, 11.8]);
        assert_eq!(decided, Some(false));
        let (_, decided) = measured_at(End::Sending, 50, &[2.0, 16.0, 60.0, 80.0, 82.0, 81.0]);
        assert_eq!(decided, Some(true));
        assert_eq!(
            Ramp::new(Duration::from_millis(50), End::Sending).interval(),
            Duration::from_millis(100)
        );
        assert_eq!(
            Ramp::new(Duration::from_millis(10), End::Sending).interval(),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_link_that_one_stream_fills_gets_no_more() {
        // 100 Mbit/s at 50 ms, with slow start first.
        let (_, decided) = measured(50, &[0.5, 3.0, 10.0, 11.5, 11.0, 11.8]);
        assert_eq!(decided, Some(false));
    }

    #[test]
    fn a_stream_held_back_by_its_window_gets_the_rest_as_soon_as_that_shows() {
        // 1 Gbit/s at 50 ms: one stream in slow start passes 14 MB/s (a
        // sixth of a window per round trip) on its way to 80.
        let (ramp, decided) = measured(50, &[2.0, 8.0, 16.0, 32.0, 64.0, 80.0]);
        assert_eq!(decided, Some(true));
        assert_eq!(ramp.rates, [8.0e6, 16.0e6, 32.0e6], "decided on 16 and 32");
        // At 10 ms a sixth of a window is 70 MB/s.
        let (_, decided) = measured(10, &[20.0, 40.0, 60.0, 64.0, 66.0]);
        assert_eq!(decided, Some(false));
        let (_, decided) = measured(10, &[20.0, 40.0, 80.0, 100.0]);
        assert_eq!(decided, Some(true));
    }

    #[test]
    fn a_long_round_trip_still_needs_more_than_a_100_mbit_link_to_stripe() {
        // At 100 ms a sixth of a window is 7 MB/s, but a 100 Mbit/s link
        // that one stream fills is no place for eight.
        let (_, decided) = measured(100, &[1.0, 4.0, 8.0, 11.0, 11.5, 11.0]);
        assert_eq!(decided, Some(false));
        let (_, decided) = measured(100, &[1.0, 4.0, 8.0, 16.0, 32.0]);
        assert_eq!(decided, Some(true));
    }

    #[test]
    fn one_burst_does_not_open_the_rest() {
        // A 100 Mbit/s link whose bytes arrive unevenly: two measurements
        // in a row average 14.5 MB/s, three never pass 13.
        let (_, decided) = measured(50, &[1.0, 4.0, 11.0, 18.0, 10.0, 11.0]);
        assert_eq!(decided, Some(false));
    }

    #[test]
    fn nothing_is_decided_while_the_rate_still_grows() {
        let (_, decided) = measured(50, &[0.5, 1.0, 2.0, 4.0, 8.0]);
        assert_eq!(decided, None);
        // One flat measurement is not yet a plateau; two are.
        let (_, decided) = measured(50, &[1.0, 4.0, 8.0, 9.0]);
        assert_eq!(decided, None);
        let (_, decided) = measured(50, &[1.0, 4.0, 8.0, 9.0, 9.5]);
        assert_eq!(decided, Some(false));
    }

    #[test]
    fn a_measurement_lasts_a_round_trip_and_at_least_50_ms() {
        let interval = |ms| Ramp::new(Duration::from_millis(ms), End::Receiving).interval();
        assert_eq!(interval(10), MIN_INTERVAL);
        assert_eq!(interval(100), Duration::from_millis(100));
    }

    #[test]
    fn rates_are_measured_over_the_time_that_passed() {
        let mut ramp = Ramp::new(Duration::from_millis(50), End::Receiving);
        let ms = Duration::from_millis;
        assert_eq!(ramp.observe(ms(0), 1), None);
        assert_eq!(ramp.observe(ms(0), 5), None, "no time passed");
        assert_eq!(ramp.observe(ms(100), 1_000_001), None);
        assert_eq!(ramp.observe(ms(300), 3_000_001), None);
        assert_eq!(ramp.rates, [10_000_000.0, 10_000_000.0]);
    }
}
