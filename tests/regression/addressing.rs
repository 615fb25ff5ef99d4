//! Addressing: which server a name reaches, and how it is trusted.

use crate::util::{ferry, Server};

/// `localhost` and `127.0.0.1` are one server: a certificate pinned by one
/// name must be required by the other, or a server swapped in at the same
/// address is trusted on first use under the name not yet pinned.
#[test]
fn a_pin_made_by_name_holds_for_the_address_it_reached() {
    let mut first = Server::start(&[]);
    let port = first.addr().rsplit(':').next().unwrap().to_string();
    let by_name = format!("localhost:{port}");
    let run = ferry(&first, &["--server", &by_name, "echo", "hi"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, "hi\n"), "{run:?}");
    first.stop();

    let new_state = first.sandbox.path().join("new-state").display().to_string();
    let addr = first.addr().to_string();
    let second = Server::start_in(&first.sandbox, &["--listen", &addr, "--state", &new_state]);
    assert_ne!(second.fingerprint(), first.fingerprint());
    let run = ferry(&second, &["--server", &addr, "echo", "hi"]);
    run.assert_code(3).assert_stderr_contains("has changed");
    assert!(run.stderr.contains(second.fingerprint()), "{run:?}");
}

/// `-` as get's destination is stdout, as for cp and tar: before, `ferry
/// get a.txt --to -` made a directory named `-` and printed nothing.
#[test]
fn get_to_dash_writes_stdout_not_a_directory_named_dash() {
    let server = Server::start(&[]);
    std::fs::create_dir_all(server.root()).unwrap();
    std::fs::write(server.root().join("a.txt"), b"to stdout").unwrap();
    let run = ferry(&server, &["get", "a.txt", "--to", "-"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, "to stdout"), "{run:?}");
    assert!(!server.sandbox.path().join("-").exists());
}
