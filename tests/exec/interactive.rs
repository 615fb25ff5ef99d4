//! `ferry exec` without a command: the tutorial's loop, one command per
//! line of stdin, over one connection.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::time::Duration;

use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};

use super::{assert_bytes, assert_output, exec, exec_server, output, read_all_in_background};
use crate::util::DEADLINE;

#[test]
fn without_a_command_each_line_of_stdin_runs_in_turn_and_no_prompt_off_a_terminal() {
    let server = exec_server(&[]);
    let out = output(exec(&server, &[]).stdin("echo one\n\necho two >&2\n   \necho three\n"));
    // Empty lines are skipped; stdin is a pipe, so no `>> ` prompt.
    assert_output(&out, 0, "one\nthree\n", "two\n");
}

#[test]
fn the_loop_exits_with_the_status_of_its_last_command() {
    let server = exec_server(&[]);
    let out = output(exec(&server, &[]).stdin("exit 4\necho after\n"));
    assert_output(&out, 0, "after\n", "");
    let out = output(exec(&server, &[]).stdin("echo before\nexit 4\n"));
    assert_output(&out, 4, "before\n", "");
    // Each line runs in a shell of its own: state does not carry over.
    let out = output(exec(&server, &[]).stdin("X=set\necho \"${X-unset}\"\n"));
    assert_output(&out, 0, "unset\n", "");
}

#[test]
fn a_command_in_the_loop_has_an_empty_stdin() {
    let server = exec_server(&[]);
    let out = exec(&server, &[])
        .stdin("cat\necho after\n")
        .output_within(Duration::from_secs(10));
    assert_output(&out, 0, "after\n", "");
}

#[test]
fn the_loop_prompts_on_a_terminal() {
    let server = exec_server(&[]);
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(name.to_str().unwrap())
        .unwrap();

    let mut client = exec(&server, &[]).spawn_with(Stdio::from(terminal), Stdio::piped());
    let stdout = read_all_in_background(client.take_stdout().unwrap());
    let stderr = read_all_in_background(client.take_stderr().unwrap());
    // One line typed, then Ctrl-D at the start of the next: EOF.
    let mut keyboard = std::fs::File::from(master);
    keyboard.write_all(b"echo one\n\x04").unwrap();

    let status = client.wait_within(DEADLINE);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert_bytes("stdout", &stdout.join().unwrap(), b"one\n");
    // A prompt before each line read, and a newline after the last.
    assert_eq!(String::from_utf8_lossy(&stderr.join().unwrap()), ">> >> \n");
    drop(keyboard);
}
