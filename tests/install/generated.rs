//! What the binary prints for installing it: its version, shell
//! completions and manual pages, each mentioning the commands it covers.

use crate::util::outside_tool;
use crate::util::{Invocation, Run, Sandbox};

/// `ferry ARGS` in a fresh sandbox, to its end.
fn ferry(args: &[&str]) -> Run {
    Invocation::new(&Sandbox::new(), args).run()
}

/// Commands every completion script and ferry(1) must name.
const SOME_COMMANDS: &[&str] = &["serve", "echo", "put", "get", "exec", "completions", "man"];

#[test]
fn the_version_names_the_protocol_version_too() {
    let run = ferry(&["--version"]);
    run.assert_ok();
    assert_eq!(
        run.stdout,
        format!("ferry {} (protocol 1)\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let run = ferry(&["completions", shell]);
        run.assert_ok();
        for command in SOME_COMMANDS {
            assert!(run.stdout.contains(command), "{shell}: no {command}");
        }
    }
    let run = ferry(&["completions", "tcsh"]);
    assert_eq!(run.code, 2, "an unknown shell is a usage error: {run:?}");
    run.assert_stderr_contains("bash");
}

#[test]
fn completions_and_pages_need_no_token_or_server() {
    let sandbox = Sandbox::new();
    for args in [&["completions", "zsh"][..], &["man"]] {
        let run = Invocation::new(&sandbox, args)
            .env("FERRY_TOKEN_FILE", sandbox.path().join("no-such-token"))
            .env("FERRY_SERVER", "127.0.0.1:1")
            .run();
        run.assert_ok();
        assert!(!run.stdout.is_empty());
    }
}

#[test]
fn the_bash_completion_script_is_valid_bash() {
    let Some(bash) = outside_tool::program("bash", "apt install bash") else {
        return;
    };
    let sandbox = Sandbox::new();
    let script = sandbox.path().join("ferry.bash");
    let run = ferry(&["completions", "bash"]);
    std::fs::write(&script, &run.stdout).unwrap();
    // Sourced, it defines the completion function; -n alone would only
    // parse it.
    let output = std::process::Command::new(bash)
        .arg("-c")
        .arg(r#"source "$1" && declare -F _ferry"#)
        .arg("bash")
        .arg(&script)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "_ferry");
}

#[test]
fn the_man_page_is_roff_naming_every_command() {
    let run = ferry(&["man"]);
    run.assert_ok();
    assert!(run.stdout.contains(".TH ferry 1"), "{}", run.stdout);
    assert!(run.stdout.contains(".SH SUBCOMMANDS"), "{}", run.stdout);
    for command in SOME_COMMANDS {
        assert!(
            run.stdout.contains(&format!("ferry\\-{command}(1)")),
            "no {command}"
        );
    }
}

#[test]
fn man_to_a_directory_writes_a_page_per_command() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("share/man/man1");
    let run = Invocation::new(&sandbox, &["man", "--to", dir.to_str().unwrap()]).run();
    run.assert_ok().assert_stdout("");
    for page in ["ferry.1", "ferry-serve.1", "ferry-exec.1", "ferry-man.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".SH NAME"), "{page}");
    }
    let serve = std::fs::read_to_string(dir.join("ferry-serve.1")).unwrap();
    assert!(serve.contains("\\-\\-systemd\\-unit"), "{serve}");
}

#[test]
fn a_page_for_a_command_that_does_not_exist_is_a_usage_error() {
    let run = ferry(&["man", "sevre"]);
    run.assert_code(2)
        .assert_stderr_contains("no command `sevre`")
        .assert_stderr_contains("serve");
}
