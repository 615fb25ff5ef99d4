//! The HTTP door (`ferry serve --http ADDR`): the share in a browser, on
//! hyper (HTTP/1.1) with axum's routing, over TLS with the server's own
//! certificate, or plain HTTP on loopback (`--plaintext`; off loopback only
//! with `--allow-remote-plaintext`).
//!
//! It reaches files only through the engine, as the file service does:
//! every path is resolved by the kernel beneath the root's handle
//! ([`crate::engine::root`]), partial files are neither listed nor served,
//! and uploads are written through [`crate::engine::atomic`] and published
//! by rename once complete. Who may come in is decided as at the framed
//! door: the shared token or a client's ([`crate::server::tokens`]; a
//! read-only client cannot upload, a client with a subdirectory sees only
//! it), and failed logins earn the source a penalty.
//!
//! - `auth.rs`: bearer tokens, login sessions, CSRF; `login.rs` the form.
//! - `access.rs`: what a token or a link grants a request.
//! - `links.rs`: share links (`ferry link`).
//! - `browse.rs`: listings (page and JSON) and folders as tar (`tar.rs`).
//! - `download.rs`: one file, with ranges and validators.
//! - `tus/`: resumable uploads (tus 1.0), published atomically.
//! - `page.rs`, `text.rs`, `reply.rs`: what a browser is sent.

mod access;
pub mod auth;
mod browse;
pub mod download;
pub mod links;
mod login;
mod page;
mod reply;
pub mod tar;
pub mod text;
pub mod tus;

use std::ffi::OsString;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, Response, StatusCode};
use axum::Router;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::Shared;
use crate::engine::root::{Kind, RelPath};
use crate::limits::HttpLimits;
use crate::transport::{Listener, Stream};
use access::{link_access, owner_root, take_link_use, token_access, Access};
use auth::Source;

/// What every HTTP connection of a server shares.
pub(crate) struct Door {
    shared: Arc<Shared>,
    sessions: auth::Sessions,
    uploads: tus::Uploads,
    limits: HttpLimits,
    /// Uploads allowed (`--http-upload`).
    upload: bool,
    /// Connections speak TLS: cookies are then `Secure`.
    secure: bool,
}

impl Door {
    pub(crate) fn new(shared: Arc<Shared>, upload: bool, secure: bool) -> Door {
        let limits = crate::limits::HTTP;
        Door {
            sessions: auth::Sessions::new(limits),
            uploads: tus::Uploads::load(&shared.state_dir, limits),
            limits,
            upload,
            secure,
            shared,
        }
    }
}

/// The TLS configuration of the HTTP door: the server's certificate,
/// announcing HTTP/1.1 by ALPN as browsers expect.
pub(crate) fn tls_acceptor(framed: &tokio_rustls::rustls::ServerConfig) -> TlsAcceptor {
    let mut config = framed.clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// Accepts HTTP connections until cancelled; each holds one of the
/// server's connection permits while it is open.
pub(crate) async fn accept_loop(
    listeners: Vec<Listener>,
    door: Arc<Door>,
    tls: Option<TlsAcceptor>,
) {
    let router = Router::new().fallback(handle).with_state(door.clone());
    let shared = door.shared.clone();
    let permits = shared.connections.clone();
    let listeners = listeners.into_iter().map(|l| (l, ())).collect();
    super::accept_each(
        listeners,
        &shared,
        permits,
        move |stream, peer, (), permit| {
            let (door, router, tls) = (door.clone(), router.clone(), tls.clone());
            async move {
                connection(stream, &peer, &door, router, tls).await;
                drop(permit);
            }
        },
    )
    .await
}

/// Serves one connection: TLS within the hello deadline, then requests
/// until the peer leaves or the server shuts down (requests in flight
/// finish; the drain deadline bounds them).
async fn connection(
    stream: Stream,
    peer: &str,
    door: &Door,
    router: Router,
    tls: Option<TlsAcceptor>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower_service::Service;
    let shared = &door.shared;
    let source = match &stream {
        Stream::Tcp(tcp) => tcp.peer_addr().ok().map(|a| a.ip().to_canonical()),
        _ => None,
    };
    if let (Some(penalties), Some(ip)) = (&shared.penalties, source) {
        let refused = lock(penalties).refused_for(ip, Instant::now());
        if refused.is_some() {
            debug!(%peer, "http: refused: under a login penalty");
            return;
        }
    }
    let stream = match (stream, tls) {
        (Stream::Tcp(tcp), Some(acceptor)) => {
            let handshake = tokio::time::timeout(
                shared.limits.hello_timeout,
                acceptor.accept(crate::transport::ReadAhead::new(tcp)),
            );
            let accepted = tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return,
                accepted = handshake => accepted,
            };
            match accepted {
                Ok(Ok(tls)) => Stream::ServerTls(Box::new(tls)),
                Ok(Err(err)) => {
                    debug!(%peer, "http: TLS handshake failed: {err}");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "http: no TLS handshake in time");
                    return;
                }
            }
        }
        (stream, _) => stream,
    };
    let logged_peer = peer.to_string();
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(Source(source));
            let mut router = router.clone();
            let peer = logged_peer.clone();
            async move {
                let method = request.method().clone();
                let path = request.uri().path().to_string();
                let response = router.call(request).await;
                if let Ok(response) = &response {
                    // At debug (`-v`), as the framed door logs requests.
                    let status = response.status().as_u16();
                    let path = crate::log::peer_text(&path);
                    debug!(%peer, %method, %path, status, "http request");
                }
                response
            }
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.hello_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = shared.cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = served {
        debug!(%peer, "http: connection ended: {err}");
    }
}

fn lock(
    penalties: &std::sync::Mutex<super::penalty::Penalties>,
) -> std::sync::MutexGuard<'_, super::penalty::Penalties> {
    penalties.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every request, routed by its path. The routes are few and their paths
/// hold file names of any kind, so they are matched here on the raw path
/// rather than through axum's decoding (which takes UTF-8 only).
async fn handle(State(door): State<Arc<Door>>, request: Request) -> Response<Body> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    match (method, path.as_str()) {
        (_, "/") | (_, "/files") => reply::see_other("/files/"),
        (Method::GET, "/login") => {
            let next = query_value(request.uri().query(), "next").unwrap_or_default();
            reply::page(page::login(&next, false))
        }
        (Method::POST, "/login") => login::login(&door, request).await,
        (Method::POST, "/logout") => login::logout(&door, request).await,
        (Method::GET, "/assets/ferry.css") => asset(page::STYLE, "text/css"),
        (Method::GET, "/assets/upload.js") => asset(page::UPLOAD_JS, "text/javascript"),
        (Method::GET, "/assets/blake3.js") => asset(page::BLAKE3_JS, "text/javascript"),
        (_, p) if p.starts_with("/files/") => {
            let rest = p["/files/".len()..].to_string();
            match token_access(&door, &request) {
                Ok(access) => files(&door, access, &rest, request).await,
                Err(refused) => refused,
            }
        }
        (_, p) if p.starts_with("/uploads/") => {
            let id = p["/uploads/".len()..].to_string();
            let owner_root = |owner: &tus::Owner| owner_root(&door, owner);
            let timeout = door.shared.limits.request_timeout;
            tus::resource(&door.uploads, &id, request, &owner_root, timeout).await
        }
        (_, p) if p.starts_with("/s/") => {
            let rest = &p["/s/".len()..];
            // The link's own URL ends in a slash, so the relative links of
            // its listing stay beneath it.
            let Some((secret, rest)) = rest.split_once('/') else {
                return reply::see_other(&format!("{p}/"));
            };
            let (secret, rest) = (secret.to_string(), rest.to_string());
            match link_access(&door, &secret) {
                Ok(access) => files(&door, access, &rest, request).await,
                Err(refused) => refused,
            }
        }
        _ => reply::status(StatusCode::NOT_FOUND, "no such page"),
    }
}

fn asset(text: &'static str, kind: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// The value of `key` in a query string, decoded.
fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Whether the query holds `key` (with or without a value).
fn query_has(query: Option<&str>, key: &str) -> bool {
    query.is_some_and(|q| q.split('&').any(|pair| pair.split('=').next() == Some(key)))
}

/// The source address the connection loop set on the request.
fn source(request: &Request) -> Option<IpAddr> {
    request.extensions().get::<Source>().and_then(|s| s.0)
}

/// A request beneath a share: `rest` is the URL path below its base.
async fn files(door: &Door, access: Access, rest: &str, request: Request) -> Response<Body> {
    let rel = match text::rel_path(rest) {
        Ok(rel) => rel,
        Err(text::BadPath::Encoding) => {
            return reply::status(StatusCode::BAD_REQUEST, "bad %-escape in the path")
        }
        Err(text::BadPath::Refused(why)) => return reply::status(StatusCode::BAD_REQUEST, &why),
        Err(text::BadPath::Reserved) => {
            return reply::status(StatusCode::NOT_FOUND, "no such file in the share")
        }
    };
    // A link to one file grants that name and nothing else.
    let rel = match &access.single_file {
        Some(name) if rel.is_root() => RelPath::root().join(name).unwrap_or_default(),
        Some(_) => return reply::status(StatusCode::NOT_FOUND, "no such file in the share"),
        None => rel,
    };
    let method = request.method().clone();
    match method {
        Method::GET | Method::HEAD => read(door, &access, &rel, rest, request).await,
        Method::POST | Method::OPTIONS if access.upload => {
            match access.root.stat(&rel) {
                Ok(stat) if stat.kind == Kind::Dir => {}
                Ok(_) => return reply::status(StatusCode::CONFLICT, "uploads go to a folder"),
                Err(err) => return reply::io_error(&err),
            }
            if method == Method::OPTIONS {
                return tus::options(&door.limits);
            }
            if let Err(refused) = take_link_use(door, &access) {
                return refused;
            }
            let creator = tus::Creator {
                root: access.root.clone(),
                owner: access.owner.clone(),
            };
            tus::create(&door.uploads, creator, &rel, request.headers()).await
        }
        Method::POST | Method::OPTIONS => {
            let why = if !door.upload {
                "uploads are off on this server; start it with --http-upload"
            } else {
                "this token or link may not upload"
            };
            reply::status(StatusCode::FORBIDDEN, why)
        }
        _ => {
            let mut response = reply::status(StatusCode::METHOD_NOT_ALLOWED, "not served here");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
    }
}

/// GET or HEAD beneath a share: a folder's listing or tar, or a file.
async fn read(
    door: &Door,
    access: &Access,
    rel: &RelPath,
    rest: &str,
    request: Request,
) -> Response<Body> {
    let head = request.method() == Method::HEAD;
    let stat = match access.root.stat(rel) {
        Ok(stat) => stat,
        Err(err) => return reply::io_error(&err),
    };
    let query = request.uri().query();
    match stat.kind {
        Kind::File => {
            if let Err(refused) = take_link_use(door, access) {
                return refused;
            }
            download::serve(&access.root, rel, request.headers(), head).await
        }
        Kind::Dir => {
            // Relative links in a listing need the folder's trailing slash.
            if !rest.is_empty() && !rest.ends_with('/') {
                let to = format!(
                    "{}{}",
                    browse::folder_url(&access.base, rel),
                    query.map(|q| format!("?{q}")).unwrap_or_default()
                );
                return reply::see_other(&to);
            }
            let dir = match access.root.open_dir(rel) {
                Ok(dir) => dir,
                Err(err) => return reply::io_error(&err),
            };
            if query_has(query, "tar") {
                if let Err(refused) = take_link_use(door, access) {
                    return refused;
                }
                let name: OsString = rel
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_else(|| "share".into());
                let mut response = Response::new(if head {
                    Body::empty()
                } else {
                    browse::tar_body(dir, name.clone(), door.limits)
                });
                use std::os::unix::ffi::OsStrExt;
                browse::tar_headers(&mut response, name.as_bytes());
                return response;
            }
            let max = door.limits.max_listing_entries;
            let listed = tokio::task::spawn_blocking(move || browse::list(dir, max)).await;
            let (mut entries, cut) = match listed {
                Ok(Ok(listed)) => listed,
                Ok(Err(err)) => return reply::io_error(&err),
                Err(_) => {
                    return reply::status(StatusCode::INTERNAL_SERVER_ERROR, "listing failed")
                }
            };
            let order = browse::Order::from_query(
                query_value(query, "sort").as_deref(),
                query_value(query, "order").as_deref(),
            );
            order.sort(&mut entries);
            if query_has(query, "json") {
                return reply::json(&browse::json(rel, &entries, cut));
            }
            let ctx = browse::PageContext {
                base: &access.base,
                path: rel,
                order,
                upload: access.upload,
                csrf: access.session.as_ref().map(|s| s.csrf.as_str()),
                cut,
            };
            reply::page(browse::page(&ctx, &entries))
        }
        _ => reply::status(StatusCode::NOT_FOUND, "no such file in the share"),
    }
}
