//! Per-source token buckets, one set shared by every datagram service of a
//! server, so that a source (or a victim whose address is forged) gets a
//! burst of answers and then one a second, whichever services it asks. The
//! clock is the caller's: nothing here reads it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Per-source token buckets: each address may send [`RateLimit::new`]'s
/// `burst` requests at once and one every `interval` after that. Memory is
/// bounded by `max_sources`: sources whose bucket has refilled are
/// forgotten first (a full bucket and a forgotten one behave alike), then
/// the least recently seen.
#[derive(Debug)]
pub struct RateLimit {
    burst: f64,
    interval: Duration,
    max_sources: usize,
    sources: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    seen: Instant,
}

impl RateLimit {
    /// A limit of `burst` requests at once, then one per `interval`, for
    /// at most `max_sources` addresses remembered.
    pub fn new(burst: u32, interval: Duration, max_sources: usize) -> RateLimit {
        RateLimit {
            burst: f64::from(burst.max(1)),
            interval,
            max_sources: max_sources.max(1),
            sources: HashMap::new(),
        }
    }

    /// Records a request from `source` at `now`; true if it is over its
    /// rate.
    pub fn over(&mut self, source: IpAddr, now: Instant) -> bool {
        self.take(source, 1, now) == 0
    }

    /// Takes up to `wanted` tokens from `source`'s bucket at `now` and
    /// returns how many it had: a reply of many datagrams spends one each.
    pub fn take(&mut self, source: IpAddr, wanted: u32, now: Instant) -> u32 {
        if !self.sources.contains_key(&source) && self.sources.len() >= self.max_sources {
            self.make_room(now);
        }
        let burst = self.burst;
        let interval = self.interval.as_secs_f64();
        let bucket = self.sources.entry(source).or_insert(Bucket {
            tokens: burst,
            seen: now,
        });
        let elapsed = now.saturating_duration_since(bucket.seen).as_secs_f64();
        if interval > 0.0 {
            bucket.tokens = (bucket.tokens + elapsed / interval).min(burst);
        } else {
            bucket.tokens = burst;
        }
        bucket.seen = now;
        let taken = bucket.tokens.floor().min(f64::from(wanted)).max(0.0);
        bucket.tokens -= taken;
        taken as u32
    }

    /// Addresses remembered now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Forgets every source whose bucket is full again by `now`, which
    /// changes nothing it would answer and, under steady traffic, frees
    /// many places at once; if none is, forgets the least recently seen.
    fn make_room(&mut self, now: Instant) {
        let refill = self.interval.mul_f64(self.burst);
        self.sources
            .retain(|_, bucket| now.saturating_duration_since(bucket.seen) < refill);
        if self.sources.len() < self.max_sources {
            return;
        }
        if let Some(oldest) = self
            .sources
            .iter()
            .min_by_key(|(_, bucket)| bucket.seen)
            .map(|(ip, _)| *ip)
        {
            self.sources.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_one_per_interval() {
        let start = Instant::now();
        let mut limit = RateLimit::new(3, Duration::from_secs(2), 100);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(!limit.over(a, start));
        assert!(!limit.over(a, start));
        assert!(!limit.over(a, start));
        assert!(limit.over(a, start), "burst spent");
        assert!(!limit.over(b, start), "another source is not affected");
        assert!(!limit.over(a, start + Duration::from_secs(2)), "refilled");
        assert!(limit.over(a, start + Duration::from_secs(3)));
    }

    #[test]
    fn a_take_spends_what_the_bucket_has_and_no_more() {
        let start = Instant::now();
        let mut limit = RateLimit::new(5, Duration::from_secs(1), 100);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(limit.take(a, 3, start), 3);
        assert_eq!(limit.take(a, 3, start), 2, "only two were left");
        assert_eq!(limit.take(a, 3, start), 0);
        let later = start + Duration::from_millis(2500);
        assert_eq!(limit.take(a, 9, later), 2, "two whole tokens refilled");
        assert!(limit.over(a, later), "the half token is not one");
    }

    #[test]
    fn the_rate_limit_remembers_a_bounded_number_of_sources() {
        let start = Instant::now();
        let mut limit = RateLimit::new(1, Duration::from_secs(60), 10);
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            limit.over(ip, start + Duration::from_millis(u64::from(i)));
            assert!(limit.sources() <= 10);
        }
    }

    #[test]
    fn making_room_forgets_refilled_sources_before_busy_ones() {
        let t0 = Instant::now();
        let secs = |n| t0 + Duration::from_secs(n);
        // Two at once, then one per 10 s: a bucket is full 20 s after use.
        let mut limit = RateLimit::new(2, Duration::from_secs(10), 3);
        let busy: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!limit.over("192.0.2.2".parse().unwrap(), secs(0)));
        assert!(!limit.over("192.0.2.3".parse().unwrap(), secs(0)));
        assert!(!limit.over(busy, secs(15)));
        assert!(!limit.over(busy, secs(15)));
        // At 25 s the first two are full again and forgotten to make room;
        // the busy one, 10 s into its refill, is kept: one token, not two.
        assert!(!limit.over("192.0.2.4".parse().unwrap(), secs(25)));
        assert_eq!(limit.sources(), 2);
        assert!(!limit.over(busy, secs(25)));
        assert!(limit.over(busy, secs(25)), "still limited, not forgotten");
    }
}
