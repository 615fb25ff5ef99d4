//! Every service over QUIC through the real client, unchanged.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::Signal;

use super::{over_quic, quic_addr, quic_server, quic_url};
use crate::util::{poll_until, Server, DEADLINE};

/// Pins `server` for its sandbox under the QUIC listener's host and port,
/// as a first connection does.
fn pinned(server: &Server) {
    let line = format!("{} {}\n", quic_addr(server), server.fingerprint());
    server.sandbox.write_known_hosts(&line);
}

#[test]
fn echo_runs_over_quic_and_pins_the_host_and_port_as_over_tcp() {
    let server = quic_server(&[]);
    let run = over_quic(&server, &["echo", "hello", "over", "quic"]).run();
    run.assert_ok()
        .assert_stdout("hello over quic\n")
        .assert_stderr_contains("pinned the certificate");
    let known = server.sandbox.read_known_hosts();
    let expected = format!("{} {}", quic_addr(&server), server.fingerprint());
    assert!(known.contains(&expected), "{known}");
    assert!(!known.contains("quic://"), "{known}");
    // The same pin holds next time: nothing more to say.
    let again = over_quic(&server, &["echo", "again"]).run();
    again.assert_ok().assert_stdout("again\n");
    assert!(!again.stderr.contains("pinned"), "{again:?}");
}

#[test]
fn a_changed_certificate_is_refused_over_quic_as_over_tcp() {
    let server = quic_server(&[]);
    let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let line = format!("{} {other}\n", quic_addr(&server));
    server.sandbox.write_known_hosts(&line);
    let run = over_quic(&server, &["echo", "secret"]).run();
    run.assert_err()
        .assert_stderr_contains("has changed")
        .assert_stdout("");
}

#[test]
fn the_quic_flag_and_a_configured_host_reach_the_quic_listener() {
    let server = quic_server(&[]);
    pinned(&server);
    let addr = quic_addr(&server).to_string();
    let flag = server
        .client(&["--quic", "--server", &addr, "echo", "flag"])
        .run();
    flag.assert_ok().assert_stdout("flag\n");

    let config = server.sandbox.path().join("config.toml");
    let text = format!("[hosts.nas]\nserver = \"{}\"\n", quic_url(&server));
    fs::write(&config, text).unwrap();
    fs::write(server.root().join("f.txt"), b"configured").unwrap();
    let config = config.to_str().unwrap();
    let dl = server.sandbox.path().join("dl");
    fs::create_dir(&dl).unwrap();
    let get = server
        .client(&["--config", config, "get", "nas:f.txt", dl.to_str().unwrap()])
        .run();
    get.assert_ok();
    assert_eq!(fs::read(dl.join("f.txt")).unwrap(), b"configured");
}

#[test]
fn file_commands_and_trees_run_over_quic() {
    let server = quic_server(&[]);
    pinned(&server);
    let local = server.sandbox.path().join("tree");
    fs::create_dir_all(local.join("sub/deeper")).unwrap();
    fs::write(local.join("a.txt"), b"alpha").unwrap();
    fs::write(local.join("sub/b.bin"), vec![7u8; 300_000]).unwrap();
    fs::write(local.join("sub/deeper/c"), b"").unwrap();
    let local_str = local.to_str().unwrap();

    over_quic(&server, &["mkdir", "up"]).run().assert_ok();
    over_quic(&server, &["put", "-r", local_str, "--to", "up"])
        .run()
        .assert_ok();
    assert_eq!(
        fs::read(server.root().join("up/tree/sub/b.bin")).unwrap(),
        vec![7u8; 300_000]
    );
    let ls = over_quic(&server, &["ls", "up/tree"]).run();
    ls.assert_ok();
    assert!(
        ls.stdout.contains("a.txt") && ls.stdout.contains("sub"),
        "{ls:?}"
    );
    let stat = over_quic(&server, &["stat", "up/tree/a.txt"]).run();
    stat.assert_ok().assert_stdout_contains("5");

    let back = server.sandbox.path().join("back");
    fs::create_dir(&back).unwrap();
    over_quic(
        &server,
        &["get", "-r", "up/tree", "--to", back.to_str().unwrap()],
    )
    .run()
    .assert_ok();
    assert_eq!(fs::read(back.join("tree/a.txt")).unwrap(), b"alpha");
    assert_eq!(
        fs::read(back.join("tree/sub/b.bin")).unwrap(),
        vec![7u8; 300_000]
    );
    assert!(back.join("tree/sub/deeper/c").is_file());

    over_quic(&server, &["rm", "-r", "up/tree/sub"])
        .run()
        .assert_ok();
    assert!(!server.root().join("up/tree/sub").exists());
    assert!(server.root().join("up/tree/a.txt").exists());
}

/// The partial file in `dir` and its length, if there is one.
fn partial_in(dir: &Path) -> Option<(PathBuf, u64)> {
    fs::read_dir(dir).ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(".ferry-partial-") {
            return None;
        }
        Some((entry.path(), entry.metadata().ok()?.len()))
    })
}

#[test]
fn a_killed_get_over_quic_resumes_from_its_partial() {
    const BIG: u64 = 96 * 1024 * 1024;
    let server = quic_server(&[]);
    pinned(&server);
    let data: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(server.root().join("big.bin"), &data).unwrap();
    let dl = server.sandbox.path().join("dl");
    fs::create_dir(&dl).unwrap();
    let args = ["get", "big.bin", "--to", dl.to_str().unwrap()];
    let mut first = over_quic(&server, &args).spawn();
    let (_, kept) = poll_until("a partial past a tenth", Duration::from_secs(60), || {
        if let Some(status) = first.wait_within(Duration::ZERO) {
            panic!("the get ended ({status}) before it could be interrupted");
        }
        partial_in(&dl).filter(|(_, len)| *len > BIG / 10)
    });
    first.signal(Signal::KILL);
    assert!(
        first.wait_within(DEADLINE).is_some(),
        "the client outlived SIGKILL"
    );
    assert!(kept < BIG, "the get was done before the kill");

    let mut resumed = vec!["-v"];
    resumed.extend_from_slice(&args);
    let run = over_quic(&server, &resumed).run();
    run.assert_ok()
        .assert_stderr_contains("resumed from an earlier attempt");
    assert!(
        fs::read(dl.join("big.bin")).unwrap() == data,
        "the file is not exact"
    );
    assert!(partial_in(&dl).is_none(), "a partial was left");
}

#[test]
fn exec_keeps_its_streams_and_exit_code_over_quic() {
    let server = quic_server(&[]);
    pinned(&server);
    let run = over_quic(
        &server,
        &["exec", "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
    )
    .run();
    run.assert_code(3)
        .assert_stdout("out\n")
        .assert_stderr_contains("err");
    let stdin = over_quic(&server, &["exec", "--", "tr", "a-z", "A-Z"])
        .stdin("through stdin\n")
        .run();
    stdin.assert_ok().assert_stdout("THROUGH STDIN\n");
}

#[test]
fn a_shell_script_runs_over_quic() {
    let server = quic_server(&[]);
    pinned(&server);
    let run = over_quic(&server, &["shell"])
        .stdin("echo from the script\nexit 4\n")
        .run();
    run.assert_code(4).assert_stdout("from the script\n");
}

#[test]
fn a_chat_member_over_quic_hears_one_over_tcp() {
    let server = quic_server(&[]);
    server.sandbox.write_known_hosts(&format!(
        "{} {}\n{} {}\n",
        quic_addr(&server),
        server.fingerprint(),
        server.addr(),
        server.fingerprint()
    ));
    let mut bob = over_quic(&server, &["chat", "--name", "bob", "--listen"])
        .spawn_with(Stdio::null(), Stdio::piped());
    let (joined_tx, joined) = mpsc::channel();
    let stderr = bob.take_stderr().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("* you are") {
                let _ = joined_tx.send(());
            }
        }
    });
    joined.recv_timeout(DEADLINE).expect("bob joined over QUIC");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = bob.take_stdout().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let run = server
        .client(&["chat", "--name", "alice", "--send", "hi from tcp"])
        .run();
    run.assert_ok();
    let said = "[lobby] alice: hi from tcp";
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some(said) {
        match lines.recv_timeout(DEADLINE) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("bob never heard alice; saw {seen:?}"),
        }
    }
}

#[test]
fn sync_runs_both_ways_over_quic_and_sends_an_edit_as_a_delta() {
    let server = quic_server(&[]);
    pinned(&server);
    let config = server.sandbox.path().join("config.toml");
    let text = format!("[hosts.nas]\nserver = \"{}\"\n", quic_url(&server));
    fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let src = server.sandbox.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let mut bytes: Vec<u8> = (0..400_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    fs::write(src.join("big"), &bytes).unwrap();
    let src_arg = format!("{}/", src.to_str().unwrap());
    let sync = |args: &[&str]| {
        let mut full = vec!["--config", config, "sync", "--json"];
        full.extend_from_slice(args);
        server.client(&full).run()
    };
    sync(&[&src_arg, "nas:m"]).assert_ok();
    assert_eq!(fs::read(server.root().join("m/big")).unwrap(), bytes);
    bytes[200_000..200_010].copy_from_slice(b"0123456789");
    fs::write(src.join("big"), &bytes).unwrap();
    let run = sync(&[&src_arg, "nas:m"]);
    run.assert_ok()
        .assert_stdout_contains(r#"{"change":"delta","path":"big"}"#);
    assert_eq!(fs::read(server.root().join("m/big")).unwrap(), bytes);

    let back = server.sandbox.path().join("back");
    sync(&["nas:m/", back.to_str().unwrap()]).assert_ok();
    assert_eq!(fs::read(back.join("big")).unwrap(), bytes);
}
