//! The login form: `POST /login` opens a session for a right token and
//! sets its cookie; `POST /logout` ends it, with its CSRF token.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Response, StatusCode};
use tracing::{info, warn};

use super::access::failed_login;
use super::{auth, page, reply, source, Door};
use crate::server::tokens::Grant;

/// The login form's fields.
#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// POST /login: a right token opens a session and sets its cookie.
pub(super) async fn login(door: &Door, request: Request) -> Response<Body> {
    if !auth::same_origin(request.headers()) {
        return reply::status(StatusCode::FORBIDDEN, "log in from this share's own page");
    }
    let source = source(&request);
    let Some(form) = read_form::<LoginForm>(request, door.limits.max_form_bytes).await else {
        return reply::status(StatusCode::BAD_REQUEST, "a login form carries `token`");
    };
    let shared = &door.shared;
    let grant = match crate::server::session::grant_for(&form.token, &shared.token, &shared.clients)
    {
        Ok(grant) => grant,
        Err(_) => {
            failed_login(door, source, "wrong token in the login form");
            let mut response = reply::page(page::login(&form.next, true));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            return response;
        }
    };
    if let Grant::Client { name, .. } = &grant {
        info!(client = %name, "http: logged in");
    }
    let (id, _csrf) = match door.sessions.open(grant, Instant::now()) {
        Ok(opened) => opened,
        Err(err) => {
            warn!("http: cannot open a session: {err}");
            return reply::status(StatusCode::INTERNAL_SERVER_ERROR, "cannot log in now");
        }
    };
    // Only a path on this server, never another site.
    let next = if form.next.starts_with("/files/") {
        form.next.as_str()
    } else {
        "/files/"
    };
    let mut response = reply::see_other(next);
    if let Ok(cookie) = HeaderValue::from_str(&auth::set_cookie(&id, door.secure, &door.limits)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The logout form's field.
#[derive(serde::Deserialize)]
struct LogoutForm {
    csrf: String,
}

/// POST /logout: ends the session, with its CSRF token.
pub(super) async fn logout(door: &Door, request: Request) -> Response<Body> {
    let headers = request.headers().clone();
    let id = auth::session_cookie(&headers).map(str::to_string);
    let session = id
        .as_deref()
        .and_then(|id| door.sessions.find(id, Instant::now()));
    let form = read_form::<LogoutForm>(request, door.limits.max_form_bytes).await;
    match (id, session, form) {
        (Some(id), Some(session), Some(form))
            if auth::csrf_holds(&session, Some(&form.csrf), &headers) =>
        {
            door.sessions.close(&id);
            let mut response = reply::see_other("/login");
            if let Ok(cookie) = HeaderValue::from_str(&auth::clear_cookie(door.secure)) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        _ => reply::status(StatusCode::FORBIDDEN, "log out from this share's own page"),
    }
}

/// A urlencoded form body of at most `max` bytes.
async fn read_form<T: serde::de::DeserializeOwned>(request: Request, max: usize) -> Option<T> {
    let body = axum::body::to_bytes(request.into_body(), max).await.ok()?;
    serde_urlencoded::from_bytes(&body).ok()
}
