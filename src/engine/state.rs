//! The server's state directory: its TLS certificate and key and its access
//! token, created on first start and reused after. Every file is written
//! 0600 through a temporary file and a rename, so a crash never leaves a
//! half-written key, and the directory itself is 0700.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::transport::tls;
use crate::transport::Fingerprint;

/// File names inside the state directory.
pub const CERT_FILE: &str = "cert.pem";
/// The private key, PKCS#8 PEM.
pub const KEY_FILE: &str = "key.pem";
/// The access token, one line.
pub const TOKEN_FILE: &str = "token";

/// What the server loads from its state directory.
#[derive(Debug)]
pub struct ServerState {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// The access token clients must present.
    pub token: String,
    /// Where the token lives, to tell the operator.
    pub token_path: PathBuf,
}

impl ServerState {
    /// The certificate's fingerprint, as clients pin it.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_certificate(&self.cert)
    }

    /// Loads the state in `dir`, creating whatever is missing.
    pub fn load_or_create(dir: &Path) -> io::Result<ServerState> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            let (cert, key) = tls::generate_certificate()
                .map_err(|err| io::Error::other(format!("cannot make a certificate: {err}")))?;
            // Key first: a certificate without its key is useless, the reverse
            // is regenerated on the next start.
            write_private(&key_path, pem("PRIVATE KEY", &key).as_bytes())?;
            write_private(&cert_path, pem("CERTIFICATE", &cert).as_bytes())?;
        }
        let cert = read_pem_cert(&cert_path)?;
        let key = read_pem_key(&key_path)?;

        let token_path = dir.join(TOKEN_FILE);
        let token = match fs::read_to_string(&token_path) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
            Ok(_) => create_token(&token_path)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => create_token(&token_path)?,
            Err(err) => return Err(err),
        };
        Ok(ServerState {
            cert,
            key,
            token,
            token_path,
        })
    }
}

/// The certificate fingerprint of the server whose state is in `dir`.
pub fn read_fingerprint(dir: &Path) -> io::Result<Fingerprint> {
    Ok(Fingerprint::of_certificate(&read_pem_cert(
        &dir.join(CERT_FILE),
    )?))
}

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

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn read_pem_cert(path: &Path) -> io::Result<CertificateDer<'static>> {
    let data = fs::read(path)?;
    let cert = rustls_pemfile::certs(&mut data.as_slice())
        .next()
        .transpose()?
        .ok_or_else(|| invalid(path, "no certificate in it"))?;
    Ok(cert.into_owned())
}

fn read_pem_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    let data = fs::read(path)?;
    let key = rustls_pemfile::pkcs8_private_keys(&mut data.as_slice())
        .next()
        .transpose()?
        .ok_or_else(|| invalid(path, "no PKCS#8 private key in it"))?;
    Ok(PrivateKeyDer::from(PrivatePkcs8KeyDer::from(
        key.secret_pkcs8_der().to_vec(),
    )))
}

fn invalid(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}; delete it to make a new one", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn first_start_creates_private_files_and_later_starts_reuse_them() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let first = ServerState::load_or_create(&state_dir).unwrap();
        for name in [CERT_FILE, KEY_FILE, TOKEN_FILE] {
            let mode = fs::metadata(state_dir.join(name)).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        assert_eq!(fs::metadata(&state_dir).unwrap().mode() & 0o777, 0o700);
        assert!(first.token.len() >= 40);
        assert!(first.token.chars().all(|c| c.is_ascii_hexdigit()));
        let second = ServerState::load_or_create(&state_dir).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.token, second.token);
        assert_eq!(read_token(&state_dir).unwrap(), first.token);
        assert!(!state_dir.join("token.tmp").exists());
    }

    #[test]
    fn two_servers_get_different_tokens_and_certificates() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let a = ServerState::load_or_create(a.path()).unwrap();
        let b = ServerState::load_or_create(b.path()).unwrap();
        assert_ne!(a.token, b.token);
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
