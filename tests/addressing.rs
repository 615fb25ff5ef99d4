//! Addressing: hosts by name from the client's config file, `HOST:PATH`
//! on every file command as scp reads it, copies under a new name, stdin
//! and stdout as files, and patterns expanded on the server.
//!
//! Each server keeps its state outside the sandbox's default state
//! directory, and clients run without `FERRY_SERVER` or `FERRY_STATE`: the
//! only way a client finds the server, its token and its certificate is
//! the config file, so a test passes only if the host entry was used.

mod globs;
mod hosts;
mod paths;
mod rename;
mod streams;

use std::path::PathBuf;

use crate::util::{Invocation, Run, Sandbox, Server};

/// A server whose token a client can only learn from a host entry.
pub(super) fn server(args: &[&str]) -> Server {
    let sandbox = Sandbox::new();
    let state = sandbox.path().join("nas-state").display().to_string();
    let mut full = vec!["--state", state.as_str()];
    full.extend_from_slice(args);
    Server::start_in(&sandbox, &full)
}

/// The client's default config file in `server`'s sandbox.
pub(super) fn config_path(server: &Server) -> PathBuf {
    server.sandbox.path().join("xdg-config/ferry/config.toml")
}

/// Writes the default config file: `[hosts.nas]` for `server` with its
/// token file and fingerprint, plus `extra` lines in that table.
pub(super) fn configure_nas(server: &Server, extra: &str) {
    let path = config_path(server);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        format!(
            "[hosts.nas]\nserver = \"{}\"\ntoken-file = \"{}\"\nfingerprint = \"{}\"\n{extra}",
            server.addr(),
            server.state_dir().join("token").display(),
            server.fingerprint()
        ),
    )
    .unwrap();
}

/// `ferry ARGS` in `server`'s sandbox with no server, token or state in
/// its environment.
pub(super) fn client(server: &Server, args: &[&str]) -> Invocation {
    Invocation::new(&server.sandbox, args)
}

/// Runs `ferry ARGS` as [`client`] does.
pub(super) fn run(server: &Server, args: &[&str]) -> Run {
    client(server, args).run()
}

/// Asserts a run exited `code` and said each of `needles` on stderr.
#[track_caller]
pub(super) fn assert_exit(run: &Run, code: i32, needles: &[&str]) {
    run.assert_code(code);
    for needle in needles {
        run.assert_stderr_contains(needle);
    }
}

/// A file in the served root, read.
pub(super) fn remote_file(server: &Server, path: &str) -> Vec<u8> {
    std::fs::read(server.root().join(path))
        .unwrap_or_else(|e| panic!("read {path} in the root: {e}"))
}

/// Writes a file in the served root (and its directories).
pub(super) fn put_remote(server: &Server, path: &str, bytes: &[u8]) {
    let full = server.root().join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, bytes).unwrap();
}

/// Writes a file in the sandbox, where clients run.
pub(super) fn put_local(server: &Server, path: &str, bytes: &[u8]) -> PathBuf {
    let full = server.sandbox.path().join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(&full, bytes).unwrap();
    full
}
