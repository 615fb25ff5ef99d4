//! What runs, where, with what, and what the client exits with: the
//! command's status as a shell reports it, or 3 when ferry itself failed.

use std::os::unix::fs::PermissionsExt;

use super::{arg, assert_ferry_failed, assert_output, exec, exec_server, output};
use crate::util::{Invocation, Sandbox};

#[test]
fn the_client_exits_with_the_commands_exit_code() {
    let server = exec_server(&[]);
    for code in [0, 7, 255] {
        let out = output(exec(&server, &["--", &format!("exit {code}")]));
        assert_output(&out, code, "", "");
    }
    // Argv mode too, and output before the exit is kept.
    let out = output(exec(&server, &["--", "sh", "-c", "echo partial; exit 42"]));
    assert_output(&out, 42, "partial\n", "");
}

#[test]
fn a_command_ended_by_a_signal_exits_128_plus_the_signal() {
    let server = exec_server(&[]);
    let out = output(exec(&server, &["--", "kill -TERM $$"]));
    assert_output(&out, 143, "", "");
    let out = output(exec(
        &server,
        &["--", "echo before; kill -KILL $$; echo never"],
    ));
    assert_output(&out, 137, "before\n", "");
}

#[test]
fn a_missing_command_exits_127_and_a_non_executable_one_126() {
    let server = exec_server(&[]);
    let script = server.root().join("not-executable");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Through the shell, the shell reports it.
    let out = output(exec(&server, &["--", "no-such-command-for-ferry"]));
    assert_eq!((out.code, &out.stdout[..]), (127, &b""[..]), "{out:?}");
    assert!(!out.stderr.is_empty(), "the shell says why: {out:?}");
    let out = output(exec(&server, &["--", "./not-executable"]));
    assert_eq!((out.code, &out.stdout[..]), (126, &b""[..]), "{out:?}");

    // Without a shell, the server reports it the same way.
    let out = output(exec(&server, &["--", "no-such-command-for-ferry", "x"]));
    assert_eq!((out.code, &out.stdout[..]), (127, &b""[..]), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot run"),
        "{out:?}"
    );
    let out = output(exec(&server, &["--", arg(&script), "x"]));
    assert_eq!((out.code, &out.stdout[..]), (126, &b""[..]), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot run"),
        "{out:?}"
    );
}

#[test]
fn a_ferry_failure_exits_3_with_a_ferry_line_and_a_remote_exit_3_without_one() {
    // Exit 3 means "ferry failed" and is also a status any command may
    // exit with: the status space is the remote command's, ferry only
    // borrows 3 from it. What tells the two apart is stderr: a ferry
    // failure says `ferry: ...` there; a command's own exit 3 adds nothing
    // to what the command wrote.
    let server = exec_server(&[]);
    let remote = output(exec(&server, &["--", "exit 3"]));
    assert_output(&remote, 3, "", "");

    // A port nobody listens on: bound, then released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let failed = output(
        Invocation::new(&Sandbox::new(), &["exec", "--", "touch marker"])
            .env("FERRY_SERVER", &addr)
            .env("FERRY_TOKEN", "irrelevant"),
    );
    assert_ferry_failed(&failed, &[&addr]);
}

#[test]
fn cwd_is_relative_to_the_root_and_a_missing_one_is_refused() {
    let server = exec_server(&[]);
    let root = server.root().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();

    let out = output(exec(&server, &["--", "pwd"]));
    assert_output(&out, 0, &format!("{}\n", root.display()), "");
    let out = output(exec(&server, &["--cwd", "sub/deeper", "--", "pwd"]));
    assert_output(
        &out,
        0,
        &format!("{}\n", root.join("sub/deeper").display()),
        "",
    );

    let refused = output(exec(&server, &["--cwd", "missing", "--", "touch marker"]));
    assert_ferry_failed(&refused, &["missing", "does not exist"]);
    let names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["sub"], "nothing ran, nothing was created");
    assert!(!server.sandbox.path().join("marker").exists());
}

#[test]
fn env_adds_variables_to_the_servers_environment_not_the_clients() {
    let server = exec_server(&[]);
    let script =
        r#"printf '%s|' "$GREETING" "$EQ" "${EMPTY-unset}" "${CLIENT_ONLY-unset}" "$HOME""#;
    let out = output(
        exec(
            &server,
            &[
                "--env",
                "GREETING=hello world",
                "--env",
                "EQ=a=b",
                "--env",
                "EMPTY=",
                "--",
                script,
            ],
        )
        .env("CLIENT_ONLY", "from the client"),
    );
    // HOME is the server's, from its own environment.
    let home = server.sandbox.path().join("home");
    assert_output(
        &out,
        0,
        &format!("hello world|a=b||unset|{}|", home.display()),
        "",
    );
}

#[test]
fn several_arguments_run_without_a_shell_and_one_runs_through_it() {
    let server = exec_server(&[]);
    std::fs::write(server.root().join("x"), "").unwrap();
    std::fs::write(server.root().join("y"), "").unwrap();

    // Argv: nothing is expanded, split or sequenced.
    let out = output(exec(
        &server,
        &[
            "--",
            "printf",
            "%s|",
            "$HOME",
            ";",
            "echo injected",
            "*",
            "a b",
        ],
    ));
    assert_output(&out, 0, "$HOME|;|echo injected|*|a b|", "");

    // One argument: the server's shell expands, sequences and globs it.
    let out = output(exec(&server, &["--", "echo $HOME; echo *"]));
    let home = server.sandbox.path().join("home");
    assert_output(&out, 0, &format!("{}\nx y\n", home.display()), "");
}

#[test]
fn a_local_failure_of_the_client_exits_3_not_a_command_status() {
    let server = exec_server(&[]);
    // stdout cannot be written.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut client = exec(&server, &["--", "echo hi"])
        .spawn_with(std::process::Stdio::null(), std::process::Stdio::from(full));
    let stderr = super::read_all_in_background(client.take_stderr().unwrap());
    let status = client.wait_within(crate::util::DEADLINE);
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{stderr}");
    assert!(stderr.starts_with("ferry: "), "{stderr}");

    // A line the loop cannot read.
    let out = output(exec(&server, &[]).stdin(&b"echo before\n\xff\necho after\n"[..]));
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stdout, b"before\n");
}
