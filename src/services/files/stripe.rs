//! The extra connections of a striped `get` or `put` (PROTOCOL.md,
//! "Striping"): the tickets that let them in without a second token check,
//! and what each does once in.
//!
//! A transfer that asks for several streams gets a ticket with its reply:
//! 32 random bytes, bound to the client identity that asked and to that
//! one transfer ([`StripeJob`]), good for as many connections as streams
//! were granted and for [`TICKET_TTL`]. A connection that says hello with
//! it instead of a token is admitted as that client, for that transfer
//! only: it carries ranges until they run out and then closes. Each use
//! admits one connection; a ticket used up, expired or revoked (its
//! transfer is done) is refused like a wrong token. The table is bounded
//! ([`MAX_TICKETS`]); when it is full a transfer runs on its one
//! connection. Tickets are looked up by their BLAKE3, so the table never
//! compares secrets byte by byte.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::engine::transfer::{NoProgress, RangeSender, StripeReceiver};
use crate::engine::wire::RangeFrame;
use crate::limits::{MAX_TICKETS, TICKET_TTL};

/// What the extra connections of one transfer do: take ranges from the
/// server's queue to the client (`get`), or take ranges from the client
/// into the server's partial files (`put`).
#[derive(Debug, Clone)]
pub enum StripeWork {
    /// A get's ranges, to send.
    Send(Arc<RangeSender>),
    /// A put's striped files, to receive into.
    Receive(Arc<StripeReceiver>),
    /// Nothing: the transfer asked for no ranges after all, and its extra
    /// connections (a get's client opens them early) just end.
    Nothing,
}

/// One striped transfer, as its extra connections see it. Its work is set
/// once the transfer has planned; a connection that arrives before waits
/// for it.
#[derive(Debug)]
pub struct StripeJob {
    work: watch::Sender<Option<StripeWork>>,
    /// Extra connections admitted and not yet done.
    open: AtomicUsize,
    done: tokio::sync::Notify,
}

impl StripeJob {
    fn new() -> StripeJob {
        StripeJob {
            work: watch::channel(None).0,
            open: AtomicUsize::new(0),
            done: tokio::sync::Notify::new(),
        }
    }

    /// Sets what the extra connections do.
    pub fn set_work(&self, work: StripeWork) {
        self.work.send_replace(Some(work));
    }

    /// Waits, at most `within`, until every extra connection admitted is
    /// done; false if some still are then.
    pub async fn wait_for_streams(&self, within: Duration) -> bool {
        let all_done = async {
            loop {
                let done = self.done.notified();
                if self.open.load(Ordering::Acquire) == 0 {
                    return;
                }
                done.await;
            }
        };
        tokio::time::timeout(within, all_done).await.is_ok()
    }
}

/// An admitted extra connection; counted until dropped.
#[derive(Debug)]
pub struct Joined {
    /// The client identity the ticket was minted for.
    pub identity: Arc<str>,
    job: Arc<StripeJob>,
}

impl Joined {
    fn new(identity: Arc<str>, job: Arc<StripeJob>) -> Joined {
        job.open.fetch_add(1, Ordering::AcqRel);
        Joined { identity, job }
    }

    /// Does the transfer's work on this connection, once it is set (within
    /// `wait`): sends or receives ranges until they end.
    /// A connection that joined with `hold` first waits (within `wait`)
    /// for `{"go": true}`; a close or anything else ends it quietly.
    pub async fn serve<S: ByteStream>(
        &self,
        conn: &mut Connection<S>,
        wait: Duration,
        hold: bool,
    ) -> Result<(), ConnectionError> {
        if hold {
            let go = tokio::time::timeout(wait, conn.reader().read_header()).await;
            match go {
                Ok(Ok(Some(header))) if header.to_message::<Go>().is_ok_and(|go| go.go) => {}
                Ok(Ok(_)) | Ok(Err(ConnectionError::Closed)) => return Ok(()),
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    return Err(ConnectionError::Unexpected(
                        "a held stream was never told to go".into(),
                    ))
                }
            }
        }
        let mut work = self.job.work.subscribe();
        // A put's work is set before its ticket goes out, and its client
        // sends ranges at once: only a get's may have to be waited for,
        // and a get's client says nothing on these connections, so one
        // that speaks or leaves meanwhile is done with.
        let set = work.borrow().clone();
        let ready = match set {
            Some(work) => Ok(Ok(work)),
            None => {
                let ready = async {
                    work.wait_for(Option::is_some)
                        .await
                        .map(|work| work.clone())
                };
                tokio::select! {
                    biased;
                    ready = tokio::time::timeout(wait, ready) => ready.map(|r| r.map(|w| w.unwrap_or(StripeWork::Nothing))),
                    _ = conn.reader().read_header() => return Err(ConnectionError::Closed),
                }
            }
        };
        let work = match ready {
            Ok(Ok(work)) => work,
            _ => {
                return Err(ConnectionError::Unexpected(
                    "the transfer this ticket is for never started its ranges".into(),
                ))
            }
        };
        match work {
            StripeWork::Send(ranges) => ranges.send(conn.writer(), &NoProgress).await,
            StripeWork::Receive(files) => files.receive(conn.reader(), &NoProgress).await,
            StripeWork::Nothing => {
                let done = RangeFrame::Done.to_header(0);
                return conn.send(done, bytes::Bytes::new()).await;
            }
        }
        .map_err(ConnectionError::from)
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.job.open.fetch_sub(1, Ordering::AcqRel);
        self.job.done.notify_waiters();
    }
}

/// The hello of an extra connection: a ticket where a token would be.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TicketHello {
    /// Protocol version the client speaks.
    pub version: u32,
    /// The ticket from the transfer's reply, hex.
    pub ticket: String,
    /// A get's connection that waits for the client's `{"go": true}`
    /// before ranges come: one the client may not need after all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
    /// Free-form client name and version, for the server's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// `{"go": true}`: what a client tells an extra connection it joined with
/// `hold`, once it wants the ranges to flow there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Go {
    /// Always true.
    pub go: bool,
}

impl Go {
    /// The frame header that says go.
    pub fn header() -> crate::protocol::Header {
        crate::protocol::Header::from_message(&Go { go: true })
    }
}

impl TicketHello {
    /// The frame header that carries this hello.
    pub fn to_header(&self) -> crate::protocol::Header {
        crate::protocol::message::request_header("hello", self)
    }
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketRefused {
    /// Not a ticket this server minted, or used up, or its transfer done.
    #[error("unknown or used-up ticket")]
    Unknown,
    /// Past its time.
    #[error("the ticket expired")]
    Expired,
}

#[derive(Debug)]
struct Ticket {
    identity: Arc<str>,
    expires: Instant,
    uses_left: u32,
    job: Arc<StripeJob>,
}

/// The tickets of the transfers in flight.
#[derive(Debug)]
pub struct Tickets {
    table: Mutex<HashMap<[u8; 32], Ticket>>,
    max: usize,
    ttl: Duration,
}

impl Default for Tickets {
    fn default() -> Tickets {
        Tickets::new(MAX_TICKETS, TICKET_TTL)
    }
}

impl Tickets {
    /// A table of at most `max` tickets, each good for `ttl`.
    pub fn new(max: usize, ttl: Duration) -> Tickets {
        Tickets {
            table: Mutex::new(HashMap::new()),
            max,
            ttl,
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<[u8; 32], Ticket>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new ticket for `identity`, good for `uses` connections, and the
    /// job they will join; `None` when the table is full of live tickets.
    pub fn mint(
        &self,
        identity: &Arc<str>,
        uses: u32,
        now: Instant,
    ) -> Option<(String, Arc<StripeJob>)> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut secret)
            .ok()?;
        let mut table = self.table();
        // Expired tickets go now, not when the table fills: each holds its
        // transfer's manifest.
        table.retain(|_, ticket| ticket.expires > now);
        if table.len() >= self.max {
            return None;
        }
        let job = Arc::new(StripeJob::new());
        let ticket = Ticket {
            identity: identity.clone(),
            expires: now + self.ttl,
            uses_left: uses,
            job: job.clone(),
        };
        table.insert(*blake3::hash(&secret).as_bytes(), ticket);
        Some((hex(&secret), job))
    }

    /// Admits one connection with `ticket`, using one of its uses.
    pub fn redeem(&self, ticket: &str, now: Instant) -> Result<Joined, TicketRefused> {
        let key = key_of(ticket).ok_or(TicketRefused::Unknown)?;
        let mut table = self.table();
        let entry = table.get_mut(&key).ok_or(TicketRefused::Unknown)?;
        if entry.expires <= now {
            table.remove(&key);
            return Err(TicketRefused::Expired);
        }
        entry.uses_left -= 1;
        let joined = Joined::new(entry.identity.clone(), entry.job.clone());
        if entry.uses_left == 0 {
            table.remove(&key);
        }
        Ok(joined)
    }

    /// Ends a ticket: its transfer is done, and no connection may join it.
    pub fn revoke(&self, ticket: &str) {
        if let Some(key) = key_of(ticket) {
            self.table().remove(&key);
        }
    }

    /// Tickets held.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no ticket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The table's key for a ticket as sent: the BLAKE3 of its 32 bytes.
fn key_of(ticket: &str) -> Option<[u8; 32]> {
    if ticket.len() != 64 || !ticket.is_ascii() {
        return None;
    }
    let mut secret = [0u8; 32];
    for (byte, pair) in secret.iter_mut().zip(ticket.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(*blake3::hash(&secret).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Arc<str> {
        Arc::from("nas")
    }

    #[test]
    fn a_ticket_admits_as_many_connections_as_its_uses_then_none() {
        let tickets = Tickets::new(4, Duration::from_secs(30));
        let now = Instant::now();
        let (ticket, job) = tickets.mint(&identity(), 2, now).unwrap();
        assert_eq!(ticket.len(), 64);
        let first = tickets.redeem(&ticket, now).unwrap();
        assert_eq!(&*first.identity, "nas");
        let second = tickets.redeem(&ticket, now).unwrap();
        assert_eq!(job.open.load(Ordering::Acquire), 2);
        assert_eq!(
            tickets.redeem(&ticket, now).unwrap_err(),
            TicketRefused::Unknown,
            "a third connection replays a used-up ticket"
        );
        assert!(tickets.is_empty());
        drop((first, second));
        assert_eq!(job.open.load(Ordering::Acquire), 0);
    }

    #[test]
    fn an_expired_revoked_or_made_up_ticket_is_refused() {
        let tickets = Tickets::new(4, Duration::from_secs(30));
        let now = Instant::now();
        let (old, _) = tickets.mint(&identity(), 8, now).unwrap();
        let later = now + Duration::from_secs(30);
        assert_eq!(
            tickets.redeem(&old, later).unwrap_err(),
            TicketRefused::Expired
        );
        assert_eq!(
            tickets.redeem(&old, now).unwrap_err(),
            TicketRefused::Unknown
        );
        let (done, _) = tickets.mint(&identity(), 8, now).unwrap();
        tickets.revoke(&done);
        assert_eq!(
            tickets.redeem(&done, now).unwrap_err(),
            TicketRefused::Unknown
        );
        for made_up in ["", "zz", &"0".repeat(64), &"é".repeat(32)] {
            assert_eq!(
                tickets.redeem(made_up, now).unwrap_err(),
                TicketRefused::Unknown
            );
        }
    }

    #[test]
    fn a_full_table_mints_nothing_until_a_ticket_expires() {
        let tickets = Tickets::new(2, Duration::from_secs(30));
        let now = Instant::now();
        tickets.mint(&identity(), 1, now).unwrap();
        tickets
            .mint(&identity(), 1, now + Duration::from_secs(10))
            .unwrap();
        assert!(tickets.mint(&identity(), 1, now).is_none());
        let later = now + Duration::from_secs(31);
        assert!(
            tickets.mint(&identity(), 1, later).is_some(),
            "the first expired"
        );
        assert_eq!(tickets.len(), 2);
    }

    #[tokio::test]
    async fn a_transfer_waits_for_its_extra_connections_to_be_done() {
        let tickets = Tickets::new(2, Duration::from_secs(30));
        let now = Instant::now();
        let (ticket, job) = tickets.mint(&identity(), 2, now).unwrap();
        assert!(
            job.wait_for_streams(Duration::from_millis(1)).await,
            "none open"
        );
        let joined = tickets.redeem(&ticket, now).unwrap();
        let waiting = tokio::spawn({
            let job = job.clone();
            async move { job.wait_for_streams(Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        drop(joined);
        assert!(waiting.await.unwrap());
        let _open = tickets.redeem(&ticket, now).unwrap();
        assert!(!job.wait_for_streams(Duration::from_millis(10)).await);
    }

    fn held_pair() -> (Joined, Arc<StripeJob>) {
        let tickets = Tickets::new(2, Duration::from_secs(30));
        let now = Instant::now();
        let (ticket, job) = tickets.mint(&identity(), 1, now).unwrap();
        (tickets.redeem(&ticket, now).unwrap(), job)
    }

    fn connections() -> (
        Connection<tokio::io::DuplexStream>,
        Connection<tokio::io::DuplexStream>,
    ) {
        let config = crate::connection::ConnectionConfig {
            max_header_bytes: 1024,
            request_timeout: Duration::from_secs(5),
            max_write_buffer_bytes: 64 * 1024,
            decrypts: false,
        };
        let (a, b) = tokio::io::duplex(64 * 1024);
        (Connection::new(a, config), Connection::new(b, config))
    }

    /// A held connection with nothing to carry, served on a task: the task,
    /// the client's end, and the transfer's job.
    fn serve_held() -> (
        tokio::task::JoinHandle<Result<(), ConnectionError>>,
        Connection<tokio::io::DuplexStream>,
        Arc<StripeJob>,
    ) {
        let (joined, job) = held_pair();
        job.set_work(StripeWork::Nothing);
        let (mut server, client) = connections();
        let serving = tokio::spawn(async move {
            joined
                .serve(&mut server, Duration::from_secs(10), true)
                .await
        });
        (serving, client, job)
    }

    #[tokio::test]
    async fn a_held_connection_carries_nothing_until_its_client_says_go() {
        let (serving, mut client, _job) = serve_held();
        let early = tokio::time::timeout(Duration::from_millis(100), client.reader().read_header());
        assert!(early.await.is_err(), "nothing before go");
        client
            .send(Go::header(), bytes::Bytes::new())
            .await
            .unwrap();
        let end = client.reader().expect_header().await.unwrap();
        assert_eq!(RangeFrame::from_header(&end), Ok(RangeFrame::Done));
        serving.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_held_connection_its_client_closes_or_misuses_ends_quietly() {
        for says in [None, Some(r#"{"range": 0, "offset": 0}"#)] {
            let (serving, mut client, job) = serve_held();
            if let Some(json) = says {
                let header = crate::protocol::Header::parse(json.as_bytes()).unwrap();
                client.send(header, bytes::Bytes::new()).await.unwrap();
            }
            drop(client);
            serving.await.unwrap().unwrap();
            assert!(
                job.wait_for_streams(Duration::from_secs(5)).await,
                "not counted once done"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_connection_never_told_to_go_is_ended_at_the_deadline() {
        let (joined, job) = held_pair();
        job.set_work(StripeWork::Nothing);
        let (mut server, _client) = connections();
        let served = joined
            .serve(&mut server, Duration::from_secs(30), true)
            .await;
        assert!(served.is_err());
    }
}
