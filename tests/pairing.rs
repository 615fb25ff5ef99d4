//! Pairing: `ferry invite` on the server's machine prints a one-time code,
//! `ferry pair` on another machine turns it into the server's pinned
//! fingerprint and a token of its own. A wrong, expired or reused code, or a
//! man in the middle with his own certificate, gets nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::tokens::tokens;
use crate::util::{Invocation, Run, Sandbox, Server, FERRY};

/// `ferry invite ARGS` on the server's machine; returns the code.
fn invite(server: &Server, args: &[&str]) -> String {
    let state = server.state_dir().to_str().unwrap().to_string();
    let mut full = vec!["invite", "--state", &state];
    full.extend_from_slice(args);
    let run = Invocation::new(&server.sandbox, &full).run();
    run.assert_ok().assert_stderr_contains("ferry pair");
    run.stdout.trim().to_string()
}

/// `ferry pair ADDR CODE` from another machine (its own home), keeping the
/// server under the name `srv`.
fn pair(other: &Sandbox, addr: &str, code: &str) -> Run {
    Invocation::new(other, &["pair", addr, code, "--name", "srv"]).run()
}

/// The token file `ferry pair` saved on `other` for the server: under the
/// name given, else the server's host.
fn saved_token(other: &Sandbox, name: &str) -> PathBuf {
    other
        .path()
        .join("xdg-config/ferry/tokens")
        .join(format!("{name}.token"))
}

/// Another code for the same slot: the same number, other words.
fn wrong(code: &str) -> String {
    let (slot, words) = code.split_once('-').unwrap();
    let swapped = if words.starts_with("acorn") {
        "amber-amber-amber"
    } else {
        "acorn-acorn-acorn"
    };
    format!("{slot}-{swapped}")
}

#[test]
fn the_right_code_pins_the_server_and_earns_a_token_of_its_own() {
    let server = Server::start(&[]);
    let code = invite(&server, &["--name", "laptop"]);
    let other = Sandbox::new();
    let run = pair(&other, server.addr(), &code);
    run.assert_ok();
    let token_file = saved_token(&other, "srv");
    let mode = fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let pins = other.read_known_hosts();
    assert!(pins.contains(server.fingerprint()), "{pins}");
    // The paired machine talks to the server at once, with no new pin.
    let token_arg = token_file.to_str().unwrap();
    let echo = Invocation::new(
        &other,
        &[
            "--server",
            server.addr(),
            "--token-file",
            token_arg,
            "echo",
            "hi",
        ],
    )
    .run();
    assert_eq!((echo.code, echo.stdout.as_str()), (0, "hi\n"), "{echo:?}");
    assert!(!echo.stderr.contains("pinned"), "{echo:?}");
    server.wait_for_log("client=laptop");
    // And by the name it keeps the server under, from its config file.
    let ls = Invocation::new(&other, &["ls", "srv:"]).run();
    ls.assert_ok();
    let hosts = Invocation::new(&other, &["hosts"]).run();
    hosts.assert_stdout_contains("srv");
    let listed = tokens(&server, &["list"]);
    assert!(listed.stdout.starts_with("laptop\t"), "{listed:?}");
    // One use.
    let again = pair(&Sandbox::new(), server.addr(), &code);
    again
        .assert_code(1)
        .assert_stderr_contains("no such pairing code");
}

#[test]
fn wrong_codes_get_nothing_and_spend_the_invite() {
    let server = Server::start(&[]);
    let code = invite(&server, &[]);
    let other = Sandbox::new();
    for _ in 0..3 {
        let run = pair(&other, server.addr(), &wrong(&code));
        run.assert_code(1)
            .assert_stderr_contains("wrong pairing code");
    }
    assert!(!saved_token(&other, "srv").exists());
    assert!(!other.known_hosts().exists(), "nothing pinned");
    // Three wrong tries spent it: the right code is refused now.
    let run = pair(&other, server.addr(), &code);
    run.assert_code(1)
        .assert_stderr_contains("no such pairing code");
}

#[test]
fn an_expired_code_is_refused() {
    let server = Server::start(&[]);
    let code = invite(&server, &[]);
    let invites = server.state_dir().join("invites.toml");
    let text = fs::read_to_string(&invites).unwrap();
    let expired: String = text
        .lines()
        .map(|line| {
            if line.starts_with("expires") {
                "expires = 1".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&invites, expired).unwrap();
    let run = pair(&Sandbox::new(), server.addr(), &code);
    run.assert_code(1)
        .assert_stderr_contains("no such pairing code");
}

#[test]
fn a_man_in_the_middle_with_his_own_certificate_gets_nothing() {
    let server = Server::start(&[]);
    let code = invite(&server, &[]);
    let proxy = Mitm::start(server.addr());
    let other = Sandbox::new();
    let run = pair(&other, &proxy.addr, &code);
    // The exchange went through the proxy to the server, and the proofs
    // did not match: the fingerprints the two ends bound differ.
    run.assert_code(1)
        .assert_stderr_contains("wrong pairing code");
    assert!(!saved_token(&other, "srv").exists());
    assert!(!other.known_hosts().exists(), "nothing pinned");
    let listed = tokens(&server, &["list"]);
    assert_eq!(listed.stdout, "", "no token was minted: {listed:?}");
}

#[test]
fn a_read_only_invite_pairs_a_read_only_client() {
    let server = Server::start(&[]);
    let code = invite(&server, &["--read-only"]);
    let other = Sandbox::new();
    assert_eq!(pair(&other, server.addr(), &code).code, 0);
    let token_file = saved_token(&other, "srv");
    let local = other.path().join("f");
    fs::write(&local, b"x").unwrap();
    let put = Invocation::new(
        &other,
        &[
            "--server",
            server.addr(),
            "--token-file",
            token_file.to_str().unwrap(),
            "put",
            local.to_str().unwrap(),
        ],
    )
    .run();
    put.assert_code(1).assert_stderr_contains("read-only");
}

#[test]
fn pair_over_ssh_makes_a_token_there_without_a_code() {
    let server = Server::start(&[]);
    let other = Sandbox::new();
    // An `ssh` that runs the command here, as the server's user would.
    let bin = other.path().join("bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(FERRY, bin.join("ferry")).unwrap();
    let ssh = bin.join("ssh");
    fs::write(
        &ssh,
        "#!/bin/sh\nshift\n[ \"$1\" = -- ] && shift\nexec \"$@\"\n",
    )
    .unwrap();
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let port = server.addr().rsplit_once(':').unwrap().1;
    let run = Invocation::new(&other, &["pair", "--ssh", "me@127.0.0.1", "--port", port])
        .env("PATH", path)
        .env("FERRY_STATE", server.state_dir())
        .run();
    run.assert_ok();
    let token_file = saved_token(&other, "127.0.0.1");
    let echo = Invocation::new(
        &other,
        &[
            "--server",
            server.addr(),
            "--token-file",
            token_file.to_str().unwrap(),
            "echo",
            "hi",
        ],
    )
    .run();
    assert_eq!((echo.code, echo.stdout.as_str()), (0, "hi\n"), "{echo:?}");
    assert!(
        !echo.stderr.contains("pinned"),
        "pinned by the pairing: {echo:?}"
    );
}

/// A TLS proxy that shows clients a certificate of its own and relays
/// everything to the real server over a TLS connection of its own: the
/// man in the middle pairing must defeat.
struct Mitm {
    addr: String,
    _runtime: Arc<tokio::runtime::Runtime>,
}

impl Mitm {
    fn start(upstream: &str) -> Mitm {
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        );
        let (cert, key) = ferry::transport::tls::generate_certificate().unwrap();
        let config = ferry::transport::tls::server_config(
            rustls::pki_types::CertificateDer::from(cert),
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut client_side) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(tcp) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let connector =
                        tokio_rustls::TlsConnector::from(ferry::transport::tls::client_config());
                    let name = ferry::transport::tls::server_name("127.0.0.1");
                    let Ok(mut server_side) = connector.connect(name, tcp).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client_side, &mut server_side).await;
                });
            }
        });
        Mitm {
            addr,
            _runtime: runtime,
        }
    }
}

#[test]
fn a_second_machine_under_a_taken_name_gets_a_name_of_its_own() {
    let server = Server::start(&[]);
    for expected in ["laptop", "laptop-2"] {
        let code = invite(&server, &["--name", "laptop"]);
        let run = pair(&Sandbox::new(), server.addr(), &code);
        run.assert_ok();
        assert!(
            run.stderr.contains(&format!("as \"{expected}\" there")),
            "{run:?}"
        );
    }
}
