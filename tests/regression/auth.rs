//! Authentication and plaintext: per-source penalties, token files, the key
//! exchange, and plaintext only where it cannot be overheard.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use ferry::client::{Client, ClientOptions};

use crate::util::{ferry, Sandbox, Server};

/// Library client options for `server`: its token and pinned fingerprint,
/// no files of the user's read or written.
fn client_options(server: &Server) -> ClientOptions {
    ClientOptions {
        token: Some(server.token()),
        fingerprint: Some(server.fingerprint().parse().unwrap()),
        known_hosts: None,
        state_dir: None,
        ..ClientOptions::new(server.addr().parse().unwrap())
    }
}

/// A recording of today's TLS traffic must not be readable by a quantum
/// computer of tomorrow: ferry's client and server agree on the hybrid
/// X25519MLKEM768, as OpenSSH 10 does by default.
#[tokio::test]
async fn tls_key_exchange_is_post_quantum_hybrid() {
    let server = Server::start(&[]);
    let client = Client::connect(&client_options(&server)).await.unwrap();
    assert_eq!(client.key_exchange_group(), Some("X25519MLKEM768"));
    client.close().await;
}

/// A token guesser must not get unlimited tries: a wrong token gets its
/// source refused at accept, even with the right token, until the penalty
/// ends, and the penalty is logged once. Loopback is exempt without
/// --penalize-loopback, so local users cannot lock each other out.
#[test]
fn a_wrong_token_gets_its_source_refused_until_the_penalty_ends() {
    let server = Server::start(&["--penalize-loopback", "--penalty-min", "1"]);
    let wrong = server
        .client(&["echo", "hi"])
        .env("FERRY_TOKEN", "not-the-token")
        .run();
    // The penalty began before the wrong client exited, so it is over a
    // second from now at the latest.
    let penalty_over = Instant::now() + Duration::from_secs(1);
    wrong
        .assert_code(3)
        .assert_stderr_contains("127.0.0.1 is now refused for 1 s");

    let refused = ferry(&server, &["echo", "hi"]);
    assert!(
        Instant::now() < penalty_over,
        "too slow to test within the penalty"
    );
    assert_eq!(
        refused.code, 3,
        "the right token got in: {}",
        refused.stdout
    );
    assert!(
        refused.stderr.contains("refusing this address"),
        "no hint: {}",
        refused.stderr
    );
    let logged = server.wait_for_log_lines("penalised: 127.0.0.1 is refused for 1 s", 1);
    assert_eq!(logged.len(), 1, "logged once per penalty: {logged:?}");

    std::thread::sleep(penalty_over.saturating_duration_since(Instant::now()));
    let accepted = ferry(&server, &["echo", "hi"]);
    assert_eq!(
        (accepted.code, accepted.stdout.as_str()),
        (0, "hi\n"),
        "{}",
        accepted.stderr
    );

    let exempt = Server::start(&["--penalty-min", "600"]);
    let wrong = exempt
        .client(&["echo", "hi"])
        .env("FERRY_TOKEN", "not-the-token")
        .run();
    wrong.assert_code(3);
    assert!(!wrong.stderr.contains("refused for"), "{}", wrong.stderr);
    assert_eq!(
        ferry(&exempt, &["echo", "hi"]).code,
        0,
        "loopback penalised"
    );
}

/// `--token` shows the token to every user on the machine (`ps`); every
/// client command must be able to read it from a private file instead,
/// and a file others can read gets a warning, as ssh gives for a key.
#[test]
fn every_client_command_reads_its_token_from_a_token_file() {
    let sandbox = Sandbox::new();
    // State outside the client's default, so only the file can supply it.
    let state = sandbox.path().join("server-state");
    let server = Server::start_in(&sandbox, &["--state", state.to_str().unwrap()]);
    let token_file = sandbox.path().join("fileserver.token");
    std::fs::write(&token_file, format!("{}\n", server.token())).unwrap();
    std::fs::set_permissions(&token_file, Permissions::from_mode(0o600)).unwrap();
    let path = token_file.to_str().unwrap();
    let client = |args: &[&str]| server.client(args).env_remove("FERRY_STATE");

    let no_token = client(&["echo", "hi"]).run();
    assert_eq!(no_token.code, 3, "found a token without the file");
    let commands: [&[&str]; 5] = [
        &["echo", "hi"],
        &["mkdir", "d"],
        &["ls", "d"],
        &["stat", "d"],
        &["rm", "-r", "d"],
    ];
    for command in commands {
        let run = client(&[command, &["--token-file", path]].concat()).run();
        assert_eq!(run.code, 0, "{command:?}: {}", run.stderr);
        assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    }
    let from_env = client(&["echo", "hi"]).env("FERRY_TOKEN_FILE", path).run();
    assert_eq!((from_env.code, from_env.stdout.as_str()), (0, "hi\n"));
    // A flag beats the other's variable, as --token beats FERRY_TOKEN.
    let flag_wins = client(&["--token-file", path, "echo", "hi"])
        .env("FERRY_TOKEN", "stale")
        .run();
    flag_wins.assert_ok();

    std::fs::set_permissions(&token_file, Permissions::from_mode(0o644)).unwrap();
    let loose = client(&["--token-file", path, "echo", "hi"]).run();
    loose.assert_ok();
    assert!(
        loose.stderr.contains(path) && loose.stderr.contains("chmod 600"),
        "no warning: {}",
        loose.stderr
    );

    let missing = sandbox.path().join("no-such.token");
    let missing = missing.to_str().unwrap();
    let run = client(&["--token-file", missing, "echo", "hi"]).run();
    run.assert_code(2).assert_stderr_contains(missing);
    let both = client(&["--token-file", path, "--token", "x", "echo", "hi"]).run();
    both.assert_code(2);
}

/// Listeners without TLS or a token, and a plaintext client, hand the
/// network everything they carry: each stays on loopback unless
/// --allow-remote-plaintext says otherwise, and the refusal names it.
#[test]
fn plaintext_stays_on_loopback_unless_allowed() {
    // 192.0.2.1 (TEST-NET-1) is on no interface here: a server that gets
    // past its checks fails to bind it, and nothing is ever exposed.
    let remote = "192.0.2.1:0";
    let listeners: [&[&str]; 6] = [
        &["--seed-compat", remote],
        &["--tcp-echo", remote],
        &["--udp-echo", remote],
        &["--udp-chat", remote],
        &["--udp-time", remote],
        &["--plaintext", "--listen", remote],
    ];
    let sandbox = Sandbox::new();
    let state = sandbox.path().join("state");
    let serve = |flags: &[&str], allow: bool| {
        let mut args = vec!["serve", "--state", state.to_str().unwrap()];
        if !flags.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        if !flags.contains(&"--udp-time") {
            args.push("--no-udp-time");
        }
        args.extend_from_slice(flags);
        if allow {
            args.push("--allow-remote-plaintext");
        }
        let output = sandbox.command(&args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    for flags in listeners {
        let (code, stderr) = serve(flags, false);
        assert_eq!(code, Some(2), "{flags:?} started: {stderr}");
        assert!(
            stderr.contains(flags[0]) && stderr.contains("--allow-remote-plaintext"),
            "{flags:?}: {stderr}"
        );
        let (code, stderr) = serve(flags, true);
        assert_eq!(code, Some(1), "{flags:?} with the flag: {stderr}");
        assert!(stderr.contains("cannot listen"), "{flags:?}: {stderr}");
    }

    // Connecting to 0.0.0.0 reaches this machine's listeners, but the
    // address is not loopback: the client cannot know that it stays here.
    let server = Server::start(&["--plaintext"]);
    let port = server.addr().rsplit_once(':').unwrap().1;
    let unspecified = format!("0.0.0.0:{port}");
    let args = ["--plaintext", "--server", &unspecified, "echo", "hi"];
    let refused = ferry(&server, &args);
    refused
        .assert_code(2)
        .assert_stderr_contains("--allow-remote-plaintext");
    let allowed = ferry(
        &server,
        &[&args[..], &["--allow-remote-plaintext"]].concat(),
    );
    assert_eq!((allowed.code, allowed.stdout.as_str()), (0, "hi\n"));
}
