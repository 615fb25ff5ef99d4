//! The stand-in for a user's home that every server and client of a test
//! runs in, so no test reads or writes the real user's pins, tokens or files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The binary under test.
pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// A temporary stand-in for a user's home directory.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A fresh, empty sandbox.
    pub fn new() -> Arc<Sandbox> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-")
            .tempdir()
            .expect("create a temporary directory");
        Arc::new(Sandbox { dir })
    }

    /// The sandbox directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `$XDG_STATE_HOME/ferry`: where a client looks for the token of a
    /// server on this machine, and where servers keep their state unless a
    /// test passes `--state`.
    pub fn default_state_dir(&self) -> PathBuf {
        self.path().join("xdg-state/ferry")
    }

    /// `$XDG_CONFIG_HOME/ferry/known_hosts`, where the client pins servers.
    pub fn known_hosts(&self) -> PathBuf {
        self.path().join("xdg-config/ferry/known_hosts")
    }

    /// The known-hosts file's text.
    pub fn read_known_hosts(&self) -> String {
        std::fs::read_to_string(self.known_hosts()).expect("read known_hosts")
    }

    /// Writes the known-hosts file, as a user editing it would.
    pub fn write_known_hosts(&self, text: &str) {
        let path = self.known_hosts();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }

    /// The `ferry` binary with `args`, in this sandbox's environment only.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(FERRY);
        cmd.args(args)
            .env_clear()
            .env("HOME", self.path().join("home"))
            .env("XDG_STATE_HOME", self.path().join("xdg-state"))
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env("RUST_BACKTRACE", "1")
            .current_dir(self.path());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd
    }
}
