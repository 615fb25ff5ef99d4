//! `ferry shell --detachable`: the login shell on its pseudo-terminal
//! outlives a killed client, and `ferry attach` from another terminal
//! shows what it printed, takes the keys and sets its window size.

use std::process::Stdio;

use rustix::process::Signal;

use super::one_job;
use crate::exec::pin;
use crate::shell::Terminal;
use crate::util::{Process, Sandbox, Server, DEADLINE};

#[test]
fn a_detachable_shell_outlives_its_client_and_attach_takes_it_over() {
    let sandbox = Sandbox::new();
    let server = Server::start_in(&sandbox, &["--allow-exec"]);
    pin(&server);
    let (mut first, device) = Terminal::open(24, 80);
    let mut command = sandbox.command(&["--server", server.addr(), "shell", "--detachable"]);
    command
        .env("FERRY_STATE", server.state_dir())
        .env("TERM", "xterm")
        .stdin(Stdio::from(device.try_clone().unwrap()))
        .stdout(Stdio::from(device.try_clone().unwrap()))
        .stderr(Stdio::from(device));
    let mut client = Process::spawn(&mut command);
    // On a terminal the client names the job and how to attach to it.
    first.expect("ferry: job ");
    first.expect("if this terminal goes, `ferry attach ");
    first.type_text("echo before=$((1+1))\n");
    first.expect("before=2");
    let id = one_job(&server, "attached");
    client.signal(Signal::KILL);
    assert!(client.wait_within(DEADLINE).is_some());
    one_job(&server, "detached");

    let (mut second, device) = Terminal::open(30, 100);
    let mut command = sandbox.command(&["--server", server.addr(), "attach", &id]);
    command
        .env("FERRY_STATE", server.state_dir())
        .stdin(Stdio::from(device.try_clone().unwrap()))
        .stdout(Stdio::from(device.try_clone().unwrap()))
        .stderr(Stdio::from(device));
    let mut attached = Process::spawn(&mut command);
    // What the shell printed while the first client was there, kept.
    second.expect("before=2");
    second.type_text("echo after=$((2+3))\n");
    second.expect("after=5");
    // The attach's window size reached the remote terminal.
    second.type_text("stty size\n");
    second.expect("30 100");
    second.type_text("exit 4\n");
    let status = attached.wait_within(DEADLINE).expect("attach ended");
    assert_eq!(status.code(), Some(4));
}
