//! The short answers every route gives: a status with a line of text, a
//! redirect, a page, and the status a filesystem error maps to (the HTTP
//! door's error table).

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};

/// The headers every page carries: no script but the embedded one, no
/// framing, no sniffing.
pub const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// `status` with `message` as plain text.
pub fn status(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    nosniff(&mut response);
    response
}

/// A 303 to `location` (a path on this server).
pub fn see_other(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// An HTML page.
pub fn page(html: String) -> Response<Body> {
    let mut response = Response::new(Body::from(html));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Not `no-referrer`: under it a browser sends `Origin: null` with a
    // form, and the same-origin check refuses this share's own login.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    nosniff(&mut response);
    response
}

/// JSON text.
pub fn json(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    nosniff(&mut response);
    response
}

fn nosniff(response: &mut Response<Body>) {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The answer to a filesystem error. A path that would lead out of the
/// root (the kernel's `EXDEV` under `RESOLVE_BENEATH`, a link loop) is
/// "not found", as if nothing were there: the share says nothing of what
/// lies outside it.
pub fn io_error(err: &std::io::Error) -> Response<Body> {
    use rustix::io::Errno;
    let errno = err.raw_os_error();
    let outside = [Errno::XDEV, Errno::LOOP, Errno::NOTDIR]
        .iter()
        .any(|e| Some(e.raw_os_error()) == errno);
    match err.kind() {
        _ if outside => status(StatusCode::NOT_FOUND, "no such file in the share"),
        std::io::ErrorKind::NotFound => status(StatusCode::NOT_FOUND, "no such file in the share"),
        std::io::ErrorKind::PermissionDenied => {
            status(StatusCode::FORBIDDEN, "the server may not read this file")
        }
        _ => {
            tracing::warn!("http: {err}");
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server could not do that",
            )
        }
    }
}
