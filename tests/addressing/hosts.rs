//! Named hosts: the config file, `ferry hosts`, what a host entry brings
//! (server, token, fingerprint, remote directory), `exec` and `shell` by
//! host, and the errors that name the config file.

use super::{assert_exit, client, config_path, configure_nas, run, server};
use crate::util::Server;

#[test]
fn hosts_lists_the_config_files_hosts_in_file_order() {
    let server = server(&[]);
    let run_hosts = |args: &[&str]| run(&server, args);
    let empty = run_hosts(&["hosts"]);
    let path = config_path(&server).display().to_string();
    assert_exit(&empty, 0, &["no hosts in", &path, "ferry pair"]);
    empty.assert_stdout("");

    configure_nas(
        &server,
        "remote-dir = \"backup\"\n[hosts.pi]\nserver = \"[::1]:7\"\n",
    );
    let listed = run_hosts(&["hosts"]);
    assert_exit(&listed, 0, &[]);
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{listed:?}");
    assert!(
        lines[0].starts_with(&format!(
            "nas  {}  remote-dir=backup  fingerprint=",
            server.addr()
        )),
        "{listed:?}"
    );
    assert!(lines[0].contains(server.fingerprint()), "{listed:?}");
    assert_eq!(lines[1], "pi  [::1]:7");

    let json = run_hosts(&["hosts", "--json"]);
    let records: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["name"], "nas");
    assert_eq!(records[0]["server"], server.addr());
    assert_eq!(records[0]["remote_dir"], "backup");
    let token = server.state_dir().join("token").display().to_string();
    assert_eq!(records[0]["token_file"], token.as_str());
    assert_eq!(
        records[1],
        serde_json::json!({"name": "pi", "server": "[::1]:7"})
    );
}

#[test]
fn a_host_entry_brings_its_server_token_and_fingerprint() {
    let server = server(&[]);
    super::put_remote(&server, "docs/a.txt", b"hello");
    // Without the entry the client has no server, token or pin to go by.
    assert_exit(
        &run(&server, &["ls", "nas:docs"]),
        2,
        &["unknown host `nas`"],
    );
    configure_nas(&server, "");
    let listed = run(&server, &["ls", "nas:docs"]);
    assert_exit(&listed, 0, &[]);
    listed.assert_stdout("a.txt\n");

    // The entry's fingerprint is required of the server, as --fingerprint.
    let text = std::fs::read_to_string(config_path(&server)).unwrap();
    let other = ferry::transport::Fingerprint::of_certificate(b"another server").to_string();
    std::fs::write(
        config_path(&server),
        text.replace(server.fingerprint(), &other),
    )
    .unwrap();
    assert_exit(
        &run(&server, &["ls", "nas:docs"]),
        3,
        &[&other, server.fingerprint()],
    );
    // A flag on the command line beats the entry.
    let flagged = run(
        &server,
        &["ls", "nas:docs", "--fingerprint", server.fingerprint()],
    );
    assert_exit(&flagged, 0, &[]);
}

#[test]
fn an_unknown_host_names_the_config_file_and_ferry_pair() {
    let server = server(&[]);
    configure_nas(&server, "");
    let path = config_path(&server).display().to_string();
    for args in [
        &["ls", "nope:x"][..],
        &["get", "nope:a.txt", "."],
        &["exec", "nope", "--", "true"],
        &["shell", "nope"],
    ] {
        assert_exit(
            &run(&server, args),
            2,
            &["unknown host `nope`", &path, "ferry pair", "[hosts.nope]"],
        );
    }
    // --config and FERRY_CONFIG name another file, which the error names.
    let other = server.sandbox.path().join("other.toml");
    let flagged = run(
        &server,
        &["--config", other.to_str().unwrap(), "ls", "nas:"],
    );
    assert_exit(
        &flagged,
        2,
        &["unknown host `nas`", other.to_str().unwrap()],
    );
    let from_env = client(&server, &["ls", "nas:"])
        .env("FERRY_CONFIG", &other)
        .run();
    assert_exit(&from_env, 2, &[other.to_str().unwrap()]);
    // A local file with a colon is not taken for a host, and the hint
    // says how to write it.
    super::put_local(&server, "report:v2.pdf", b"pdf");
    let put = run(&server, &["put", "report:v2.pdf", "nas:"]);
    assert_exit(&put, 2, &["unknown host `report`", "./report:"]);
    assert_exit(&run(&server, &["put", "./report:v2.pdf", "nas:"]), 0, &[]);
    assert_eq!(super::remote_file(&server, "report:v2.pdf"), b"pdf");
    // Forgetting `--` reads the command as a host.
    assert_exit(
        &run(&server, &["exec", "uptime"]),
        2,
        &["unknown host `uptime`"],
    );
}

#[test]
fn a_host_beats_ferry_server_and_refuses_a_server_flag() {
    let server = server(&[]);
    configure_nas(&server, "");
    let elsewhere = Server::start(&[]);
    let run_env = client(&server, &["mkdir", "nas:made"])
        .env("FERRY_SERVER", elsewhere.addr())
        .run();
    assert_exit(&run_env, 0, &[]);
    assert!(server.root().join("made").is_dir());
    assert!(!elsewhere.root().join("made").exists());
    let flagged = run(
        &server,
        &["--server", elsewhere.addr(), "mkdir", "nas:again"],
    );
    assert_exit(&flagged, 2, &["--server", "`nas`"]);
    assert!(!server.root().join("again").exists());
}

#[test]
fn one_file_can_hold_serve_settings_and_the_clients_hosts() {
    let server = server(&[]);
    configure_nas(&server, "");
    let hosts = std::fs::read_to_string(config_path(&server)).unwrap();
    let shared = server.sandbox.path().join("ferry.toml");
    std::fs::write(
        &shared,
        format!("idle-timeout = 60\nallow-exec = false\n{hosts}"),
    )
    .unwrap();
    let listed = client(&server, &["ls", "nas:"])
        .env("FERRY_CONFIG", &shared)
        .run();
    assert_exit(&listed, 0, &[]);
}

#[test]
fn exec_runs_on_the_named_host_from_its_remote_directory() {
    let server = server(&["--allow-exec"]);
    configure_nas(&server, "remote-dir = \"work\"\n");
    std::fs::create_dir_all(server.root().join("work")).unwrap();
    let pwd = run(&server, &["exec", "nas", "--", "pwd"]);
    assert_exit(&pwd, 0, &[]);
    let root = server.root().canonicalize().unwrap();
    assert_eq!(
        pwd.stdout.trim_end(),
        root.join("work").display().to_string()
    );
    let cwd = run(&server, &["exec", "nas", "--cwd", ".", "--", "pwd"]);
    assert_eq!(cwd.stdout.trim_end(), root.display().to_string(), "{cwd:?}");

    // An address with its port is a host too; its token comes from a flag.
    let token = server.state_dir().join("token").display().to_string();
    let by_address = run(
        &server,
        &[
            "exec",
            server.addr(),
            "--token-file",
            &token,
            "--",
            "echo",
            "hi",
        ],
    );
    assert_exit(&by_address, 0, &[]);
    by_address.assert_stdout("hi\n");
}

#[test]
fn shell_connects_to_the_named_host() {
    // A server without --allow-exec answers a shell at once, so the
    // answer shows which server the name reached.
    let server = server(&[]);
    configure_nas(&server, "");
    let shell = run(&server, &["shell", "nas"]);
    assert_exit(&shell, 3, &["--allow-exec"]);
}
