//! Patterns in `get`, `ls` and `rm`, expanded on the server beneath its
//! root.

use super::{assert_exit, configure_nas, put_remote, run, server};

fn logs(server: &crate::util::Server) {
    for (path, text) in [
        ("logs/a.log", "a"),
        ("logs/b.log", "b"),
        ("logs/c.txt", "c"),
        ("logs/.hidden.log", "h"),
        ("logs/old/d.log", "d"),
    ] {
        put_remote(server, path, text.as_bytes());
    }
}

#[test]
fn get_ls_and_rm_expand_patterns_on_the_server() {
    let server = server(&[]);
    configure_nas(&server, "");
    logs(&server);
    assert_exit(&run(&server, &["get", "nas:logs/*.log", "out"]), 0, &[]);
    let mut got: Vec<String> = std::fs::read_dir(server.sandbox.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, ["a.log", "b.log"]);

    let listed = run(&server, &["ls", "nas:logs/[ab].*"]);
    listed.assert_stdout("logs/a.log\nlogs/b.log\n");
    let deep = run(&server, &["ls", "nas:*/*/*.log"]);
    deep.assert_stdout("logs/old/d.log\n");

    assert_exit(&run(&server, &["rm", "nas:logs/*.log"]), 0, &[]);
    let mut left: Vec<String> = std::fs::read_dir(server.root().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, [".hidden.log", "c.txt", "old"]);
}

#[test]
fn a_pattern_that_matches_nothing_is_an_error() {
    let server = server(&[]);
    configure_nas(&server, "");
    logs(&server);
    assert_exit(
        &run(&server, &["ls", "nas:logs/*.zip"]),
        1,
        &["no match", "logs/*.zip"],
    );
    let get = run(&server, &["get", "nas:logs/*.zip", "nas:logs/a.log", "out"]);
    assert_exit(&get, 1, &["no match"]);
    assert!(
        server.sandbox.path().join("out/a.log").is_file(),
        "the rest still came"
    );
    assert_exit(&run(&server, &["rm", "nas:*.zip"]), 1, &["no match"]);
}

#[test]
fn a_pattern_never_leads_out_of_the_root() {
    let server = server(&[]);
    configure_nas(&server, "");
    logs(&server);
    let victim = server.sandbox.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("secret.log"), b"secret").unwrap();
    std::os::unix::fs::symlink(&victim, server.root().join("link")).unwrap();
    assert_exit(&run(&server, &["ls", "nas:link/*"]), 1, &["no match"]);
    let get = run(&server, &["get", "nas:*/*.log", "out"]);
    assert_exit(&get, 0, &[]);
    assert!(!server.sandbox.path().join("out/secret.log").exists());
    assert_exit(&run(&server, &["rm", "nas:*/secret.log"]), 1, &["no match"]);
    assert_eq!(std::fs::read(victim.join("secret.log")).unwrap(), b"secret");
}

#[test]
fn matches_are_shown_from_the_remote_directory_and_escapes_match_as_typed() {
    let server = server(&[]);
    configure_nas(&server, "remote-dir = \"logs\"\n");
    logs(&server);
    put_remote(&server, "logs/star*.txt", b"s");
    assert_eq!(run(&server, &["ls", "nas:*.log"]).stdout, "a.log\nb.log\n");
    assert_eq!(
        run(&server, &["ls", "nas:star\\*.txt"]).stdout,
        "star*.txt\n"
    );
    assert_eq!(
        run(&server, &["ls", "nas:/logs/a.*"]).stdout,
        "/logs/a.log\n"
    );
}

#[test]
fn a_server_cannot_slip_another_path_into_a_patterns_matches() {
    use crate::util::fake::{json_lines, Fake};
    let fake = Fake::start(1, |peer| {
        peer.hello();
        let (request, _) = peer.expect();
        assert_eq!(request["cmd"], "glob", "{request:?}");
        let lie = serde_json::json!({"path": ".bashrc", "kind": "file", "file_size": 5,
                                     "mode": 0o644, "mtime": 1});
        peer.send(
            serde_json::json!({"ok": true, "entries": 1}),
            &json_lines(&[lie]),
        );
    });
    let sandbox = crate::util::Sandbox::new();
    let run = fake.client(&sandbox, &["get", "logs/*.log", "--to", "out"]);
    fake.join();
    run.assert_code(3).assert_stderr_contains(".bashrc");
    assert!(!sandbox.path().join("out").exists());
}
