//! The server: binds its listeners, then runs one task per connection until
//! a shutdown future resolves, and drains. Every door is here, each a
//! framing plus a session loop plus adapters onto the services:
//!
//! - `session.rs`: the framed door (TLS, TCP, Unix): hello, then requests.
//! - `seed/`: the tutorial's door, its framing and adapters.
//! - `raw_echo.rs`: raw TCP echo.
//! - `open_doors.rs`: the accept loop and permits of the token-less doors.
//! - `datagram/`: the datagram door: time, SNTP, echo, the chat gateway,
//!   the tutorial's UDP commands.
//! - `quic/`: the QUIC door: each stream a framed session, as a TCP
//!   connection is.
//! - `http/`: the share in a browser (`--http`): listings, downloads,
//!   resumable uploads, share links.
//! - `tokens.rs`, `pairing.rs`, `penalty.rs`: who may come in.
//!
//! Shutdown follows tokio-util's pattern: cancel a token (accept loops stop,
//! idle connections close at once), close the task tracker, and wait for
//! requests in flight up to the drain deadline.

pub mod datagram;
pub mod http;
pub mod identity;
mod open_doors;
pub mod pairing;
pub mod penalty;
mod quic;
mod raw_echo;
pub mod seed;
pub mod session;
pub mod tokens;

// What configuring and running a server takes, so that its callers (the
// CLI among them) need no module but this one.
pub use crate::engine::state::default_state_dir;
pub use crate::error::Error;
pub use crate::limits::{Limits, BLOCKING_SHUTDOWN_TIMEOUT, INVITE_TTL, LOG_FLUSH_TIMEOUT};
pub use crate::log::StderrLog;
pub use crate::services::time::DEFAULT_ADDR as TIME_DEFAULT_ADDR;
pub use crate::transport::{Endpoint, Fingerprint};

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::services::ServiceContext;
use crate::transport::{tls, Listener};
use open_doors::OpenDoor;
use tokio::net::UdpSocket;

/// The address `ferry serve` listens on without `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9001";
/// The root directory `ferry serve` serves without `--root`.
pub const DEFAULT_ROOT: &str = "ferry-share";

/// Async runtime threads `ferry serve` runs without `--workers`: half the
/// CPUs, at least one. Every transfer runs a task on the runtime (socket,
/// TLS, hashing what arrives) and a blocking thread for its file, so half
/// the cores for each keeps both busy without crowding. A worker per CPU
/// left workers idle enough to be woken for stealing, and the connection's
/// task moved between them, which costs context switches
/// (bench/RESULTS.md).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Everything the server runs on, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<Endpoint>,
    /// The directory served; created if missing.
    pub root: PathBuf,
    /// Where the certificate, key and token live.
    pub state_dir: PathBuf,
    /// Speak plain TCP instead of TLS (loopback only, unless
    /// `allow_remote_plaintext`).
    pub plaintext: bool,
    /// Allow plaintext and token-less listeners off loopback
    /// (`--allow-remote-plaintext`).
    pub allow_remote_plaintext: bool,
    /// Refuse sources that failed to log in, for a time that doubles with
    /// each failure (on unless `--no-penalties`); see [`penalty`].
    pub penalties: bool,
    /// Apply per-source penalties and rate limits to loopback sources too
    /// (`--penalize-loopback`); they are exempt by default.
    pub penalize_loopback: bool,
    /// Caps and deadlines.
    pub limits: Limits,
    /// Run commands for `exec` (off unless `--allow-exec`).
    pub allow_exec: bool,
    /// Run every `exec` and `shell` as a detachable job
    /// (`--detachable-default`), as if the client had asked.
    pub detachable_default: bool,
    /// Addresses of seed-compat listeners (`--seed-compat`): the socket
    /// tutorial's formats, plaintext and without a token; loopback only
    /// unless `allow_remote_plaintext`.
    pub seed_compat: Vec<Endpoint>,
    /// Raw TCP echo listeners (`--tcp-echo`).
    pub tcp_echo: Vec<Endpoint>,
    /// UDP services and the addresses they listen on (`--udp-time`,
    /// `--sntp`, `--udp-echo`).
    pub udp: Vec<(datagram::Service, Endpoint)>,
    /// Upper-case what the echo services send back (`--echo-upper`).
    pub echo_upper: bool,
    /// UDP gateways into the chat hub (`--udp-chat`).
    pub udp_chat: Vec<Endpoint>,
    /// The tutorial's UDP command service (`--seed-compat-udp`): no token,
    /// loopback only unless `allow_remote_plaintext`, needs `allow_exec`.
    pub seed_compat_udp: Vec<Endpoint>,
    /// QUIC listeners (`--quic`): the framed services over QUIC, with the
    /// same certificate and tokens as TCP.
    pub quic: Vec<Endpoint>,
    /// Addresses of the HTTP door (`--http`): HTTPS with the server's
    /// certificate, or plain HTTP with `plaintext` (loopback only unless
    /// `allow_remote_plaintext`).
    pub http: Vec<Endpoint>,
    /// Let the HTTP door take uploads (`--http-upload`).
    pub http_upload: bool,
}

impl Config {
    /// Checks the rules that flags alone cannot: plaintext and token-less
    /// listeners only on loopback (unless `allow_remote_plaintext`), limits
    /// that make sense. Errors are usage errors.
    pub async fn validate(&self) -> Result<(), Error> {
        if self.listen.is_empty() {
            return Err(Error::Usage("no address to listen on".into()));
        }
        self.limits.validate().map_err(Error::Usage)?;
        seed::validate(&self.seed_compat)?;
        if !self.seed_compat_udp.is_empty() && !self.allow_exec {
            return Err(Error::Usage(
                "--seed-compat-udp runs a command for anyone who can send its port a datagram, \
                 as this server's user; add --allow-exec if that is what you want"
                    .into(),
            ));
        }
        let chat = self.udp_chat.iter().map(|e| (e, "udp chat"));
        let exec = self
            .seed_compat_udp
            .iter()
            .map(|e| (e, "--seed-compat-udp"));
        let quic = self.quic.iter().map(|e| (e, "--quic"));
        let datagram = self
            .udp
            .iter()
            .map(|(s, e)| (e, s.name()))
            .chain(chat)
            .chain(exec)
            .chain(quic);
        let http = self.http.iter().map(|e| (e, "--http"));
        for (endpoint, name) in datagram.chain(http) {
            if !endpoint.is_tcp() {
                return Err(Error::Usage(format!(
                    "the {name} service needs a host and port, not {endpoint}"
                )));
            }
        }
        if !self.allow_remote_plaintext {
            self.keep_plaintext_on_loopback().await?;
        }
        Ok(())
    }

    /// Refuses a listener without TLS or a token off loopback: anyone on
    /// the path could read and change what it carries (the token, for
    /// `--plaintext`). `--allow-remote-plaintext` lifts this; `--sntp` is
    /// exempt, as NTP is public by nature.
    async fn keep_plaintext_on_loopback(&self) -> Result<(), Error> {
        let framed = self.listen.iter().filter(|_| self.plaintext);
        let framed = framed.map(|e| (e, "--plaintext --listen"));
        let http = self.http.iter().filter(|_| self.plaintext);
        let framed = framed.chain(http.map(|e| (e, "--plaintext --http")));
        let seed_compat = self.seed_compat.iter().map(|e| (e, "--seed-compat"));
        let tcp_echo = self.tcp_echo.iter().map(|e| (e, "--tcp-echo"));
        let udp = self
            .udp
            .iter()
            .filter(|(s, _)| *s != datagram::Service::Sntp);
        let udp = udp.map(|(s, e)| (e, s.flag()));
        let udp_chat = self.udp_chat.iter().map(|e| (e, "--udp-chat"));
        let udp_exec = self
            .seed_compat_udp
            .iter()
            .map(|e| (e, "--seed-compat-udp"));
        let listeners = framed
            .chain(seed_compat)
            .chain(udp_exec)
            .chain(tcp_echo)
            .chain(udp)
            .chain(udp_chat);
        for (endpoint, flag) in listeners {
            let local = endpoint
                .is_local()
                .await
                .map_err(|err| Error::Usage(format!("cannot resolve {flag} {endpoint}: {err}")))?;
            if local {
                continue;
            }
            let what = if self.plaintext && flag.starts_with("--plaintext") {
                format!(
                    "{flag} sends the token and all traffic unencrypted, so it listens on \
                     loopback only; drop --plaintext (TLS is the default),"
                )
            } else {
                format!(
                    "{flag} speaks plaintext and takes no token, so it listens on loopback only;"
                )
            };
            return Err(Error::Usage(format!(
                "{what} listen on 127.0.0.1 or [::1] instead of {endpoint}, or add \
                 --allow-remote-plaintext to serve it to the network (anyone on the path can then \
                 read and change its traffic)"
            )));
        }
        Ok(())
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub token: String,
    /// The certificate's fingerprint, which pairing binds into its exchange.
    pub fingerprint: Fingerprint,
    /// The state directory, where pairing finds invites.
    pub state_dir: PathBuf,
    /// Per-client tokens (`clients.toml` in the state directory).
    pub clients: tokens::ClientStore,
    /// Login penalties per source; `None` with `--no-penalties`.
    pub penalties: Option<std::sync::Mutex<penalty::Penalties>>,
    pub tls: Option<TlsAcceptor>,
    /// The QUIC door's settings for clients on this machine (another
    /// congestion controller); `None` without `--quic`.
    pub quic_loopback: Option<Arc<quinn::ServerConfig>>,
    pub limits: Limits,
    pub handshakes: Arc<Semaphore>,
    pub connections: Arc<Semaphore>,
    /// Connections of the token-less listeners (`--seed-compat`,
    /// `--tcp-echo`), apart from `connections`: nobody who lacks the token
    /// can take a token holder's place.
    pub unframed_connections: Arc<Semaphore>,
    pub services: ServiceContext,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

/// A server whose listeners are bound and whose state is loaded, ready to
/// run.
pub struct Server {
    listeners: Vec<Listener>,
    http_listeners: Vec<Listener>,
    /// The HTTP door's TLS; `None` with `--plaintext`.
    http_tls: Option<TlsAcceptor>,
    http_upload: bool,
    unframed_listeners: Vec<(Listener, OpenDoor)>,
    udp_sockets: Vec<(UdpSocket, datagram::Service)>,
    chat_sockets: Vec<UdpSocket>,
    exec_sockets: Vec<UdpSocket>,
    quic_endpoints: Vec<quinn::Endpoint>,
    /// What the datagram services check sources against: every address
    /// bound above, and one rate limit per source.
    datagram_guard: Arc<datagram::guard::Guard>,
    shared: Arc<Shared>,
    fingerprint: Fingerprint,
    token_path: PathBuf,
    root: PathBuf,
}

impl Server {
    /// Loads or creates the state directory and root, and binds every
    /// listener. Nothing is served until [`Server::run`].
    pub async fn bind(config: Config) -> Result<Server, Error> {
        config.validate().await?;
        let state = identity::ServerState::load_or_create(&config.state_dir).map_err(|err| {
            Error::Startup(format!(
                "cannot use the state directory {}: {err}",
                config.state_dir.display()
            ))
        })?;
        std::fs::create_dir_all(&config.root).map_err(|err| {
            Error::Startup(format!(
                "cannot create the root {}: {err}",
                config.root.display()
            ))
        })?;
        let root = std::fs::canonicalize(&config.root)
            .map_err(|err| Error::Startup(format!("{}: {err}", config.root.display())))?;

        let root_handle = crate::engine::root::Root::new(&root).map_err(|err| {
            Error::Startup(format!("cannot open the root {}: {err}", root.display()))
        })?;

        let mut quic_endpoints = Vec::new();
        let mut quic_loopback = None;
        if !config.quic.is_empty() {
            let quic_config = crate::transport::quic::server_config(
                state.cert.clone(),
                state.key.clone_key(),
                &crate::limits::QUIC,
                config.limits.max_handshakes,
            )
            .map_err(|err| Error::Startup(format!("cannot set up QUIC: {err}")))?;
            quic_loopback = Some(Arc::new(crate::transport::quic::loopback_server_config(
                &quic_config,
                &crate::limits::QUIC,
            )));
            for endpoint in &config.quic {
                quic_endpoints.extend(bind_quic(endpoint, &quic_config).await?);
            }
        }
        let (tls, http_tls) = if config.plaintext {
            (None, None)
        } else {
            let server_config = tls::server_config(state.cert.clone(), state.key.clone_key())
                .map_err(|err| Error::Startup(format!("cannot set up TLS: {err}")))?;
            let http_tls = http::tls_acceptor(&server_config);
            (Some(TlsAcceptor::from(server_config)), Some(http_tls))
        };

        let mut listeners = Vec::new();
        for endpoint in &config.listen {
            let bound = Listener::bind(endpoint)
                .await
                .map_err(|err| Error::Startup(format!("cannot listen on {endpoint}: {err}")))?;
            listeners.extend(bound);
        }
        let mut http_listeners = Vec::new();
        for endpoint in &config.http {
            let bound = Listener::bind(endpoint).await.map_err(|err| {
                Error::Startup(format!("cannot listen on --http {endpoint}: {err}"))
            })?;
            http_listeners.extend(bound);
        }
        if let Some(first) = http_listeners.first() {
            note_http_address(&config.state_dir, first, http_tls.is_some());
        }
        let mut unframed_listeners = Vec::new();
        let unframed = config
            .seed_compat
            .iter()
            .map(|e| (e, OpenDoor::SeedCompat, "--seed-compat"))
            .chain(config.tcp_echo.iter().map(|e| {
                let echo = OpenDoor::TcpEcho {
                    upper: config.echo_upper,
                };
                (e, echo, "--tcp-echo")
            }));
        for (endpoint, service, flag) in unframed {
            let bound = Listener::bind(endpoint).await.map_err(|err| {
                Error::Startup(format!("cannot listen on {flag} {endpoint}: {err}"))
            })?;
            unframed_listeners.extend(bound.into_iter().map(|l| (l, service)));
        }
        let mut udp_sockets = Vec::new();
        for (service, endpoint) in &config.udp {
            let bound = bind_udp(endpoint, service.flag()).await?;
            udp_sockets.extend(bound.into_iter().map(|socket| (socket, *service)));
        }
        let mut chat_sockets = Vec::new();
        for endpoint in &config.udp_chat {
            chat_sockets.extend(bind_udp(endpoint, "--udp-chat").await?);
        }
        let mut exec_sockets = Vec::new();
        for endpoint in &config.seed_compat_udp {
            exec_sockets.extend(bind_udp(endpoint, "--seed-compat-udp").await?);
        }
        if !exec_sockets.is_empty() {
            warn!(
                "--seed-compat-udp: anyone who can send a datagram to its port runs commands as \
                 this server's user, with no token"
            );
        }
        if config.allow_exec && !config.seed_compat.is_empty() {
            warn!(
                "--allow-exec with --seed-compat: the seed-compat listener takes no token, so \
                 any local user can run commands through it as this server's user"
            );
        }
        raise_open_file_limit(
            config.limits.max_connections + config.limits.max_unframed_connections,
        );

        let cancel = CancellationToken::new();
        let idle_timeout = config.limits.idle_timeout;
        let request_timeout = config.limits.request_timeout;
        let chat = Arc::new(crate::services::chat::hub::Hub::new(crate::limits::CHAT));
        let max_list_bytes = config.limits.max_list_bytes;
        let max_commands = config.limits.max_commands;
        let job_buffer_bytes = config.limits.job_buffer_bytes;
        let penalties = config.penalties.then(|| {
            std::sync::Mutex::new(penalty::Penalties::new(penalty::PenaltyPolicy {
                min: config.limits.penalty_min,
                max: config.limits.penalty_max,
                max_sources: crate::limits::PENALTY_MAX_SOURCES,
                penalize_loopback: config.penalize_loopback,
            }))
        });
        let shared = Arc::new(Shared {
            token: state.token.clone(),
            fingerprint: state.fingerprint(),
            state_dir: config.state_dir.clone(),
            clients: tokens::ClientStore::new(&config.state_dir),
            penalties,
            tls,
            quic_loopback,
            handshakes: Arc::new(Semaphore::new(config.limits.max_handshakes)),
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            unframed_connections: Arc::new(Semaphore::new(config.limits.max_unframed_connections)),
            limits: config.limits,
            services: ServiceContext {
                root: Arc::new(root_handle),
                max_list_bytes,
                root_path: root.clone(),
                allow_exec: config.allow_exec,
                detachable_default: config.detachable_default,
                exec_slots: Arc::new(Semaphore::new(max_commands)),
                chat: chat.clone(),
                shutdown: cancel.clone(),
                idle_timeout,
                state_dir: Some(config.state_dir.clone()),
                read_only: false,
                tickets: Arc::default(),
                identity: Arc::from("the shared token"),
                request_timeout,
                owner: String::new(),
                jobs: Arc::new(crate::services::exec::job::Jobs::new(job_buffer_bytes)),
            },
            cancel,
            tracker: TaskTracker::new(),
        });
        let tcp = listeners
            .iter()
            .chain(&http_listeners)
            .chain(unframed_listeners.iter().map(|(l, _)| l))
            .filter_map(Listener::local_addr);
        let datagram = udp_sockets
            .iter()
            .map(|(socket, _)| socket)
            .chain(&chat_sockets)
            .chain(&exec_sockets)
            .filter_map(|socket| socket.local_addr().ok())
            .chain(quic_endpoints.iter().filter_map(|e| e.local_addr().ok()));
        let own_addresses = datagram::guard::OwnAddresses::new(tcp.chain(datagram));
        let datagram_guard = Arc::new(datagram::guard::Guard::new(
            own_addresses,
            config.penalize_loopback,
        ));
        Ok(Server {
            listeners,
            http_listeners,
            http_tls,
            http_upload: config.http_upload,
            unframed_listeners,
            udp_sockets,
            chat_sockets,
            exec_sockets,
            quic_endpoints,
            datagram_guard,
            shared,
            fingerprint: state.fingerprint(),
            token_path: state.token_path,
            root,
        })
    }

    /// Each bound address, and whether TCP on it speaks TLS.
    pub fn local_endpoints(&self) -> Vec<(Endpoint, bool)> {
        self.listeners
            .iter()
            .filter_map(|l| {
                let tls = l.is_tcp() && self.shared.tls.is_some();
                l.local_endpoint().ok().map(|e| (e, tls))
            })
            .collect()
    }

    /// Each bound address of the HTTP door, and whether it speaks TLS.
    pub fn http_endpoints(&self) -> Vec<(Endpoint, bool)> {
        self.http_listeners
            .iter()
            .filter_map(|l| Some((l.local_endpoint().ok()?, self.http_tls.is_some())))
            .collect()
    }

    /// Each bound address of a service other than the framed one, with
    /// the service's name: `udp time`, `sntp`, `tcp echo`, ...
    pub fn service_endpoints(&self) -> Vec<(Endpoint, &'static str)> {
        let unframed = self
            .unframed_listeners
            .iter()
            .filter_map(|(l, service)| Some((l.local_endpoint().ok()?, service.name())));
        let datagram = self.udp_sockets.iter().filter_map(|(socket, service)| {
            let addr = socket.local_addr().ok()?;
            Some((Endpoint::from(addr), service.name()))
        });
        let chat = self
            .chat_sockets
            .iter()
            .filter_map(|socket| Some((Endpoint::from(socket.local_addr().ok()?), "udp chat")));
        let exec = self.exec_sockets.iter().filter_map(|socket| {
            Some((
                Endpoint::from(socket.local_addr().ok()?),
                datagram::exec::NAME,
            ))
        });
        let quic = self
            .quic_endpoints
            .iter()
            .filter_map(|e| Some((Endpoint::from(e.local_addr().ok()?), "QUIC")));
        unframed
            .chain(datagram)
            .chain(chat)
            .chain(exec)
            .chain(quic)
            .collect()
    }

    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The file holding the access token.
    pub fn token_path(&self) -> &std::path::Path {
        &self.token_path
    }

    /// The served root, absolute.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Serves until `shutdown` resolves, then stops accepting, closes idle
    /// connections, and waits for requests in flight up to the drain
    /// deadline.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shared = self.shared.clone();
        for listener in self.listeners {
            let shared = shared.clone();
            shared.tracker.clone().spawn(accept_loop(listener, shared));
        }
        for endpoint in self.quic_endpoints {
            shared
                .tracker
                .spawn(quic::accept_loop(endpoint, shared.clone()));
        }
        if !self.http_listeners.is_empty() {
            let secure = self.http_tls.is_some();
            let door = Arc::new(http::Door::new(shared.clone(), self.http_upload, secure));
            let http = http::accept_loop(self.http_listeners, door, self.http_tls);
            shared.tracker.spawn(http);
        }
        let unframed = open_doors::accept_loop(self.unframed_listeners, shared.clone());
        shared.tracker.spawn(unframed);
        for (socket, service) in self.udp_sockets {
            let cancel = shared.cancel.clone();
            let guard = self.datagram_guard.clone();
            match socket.into_std() {
                Ok(socket) => {
                    shared
                        .tracker
                        .spawn_blocking(move || datagram::serve(socket, service, guard, cancel));
                }
                Err(err) => warn!("{}: cannot serve: {err}", service.name()),
            }
        }
        for socket in self.chat_sockets {
            let hub = shared.services.chat.clone();
            let idle = shared.limits.idle_timeout;
            let cancel = shared.cancel.clone();
            let guard = self.datagram_guard.clone();
            shared
                .tracker
                .spawn(datagram::chat::serve(socket, hub, idle, guard, cancel));
        }
        for socket in self.exec_sockets {
            let exec = datagram::exec::serve(
                socket,
                shared.services.clone(),
                shared.limits.request_timeout,
                self.datagram_guard.clone(),
                shared.cancel.clone(),
                shared.tracker.clone(),
            );
            shared.tracker.spawn(exec);
        }
        shutdown.await;
        let open = shared.limits.max_connections - shared.connections.available_permits();
        info!(
            open_connections = open,
            "shutting down: draining requests in flight"
        );
        shared.cancel.cancel();
        shared.tracker.close();
        let drain = shared.limits.drain_timeout;
        if tokio::time::timeout(drain, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                tasks = shared.tracker.len(),
                "drain deadline of {drain:?} passed; closing the connections still open"
            );
        }
    }
}

/// Accepts framed connections until cancelled. A handshake permit is
/// taken before `accept`, so a burst past `max_handshakes` waits in the
/// kernel's queue instead of being refused.
async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let permits = shared.handshakes.clone();
    let serving = shared.clone();
    accept_each(
        vec![(listener, ())],
        &shared,
        permits,
        move |stream, peer, (), permit| session::run(stream, peer, serving.clone(), permit),
    )
    .await
}

/// The accept loop every TCP and Unix listener runs: a permit from
/// `permits` before each `accept` (so a burst waits in the kernel's queue),
/// each connection served by `serve` (with its listener's `tag`) under the
/// task tracker, backoff when the process is out of descriptors or memory,
/// and an end at shutdown. Listeners that share `permits` share one loop,
/// so one waiting for a connection holds one permit, not one each that
/// the others could be using.
pub(crate) async fn accept_each<T, F, Fut>(
    listeners: Vec<(Listener, T)>,
    shared: &Shared,
    permits: Arc<Semaphore>,
    serve: F,
) where
    T: Copy,
    F: Fn(crate::transport::Stream, String, T, tokio::sync::OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if listeners.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        // `accept` is cancel-safe: the listeners not chosen lose nothing.
        let accepts = listeners
            .iter()
            .enumerate()
            .map(|(i, (listener, _))| Box::pin(async move { (i, listener.accept().await) }));
        let (index, accepted) = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            ((index, accepted), _, _) = futures_util::future::select_all(accepts) => {
                (index, accepted)
            }
        };
        let (listener, tag) = &listeners[index];
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                shared.tracker.spawn(serve(stream, peer, *tag, permit));
            }
            Err(err) if is_resource_exhaustion(&err) => {
                // Out of descriptors or memory: retrying at once would spin.
                error!(
                    "accept on {} failed: {err}; retrying in {backoff:?}",
                    shown_endpoint(listener)
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(err) => warn!("accept on {} failed: {err}", shown_endpoint(listener)),
        }
    }
}

/// A listener's address for a log line.
fn shown_endpoint(listener: &Listener) -> String {
    listener
        .local_endpoint()
        .map_or_else(|_| "a listener".into(), |e| e.to_string())
}

/// Notes the HTTP door's first address in the state directory, as a URL
/// base for `ferry link`. An unspecified address (`0.0.0.0`, `[::]`) is
/// noted with the machine's host name, which is how others reach it.
fn note_http_address(state_dir: &std::path::Path, listener: &Listener, tls: bool) {
    let Some(addr) = listener.local_addr() else {
        return;
    };
    let scheme = if tls { "https" } else { "http" };
    let host = if addr.ip().is_unspecified() {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let url = format!("{scheme}://{host}:{}\n", addr.port());
    let path = state_dir.join(http::links::ADDRESS_FILE);
    if let Err(err) = crate::engine::state::write_private(&path, url.as_bytes()) {
        warn!("cannot note the HTTP address in {}: {err}", path.display());
    }
}

/// Binds UDP on every address `endpoint` resolves to, for `flag`.
async fn bind_udp(endpoint: &Endpoint, flag: &str) -> Result<Vec<UdpSocket>, Error> {
    let cannot = |err: std::io::Error| {
        let hint = if flag == "--udp-time" {
            "; the time service is on by default: give it another address with \
             --udp-time ADDR, or turn it off with --no-udp-time"
        } else {
            ""
        };
        Error::Startup(format!(
            "cannot listen on {flag} {endpoint} (udp): {err}{hint}"
        ))
    };
    let mut sockets = Vec::new();
    for addr in endpoint.resolve().await.map_err(cannot)? {
        sockets.push(UdpSocket::bind(addr).await.map_err(cannot)?);
    }
    Ok(sockets)
}

/// Binds a QUIC endpoint on every address `endpoint` resolves to.
async fn bind_quic(
    endpoint: &Endpoint,
    config: &quinn::ServerConfig,
) -> Result<Vec<quinn::Endpoint>, Error> {
    let cannot =
        |err: std::io::Error| Error::Startup(format!("cannot listen on --quic {endpoint}: {err}"));
    let mut endpoints = Vec::new();
    for addr in endpoint.resolve().await.map_err(cannot)? {
        let socket =
            crate::transport::quic::bind_udp(addr, &crate::limits::QUIC).map_err(cannot)?;
        let quic =
            crate::transport::quic::server_endpoint(socket, config.clone()).map_err(cannot)?;
        endpoints.push(quic);
    }
    Ok(endpoints)
}

fn is_resource_exhaustion(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

mod libc_errno {
    pub const EMFILE: i32 = rustix::io::Errno::MFILE.raw_os_error();
    pub const ENFILE: i32 = rustix::io::Errno::NFILE.raw_os_error();
    pub const ENOBUFS: i32 = rustix::io::Errno::NOBUFS.raw_os_error();
    pub const ENOMEM: i32 = rustix::io::Errno::NOMEM.raw_os_error();
}

/// Raises the soft open-file limit toward the hard one so that
/// `max_connections` can be reached; warns if it still cannot.
fn raise_open_file_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let wanted = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(64);
    if let Some(current) = limit.current {
        if current < wanted {
            limit.current = Some(match limit.maximum {
                Some(max) => max.min(wanted.max(current)),
                None => wanted,
            });
            let _ = setrlimit(Resource::Nofile, limit);
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    if let Some(now) = now {
        if now < max_connections as u64 + 64 {
            warn!(
                "the open-file limit ({now}) is below --max-connections ({max_connections}); \
                 raise it with `ulimit -n`"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(text: &str) -> Endpoint {
        text.parse().unwrap()
    }

    /// A valid configuration with every listener on loopback.
    fn config() -> Config {
        Config {
            listen: vec![endpoint("127.0.0.1:0")],
            root: "root".into(),
            state_dir: "state".into(),
            plaintext: false,
            allow_remote_plaintext: false,
            penalties: true,
            penalize_loopback: false,
            limits: Limits::default(),
            allow_exec: false,
            detachable_default: false,
            seed_compat: vec![endpoint("127.0.0.1:0")],
            tcp_echo: vec![endpoint("[::1]:0")],
            udp: vec![
                (datagram::Service::Time, endpoint("127.0.0.1:0")),
                (
                    datagram::Service::Echo { upper: false },
                    endpoint("127.0.0.1:0"),
                ),
            ],
            echo_upper: false,
            udp_chat: vec![endpoint("127.0.0.1:0")],
            seed_compat_udp: Vec::new(),
            quic: vec![endpoint("127.0.0.1:0")],
            http: vec![endpoint("127.0.0.1:0")],
            http_upload: false,
        }
    }

    /// Each way of putting a listener without TLS or a token off loopback.
    fn remote_plaintext() -> Vec<(&'static str, Config)> {
        let remote = || endpoint("192.0.2.1:0");
        vec![
            (
                "--seed-compat",
                Config {
                    seed_compat: vec![remote()],
                    ..config()
                },
            ),
            (
                "--tcp-echo",
                Config {
                    tcp_echo: vec![remote()],
                    ..config()
                },
            ),
            (
                "--udp-time",
                Config {
                    udp: vec![(datagram::Service::Time, remote())],
                    ..config()
                },
            ),
            (
                "--udp-echo",
                Config {
                    udp: vec![(datagram::Service::Echo { upper: true }, remote())],
                    ..config()
                },
            ),
            (
                "--udp-chat",
                Config {
                    udp_chat: vec![endpoint("0.0.0.0:0")],
                    ..config()
                },
            ),
            (
                "--seed-compat-udp",
                Config {
                    allow_exec: true,
                    seed_compat_udp: vec![remote()],
                    ..config()
                },
            ),
            (
                "--plaintext",
                Config {
                    plaintext: true,
                    listen: vec![endpoint("[::]:0")],
                    ..config()
                },
            ),
            (
                "--plaintext --http",
                Config {
                    plaintext: true,
                    http: vec![remote()],
                    ..config()
                },
            ),
        ]
    }

    #[tokio::test]
    async fn plaintext_listeners_stay_on_loopback_unless_allowed() {
        assert!(config().validate().await.is_ok());
        let plaintext_on_loopback = Config {
            plaintext: true,
            ..config()
        };
        assert!(plaintext_on_loopback.validate().await.is_ok());
        for (flag, config) in remote_plaintext() {
            let err = config.validate().await.unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{flag}: {err}");
            let message = err.to_string();
            assert!(message.contains(flag), "{flag}: {message}");
            assert!(message.contains("--allow-remote-plaintext"), "{message}");
            let allowed = Config {
                allow_remote_plaintext: true,
                ..config
            };
            assert!(allowed.validate().await.is_ok(), "{flag}");
        }
    }

    #[tokio::test]
    async fn udp_commands_need_allow_exec_and_a_host_and_port() {
        let without = Config {
            seed_compat_udp: vec![endpoint("127.0.0.1:0")],
            ..config()
        };
        let err = without.validate().await.unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("--allow-exec"), "{err}");
        let with = Config {
            allow_exec: true,
            ..without.clone()
        };
        assert!(with.validate().await.is_ok());
        let unix = Config {
            seed_compat_udp: vec![endpoint("unix:/tmp/x.sock")],
            ..with
        };
        assert!(matches!(unix.validate().await, Err(Error::Usage(_))));
    }

    #[tokio::test]
    async fn sntp_and_tls_need_no_permission_to_leave_loopback() {
        let public = Config {
            listen: vec![endpoint("192.0.2.1:0")],
            udp: vec![(datagram::Service::Sntp, endpoint("192.0.2.1:123"))],
            http: vec![endpoint("192.0.2.1:443")],
            ..config()
        };
        assert!(public.validate().await.is_ok());
    }
}
