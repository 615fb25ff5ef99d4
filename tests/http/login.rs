//! Who may come in: the bearer token, the login form and its cookie,
//! per-client and read-only tokens, CSRF, and HTTPS with the server's own
//! certificate.

use super::{authorized, start, Client};
use crate::tokens::tokens;
use crate::util::Server;

#[test]
fn https_uses_the_servers_certificate_and_listens_before_ready() {
    let server = Server::start(&["--http", "127.0.0.1:0"]);
    let line = server
        .listening()
        .iter()
        .find(|l| l.mode == "HTTPS")
        .expect("a `listening ADDR (HTTPS)` line before `ready`");
    assert!(line.addr.starts_with("127.0.0.1:"), "{line:?}");
    // The client pins the fingerprint the server printed.
    let reply = authorized(&server).get("/files/");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = Client::of(&server).get("/files/");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), "Bearer realm=\"ferry\"");
}

#[test]
fn plain_http_off_loopback_needs_the_opt_in() {
    let run = server_run(&["--plaintext", "--http", "0.0.0.0:0"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--plaintext --http"), "{run:?}");
    assert!(run.stderr.contains("--allow-remote-plaintext"), "{run:?}");
}

/// `ferry serve ARGS` that is expected to exit at once.
fn server_run(args: &[&str]) -> crate::util::Run {
    let sandbox = crate::util::Sandbox::new();
    let mut full = vec!["serve", "--no-udp-time", "--listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    crate::util::Invocation::new(&sandbox, &full).run()
}

#[test]
fn a_wrong_bearer_token_gets_401_and_a_browser_the_login_page() {
    let server = start(&[]);
    let reply = Client::of(&server).bearer("wrong").get("/files/");
    assert_eq!(reply.status, 401);
    let reply = Client::of(&server)
        .with("accept", "text/html")
        .get("/files/a%20b/");
    assert_eq!(reply.status, 303);
    assert_eq!(
        reply.header("location"),
        "/login?next=%2Ffiles%2Fa%2520b%2F"
    );
}

/// Logs in through the form; returns the cookie (`name=value`).
pub(crate) fn log_in(client: &Client, token: &str) -> String {
    let body = format!("token={token}&next=%2Ffiles%2F");
    let reply = client.send(
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.into_bytes(),
    );
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert_eq!(reply.header("location"), "/files/");
    let cookie = reply.header("set-cookie").to_string();
    cookie.split(';').next().unwrap().to_string()
}

#[test]
fn the_login_form_sets_a_strict_http_only_cookie() {
    let server = start(&[]);
    let client = Client::of(&server);
    let reply = client.get("/login");
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("name=\"token\""));
    let wrong = client.send(
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"token=nope".to_vec(),
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_empty());
    let body = format!("token={}", server.token());
    let reply = client.send(
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.into_bytes(),
    );
    let cookie = reply.header("set-cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    // Plain HTTP on loopback: a Secure cookie would never come back.
    assert!(!cookie.contains("Secure"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap();
    let page = client.clone().with("cookie", cookie).get("/files/");
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("ferry-csrf"),
        "the page carries its CSRF token"
    );
    let forged = client
        .clone()
        .with("cookie", "ferry_session=guess")
        .get("/files/");
    assert_eq!(forged.status, 401);
}

#[test]
fn over_https_the_cookie_is_secure() {
    let server = Server::start(&["--http", "127.0.0.1:0"]);
    let body = format!("token={}", server.token());
    let reply = Client::of(&server).send(
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.into_bytes(),
    );
    assert_eq!(reply.status, 303);
    assert!(reply.header("set-cookie").contains("; Secure"));
}

#[test]
fn a_session_changes_nothing_without_its_csrf_token_or_from_another_site() {
    let server = start(&["--http-upload"]);
    let client = Client::of(&server);
    let cookie = log_in(&client, &server.token());
    let session = client.clone().with("cookie", &cookie);
    let page = session.get("/files/").text();
    let csrf = page
        .split("name=\"ferry-csrf\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_string();
    let create = |extra: &[(&str, &str)]| {
        let mut headers = vec![("tus-resumable", "1.0.0"), ("upload-length", "1")];
        headers.extend_from_slice(extra);
        session.send("POST", "/files/", &headers, Vec::new()).status
    };
    assert_eq!(create(&[]), 403, "no CSRF token");
    assert_eq!(create(&[("x-ferry-csrf", "wrong")]), 403);
    let origin = format!("http://{}", client.addr());
    assert_eq!(
        create(&[("x-ferry-csrf", &csrf), ("origin", "http://evil.example")]),
        403,
        "another site's page"
    );
    assert_ne!(create(&[("x-ferry-csrf", &csrf), ("origin", &origin)]), 403);
    // Logging out needs the token too, and then the cookie is worthless.
    let out = session.send(
        "POST",
        "/logout",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"csrf=wrong".to_vec(),
    );
    assert_eq!(out.status, 403);
    let out = session.send(
        "POST",
        "/logout",
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("csrf={csrf}").into_bytes(),
    );
    assert_eq!(out.status, 303);
    assert_eq!(session.get("/files/").status, 401);
}

#[test]
fn client_tokens_keep_their_limits_and_a_revoke_ends_their_session() {
    let server = start(&["--http-upload"]);
    std::fs::create_dir_all(server.root().join("mine")).unwrap();
    std::fs::write(server.root().join("secret.txt"), b"not yours").unwrap();
    std::fs::write(server.root().join("mine/own.txt"), b"yours").unwrap();
    let add = |name: &str, flags: &[&str]| {
        let out = server.sandbox.path().join(format!("{name}.token"));
        let out = out.to_str().unwrap().to_string();
        let mut args = vec!["add", name, "--out", &out];
        args.extend_from_slice(flags);
        tokens(&server, &args).assert_ok();
        std::fs::read_to_string(&out).unwrap().trim().to_string()
    };
    let reader = add("phone", &["--read-only"]);
    let boxed = add("guest", &["--root-subdir", "mine"]);
    let phone = Client::of(&server).bearer(&reader);
    assert_eq!(phone.get("/files/secret.txt").text(), "not yours");
    let upload = phone.send(
        "POST",
        "/files/",
        &[("tus-resumable", "1.0.0"), ("upload-length", "1")],
        Vec::new(),
    );
    assert_eq!(upload.status, 403, "read-only: {}", upload.text());
    let listing = phone.get("/files/");
    assert!(!listing.text().contains("id=\"upload\""), "no upload form");
    let guest = Client::of(&server).bearer(&boxed);
    assert_eq!(guest.get("/files/own.txt").text(), "yours");
    assert_eq!(guest.get("/files/secret.txt").status, 404);
    // A session made with a client token ends when the token is revoked.
    let cookie = log_in(&Client::of(&server), &reader);
    let session = Client::of(&server).with("cookie", &cookie);
    assert_eq!(session.get("/files/").status, 200);
    tokens(&server, &["revoke", "phone"]).assert_ok();
    assert_eq!(session.get("/files/").status, 401);
    assert_eq!(phone.get("/files/").status, 401);
}
