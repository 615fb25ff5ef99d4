//! ferry as the transport of orchestration engines: real pyinfra and real
//! ansible-playbook (`clients/python/`'s connector and connection plugin)
//! against two `ferry serve` on loopback, each with its own root, and the
//! files checked on each root afterwards.
//!
//! The engines come from the virtual environment named by `FERRY_FLEET_VENV`
//! (`.ci/run` makes one), else from `PATH`; without them each test says so
//! in one SKIPPED line, or fails under `FERRY_REQUIRE_ALL_TESTS=1`. The
//! package is installed from this checkout with the engine's own pip into a
//! directory of the test (`pip install --target`), so the test runs the
//! code as a user's `pip install ./clients/python` would, entry point and
//! collection included.

mod ansible;
mod pyinfra;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{outside_tool, Process, Server};

/// The variable naming a virtual environment that has the engines.
const FLEET_VENV: &str = "FERRY_FLEET_VENV";

/// How to get the engines, for the SKIPPED line.
const HOW_TO_INSTALL: &str = "python3 -m venv V && V/bin/pip install pyinfra ansible-core \
                              setuptools wheel, then FERRY_FLEET_VENV=V";

/// How long one engine run may take: a playbook of a dozen tasks on two
/// hosts takes 15 s on a loaded two-core machine.
const ENGINE_DEADLINE: Duration = Duration::from_secs(240);

/// An engine's program (`pyinfra`, `ansible-playbook`) from
/// `$FERRY_FLEET_VENV/bin`, else `PATH`; `None` after reporting the test
/// skipped.
#[track_caller]
fn engine(name: &str) -> Option<PathBuf> {
    if let Some(venv) = std::env::var_os(FLEET_VENV) {
        let program = Path::new(&venv).join("bin").join(name);
        if program.is_file() {
            return Some(program);
        }
        outside_tool::skip(
            &format!("{name} not found in {FLEET_VENV}={}", program.display()),
            HOW_TO_INSTALL,
        );
        return None;
    }
    outside_tool::program(name, HOW_TO_INSTALL)
}

/// The Python beside an engine's program: the one it runs on.
fn engine_python(program: &Path) -> PathBuf {
    let beside = program.with_file_name("python3");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("python3")
    }
}

/// What an engine run did.
#[derive(Debug)]
struct EngineRun {
    code: i32,
    stdout: String,
    stderr: String,
}

impl EngineRun {
    /// Both streams, for assertions on messages wherever the engine put them.
    fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A test's working directory: the installed package, the engine's home
/// and files, and the two servers with their token files.
struct Fleet {
    dir: tempfile::TempDir,
    package: PathBuf,
    python: PathBuf,
    servers: Vec<Server>,
}

impl Fleet {
    /// Two servers with `--allow-exec`, and the package installed for the
    /// engine `program`.
    fn start(program: &Path) -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("ferry-fleet-")
            .tempdir()
            .unwrap();
        let python = engine_python(program);
        let package = install_package(&python, dir.path());
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let servers = (0..2).map(|_| Server::start(&["--allow-exec"])).collect();
        let fleet = Fleet {
            dir,
            package,
            python,
            servers,
        };
        for (i, server) in fleet.servers.iter().enumerate() {
            std::fs::create_dir_all(server.root()).unwrap();
            let token = fleet.token_file(i);
            std::fs::write(&token, server.token()).unwrap();
            std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        fleet
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The token file of server `i`, mode 0600, as a user keeps one.
    fn token_file(&self, i: usize) -> PathBuf {
        self.path().join(format!("server{i}.token"))
    }

    /// `(host, port)` of server `i`.
    fn address(&self, i: usize) -> (String, String) {
        let (host, port) = self.servers[i].addr().rsplit_once(':').unwrap();
        (host.to_string(), port.to_string())
    }

    /// `program ARGS` in the fleet's directory, with a clean environment
    /// but for the package on `PYTHONPATH` and `extra`, to its end.
    fn run(&self, program: &Path, args: &[&str], extra: &[(&str, &str)]) -> EngineRun {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path().join("home"))
            // No real ferry config or known_hosts: only what the test gives.
            .env("XDG_CONFIG_HOME", self.path().join("home/.config"))
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env("PYTHONPATH", &self.package)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let collected = Process::spawn(&mut cmd)
            .collect_within(ENGINE_DEADLINE)
            .unwrap_or_else(|stdout| {
                panic!(
                    "{} still running after {ENGINE_DEADLINE:?}; stdout:\n{stdout}",
                    program.display()
                )
            });
        let run = EngineRun {
            code: collected.status.code().unwrap_or(-1),
            stdout: collected.stdout,
            stderr: collected.stderr,
        };
        // Shown when the test fails.
        eprintln!(
            "[{}] {args:?} -> exit {}\n--- stdout\n{}\n--- stderr\n{}",
            program.display(),
            run.code,
            run.stdout,
            run.stderr
        );
        run
    }

    /// Checks that no `touch PWNED` of [`HOSTILE_NAME`] ran, on the
    /// engine's side or in any server's sandbox.
    fn assert_no_hostile_name_ran(&self) {
        for dir in [self.path()]
            .into_iter()
            .chain(self.servers.iter().map(|s| s.sandbox.path()))
        {
            let pwned: Vec<_> = tree(dir)
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("PWNED")
                })
                .collect();
            assert!(pwned.is_empty(), "a hostile name ran a command: {pwned:?}");
        }
    }
}

/// Installs `clients/python` with `python`'s pip into `dir/package` (from a
/// copy, since setuptools writes its build files beside the source) and
/// returns that directory, for `PYTHONPATH`.
fn install_package(python: &Path, dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let copy = dir.join("source");
    copy_tree(&source, &copy);
    let package = dir.join("package");
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args([
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
        ])
        .arg(&package)
        .arg(&copy)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run pip");
    assert!(
        output.status.success(),
        "pip install ./clients/python failed (the venv needs setuptools and wheel):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    package
}

/// Copies the files of `from` into `to`, but for Python's caches.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" || name == "build" || name.to_string_lossy().ends_with(".egg-info")
        {
            continue;
        }
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// The mode bits of a file.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every path beneath `dir`, sorted, for "nothing else was written".
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Whether a process whose command line holds `marker` is running.
fn process_running(marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(marker)
            })
            .unwrap_or(false)
    })
}

/// A hostile remote file name: a newline, a command substitution, quotes
/// and a leading dash, all of which a shell would act on if spliced raw.
const HOSTILE_NAME: &str = "-x\n;$(touch PWNED)'\"`touch PWNED2`";
