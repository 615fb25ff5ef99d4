//! Who an HTTP request speaks for. Three ways in, each weighed by the rules
//! of the framed door ([`crate::server::tokens`]):
//!
//! - `Authorization: Bearer TOKEN`: the shared token or a client's. A
//!   browser never sends this header by itself, so a request that carries
//!   it cannot be forged by another site.
//! - A session cookie from the login form: HttpOnly, SameSite=Strict,
//!   Secure over TLS. The session lives in a bounded table with an expiry
//!   ([`crate::limits::HTTP`]), holds the grant it was made with (a revoked
//!   client token ends it) and a CSRF token that every state change must
//!   send back, from a page of this origin.
//! - A share link (`/s/SECRET/`), see [`super::links`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{header, HeaderMap, Method};
use subtle::ConstantTimeEq;

use crate::limits::HttpLimits;
use crate::server::tokens::Grant;

/// The session cookie's name.
pub const COOKIE: &str = "ferry_session";
/// The header (or form field, `csrf`) a session's state change carries.
pub const CSRF_HEADER: &str = "x-ferry-csrf";

/// One login.
#[derive(Debug, Clone)]
pub struct Session {
    /// What the token used to log in grants.
    pub grant: Grant,
    /// What every state change must send back.
    pub csrf: String,
    made: Instant,
}

/// The logins of this server's run: kept in memory only, so a restart
/// logs every browser out.
#[derive(Debug)]
pub struct Sessions {
    limits: HttpLimits,
    table: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// An empty table under `limits`.
    pub fn new(limits: HttpLimits) -> Sessions {
        Sessions {
            limits,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session for `grant`; returns its id (the cookie) and CSRF
    /// token. A full table drops its expired sessions, then its oldest.
    pub fn open(&self, grant: Grant, now: Instant) -> std::io::Result<(String, String)> {
        let id = crate::engine::state::new_token()?;
        let csrf = crate::engine::state::new_token()?;
        let mut table = self.lock();
        if table.len() >= self.limits.max_sessions {
            let ttl = self.limits.session_ttl;
            table.retain(|_, s| now.duration_since(s.made) < ttl);
        }
        while table.len() >= self.limits.max_sessions {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| s.made)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => table.remove(&oldest),
                None => break,
            };
        }
        let session = Session {
            grant,
            csrf: csrf.clone(),
            made: now,
        };
        table.insert(id.clone(), session);
        Ok((id, csrf))
    }

    /// The live session `id` names, if any; an expired one is removed.
    pub fn find(&self, id: &str, now: Instant) -> Option<Session> {
        let mut table = self.lock();
        let session = table.get(id)?;
        if now.duration_since(session.made) >= self.limits.session_ttl {
            table.remove(id);
            return None;
        }
        Some(session.clone())
    }

    /// Ends session `id`.
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The session cookie's value, if the request sends one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

/// The `Set-Cookie` value for session `id` (`secure` over TLS).
pub fn set_cookie(id: &str, secure: bool, limits: &HttpLimits) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        limits.session_ttl.as_secs()
    )
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// Whether a method changes state (and so needs the CSRF checks).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request comes from a page of this origin, as far as the
/// browser says: `Origin` (when sent) names this host, and
/// `Sec-Fetch-Site` (when sent) is not another site's.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
    }
}

/// Whether a state change by a session carries its CSRF token (`given`,
/// from the header or the form) and comes from this origin.
pub fn csrf_holds(session: &Session, given: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(given) = given else { return false };
    let token_ok: bool = given.as_bytes().ct_eq(session.csrf.as_bytes()).into();
    token_ok && same_origin(headers)
}

/// The source address of a request, set by the connection loop.
#[derive(Debug, Clone, Copy)]
pub struct Source(pub Option<IpAddr>);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max_sessions: usize) -> HttpLimits {
        HttpLimits {
            max_sessions,
            session_ttl: Duration::from_secs(60),
            ..crate::limits::HTTP
        }
    }

    #[test]
    fn sessions_expire_and_the_table_stays_bounded() {
        let sessions = Sessions::new(limits(2));
        let t0 = Instant::now();
        let (a, csrf) = sessions.open(Grant::Shared, t0).unwrap();
        assert_ne!(a, csrf);
        assert_eq!(sessions.find(&a, t0).unwrap().csrf, csrf);
        let (b, _) = sessions
            .open(Grant::Shared, t0 + Duration::from_secs(1))
            .unwrap();
        let (c, _) = sessions
            .open(Grant::Shared, t0 + Duration::from_secs(2))
            .unwrap();
        assert_eq!(sessions.len(), 2);
        assert!(sessions.find(&a, t0).is_none(), "the oldest goes first");
        assert!(sessions.find(&b, t0 + Duration::from_secs(2)).is_some());
        assert!(
            sessions.find(&c, t0 + Duration::from_secs(62)).is_none(),
            "expired"
        );
        sessions.close(&b);
        assert!(sessions.is_empty());
        assert!(sessions.find("nonsense", t0).is_none());
    }

    #[test]
    fn credentials_are_read_from_their_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        headers.append(
            header::COOKIE,
            "x=1; ferry_session=s3; y=2".parse().unwrap(),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        assert_eq!(session_cookie(&headers), Some("s3"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        let cookie = set_cookie("id", true, &crate::limits::HTTP);
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!set_cookie("id", false, &crate::limits::HTTP).contains("Secure"));
    }

    #[test]
    fn state_changes_need_the_token_and_this_origin() {
        let session = Session {
            grant: Grant::Shared,
            csrf: "c".into(),
            made: Instant::now(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("host", "share.lan:8443".parse().unwrap());
        assert!(csrf_holds(&session, Some("c"), &headers));
        assert!(!csrf_holds(&session, Some("d"), &headers));
        assert!(!csrf_holds(&session, None, &headers));
        headers.insert("origin", "https://share.lan:8443".parse().unwrap());
        assert!(csrf_holds(&session, Some("c"), &headers));
        headers.insert("origin", "https://evil.example".parse().unwrap());
        assert!(!csrf_holds(&session, Some("c"), &headers));
        headers.remove("origin");
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!csrf_holds(&session, Some("c"), &headers));
        assert!(changes_state(&Method::POST) && !changes_state(&Method::GET));
    }
}
