//! Per-source penalties, as OpenSSH's `PerSourcePenalties`: a source that
//! fails the token, sends garbage before `hello` or lets the hello deadline
//! pass is refused at accept, before TLS, for a time that starts at
//! `penalty_min` and doubles with each failure up to `penalty_max`. Guessing
//! tokens then costs an attacker time that grows exponentially, and a
//! refused connection costs the server no handshake.
//!
//! The table is bounded ([`crate::limits::PENALTY_MAX_SOURCES`]): when it is
//! full, the source whose penalty ends soonest is forgotten to make room, so
//! a flood of addresses costs bounded memory and evicts the penalties that
//! matter least. A source's doubling is forgotten once `penalty_max` has
//! passed after its penalty ended without another failure. A success never
//! shortens a penalty. Loopback sources are exempt unless
//! `--penalize-loopback`: every local user shares them.
//!
//! Pure: no sockets and no clock; the caller passes the time.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How penalties are measured out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PenaltyPolicy {
    /// The first penalty of a source.
    pub min: Duration,
    /// The longest penalty, and how long a source's history is kept once
    /// its penalty has ended.
    pub max: Duration,
    /// Sources tracked at once.
    pub max_sources: usize,
    /// Penalise loopback sources too.
    pub penalize_loopback: bool,
}

impl PenaltyPolicy {
    /// Whether `ip` is never penalised: loopback, unless the policy says
    /// otherwise.
    pub fn exempts(&self, ip: IpAddr) -> bool {
        ip.is_loopback() && !self.penalize_loopback
    }
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Penalty {
    /// How long the source is refused from now.
    pub refused_for: Duration,
    /// Whether this failure started the penalty (the source was not
    /// refused before), which is when it is logged.
    pub started: bool,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    /// Refused until then.
    until: Instant,
    /// The length of the last penalty; the next is twice it.
    last: Duration,
}

/// The penalties in force, one entry per source.
#[derive(Debug)]
pub struct Penalties {
    policy: PenaltyPolicy,
    sources: HashMap<IpAddr, Source>,
    /// The same entries ordered by the end of their penalty, to find the
    /// one to evict when the table is full.
    by_end: BTreeSet<(Instant, IpAddr)>,
}

impl Penalties {
    /// An empty table.
    pub fn new(policy: PenaltyPolicy) -> Penalties {
        Penalties {
            policy,
            sources: HashMap::new(),
            by_end: BTreeSet::new(),
        }
    }

    /// The policy the table applies.
    pub fn policy(&self) -> &PenaltyPolicy {
        &self.policy
    }

    /// How long `ip` is still refused at `now`; `None` if it may connect.
    pub fn refused_for(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.policy.exempts(ip) {
            return None;
        }
        let source = *self.sources.get(&ip)?;
        if source.until > now {
            return Some(source.until - now);
        }
        if self.forgets(&source, now) {
            self.remove(ip, source);
        }
        None
    }

    /// Records a failed login from `ip` at `now` and returns the penalty it
    /// is under; `None` for an exempt source.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> Option<Penalty> {
        if self.policy.exempts(ip) {
            return None;
        }
        let known = self.sources.get(&ip).copied();
        if let Some(source) = known {
            self.remove(ip, source);
        }
        let known = known.filter(|source| !self.forgets(source, now));
        let length = match known {
            Some(source) => source.last.saturating_mul(2).min(self.policy.max),
            None => self.policy.min,
        };
        // A failure on a connection accepted before the penalty began
        // lengthens it; it never ends sooner than it would have.
        let until = known.map_or(now + length, |s| s.until.max(now + length));
        if self.sources.len() >= self.policy.max_sources {
            if let Some(&(_, soonest)) = self.by_end.first() {
                if let Some(source) = self.sources.get(&soonest).copied() {
                    self.remove(soonest, source);
                }
            }
        }
        self.sources.insert(
            ip,
            Source {
                until,
                last: length,
            },
        );
        self.by_end.insert((until, ip));
        Some(Penalty {
            refused_for: until - now,
            started: known.is_none_or(|s| s.until <= now),
        })
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Whether `source`'s history is over: its penalty ended `max` ago.
    fn forgets(&self, source: &Source, now: Instant) -> bool {
        now >= source.until + self.policy.max
    }

    fn remove(&mut self, ip: IpAddr, source: Source) {
        self.sources.remove(&ip);
        self.by_end.remove(&(source.until, ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn policy() -> PenaltyPolicy {
        PenaltyPolicy {
            min: 5 * SECOND,
            max: 600 * SECOND,
            max_sources: 4,
            penalize_loopback: false,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn penalties_double_from_min_to_max() {
        let mut table = Penalties::new(policy());
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..10 {
            let penalty = table.record_failure(ip(1), now).unwrap();
            assert!(penalty.started);
            assert_eq!(table.refused_for(ip(1), now), Some(penalty.refused_for));
            lengths.push(penalty.refused_for.as_secs());
            // The next failure comes right after the penalty ends.
            now += penalty.refused_for;
            assert_eq!(table.refused_for(ip(1), now), None);
        }
        assert_eq!(lengths, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
    }

    #[test]
    fn a_source_is_refused_only_until_its_penalty_ends() {
        let mut table = Penalties::new(policy());
        let now = Instant::now();
        assert_eq!(table.refused_for(ip(1), now), None);
        table.record_failure(ip(1), now).unwrap();
        assert_eq!(table.refused_for(ip(1), now + SECOND), Some(4 * SECOND));
        assert_eq!(table.refused_for(ip(2), now + SECOND), None, "others pass");
        assert_eq!(table.refused_for(ip(1), now + 5 * SECOND), None);
    }

    #[test]
    fn failures_during_a_penalty_lengthen_it_without_starting_another() {
        let mut table = Penalties::new(policy());
        let now = Instant::now();
        assert!(table.record_failure(ip(1), now).unwrap().started);
        let second = table.record_failure(ip(1), now + SECOND).unwrap();
        assert!(!second.started, "logged once per penalty");
        assert_eq!(second.refused_for, 10 * SECOND);
    }

    #[test]
    fn the_doubling_is_forgotten_after_max_without_failures() {
        let mut table = Penalties::new(policy());
        let now = Instant::now();
        table.record_failure(ip(1), now).unwrap();
        let ended = now + 5 * SECOND;
        let soon = table.record_failure(ip(1), ended + 599 * SECOND).unwrap();
        assert_eq!(soon.refused_for, 10 * SECOND, "remembered within max");
        let ended = ended + 599 * SECOND + 10 * SECOND;
        assert_eq!(table.refused_for(ip(1), ended + 600 * SECOND), None);
        assert!(table.is_empty(), "forgotten entries are dropped");
        let later = table.record_failure(ip(1), ended + 600 * SECOND).unwrap();
        assert_eq!(later.refused_for, 5 * SECOND, "forgotten after max");
    }

    #[test]
    fn loopback_is_exempt_unless_asked() {
        let now = Instant::now();
        let loopbacks = [IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 9, 9, 9])];
        let loopbacks = loopbacks.into_iter().chain(["::1".parse().unwrap()]);
        for loopback in loopbacks {
            let mut exempt = Penalties::new(policy());
            assert_eq!(exempt.record_failure(loopback, now), None);
            assert_eq!(exempt.refused_for(loopback, now), None);
            assert!(exempt.is_empty());
            let mut strict = Penalties::new(PenaltyPolicy {
                penalize_loopback: true,
                ..policy()
            });
            strict.record_failure(loopback, now).unwrap();
            assert_eq!(strict.refused_for(loopback, now), Some(5 * SECOND));
        }
    }

    #[test]
    fn a_full_table_forgets_the_penalty_that_ends_soonest() {
        let mut table = Penalties::new(policy());
        let now = Instant::now();
        // ip(1) is under its second penalty (10 s), the others their first.
        table.record_failure(ip(1), now).unwrap();
        table.record_failure(ip(1), now + 5 * SECOND).unwrap();
        for n in 2..=4 {
            table.record_failure(ip(n), now + 6 * SECOND).unwrap();
        }
        assert_eq!(table.len(), 4);
        // ip(5) arrives at the cap: ip(2), whose penalty ends first of the
        // three that end at 11 s (before ip(1) at 15 s), makes room.
        table.record_failure(ip(5), now + 7 * SECOND).unwrap();
        assert_eq!(table.len(), 4, "never more than max_sources");
        let at = now + 8 * SECOND;
        assert!(table.refused_for(ip(1), at).is_some(), "the longest stays");
        assert_eq!(table.refused_for(ip(2), at), None, "evicted");
        assert!(
            table.refused_for(ip(5), at).is_some(),
            "the newcomer is tracked"
        );
        for n in 6..100 {
            table.record_failure(ip(n), now + 7 * SECOND).unwrap();
            assert!(table.len() <= 4);
        }
    }
}
