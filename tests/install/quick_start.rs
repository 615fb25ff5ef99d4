//! The README's quick start, on a clean copy of the repository (its
//! tracked files, as `git ls-files` lists them) with `HOME` pointed at an
//! empty directory and no other variable but `PATH`, as on a machine where
//! ferry has never run.
//!
//! The test reads the quick start's commands from README.md and fails if
//! they are not the ones it knows how to run, so the two cannot drift
//! apart. It runs them literally but for two things:
//! - `cargo install --locked --path .` would build a release binary, which
//!   takes minutes (more than CI's budget), and the cargo running this
//!   test holds the build directory. The test checks instead that the
//!   copy's `Cargo.lock` satisfies `--locked` (`cargo metadata --locked
//!   --offline`), and puts the binary under test where `cargo install`
//!   puts one, `$HOME/.cargo/bin`, on `PATH` as rustup sets it.
//! - `ferry serve` listens on 127.0.0.1:9001 and 127.0.0.1:9000 by default,
//!   which other tests or servers on this machine may hold, so it gets
//!   port 0 through `FERRY_LISTEN` and `FERRY_UDP_TIME`, and the client
//!   the port through `FERRY_SERVER`. The token and the pin it finds by
//!   itself, as the README says.
//!
//! The last command, `cargo test`, is this very test run (CI runs it
//! exactly so), so it is checked to be there and not run again.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::Signal;

use crate::util::outside_tool;
use crate::util::{Process, Sandbox, DEADLINE, FERRY};

/// The quick start's commands, as README.md gives them.
const QUICK_START: &[&str] = &[
    "cargo install --locked --path .",
    "ferry serve",
    "ferry echo hello ferry",
    "cargo test",
];

/// A first start generates a key.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// How long a client may take, on a loaded machine.
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// The commands in the `sh` blocks of README.md's "Quick start" section,
/// without their comments.
fn readme_quick_start(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Quick start\n"))
        .expect("README.md has a `## Quick start` section");
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            command if in_sh && !command.is_empty() => {
                let command = command.split(" #").next().unwrap().trim();
                commands.push(command.to_string());
            }
            _ => {}
        }
    }
    commands
}

/// Copies the repository's tracked files into `to`; `None` (reported as a
/// skip) where this is not a git checkout.
fn copy_tracked_files(to: &Path) -> Option<()> {
    let git = outside_tool::program("git", "apt install git")?;
    let repo = env!("CARGO_MANIFEST_DIR");
    let mut ls_files = Command::new(git);
    ls_files.args(["-C", repo, "ls-files", "-z"]);
    let (status, names, _) = run_within(&mut ls_files, CLIENT_DEADLINE);
    if !status.success() {
        outside_tool::skip(
            &format!("{repo} is not a git checkout"),
            "run the tests in a clone; CI does",
        );
        return None;
    }
    for name in names.split('\0').filter(|n| !n.is_empty()) {
        let (from, copy) = (Path::new(repo).join(name), to.join(name));
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        // A tracked file deleted in this working tree is not in the copy.
        if from.exists() {
            std::fs::copy(&from, &copy).unwrap_or_else(|e| panic!("copy {name}: {e}"));
        }
    }
    Some(())
}

/// Where the test's toolchain keeps its downloaded crates: the copy is
/// checked offline against them.
fn real_cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .expect("CARGO_HOME or HOME")
}

/// `cargo install --locked --path .`, as far as a test can: the lock file
/// is complete, and the binary lands in `$HOME/.cargo/bin`.
fn install(repo: &Path, home: &Path, target: &Path) {
    let cargo = Path::new(env!("CARGO"));
    // The toolchain's own directory, where rustc is too: no rustup, which
    // would look for its settings in the empty home.
    let path = format!("{}:/usr/bin:/bin", cargo.parent().unwrap().display());
    // Only this machine's dependencies: a build downloads no others, so
    // packages for other platforms may be missing from the cache.
    let rustc = cargo.with_file_name("rustc");
    let version = Command::new(&rustc).arg("-vV").output().expect("rustc -vV");
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let mut metadata = Command::new(cargo);
    metadata
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", &host])
        .current_dir(repo)
        .env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("CARGO_HOME", real_cargo_home())
        .env("CARGO_TARGET_DIR", target);
    let (status, _, stderr) = run_within(&mut metadata, CLIENT_DEADLINE);
    assert!(
        status.success(),
        "`cargo install --locked` would fail on a clean copy:\n{stderr}"
    );
    let bin = home.join(".cargo/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(FERRY, bin.join("ferry")).unwrap();
}

/// `words` run from `PATH` in `dir`, with only `HOME`, `PATH` and `env`.
fn command(words: &str, dir: &Path, home: &Path, env: &[(&str, &str)]) -> Command {
    let mut words = words.split_whitespace();
    let mut command = Command::new(words.next().unwrap());
    command
        .args(words)
        .current_dir(dir)
        .env_clear()
        .env("HOME", home)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", home.join(".cargo/bin").display()),
        )
        .envs(env.iter().copied());
    command
}

/// Runs `cmd` to its end, killed if it takes longer than `within`:
/// its status, stdout and stderr.
fn run_within(cmd: &mut Command, within: Duration) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = Process::spawn(cmd)
        .collect_within(within)
        .unwrap_or_else(|_| panic!("{cmd:?} still running after {within:?}"));
    (run.status, run.stdout, run.stderr)
}

#[test]
fn the_readme_quick_start_works_on_a_clean_copy_with_an_empty_home() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert_eq!(
        readme_quick_start(&readme),
        QUICK_START,
        "README.md's quick start changed: make this test run what it says now"
    );
    let sandbox = Sandbox::new();
    let (repo, home) = (sandbox.path().join("ferry"), sandbox.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    if copy_tracked_files(&repo).is_none() {
        return;
    }

    // cargo install --locked --path .
    install(&repo, &home, &sandbox.path().join("target"));

    // ferry serve
    let mut serve = command(
        QUICK_START[1],
        &repo,
        &home,
        &[
            ("FERRY_LISTEN", "127.0.0.1:0"),
            ("FERRY_UDP_TIME", "127.0.0.1:0"),
        ],
    );
    serve
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut server = Process::spawn(&mut serve);
    // Its log, shown if the test fails.
    let log = BufReader::new(server.take_stderr().expect("piped stderr"));
    std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            eprintln!("[ferry serve] {line}");
        }
    });
    let stdout = server.take_stdout().expect("piped stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(STARTUP_DEADLINE)
            .unwrap_or_else(|e| panic!("ferry serve did not start ({e}); it said {said:?}"));
        said.push(line.clone());
        if let Some(addr) = line
            .strip_prefix("listening ")
            .and_then(|l| l.strip_suffix(" (TLS)"))
        {
            break addr.to_string();
        }
    };
    assert!(
        said[0].starts_with("ferry ") && said[0].ends_with("/ferry-share"),
        "{said:?}"
    );
    assert!(repo.join("ferry-share").is_dir(), "it serves ./ferry-share");
    let token = home.join(".local/state/ferry/token");
    assert!(
        said.contains(&format!("token in {}", token.display())),
        "{said:?}"
    );
    let fingerprint = said
        .iter()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .expect("a fingerprint line")
        .to_string();

    // ferry echo hello ferry, from another terminal: the token is found in
    // the state directory and the certificate pinned on first use.
    let echo = |expect_pin: bool| {
        let mut echo = command(QUICK_START[2], &home, &home, &[("FERRY_SERVER", &addr)]);
        let (status, stdout, stderr) = run_within(&mut echo, CLIENT_DEADLINE);
        assert!(status.success(), "{stderr}");
        assert_eq!(stdout, "hello ferry\n");
        let pinned = format!(
            "ferry: pinned the certificate of {addr} ({fingerprint}) in {}",
            home.join(".config/ferry/known_hosts").display()
        );
        assert_eq!(stderr.trim_end() == pinned, expect_pin, "{stderr}");
    };
    echo(true);
    let known_hosts = std::fs::read_to_string(home.join(".config/ferry/known_hosts")).unwrap();
    assert!(known_hosts.contains(&fingerprint), "{known_hosts}");
    echo(false);

    // Ctrl-C
    server.signal(Signal::INT);
    let status = server.wait_within(DEADLINE);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn the_quick_start_is_read_from_the_sh_blocks_without_comments() {
    let readme = "# x\n\n## Quick start\n\nText.\n\n```sh\ncargo install --path .   # builds\n\
                  ferry serve\n```\n\n```text\nnot a command\n```\n\n```sh\nferry echo hi\n```\n\n\
                  ## Next\n\n```sh\nferry other\n```\n";
    assert_eq!(
        readme_quick_start(readme),
        ["cargo install --path .", "ferry serve", "ferry echo hi"]
    );
}
