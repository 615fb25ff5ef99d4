//! Per-client tokens: `ferry tokens add|list|revoke` on the server's machine,
//! each client with a token of its own and its limits (read-only, no exec,
//! a subdirectory as its root), and a revoke that takes effect at the
//! client's next request.

use std::fs;

use serde_json::json;

use crate::util::{hello_header, Invocation, Raw, Run, Server};

/// `ferry tokens ARGS` against `server`'s state directory.
pub(crate) fn tokens(server: &Server, args: &[&str]) -> Run {
    let state = server.state_dir().to_str().unwrap().to_string();
    let mut full = vec!["tokens", "--state", &state];
    full.extend_from_slice(args);
    Invocation::new(&server.sandbox, &full).run()
}

/// Adds client `name` with `limits` flags; returns the path of its token
/// file (written by `--out`, mode 0600).
pub(crate) fn add_client(server: &Server, name: &str, limits: &[&str]) -> String {
    let out = server.sandbox.path().join(format!("{name}.token"));
    let out = out.to_str().unwrap().to_string();
    let mut args = vec!["add", name, "--out", &out];
    args.extend_from_slice(limits);
    let run = tokens(server, &args);
    run.assert_ok();
    out
}

/// A client run with the token in `token_file`.
fn as_client(server: &Server, token_file: &str, args: &[&str]) -> Run {
    let mut full = vec!["--plaintext", "--token-file", token_file];
    full.extend_from_slice(args);
    server.client(&full).env_remove("FERRY_STATE").run()
}

#[test]
fn a_client_token_works_and_only_its_hash_is_kept() {
    let server = Server::start(&["--plaintext"]);
    fs::write(server.root().join("f"), b"data").unwrap();
    let token_file = add_client(&server, "nas", &[]);
    let token = fs::read_to_string(&token_file).unwrap();
    let run = as_client(&server, &token_file, &["ls"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, "f\n"), "{run:?}");
    let stored = fs::read_to_string(server.state_dir().join("clients.toml")).unwrap();
    assert!(!stored.contains(token.trim()), "{stored}");
    let list = tokens(&server, &["list"]);
    list.assert_ok();
    assert!(list.stdout.starts_with("nas\tfull\t"), "{list:?}");
    assert!(!list.stdout.contains(token.trim()));
    // The shared token keeps working.
    let run = server.client(&["--plaintext", "ls"]).run();
    run.assert_ok();
    // A name is taken once.
    let again = tokens(&server, &["add", "nas"]);
    again.assert_code(2);
}

#[test]
fn a_read_only_client_reads_and_nothing_more() {
    let server = Server::start(&["--plaintext", "--allow-exec"]);
    fs::write(server.root().join("f"), b"data").unwrap();
    let token_file = add_client(&server, "viewer", &["--read-only"]);
    let dl = server.sandbox.path().join("dl");
    let get = as_client(
        &server,
        &token_file,
        &["get", "f", "--to", dl.to_str().unwrap()],
    );
    get.assert_ok();
    let local = server.sandbox.path().join("up.txt");
    fs::write(&local, b"up").unwrap();
    for args in [
        vec!["put", local.to_str().unwrap()],
        vec!["mkdir", "d"],
        vec!["rm", "f"],
    ] {
        let run = as_client(&server, &token_file, &args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains("read-only"), "{args:?}: {run:?}");
    }
    let exec = as_client(&server, &token_file, &["exec", "--", "true"]);
    exec.assert_err().assert_stderr_contains("read-only");
    assert!(!server.root().join("up.txt").exists() && server.root().join("f").exists());
}

#[test]
fn a_no_exec_client_moves_files_but_runs_nothing() {
    let server = Server::start(&["--plaintext", "--allow-exec"]);
    let token_file = add_client(&server, "backup", &["--no-exec"]);
    let local = server.sandbox.path().join("up.txt");
    fs::write(&local, b"up").unwrap();
    let put = as_client(&server, &token_file, &["put", local.to_str().unwrap()]);
    put.assert_ok();
    let exec = as_client(&server, &token_file, &["exec", "--", "touch", "ran"]);
    exec.assert_err()
        .assert_stderr_contains("may not run commands");
    assert!(!server.root().join("ran").exists());
    // The welcome lists only what the client may use.
    let mut raw = Raw::connect(server.addr());
    let token = fs::read_to_string(&token_file).unwrap();
    raw.send_frame(&hello_header(token.trim()), b"");
    let welcome = raw.read_frame();
    let services = welcome.header["services"].as_array().unwrap();
    assert!(services.contains(&json!("put")) && !services.contains(&json!("exec")));
}

#[test]
fn a_client_confined_to_a_subdirectory_sees_only_it() {
    let server = Server::start(&["--plaintext"]);
    fs::create_dir_all(server.root().join("home/nas")).unwrap();
    fs::write(server.root().join("home/nas/mine"), b"mine").unwrap();
    fs::write(server.root().join("secret"), b"not for nas").unwrap();
    let token_file = add_client(&server, "nas", &["--root-subdir", "home/nas"]);
    let ls = as_client(&server, &token_file, &["ls"]);
    assert_eq!((ls.code, ls.stdout.as_str()), (0, "mine\n"), "{ls:?}");
    let escape = as_client(&server, &token_file, &["stat", "../../secret"]);
    escape.assert_code(1);
    let local = server.sandbox.path().join("new");
    fs::write(&local, b"new").unwrap();
    let put = as_client(&server, &token_file, &["put", local.to_str().unwrap()]);
    put.assert_ok();
    assert!(server.root().join("home/nas/new").exists());
    assert!(!server.root().join("new").exists());
}

#[test]
fn a_revoked_token_is_refused_at_its_next_request() {
    let server = Server::start(&["--plaintext"]);
    let token_file = add_client(&server, "laptop", &[]);
    let token = fs::read_to_string(&token_file).unwrap();
    let mut raw = Raw::connect(server.addr());
    raw.send_frame(&hello_header(token.trim()), b"");
    assert!(raw.read_frame().is_ok());
    raw.echo("before");
    let revoke = tokens(&server, &["revoke", "laptop"]);
    revoke.assert_ok();
    // The same connection, its next request.
    raw.send_frame(&json!({"cmd": "echo", "size": 5}), b"after");
    let message = raw.expect_error("bad_token");
    assert!(message.contains("revoked"), "{message}");
    let run = as_client(&server, &token_file, &["ls"]);
    run.assert_code(3);
    let unknown = tokens(&server, &["revoke", "laptop"]);
    unknown
        .assert_code(2)
        .assert_stderr_contains("no client is named");
}
