//! The server's identity in its state directory: its TLS certificate and
//! key, created on first start and reused after, with the access token
//! ([`crate::engine::state`]). The key is written before the certificate:
//! a certificate without its key is useless, the reverse is regenerated.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::engine::state;
use crate::transport::tls;
use crate::transport::Fingerprint;

/// The certificate, PEM, inside the state directory.
pub const CERT_FILE: &str = "cert.pem";
/// The private key, PKCS#8 PEM.
pub const KEY_FILE: &str = "key.pem";

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
        state::create_dir(dir)?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            let (cert, key) = tls::generate_certificate()
                .map_err(|err| io::Error::other(format!("cannot make a certificate: {err}")))?;
            // Key first: a certificate without its key is useless, the reverse
            // is regenerated on the next start.
            state::write_private(&key_path, pem("PRIVATE KEY", &key).as_bytes())?;
            state::write_private(&cert_path, pem("CERTIFICATE", &cert).as_bytes())?;
        }
        let cert = read_pem_cert(&cert_path)?;
        let key = read_pem_key(&key_path)?;

        let (token, token_path) = state::load_or_create_token(dir)?;
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
        for name in [CERT_FILE, KEY_FILE, state::TOKEN_FILE] {
            let mode = fs::metadata(state_dir.join(name)).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        assert_eq!(fs::metadata(&state_dir).unwrap().mode() & 0o777, 0o700);
        assert!(first.token.len() >= 40);
        assert!(first.token.chars().all(|c| c.is_ascii_hexdigit()));
        let second = ServerState::load_or_create(&state_dir).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.token, second.token);
        assert_eq!(state::read_token(&state_dir).unwrap(), first.token);
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
