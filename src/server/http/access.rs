//! What one HTTP request may do, and where: the access a token (bearer
//! or session) or a share link grants, the root an upload's owner still
//! sees, and the failures that earn a source a penalty.

use std::ffi::OsString;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, Response, StatusCode};
use tracing::warn;

use super::{auth, links, lock, reply, source, tus, Door};
use crate::engine::root::{Kind, RelPath, Root};
use crate::server::tokens::Grant;

/// What one request may do, and where.
#[derive(Clone)]
pub(super) struct Access {
    /// The root it sees: the share's, a client's subdirectory, or a
    /// link's folder.
    pub(super) root: Arc<Root>,
    /// The URL prefix of that root: `/files` or `/s/SECRET`.
    pub(super) base: String,
    /// Whether it may upload.
    pub(super) upload: bool,
    /// The session it came with, for its CSRF token.
    pub(super) session: Option<auth::Session>,
    /// A link to one file: the only name it grants in `root`.
    pub(super) single_file: Option<OsString>,
    /// The link's secret, to count its uses.
    pub(super) link_secret: Option<String>,
    /// Who this is, for an upload it begins.
    pub(super) owner: tus::Owner,
}

/// Records a failed login against the request's source.
pub(super) fn failed_login(door: &Door, source: Option<IpAddr>, why: &str) {
    let (Some(penalties), Some(ip)) = (&door.shared.penalties, source) else {
        return;
    };
    if let Some(penalty) = lock(penalties).record_failure(ip, Instant::now()) {
        if penalty.started {
            warn!(
                "http: penalised: {ip} is refused for {} s after a failed login ({why})",
                penalty.refused_for.as_secs()
            );
        }
    }
}

/// The access of a request that logs in with a token: a bearer header or
/// a session cookie. Without either, a browser is sent to the login page
/// and anything else gets 401.
pub(super) fn token_access(door: &Door, request: &Request) -> Result<Access, Response<Body>> {
    let shared = &door.shared;
    let headers = request.headers();
    let (grant, session) = if let Some(token) = auth::bearer(headers) {
        match crate::server::session::grant_for(token, &shared.token, &shared.clients) {
            Ok(grant) => (grant, None),
            Err(_) => {
                failed_login(door, source(request), "wrong token");
                return Err(unauthorized(request, "wrong access token"));
            }
        }
    } else if let Some(session) =
        auth::session_cookie(headers).and_then(|id| door.sessions.find(id, Instant::now()))
    {
        (session.grant.clone(), Some(session))
    } else {
        return Err(unauthorized(request, "log in first"));
    };
    if !shared.clients.still_holds(&grant) {
        return Err(unauthorized(request, "this client's token was revoked"));
    }
    if let Some(session) = &session {
        if auth::changes_state(request.method()) {
            let given = request
                .headers()
                .get(auth::CSRF_HEADER)
                .and_then(|v| v.to_str().ok());
            if !auth::csrf_holds(session, given, headers) {
                return Err(reply::status(
                    StatusCode::FORBIDDEN,
                    "this change did not come from a page of this share; reload the page",
                ));
            }
        }
    }
    let limits = grant.limits();
    let root = granted_root(&shared.services.root, &grant)
        .map_err(|message| reply::status(StatusCode::FORBIDDEN, &message))?;
    let owner = match &grant {
        Grant::Shared => tus::Owner::Shared,
        Grant::Client { name, sha256, .. } => tus::Owner::Client {
            name: name.clone(),
            sha256: sha256.clone(),
        },
    };
    Ok(Access {
        root,
        base: "/files".into(),
        upload: door.upload && !limits.read_only,
        session,
        single_file: None,
        link_secret: None,
        owner,
    })
}

/// The root a grant sees: the share's, or its client's subdirectory
/// (opened beneath the root, so it cannot lead out).
pub(super) fn granted_root(root: &Arc<Root>, grant: &Grant) -> Result<Arc<Root>, String> {
    let Some(subdir) = grant.limits().root_subdir else {
        return Ok(root.clone());
    };
    let rel = RelPath::parse(subdir.as_bytes()).map_err(|err| format!("{subdir:?}: {err}"))?;
    root.subdir(&rel)
        .map(Arc::new)
        .map_err(|err| format!("this client's directory {subdir:?} cannot be opened: {err}"))
}

/// 401, or for a browser asking for a page, the login page.
pub(super) fn unauthorized(request: &Request, message: &str) -> Response<Body> {
    let wants_page = request.method() == Method::GET
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if wants_page {
        let next = request.uri().path();
        let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
        return reply::see_other(&format!("/login?{query}"));
    }
    let mut response = reply::status(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ferry\""),
    );
    response
}

/// The access a share link grants: its folder (or one file), reading,
/// and uploading if the link says so and the server allows it.
pub(super) fn link_access(door: &Door, secret: &str) -> Result<Access, Response<Body>> {
    let shared = &door.shared;
    let gone = || {
        reply::status(
            StatusCode::NOT_FOUND,
            "no such link; it may have been revoked",
        )
    };
    let links = links::Links::load(&shared.state_dir).map_err(|err| {
        warn!("http: {err}");
        gone()
    })?;
    let Some((id, link)) = links.find(secret) else {
        return Err(gone());
    };
    match link.check(now_secs()) {
        Ok(()) => {}
        Err(links::Refused::Expired) => {
            return Err(reply::status(StatusCode::GONE, "this link has expired"))
        }
        Err(links::Refused::UsedUp) => {
            return Err(reply::status(
                StatusCode::GONE,
                "this link has been used up",
            ))
        }
        Err(links::Refused::Unknown) => return Err(gone()),
    }
    let rel = RelPath::parse(link.path.as_bytes()).map_err(|_| gone())?;
    let server_root = &shared.services.root;
    let stat = server_root
        .stat(&rel)
        .map_err(|err| reply::io_error(&err))?;
    let (root, single_file) = match stat.kind {
        Kind::Dir => (server_root.subdir(&rel), None),
        Kind::File => (
            server_root.subdir(&rel.parent()),
            rel.file_name().map(|n| n.to_os_string()),
        ),
        _ => return Err(gone()),
    };
    let root = root.map_err(|err| reply::io_error(&err))?;
    Ok(Access {
        root: Arc::new(root),
        base: format!("/s/{secret}"),
        upload: door.upload && link.upload && single_file.is_none(),
        session: None,
        single_file,
        link_secret: Some(secret.to_string()),
        owner: tus::Owner::Link { id: id.to_string() },
    })
}

pub(super) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The root an upload's owner sees now, or the answer when the owner may
/// no longer upload (a revoked or read-only client token, a revoked or
/// expired link, uploads turned off).
pub(super) fn owner_root(door: &Door, owner: &tus::Owner) -> Result<Arc<Root>, Response<Body>> {
    let shared = &door.shared;
    let refused = |why: &str| reply::status(StatusCode::FORBIDDEN, why);
    if !door.upload {
        return Err(refused(
            "uploads are off on this server; start it with --http-upload",
        ));
    }
    match owner {
        tus::Owner::Shared => Ok(shared.services.root.clone()),
        tus::Owner::Client { name, sha256 } => {
            let clients = shared.clients.current().map_err(|err| {
                warn!("http: {err}");
                refused("the token that began this upload is no longer valid")
            })?;
            let entry = clients
                .clients
                .get(name)
                .filter(|e| &e.sha256 == sha256 && !e.limits.read_only)
                .ok_or_else(|| refused("the token that began this upload is no longer valid"))?;
            let grant = Grant::Client {
                name: name.clone(),
                sha256: sha256.clone(),
                limits: entry.limits.clone(),
            };
            granted_root(&shared.services.root, &grant).map_err(|m| refused(&m))
        }
        tus::Owner::Link { id } => {
            let links = links::Links::load(&shared.state_dir).map_err(|err| {
                warn!("http: {err}");
                refused("the link that began this upload is no longer valid")
            })?;
            let link = links
                .links
                .get(id)
                .filter(|l| l.upload && l.expires.is_none_or(|t| now_secs() < t))
                .ok_or_else(|| refused("the link that began this upload is no longer valid"))?;
            let rel = RelPath::parse(link.path.as_bytes()).map_err(|e| refused(&e.to_string()))?;
            let root = shared
                .services
                .root
                .subdir(&rel)
                .map_err(|e| reply::io_error(&e))?;
            Ok(Arc::new(root))
        }
    }
}

/// Counts a use of the access's link, if it came by one; the answer to
/// send instead when none is left.
pub(super) fn take_link_use(door: &Door, access: &Access) -> Result<(), Response<Body>> {
    let Some(secret) = &access.link_secret else {
        return Ok(());
    };
    match links::take_use(&door.shared.state_dir, secret, now_secs()) {
        Ok(_) => Ok(()),
        Err(links::Refused::Expired) => {
            Err(reply::status(StatusCode::GONE, "this link has expired"))
        }
        Err(links::Refused::UsedUp) => Err(reply::status(
            StatusCode::GONE,
            "this link has been used up",
        )),
        Err(links::Refused::Unknown) => Err(reply::status(StatusCode::NOT_FOUND, "no such link")),
    }
}
