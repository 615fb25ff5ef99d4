//! `ferry serve --seed-compat`: the socket tutorial's own Python clients
//! (`compat/tutorial_clients.py`, written as the tutorial writes them)
//! against the real server, hostile bytes from Rust, and the Python client
//! of the native protocol (`clients/python/`). One file per concern; the
//! helpers they share are here.

mod formats;
mod python_client;
mod refusals;
mod udp_ssh;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::outside_tool;
use crate::util::{Process, Server};

/// How long a Python program may run; the 2 GiB download is the longest.
const PYTHON_DEADLINE: Duration = Duration::from_secs(120);

/// The mode a seed-compat `listening` line names.
const COMPAT_MODE: &str = "seed-compat, plaintext, no token";

/// A server with one seed-compat listener on a loopback port, plus `args`.
fn compat_server(args: &[&str]) -> Server {
    let mut full = vec!["--seed-compat", "127.0.0.1:0"];
    full.extend_from_slice(args);
    Server::start(&full)
}

/// The seed-compat address the server announced: host and port.
fn compat_addr(server: &Server) -> (String, String) {
    let line = server
        .listening()
        .iter()
        .find(|l| l.mode == COMPAT_MODE)
        .unwrap_or_else(|| panic!("no seed-compat listening line: {:?}", server.listening()));
    let (host, port) = line.addr.rsplit_once(':').expect("HOST:PORT");
    (host.to_string(), port.to_string())
}

/// What a Python program did.
#[derive(Debug)]
pub(crate) struct PythonRun {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `python3 ARGS` in `dir` with `env` added, to its end (killed after
/// [`PYTHON_DEADLINE`]), without the modules a test pretends are missing.
pub(crate) fn python(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> PythonRun {
    python_fed(dir, args, env, b"")
}

/// [`python`] with `stdin` as the program's input, then its end.
pub(crate) fn python_fed(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> PythonRun {
    let mut cmd = Command::new("python3");
    cmd.args(args)
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied());
    let hidden = outside_tool::python_path_hiding_modules();
    if let Some(hidden) = &hidden {
        let given = env.iter().find(|(key, _)| *key == "PYTHONPATH");
        let path = match given {
            Some((_, path)) => format!("{}:{path}", hidden.path().display()),
            None => hidden.path().display().to_string(),
        };
        cmd.env("PYTHONPATH", path);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut process = Process::spawn(&mut cmd);
    let mut input = process.take_stdin().expect("piped stdin");
    let stdin = stdin.to_vec();
    // A program that stops reading must not hold the test: fed aside.
    std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&stdin);
    });
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(process.take_stdout().expect("piped stdout")));
    let stderr = read(Box::new(process.take_stderr().expect("piped stderr")));
    let status = process.wait_within(PYTHON_DEADLINE);
    let Some(status) = status else {
        drop(process);
        panic!(
            "python3 {args:?} still running after {PYTHON_DEADLINE:?}; stderr:\n{}",
            stderr.join().unwrap()
        );
    };
    let run = PythonRun {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    eprintln!(
        "[python3] {args:?} -> exit {}, stderr {:?}",
        run.code, run.stderr
    );
    run
}

/// `tests/compat/`, where the Python programs live.
fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// Runs the tutorial's clients against `server`'s seed-compat listener with
/// `ops` (`ssh:CMD`, `get:NAME`, `put:PATH`, `--recv N`, `--download DIR`)
/// in `dir`, and returns one result per request. Fails the test if the
/// program fails.
fn tutorial(server: &Server, dir: &Path, ops: &[&str]) -> Vec<Value> {
    let (host, port) = compat_addr(server);
    let script = scripts_dir().join("tutorial_clients.py");
    let mut args = vec![script.to_str().unwrap(), &host, &port];
    args.extend_from_slice(ops);
    let run = python(dir, &args, &[]);
    assert_eq!(run.code, 0, "the tutorial's client failed:\n{}", run.stderr);
    run.stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON result line"))
        .collect()
}

/// A result's base64 field, decoded.
fn b64(value: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("a base64 string"))
        .expect("valid base64")
}

/// md5 as 32 lowercase hex digits.
fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
