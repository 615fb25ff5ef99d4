//! The state directory: where a server keeps its identity
//! ([`crate::server::identity`]) and access token, and where a client on the
//! same machine finds that token. Every file is written 0600 through a
//! temporary file and a rename, so a crash never leaves a half-written
//! secret, and the directory itself is 0700.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The access token, one line.
pub const TOKEN_FILE: &str = "token";

/// Reads the token of a server whose state is in `dir`, as a client on the
/// same machine does when no token is given.
pub fn read_token(dir: &Path) -> io::Result<String> {
    let text = fs::read_to_string(dir.join(TOKEN_FILE))?;
    Ok(text.trim().to_string())
}

/// The default state directory: `$XDG_STATE_HOME/ferry`, else
/// `~/.local/state/ferry`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("ferry"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".local/state/ferry"))
}

/// Creates the state directory `dir` (0700) if it is missing.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The token in `dir`, created if missing or empty, and where it lives.
pub fn load_or_create_token(dir: &Path) -> io::Result<(String, PathBuf)> {
    let token_path = dir.join(TOKEN_FILE);
    let token = match fs::read_to_string(&token_path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        Ok(_) => create_token(&token_path)?,
        Err(err) if err.kind() == io::ErrorKind::NotFound => create_token(&token_path)?,
        Err(err) => return Err(err),
    };
    Ok((token, token_path))
}

fn create_token(path: &Path) -> io::Result<String> {
    let token = new_token()?;
    write_private(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// A fresh random token: 32 bytes from the system, in hex, so a token never
/// starts with `-` and `--token $(cat token)` cannot be read as a flag.
pub fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| io::Error::other("the system random source failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `change` holding an exclusive lock (flock) on `lock_name` in the
/// state directory, so two processes changing one file (`ferry tokens` and
/// the server pairing a client) cannot lose each other's change. Each file
/// has its own lock: flock does not nest within one process.
pub fn with_lock<T>(
    state_dir: &Path,
    lock_name: &str,
    change: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let lock_path = state_dir.join(lock_name);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|err| format!("cannot open {}: {err}", lock_path.display()))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|err| format!("cannot lock {}: {err}", lock_path.display()))?;
    change()
}

/// Writes `contents` to `path` with mode 0600, atomically.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    // An existing file of ours keeps 0600 even if someone loosened it.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
