//! `HOST:PATH` on every file command, the host's remote directory, hosts
//! given by address, local paths with a colon, and today's forms without
//! a host.

use super::{assert_exit, configure_nas, put_local, put_remote, remote_file, run, server};

#[test]
fn every_file_command_takes_host_paths() {
    let server = server(&[]);
    configure_nas(&server, "");
    put_local(&server, "a.txt", b"alpha");
    assert_exit(&run(&server, &["put", "a.txt", "nas:docs/"]), 0, &[]);
    assert_eq!(remote_file(&server, "docs/a.txt"), b"alpha");
    assert_eq!(run(&server, &["ls", "nas:docs"]).stdout, "a.txt\n");
    let stat = run(&server, &["stat", "--json", "nas:docs/a.txt"]);
    stat.assert_stdout_contains("\"size\":5");
    assert_exit(&run(&server, &["mkdir", "-p", "nas:x/y"]), 0, &[]);
    assert!(server.root().join("x/y").is_dir());
    assert_exit(&run(&server, &["get", "nas:docs/a.txt", "out/"]), 0, &[]);
    assert_eq!(
        std::fs::read(server.sandbox.path().join("out/a.txt")).unwrap(),
        b"alpha"
    );
    assert_exit(&run(&server, &["rm", "-r", "nas:docs", "nas:x"]), 0, &[]);
    assert!(!server.root().join("docs").exists() && !server.root().join("x").exists());
}

#[test]
fn relative_paths_start_at_the_remote_directory_and_a_slash_at_the_root() {
    let server = server(&[]);
    configure_nas(&server, "remote-dir = \"backup\"\n");
    put_local(&server, "a.txt", b"alpha");
    assert_exit(&run(&server, &["put", "a.txt", "nas:"]), 0, &[]);
    assert_eq!(remote_file(&server, "backup/a.txt"), b"alpha");
    assert_eq!(run(&server, &["ls", "nas:"]).stdout, "a.txt\n");
    assert_eq!(run(&server, &["ls", "nas:/"]).stdout, "backup\n");
    put_remote(&server, "top.txt", b"top");
    assert_exit(&run(&server, &["get", "nas:/top.txt", "."]), 0, &[]);
    assert_eq!(
        std::fs::read(server.sandbox.path().join("top.txt")).unwrap(),
        b"top"
    );
    // `..` stays refused by the server, remote directory or not.
    assert_exit(&run(&server, &["ls", "nas:../x"]), 1, &["`..`"]);
}

#[test]
fn an_address_with_its_port_is_a_host() {
    let server = server(&[]);
    put_local(&server, "a.txt", b"alpha");
    let token = server.state_dir().join("token").display().to_string();
    let dest = format!("{}:in/", server.addr());
    let put = run(&server, &["--token-file", &token, "put", "a.txt", &dest]);
    assert_exit(&put, 0, &["pinned the certificate"]);
    assert_eq!(remote_file(&server, "in/a.txt"), b"alpha");
    let listing = run(&server, &["--token-file", &token, "ls", &dest]);
    listing.assert_stdout("a.txt\n");
}

#[test]
fn a_path_with_a_slash_before_its_colon_is_local() {
    let server = server(&[]);
    configure_nas(&server, "");
    put_local(&server, "d/a:b.txt", b"colon");
    assert_exit(&run(&server, &["put", "d/a:b.txt", "nas:"]), 0, &[]);
    assert_eq!(remote_file(&server, "a:b.txt"), b"colon");
    // After the host, the path may hold colons of its own.
    assert_exit(&run(&server, &["get", "nas:a:b.txt", "./x:y.txt"]), 0, &[]);
    assert_eq!(
        std::fs::read(server.sandbox.path().join("x:y.txt")).unwrap(),
        b"colon"
    );
}

#[test]
fn without_a_host_the_arguments_mean_what_they_meant() {
    let server = server(&[]);
    put_remote(&server, "a", b"1");
    put_remote(&server, "b", b"2");
    let token = server.state_dir().join("token").display().to_string();
    let old = |args: &[&str]| {
        super::client(&server, args)
            .env("FERRY_SERVER", server.addr())
            .env("FERRY_TOKEN_FILE", &token)
            .run()
    };
    // Two remote files into `.`, not one file renamed.
    assert_exit(&old(&["get", "a", "b"]), 0, &[]);
    assert_eq!(
        std::fs::read(server.sandbox.path().join("a")).unwrap(),
        b"1"
    );
    assert_eq!(
        std::fs::read(server.sandbox.path().join("b")).unwrap(),
        b"2"
    );
    assert_exit(&old(&["get", "a", "--to", "into"]), 0, &[]);
    assert!(server.sandbox.path().join("into/a").is_file());
    // Two local files into the root, and --to a directory.
    put_local(&server, "c", b"3");
    assert_exit(&old(&["put", "c", "a", "--to", "d"]), 0, &[]);
    assert_eq!(remote_file(&server, "d/c"), b"3");
    assert_exit(&old(&["put", "c"]), 0, &[]);
    assert_eq!(remote_file(&server, "c"), b"3");
    // A destination argument and --to together read two ways.
    configure_nas(&server, "");
    assert_exit(&old(&["put", "c", "nas:x", "--to", "y"]), 2, &["not both"]);
    assert_exit(&old(&["get", "nas:a", "x", "--to", "y"]), 2, &["not both"]);
    // Paths on the default server and on a host in one command.
    assert_exit(&old(&["rm", "a", "nas:b"]), 2, &["one server"]);
    assert_eq!(remote_file(&server, "a"), b"1");
}
