//! Share links: `ferry link PATH` prints a URL that grants that path and
//! nothing else, for its time and uses, with uploads only if asked;
//! `--list` shows them and `--revoke` ends one at its next request.

use std::fs;

use base64::Engine;

use super::client::Client;
use super::start;
use crate::util::{Invocation, Run, Server};

/// `ferry link ARGS` against `server`'s state directory.
fn link(server: &Server, args: &[&str]) -> Run {
    let state = server.state_dir().to_str().unwrap().to_string();
    let mut full = vec!["link", "--state", &state];
    full.extend_from_slice(args);
    Invocation::new(&server.sandbox, &full).run()
}

/// Makes a link and returns the path part of its URL (`/s/SECRET/`),
/// checking that the URL names the server's HTTP address.
fn make(server: &Server, args: &[&str]) -> String {
    let run = link(server, args);
    run.assert_ok();
    let url = run.stdout.trim();
    let base = format!("http://{}", Client::of(server).addr());
    let path = url
        .strip_prefix(&base)
        .unwrap_or_else(|| panic!("{url} is not under {base}"));
    assert!(path.starts_with("/s/") && path.ends_with('/'), "{path}");
    path.to_string()
}

#[test]
fn a_folder_link_grants_that_folder_and_nothing_above_it() {
    let server = start(&[]);
    fs::create_dir_all(server.root().join("shared/inner")).unwrap();
    fs::write(server.root().join("shared/inner/a.txt"), b"a").unwrap();
    fs::write(server.root().join("private.txt"), b"no").unwrap();
    let path = make(&server, &["shared"]);
    let client = Client::of(&server);
    let page = client.get(&path);
    assert_eq!(page.status, 200, "no token needed");
    assert!(page.text().contains("href=\"inner/\""));
    assert_eq!(client.get(&format!("{path}inner/a.txt")).body, b"a");
    assert_eq!(client.get(&format!("{path}../private.txt")).status, 400);
    assert_eq!(client.get(&format!("{path}%2e%2e/private.txt")).status, 400);
    assert_eq!(
        client.get("/files/private.txt").status,
        401,
        "the link is no token"
    );
    assert!(client.get(&format!("{path}?tar")).status == 200);
    let bare = client.get(path.trim_end_matches('/'));
    assert_eq!((bare.status, bare.header("location")), (303, path.as_str()));
    let wrong = path.replace("/s/", "/s/0");
    assert_eq!(client.get(&wrong).status, 404);
}

#[test]
fn a_file_link_is_that_file_only_and_its_uses_run_out() {
    let server = start(&[]);
    fs::write(server.root().join("report.pdf"), b"pdf").unwrap();
    fs::write(server.root().join("other.pdf"), b"other").unwrap();
    let path = make(&server, &["report.pdf", "--uses", "2"]);
    let client = Client::of(&server);
    let first = client.get(&path);
    assert_eq!((first.status, first.body.as_slice()), (200, &b"pdf"[..]));
    assert_eq!(client.get(&format!("{path}other.pdf")).status, 404);
    assert_eq!(client.get(&path).status, 200);
    let spent = client.get(&path);
    assert_eq!(spent.status, 410, "{}", spent.text());
    assert!(spent.text().contains("used up"));
    let list = link(&server, &["--list"]);
    list.assert_ok();
    assert!(
        list.stdout.contains("report.pdf\t2/2 uses"),
        "{}",
        list.stdout
    );
}

#[test]
fn an_expired_or_revoked_link_grants_nothing() {
    let server = start(&[]);
    fs::write(server.root().join("f"), b"f").unwrap();
    let path = make(&server, &["f", "--expires", "1h"]);
    let client = Client::of(&server);
    assert_eq!(client.get(&path).status, 200);
    // Expire it as time would: its expiry moved into the past.
    let file = server.state_dir().join("links.toml");
    let text = fs::read_to_string(&file).unwrap();
    let expired: String = text
        .lines()
        .map(|l| {
            if l.starts_with("expires") {
                "expires = 1".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&file, expired).unwrap();
    let reply = client.get(&path);
    assert_eq!(reply.status, 410);
    assert!(reply.text().contains("expired"));
    let live = make(&server, &["f"]);
    assert_eq!(client.get(&live).status, 200);
    let list = link(&server, &["--list"]);
    let id = list
        .stdout
        .lines()
        .find(|l| l.contains("no expiry"))
        .and_then(|l| l.split('\t').next())
        .unwrap()
        .to_string();
    link(&server, &["--revoke", &id]).assert_ok();
    assert_eq!(client.get(&live).status, 404);
    let again = link(&server, &["--revoke", &id]);
    assert_eq!(again.code, 2, "{again:?}");
}

#[test]
fn an_upload_link_uploads_into_its_folder_only_when_the_server_allows() {
    let server = start(&["--http-upload"]);
    fs::create_dir(server.root().join("drop")).unwrap();
    let read_only = make(&server, &["drop"]);
    let upload = make(&server, &["drop", "--upload"]);
    let client = Client::of(&server);
    let name = base64::engine::general_purpose::STANDARD.encode("in.txt");
    let create = |path: &str| {
        client.send(
            "POST",
            path,
            &[
                ("tus-resumable", "1.0.0"),
                ("upload-length", "2"),
                ("upload-metadata", &format!("filename {name}")),
            ],
            Vec::new(),
        )
    };
    assert_eq!(create(&read_only).status, 403);
    let reply = create(&upload);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let url = reply.header("location").to_string();
    let patched = client.send(
        "PATCH",
        &url,
        &[
            ("tus-resumable", "1.0.0"),
            ("content-type", "application/offset+octet-stream"),
            ("upload-offset", "0"),
        ],
        b"hi".to_vec(),
    );
    assert_eq!(patched.status, 204, "{}", patched.text());
    assert_eq!(fs::read(server.root().join("drop/in.txt")).unwrap(), b"hi");
    assert!(client.get(&upload).text().contains("id=\"upload\""));
    // A server without --http-upload refuses even an upload link.
    let sandbox = server.sandbox.clone();
    drop(server);
    let off = Server::start_in(&sandbox, &["--plaintext", "--http", "127.0.0.1:0"]);
    let client = Client::of(&off);
    let reply = client.send(
        "POST",
        &upload,
        &[("tus-resumable", "1.0.0"), ("upload-length", "2")],
        Vec::new(),
    );
    assert_eq!(reply.status, 403);
}

#[test]
fn links_refuse_paths_that_leave_the_root() {
    let server = start(&[]);
    for bad in ["../x", "/etc"] {
        let run = link(&server, &[bad]);
        assert_eq!(run.code, 2, "{bad}: {run:?}");
    }
}
