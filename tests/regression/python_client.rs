//! The Python client (`clients/python/ferry_client.py`) against a real
//! server: what it writes on the user's disk.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::compat::python;
use crate::util::Server;

/// Downloads `secret.txt` into `local`, after planting a symlink to
/// `victim` at every partial name an attacker can predict: the old
/// `<local>.ferry-part-<pid>`, for this process's pid and its neighbours
/// (pids are handed out in order), and `local` itself.
const PLANT_AND_GET: &str = r#"
import os, sys
from ferry_client import Client
host, port, token, fingerprint, local, victim = sys.argv[1:]
os.umask(0o027)
pid = os.getpid()
for guess in range(max(1, pid - 8), pid + 9):
    os.symlink(victim, "%s.ferry-part-%d" % (local, guess))
os.symlink(victim, local)
with Client.connect(host, int(port), token=token, fingerprint=fingerprint) as ferry:
    ferry.get("secret.txt", local)
"#;

/// Another local user who can write to the download directory must not be
/// able to make the Python client write through a planted symlink: the
/// victim stays untouched, the download lands at its name with the
/// server's mode less the user's umask, and no partial is left behind.
#[test]
fn python_get_never_writes_through_a_planted_partial() {
    let server = Server::start(&[]);
    let data = b"the server's file\n";
    fs::create_dir_all(server.root()).unwrap();
    let secret = server.root().join("secret.txt");
    fs::write(&secret, data).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o775)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let downloads = work.path().join("downloads");
    fs::create_dir(&downloads).unwrap();
    let victim = work.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    let local = downloads.join("copy.txt");

    let client_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let (host, port) = server.addr().rsplit_once(':').unwrap();
    let run = python(
        &client_dir,
        &[
            "-c",
            PLANT_AND_GET,
            host,
            port,
            &server.token(),
            server.fingerprint(),
            local.to_str().unwrap(),
            victim.to_str().unwrap(),
        ],
        &[("PYTHONPATH", client_dir.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "the Python client failed:\n{}", run.stderr);

    assert_eq!(fs::read(&victim).unwrap(), b"precious", "victim written");
    let local_meta = fs::symlink_metadata(&local).unwrap();
    assert!(local_meta.is_file(), "{local_meta:?}");
    assert_eq!(fs::read(&local).unwrap(), data);
    // 0775 from the server, less the client's umask 027.
    assert_eq!(local_meta.permissions().mode() & 0o7777, 0o750);
    let mut left: Vec<String> = fs::read_dir(&downloads)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "copy.txt")
        .collect();
    left.sort();
    // Only the planted symlinks remain, still pointing at the victim.
    assert_eq!(left.len(), 17, "{left:?}");
    for name in &left {
        assert!(
            name.starts_with("copy.txt.ferry-part-"),
            "left behind: {name}"
        );
        assert_eq!(fs::read_link(downloads.join(name)).unwrap(), victim);
    }
}

/// Connects over TLS and over plaintext and prints, for each, whether the
/// socket sends small writes at once (TCP_NODELAY).
const NODELAY: &str = r#"
import socket, sys
from ferry_client import Client
host, tls_port, tls_token, fingerprint, plain_port, plain_token = sys.argv[1:]
for port, token, pin in ((tls_port, tls_token, fingerprint), (plain_port, plain_token, None)):
    with Client.connect(host, int(port), token=token, fingerprint=pin, plaintext=pin is None) as ferry:
        print(ferry._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0)
        # The stall it prevents: a stdin frame and the end frame written
        # back to back, the second held by Nagle until the first is acked.
        assert ferry.exec(["cat"], stdin=b"x" * 5000).stdout == b"x" * 5000
"#;

/// An exec with stdin writes two small frames in a row (stdin, then its
/// end); with Nagle's algorithm on, the second waited for the server's
/// delayed ACK, about 40 ms per command: the engines under `tests/fleet/`
/// ran each module that much slower. The client sets TCP_NODELAY, as the
/// Rust client does. (Checked on the socket: a timing check would flake on
/// a loaded machine.)
#[test]
fn python_client_sends_small_frames_without_waiting_for_acks() {
    let tls = Server::start(&["--allow-exec"]);
    let plain = Server::start(&["--plaintext", "--allow-exec"]);
    let client_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let port = |server: &Server| server.addr().rsplit_once(':').unwrap().1.to_string();
    let run = python(
        &client_dir,
        &[
            "-c",
            NODELAY,
            "127.0.0.1",
            &port(&tls),
            &tls.token(),
            tls.fingerprint(),
            &port(&plain),
            &plain.token(),
        ],
        &[("PYTHONPATH", client_dir.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "the Python client failed:\n{}", run.stderr);
    assert_eq!(run.stdout, "True\nTrue\n");
}
