//! One connection, from accept to close: TLS, the `hello` exchange under its
//! own deadline and permit, then requests until the peer leaves, idles out,
//! breaks the protocol, or the server shuts down. This file authenticates,
//! dispatches and keeps deadlines; what a request does is the services'.
//!
//! A source under a login penalty ([`super::penalty`]) is closed before
//! anything else, TLS included, and without a log line: the penalty was
//! logged when it began. A failed login (wrong token, garbage before hello,
//! no hello in time) penalises its source.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, warn};

use super::tokens::{Grant, Limits as TokenLimits};
use super::Shared;
use crate::connection::{Connection, ConnectionConfig, ConnectionError};
use crate::engine::root::RelPath;
use crate::limits::{CLOSE_GRACE, IDLE_BUFFER_LINGER};
use crate::log::peer_text;
use crate::protocol::{ErrorCode, Header, Hello, Refusal, Welcome, PROTOCOL_VERSION};
use crate::services::files::stripe::TicketHello;
use crate::services::{self, Outcome, ServiceContext, SERVICES};
use crate::transport::{tls, Stream};

/// Why a connection ended, for the log line that closes it.
#[derive(Debug)]
enum End {
    PeerClosed,
    /// The peer cut a TLS connection without `close_notify`: how some
    /// clients end (Python's `ssl` module closes that way), so not a failure.
    PeerCut,
    Refused(ErrorCode),
    ShutDown,
    Failed(String),
    /// An extra connection of a striped transfer carried its ranges.
    RangesDone,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::PeerClosed => f.write_str("peer closed"),
            End::PeerCut => f.write_str("peer closed without TLS close_notify"),
            End::Refused(code) => write!(f, "refused: {code}"),
            End::ShutDown => f.write_str("server shutting down"),
            End::Failed(why) => write!(f, "failed: {why}"),
            End::RangesDone => f.write_str("its ranges are done"),
        }
    }
}

/// Serves one accepted connection and logs its open and close, unless its
/// source is under a penalty: then it is closed at once.
pub(crate) async fn run(
    stream: Stream,
    peer: String,
    shared: Arc<Shared>,
    handshake: OwnedSemaphorePermit,
) {
    let source = source_ip(&stream);
    run_session(stream, &peer, source, &shared, Some(handshake), Slot::Take).await;
}

/// Where a session's place among `max_connections` comes from.
#[derive(Debug)]
pub(crate) enum Slot {
    /// It takes one of its own (a TCP or Unix connection).
    Take,
    /// The connection it runs on holds one (a QUIC stream).
    Held,
    /// The connection it runs on got none: its hello is answered `busy`.
    Missing,
}

/// Serves one session (a connection, or a QUIC stream) from `source` and
/// logs its open and close, unless the source is under a penalty: then it
/// is closed at once. `handshake` is held until the welcome.
pub(crate) async fn run_session(
    stream: Stream,
    peer: &str,
    source: Option<IpAddr>,
    shared: &Shared,
    handshake: Option<OwnedSemaphorePermit>,
    slot: Slot,
) {
    if let Some(left) = penalised_for(shared, source) {
        debug!(%peer, "refused: under a login penalty for {} s more", secs(left));
        return;
    }
    let opened = Instant::now();
    info!(%peer, "connection opened");
    let mut requests = 0u64;
    let login = Login {
        peer,
        source,
        shared,
    };
    let end = serve(stream, &login, handshake, slot, &mut requests).await;
    info!(
        %peer,
        requests,
        elapsed_ms = opened.elapsed().as_millis() as u64,
        %end,
        "connection closed"
    );
}

/// Records a failed login from `source` outside a session (a QUIC
/// handshake that never ended), as a session records one.
pub(crate) fn login_failed(shared: &Shared, peer: &str, source: Option<IpAddr>, why: &str) {
    Login {
        peer,
        source,
        shared,
    }
    .failed(why);
}

/// How long `source` is still refused for failed logins, if it is.
pub(crate) fn penalised_for(shared: &Shared, source: Option<IpAddr>) -> Option<Duration> {
    let (Some(penalties), Some(ip)) = (&shared.penalties, source) else {
        return None;
    };
    lock(penalties).refused_for(ip, std::time::Instant::now())
}

/// Who is logging in, to penalise when the login fails.
struct Login<'a> {
    peer: &'a str,
    source: Option<IpAddr>,
    shared: &'a Shared,
}

impl Login<'_> {
    /// Records a failed login (`why`, for the log) against the source and
    /// returns what to add to the reply: `; 192.0.2.7 is now refused for
    /// 5 s`, or nothing when the source is exempt. The penalty is logged
    /// when it begins, once.
    fn failed(&self, why: &str) -> String {
        let (Some(penalties), Some(ip)) = (&self.shared.penalties, self.source) else {
            return String::new();
        };
        let Some(penalty) = lock(penalties).record_failure(ip, std::time::Instant::now()) else {
            return String::new();
        };
        let refused_for = secs(penalty.refused_for);
        if penalty.started {
            warn!(
                peer = %self.peer,
                "penalised: {ip} is refused for {refused_for} s after a failed login ({why})"
            );
        }
        format!("; {ip} is now refused for {refused_for} s")
    }
}

/// The penalty table, even if a thread panicked holding it: every update
/// leaves it consistent.
fn lock(
    penalties: &std::sync::Mutex<super::penalty::Penalties>,
) -> std::sync::MutexGuard<'_, super::penalty::Penalties> {
    penalties
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whole seconds, rounded up: a penalty of 0.4 s left is "1 s", never "0 s".
fn secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The address a TCP connection comes from; `None` for a Unix socket,
/// which only this machine's users can reach.
fn source_ip(stream: &Stream) -> Option<IpAddr> {
    match stream {
        Stream::Tcp(tcp) => tcp.peer_addr().ok().map(|a| a.ip().to_canonical()),
        _ => None,
    }
}

async fn serve(
    stream: Stream,
    login: &Login<'_>,
    handshake: Option<OwnedSemaphorePermit>,
    slot: Slot,
    requests: &mut u64,
) -> End {
    let (peer, shared) = (login.peer, login.shared);
    let limits = &shared.limits;
    // Take a connection slot now; without one the client still gets a clear
    // `busy` answer to its hello.
    let slot = match slot {
        Slot::Take => shared
            .connections
            .clone()
            .try_acquire_owned()
            .ok()
            .map(Some),
        Slot::Held => Some(None),
        Slot::Missing => None,
    };
    let deadline = tokio::time::Instant::now() + limits.hello_timeout;

    // The handshake and hello stop at the hello deadline or at shutdown,
    // whichever comes first: a silent client must not hold a server that
    // is draining.
    let stream = match (stream, &shared.tls) {
        (Stream::Tcp(tcp), Some(acceptor)) => {
            let handshake = tokio::time::timeout_at(
                deadline,
                acceptor.accept(crate::transport::ReadAhead::new(tcp)),
            );
            let accepted = tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return End::ShutDown,
                accepted = handshake => accepted,
            };
            let accepted = accepted.map(|result| {
                result.map_err(|err| tls::in_plain_words(err, tls::Phase::Handshake))
            });
            match accepted {
                Ok(Ok(tls)) => Stream::ServerTls(Box::new(tls)),
                // Bytes that are not TLS; a client that only hung up
                // (UnexpectedEof, a reset) did not try to get in.
                Ok(Err(err)) if err.kind() == std::io::ErrorKind::InvalidData => {
                    login.failed("not TLS");
                    return End::Failed(format!(
                        "TLS handshake failed: {err} (a client with --plaintext?)"
                    ));
                }
                Ok(Err(err)) => return End::Failed(format!("TLS handshake failed: {err}")),
                Err(_) => {
                    login.failed("no TLS handshake in time");
                    return End::Refused(ErrorCode::Timeout);
                }
            }
        }
        (stream, _) => stream,
    };
    let config = ConnectionConfig {
        decrypts: stream.is_encrypted(),
        ..limits.into()
    };
    let mut conn = Connection::new(stream, config);

    let first = tokio::select! {
        biased;
        _ = shared.cancel.cancelled() => {
            return refuse(conn, ErrorCode::ShuttingDown, "the server is shutting down".into())
                .await;
        }
        first = tokio::time::timeout_at(deadline, conn.read_header()) => first,
    };
    let hello = match first {
        Err(_) => {
            let penalty = login.failed("no hello in time");
            let message = format!("no hello within {:?}{penalty}", limits.hello_timeout);
            return refuse(conn, ErrorCode::Timeout, message).await;
        }
        Ok(Ok(None)) => return End::PeerClosed,
        Ok(Ok(Some(header))) => header,
        Ok(Err(err)) => {
            if matches!(err, ConnectionError::Frame(_)) {
                login.failed("garbage before hello");
            }
            return fail(conn, err).await;
        }
    };
    if hello.cmd() == Some("pair") {
        return pair(conn, &hello, login).await;
    }
    if hello.cmd() == Some("hello") && hello.get("ticket").is_some() {
        return join(conn, &hello, login, slot, handshake).await;
    }
    let checked = check_hello(&hello).and_then(|()| grant_of(&hello, shared));
    let grant = match checked {
        Ok(grant) => grant,
        Err(refusal) => {
            let why = match refusal.code {
                ErrorCode::BadToken => {
                    warn!(%peer, "refused: wrong access token");
                    Some("wrong token")
                }
                // A client of another version is no attacker.
                ErrorCode::UnsupportedVersion => None,
                _ => Some("garbage before hello"),
            };
            let penalty = why.map(|why| login.failed(why)).unwrap_or_default();
            let message = format!("{}{penalty}", refusal.message);
            return refuse(conn, refusal.code, message).await;
        }
    };
    // A client limited to a subdirectory gets a root of its own.
    let context = match granted_context(&shared.services, &grant) {
        Ok(context) => context,
        Err(message) => return refuse(conn, ErrorCode::NotAllowed, message).await,
    };
    if let Grant::Client { name, .. } = &grant {
        info!(%peer, client = %name, "client token");
    }
    let Some(_slot) = slot else {
        let message = format!(
            "the server is at its limit of {} connections; try again later",
            limits.max_connections
        );
        warn!(%peer, "refused: connection limit reached");
        return refuse(conn, ErrorCode::Busy, message).await;
    };
    let allowed = grant.limits();
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        services: SERVICES
            .iter()
            .filter(|cmd| permitted(&allowed, cmd).is_ok())
            .map(|s| s.to_string())
            .collect(),
        server: format!("ferry {}", env!("CARGO_PKG_VERSION")),
    };
    let welcome = crate::protocol::message::ok_header(&welcome);
    if let Err(err) = conn.send(welcome, bytes::Bytes::new()).await {
        return End::Failed(err.to_string());
    }
    drop(handshake);

    // One timer for the whole connection, moved forward before each wait:
    // extending a registered deadline is cheap, registering a new timer for
    // every request is not.
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    loop {
        let next = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => {
                return refuse(conn, ErrorCode::ShuttingDown, "the server is shutting down".into())
                    .await;
            }
            next = next_request(&mut conn, idle.as_mut(), limits.idle_timeout) => next,
        };
        let header = match next {
            Err(_) => {
                let message = format!("idle for {:?}; closing", limits.idle_timeout);
                return refuse(conn, ErrorCode::Timeout, message).await;
            }
            Ok(Ok(None)) => return End::PeerClosed,
            Ok(Ok(Some(header))) => header,
            Ok(Err(err)) => return fail(conn, err).await,
        };
        *requests += 1;
        let started = Instant::now();
        let cmd = header.cmd().unwrap_or("").to_string();
        let size = header.size();
        // A revoked client token stops working at its next request.
        if !shared.clients.still_holds(&grant) {
            warn!(%peer, "refused: the client's token was revoked");
            let message = "this client's token was revoked; pair again or ask for a new one";
            return refuse(conn, ErrorCode::BadToken, message.into()).await;
        }
        if let Err(message) = permitted(&allowed, &cmd) {
            let refusal = Refusal::new(ErrorCode::NotAllowed, message);
            if let Err(err) = conn.send_error(&refusal).await {
                return fail(conn, err).await;
            }
            if let Err(err) = conn.reader().discard_body().await {
                return fail(conn, err).await;
            }
            info!(%peer, cmd = %peer_text(&cmd), "request refused: not allowed for this client");
            continue;
        }
        match services::handle(&mut conn, header, &context).await {
            Ok(outcome) => {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                match outcome {
                    // At debug (`-v`): on a busy server, formatting and
                    // writing a line per request is a large share of its
                    // CPU (bench/RESULTS.md).
                    Outcome::Ok => {
                        debug!(%peer, cmd = %peer_text(&cmd), size, elapsed_ms, "request ok")
                    }
                    Outcome::Refused(code) => {
                        info!(%peer, cmd = %peer_text(&cmd), size, elapsed_ms, %code, "request refused")
                    }
                }
            }
            Err(err) => {
                info!(%peer, cmd = %peer_text(&cmd), size, "request failed: {err}");
                return fail(conn, err).await;
            }
        }
    }
}

/// An extra connection of a striped transfer: admitted by its ticket (no
/// token check), counted against `--max-connections` like any other, it
/// carries its transfer's ranges and closes. A ticket that is not good
/// counts as a failed login.
async fn join(
    mut conn: Connection<Stream>,
    hello: &Header,
    login: &Login<'_>,
    slot: Option<Option<OwnedSemaphorePermit>>,
    handshake: Option<OwnedSemaphorePermit>,
) -> End {
    let (peer, shared) = (login.peer, login.shared);
    let parsed = match hello.size() {
        0 => hello.to_message::<TicketHello>().map_err(|e| e.to_string()),
        _ => Err("`hello` carries no body".into()),
    };
    let (ticket, hold) = match parsed {
        Ok(hello) if hello.version == PROTOCOL_VERSION => (hello.ticket, hello.hold),
        Ok(hello) => {
            let message = format!(
                "protocol version {} is not supported; this server speaks version \
                 {PROTOCOL_VERSION}",
                hello.version
            );
            return refuse(conn, ErrorCode::UnsupportedVersion, message).await;
        }
        Err(err) => {
            let penalty = login.failed("garbage before hello");
            let message = format!("bad hello: {err}{penalty}");
            return refuse(conn, ErrorCode::BadRequest, message).await;
        }
    };
    let joined = match shared.services.tickets.redeem(&ticket, Instant::now()) {
        Ok(joined) => joined,
        Err(why) => {
            warn!(%peer, "refused: {why}");
            let penalty = login.failed("bad ticket");
            let message = format!(
                "{why}: a ticket admits one connection per stream of its transfer, for a \
                 short time; run the transfer again{penalty}"
            );
            return refuse(conn, ErrorCode::BadToken, message).await;
        }
    };
    let Some(_slot) = slot else {
        let message = format!(
            "the server is at its limit of {} connections; try again later",
            shared.limits.max_connections
        );
        warn!(%peer, "refused: connection limit reached");
        return refuse(conn, ErrorCode::Busy, message).await;
    };
    info!(%peer, client = %joined.identity, "joined a striped transfer");
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        services: Vec::new(),
        server: format!("ferry {}", env!("CARGO_PKG_VERSION")),
    };
    let welcome = crate::protocol::message::ok_header(&welcome);
    if let Err(err) = conn.send(welcome, bytes::Bytes::new()).await {
        return End::Failed(err.to_string());
    }
    drop(handshake);
    let served = tokio::select! {
        biased;
        _ = shared.cancel.cancelled() => {
            return refuse(conn, ErrorCode::ShuttingDown, "the server is shutting down".into())
                .await;
        }
        served = joined.serve(&mut conn, shared.limits.request_timeout, hold) => served,
    };
    drop(joined);
    match served {
        Ok(()) => {
            conn.close(CLOSE_GRACE).await;
            End::RangesDone
        }
        Err(err) => fail(conn, err).await,
    }
}

/// Waits for the next request header on the connection's one timer,
/// handing back buffers if the wait lasts. `Err(())` when the idle timeout
/// passes.
async fn next_request(
    conn: &mut Connection<Stream>,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    idle_timeout: Duration,
) -> Result<Result<Option<Header>, ConnectionError>, ()> {
    let linger = IDLE_BUFFER_LINGER.min(idle_timeout);
    let start = tokio::time::Instant::now();
    timer.as_mut().reset(start + linger);
    tokio::select! {
        biased;
        next = conn.read_header() => return Ok(next),
        _ = timer.as_mut() => {}
    }
    conn.release_idle_buffers();
    timer.as_mut().reset(start + idle_timeout);
    tokio::select! {
        biased;
        next = conn.read_header() => Ok(next),
        _ = timer => Err(()),
    }
}

/// Checks a first frame: it must be a body-less `hello` of our version
/// (whose token [`grant_of`] then weighs).
fn check_hello(header: &Header) -> Result<(), Refusal> {
    if header.cmd() != Some("hello") {
        let got = match header.cmd() {
            Some(cmd) => format!("{cmd:?}"),
            None => "a frame without `cmd`".to_string(),
        };
        return Err(Refusal::new(
            ErrorCode::HelloRequired,
            format!("the first frame must be `hello`, got {got}"),
        ));
    }
    if header.size() != 0 {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "`hello` carries no body",
        ));
    }
    let hello: Hello = header
        .to_message()
        .map_err(|err| Refusal::new(ErrorCode::BadRequest, format!("bad hello: {err}")))?;
    if hello.version != PROTOCOL_VERSION {
        return Err(Refusal::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
                hello.version
            ),
        ));
    }
    Ok(())
}

/// A connection that pairs instead of saying hello: it ends with the
/// exchange, and a wrong code counts as a failed login.
async fn pair(mut conn: Connection<Stream>, first: &Header, login: &Login<'_>) -> End {
    let shared = login.shared;
    let peer = login.peer.to_string();
    let outcome = super::pairing::serve(
        &mut conn,
        first,
        &shared.state_dir,
        shared.fingerprint,
        &peer,
    )
    .await;
    conn.close(Duration::from_secs(1)).await;
    match outcome {
        super::pairing::Outcome::Paired(_) => End::PeerClosed,
        super::pairing::Outcome::Refused => {
            login.failed("wrong pairing code");
            End::Refused(ErrorCode::PairFailed)
        }
        super::pairing::Outcome::Broken => End::Failed("the pairing broke off".into()),
    }
}

/// Who a hello's token speaks for: the shared token, or a client of
/// `clients.toml` (hashed and compared against every entry).
fn grant_of(header: &Header, shared: &Shared) -> Result<Grant, Refusal> {
    let token = header
        .get("token")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    grant_for(token, &shared.token, &shared.clients)
}

/// [`grant_of`] for a token, the shared token and the per-client ones.
pub(crate) fn grant_for(
    token: &str,
    shared_token: &str,
    store: &super::tokens::ClientStore,
) -> Result<Grant, Refusal> {
    if tokens_match(token, shared_token) {
        return Ok(Grant::Shared);
    }
    let clients = store.current().map_err(|err| {
        warn!("{err}");
        Refusal::new(ErrorCode::BadToken, "wrong access token")
    })?;
    match clients.find(token) {
        Some((name, entry)) => Ok(Grant::Client {
            name: name.to_string(),
            sha256: entry.sha256.clone(),
            limits: entry.limits.clone(),
        }),
        None => Err(Refusal::new(
            ErrorCode::BadToken,
            "wrong access token; use the one in the server's state directory, or pair",
        )),
    }
}

/// Whether a client with `limits` may send `cmd`; why not, if not.
fn permitted(limits: &TokenLimits, cmd: &str) -> Result<(), String> {
    let writes = matches!(cmd, "put" | "mkdir" | "rm");
    let runs = matches!(cmd, "exec" | "shell" | "attach" | "jobs");
    if limits.read_only && (writes || runs) {
        return Err(format!(
            "`{cmd}` is not allowed: this client's token is read-only"
        ));
    }
    if limits.no_exec && runs {
        return Err(format!(
            "`{cmd}` is not allowed: this client's token may not run commands"
        ));
    }
    Ok(())
}

/// The services' context for a connection with `grant`: the server's, or
/// with the root moved down to the client's subdirectory (opened beneath
/// the root, so it cannot lead out of it).
fn granted_context(services: &ServiceContext, grant: &Grant) -> Result<ServiceContext, String> {
    let mut services = services.clone();
    if let Grant::Client { name, .. } = grant {
        services.identity = Arc::from(format!("client {name}"));
    }
    // A client is its token: a re-issued token is a new identity.
    services.owner = match grant {
        Grant::Shared => "shared".to_string(),
        Grant::Client { sha256, .. } => format!("client {sha256}"),
    };
    let Some(subdir) = grant.limits().root_subdir else {
        services.read_only = grant.limits().read_only;
        return Ok(services);
    };
    let rel = RelPath::parse(subdir.as_bytes()).map_err(|err| format!("{subdir:?}: {err}"))?;
    let root = services
        .root
        .subdir(&rel)
        .map_err(|err| format!("this client's directory {subdir:?} cannot be opened: {err}"))?;
    let mut context = services.clone();
    context.read_only = grant.limits().read_only;
    context.root = Arc::new(root);
    context.root_path = services.root_path.join(rel.to_path());
    Ok(context)
}

/// Compares tokens in constant time. Both are hashed first so that neither
/// the content nor the length of the real token leaks through timing.
fn tokens_match(given: &str, expected: &str) -> bool {
    let digest = |s: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    digest(given)
        .as_ref()
        .ct_eq(digest(expected).as_ref())
        .into()
}

/// Sends an error frame, closes the connection, and reports why it ended.
async fn refuse(conn: Connection<Stream>, code: ErrorCode, message: String) -> End {
    send_last_error(conn, &Refusal::new(code, message)).await;
    match code {
        ErrorCode::ShuttingDown => End::ShutDown,
        code => End::Refused(code),
    }
}

/// Ends a connection after a connection error, answering it when the peer
/// can still be told something useful.
async fn fail(conn: Connection<Stream>, err: ConnectionError) -> End {
    match err {
        ConnectionError::Frame(frame) => {
            debug!("malformed frame: {}", frame.message);
            let code = frame.code;
            send_last_error(conn, &frame).await;
            End::Refused(code)
        }
        ConnectionError::Timeout(after) => {
            let message = format!("no progress for {after:?}; closing");
            send_last_error(conn, &Refusal::new(ErrorCode::Timeout, message)).await;
            End::Refused(ErrorCode::Timeout)
        }
        ConnectionError::Unexpected(what) => {
            let refusal = Refusal::new(ErrorCode::BadRequest, what.clone());
            send_last_error(conn, &refusal).await;
            End::Failed(what)
        }
        ConnectionError::Truncated | ConnectionError::Closed => End::PeerClosed,
        ConnectionError::Io(err) if tls::closed_without_notify(&err) => End::PeerCut,
        other => End::Failed(other.to_string()),
    }
}

async fn send_last_error(mut conn: Connection<Stream>, refusal: &Refusal) {
    let _ = tokio::time::timeout(CLOSE_GRACE, conn.send_error(refusal)).await;
    conn.close(CLOSE_GRACE).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::request_header;

    fn hello(token: &str, version: u32) -> Header {
        Hello {
            version,
            token: token.into(),
            client: None,
        }
        .to_header()
    }

    #[test]
    fn a_good_hello_passes() {
        assert_eq!(check_hello(&hello("secret", 1)), Ok(()));
    }

    #[test]
    fn tokens_grant_the_shared_standing_or_a_clients_or_nothing() {
        use super::super::tokens::{ClientStore, Clients, Limits};
        let tmp = tempfile::tempdir().unwrap();
        let store = ClientStore::new(tmp.path());
        let code = |token: &str| grant_for(token, "secret", &store).unwrap_err().code;
        assert_eq!(code("wrong"), ErrorCode::BadToken);
        assert_eq!(code(""), ErrorCode::BadToken);
        assert_eq!(code("secretsecret"), ErrorCode::BadToken);
        assert_eq!(grant_for("secret", "secret", &store), Ok(Grant::Shared));
        let mut clients = Clients::default();
        let limits = Limits {
            no_exec: true,
            ..Limits::default()
        };
        let token = clients.add("nas", limits.clone(), 0).unwrap();
        clients.save(tmp.path()).unwrap();
        match grant_for(&token, "secret", &store) {
            Ok(Grant::Client {
                name, limits: got, ..
            }) => {
                assert_eq!((name.as_str(), got), ("nas", limits.clone()))
            }
            other => panic!("{other:?}"),
        }
        assert!(permitted(&limits, "get").is_ok());
        assert!(permitted(&limits, "exec").is_err());
        let read_only = Limits {
            read_only: true,
            ..Limits::default()
        };
        for cmd in ["put", "mkdir", "rm", "exec", "shell"] {
            assert!(permitted(&read_only, cmd).is_err(), "{cmd}");
        }
        for cmd in ["get", "ls", "stat", "echo", "chat"] {
            assert!(permitted(&read_only, cmd).is_ok(), "{cmd}");
        }
    }

    #[test]
    fn bad_hellos_get_their_codes() {
        let code = |h: &Header| check_hello(h).unwrap_err().code;
        assert_eq!(code(&hello("secret", 99)), ErrorCode::UnsupportedVersion);
        assert_eq!(
            code(&request_header("echo", &serde_json::json!({}))),
            ErrorCode::HelloRequired
        );
        assert_eq!(code(&Header::default()), ErrorCode::HelloRequired);
        assert_eq!(
            code(&hello("secret", 1).with_size(3)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(&request_header("hello", &serde_json::json!({"version": 1}))),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("ab", "abc"));
        assert!(!tokens_match("", "abc"));
    }
}
