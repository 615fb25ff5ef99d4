//! TLS 1.3 with self-signed certificates pinned by fingerprint, the way ssh
//! pins host keys. The client does not check names or a CA chain: it checks
//! that the server proves possession of the key whose certificate hashes to
//! the pinned fingerprint. The pin check happens after the handshake and
//! before the client sends anything, the token included.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The SHA-256 of a certificate's DER bytes, shown as `SHA256:<base64>`
/// without padding — the form `ssh-keygen -l` prints.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Fingerprint {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0);
        write!(f, "SHA256:{text}")
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(text: &str) -> Result<Fingerprint, String> {
        let hint = "expected SHA256:<43 base64 characters>, as `ferry serve` prints it";
        let b64 = text
            .strip_prefix("SHA256:")
            .ok_or_else(|| format!("`{text}` is not a fingerprint: {hint}"))?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map_err(|_| format!("`{text}` is not valid base64: {hint}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("`{text}` is not 32 bytes long: {hint}"))?;
        Ok(Fingerprint(bytes))
    }
}

/// aws-lc-rs's suites and key exchange groups, in the order ferry prefers.
///
/// Key exchange: the hybrid X25519MLKEM768 first, as OpenSSH 10 does by
/// default, so traffic recorded today stays sealed even against a future
/// quantum computer (ML-KEM) and is no weaker than today if ML-KEM falls
/// (X25519). Plain X25519 and the NIST curves stay as fallbacks for other
/// TLS clients; both of ferry's ends offer the hybrid, so it is what they
/// agree on. It costs about 1.1 KiB more in each direction, once per
/// connection.
///
/// Suites: AES-128-GCM first. Where AES has hardware support it is as safe
/// a choice as AES-256 for data in transit and does 10 rounds per block
/// instead of 14: a small saving of CPU on bulk transfers
/// (bench/RESULTS.md). Both ends prefer it, so it is what they agree on.
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, SECP384R1, X25519, X25519MLKEM768};
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![X25519MLKEM768, X25519, SECP256R1, SECP384R1],
        ..rustls::crypto::aws_lc_rs::default_provider()
    })
}

/// A TLS 1.3-only server configuration for a certificate and its key.
pub fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    unshared_server_config(cert, key).map(Arc::new)
}

/// [`server_config`] before it is shared, for QUIC to add its ALPN to.
pub fn unshared_server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    // Every connection is a fresh hello with a token; no ALPN (over TCP)
    // or early data.
    config.max_early_data_size = 0;
    // A ticket resumes one connection: enough for every extra connection
    // of a striped transfer to skip the full handshake.
    config.send_tls13_tickets = crate::limits::MAX_STREAMS as usize;
    Ok(config)
}

/// A TLS 1.3-only client configuration that accepts any certificate whose
/// handshake signature is valid; the caller must compare the certificate's
/// fingerprint with its pin before sending anything.
///
/// One configuration for the whole process, so its session cache lets a
/// striped transfer's extra connections resume the first one's TLS session
/// instead of doing a full handshake each.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(unshared_client_config()))
        .clone()
}

/// [`client_config`] before it is shared, for QUIC to add its ALPN to.
pub fn unshared_client_config() -> rustls::ClientConfig {
    let provider = provider();
    let verifier = Arc::new(PinnedByCaller {
        provider: provider.clone(),
    });
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("aws-lc-rs supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// The key exchange group a finished handshake agreed on, by its IANA
/// name (`X25519MLKEM768`, `X25519`).
pub fn key_exchange_group(connection: &rustls::CommonState) -> Option<String> {
    let group = connection.negotiated_key_exchange_group()?.name();
    Some(
        group
            .as_str()
            .map_or_else(|| format!("{group:?}"), str::to_string),
    )
}

/// The name to send as SNI: the host if it is a valid name or IP, else a
/// placeholder (names are not checked; the fingerprint is).
pub fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("ferry").expect("valid DNS name"))
}

/// The other end of a TLS stream closed the connection without ending
/// TLS first (no `close_notify`). ferry's frames carry their lengths, so a
/// cut inside a frame is caught by the framing; this only says how the
/// connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedWithoutNotify;

impl fmt::Display for ClosedWithoutNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the other end closed the connection without ending TLS (no close_notify)")
    }
}

impl std::error::Error for ClosedWithoutNotify {}

/// Whether an error is [`ClosedWithoutNotify`].
pub fn closed_without_notify(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<ClosedWithoutNotify>())
}

/// Where in a TLS connection an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The handshake.
    Handshake,
    /// Reading or writing after it.
    Stream,
}

/// rustls's and tokio-rustls's errors in plain words, for users and logs:
/// rustls's own text for a cut connection links to its manual, and others
/// name its internal types. The kind is kept, so callers can still tell a
/// cut connection (`UnexpectedEof`) from bad data (`InvalidData`).
pub fn in_plain_words(err: io::Error, phase: Phase) -> io::Error {
    let kind = err.kind();
    if kind == io::ErrorKind::UnexpectedEof {
        return match phase {
            Phase::Handshake => io::Error::new(
                kind,
                "the other end closed the connection during the TLS handshake",
            ),
            Phase::Stream => io::Error::new(kind, ClosedWithoutNotify),
        };
    }
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return err;
    };
    let words = match tls {
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => {
            "what arrived is not TLS as ferry speaks it".to_string()
        }
        rustls::Error::AlertReceived(alert) => {
            format!("the other end refused the TLS connection (alert {alert:?})")
        }
        rustls::Error::PeerIncompatible(_) => {
            "the other end's TLS cannot agree with ferry's (TLS 1.3 only)".to_string()
        }
        rustls::Error::DecryptError => {
            "data arrived that does not decrypt: changed on the way, or not from the other end"
                .to_string()
        }
        _ => return err,
    };
    io::Error::new(kind, words)
}

/// Checks signatures, defers identity to the fingerprint pin.
#[derive(Debug)]
struct PinnedByCaller {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedByCaller {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Identity is the pinned fingerprint, compared by the caller once
        // the handshake (and with it the signature check below) is done.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A fresh self-signed certificate and its private key, both DER.
pub fn generate_certificate() -> Result<(Vec<u8>, Vec<u8>), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(vec!["ferry".to_string(), "localhost".to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ferry server");
    // Valid for a century: identity comes from the pin, not from expiry.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_has_the_ssh_keygen_form() {
        let fp = Fingerprint::of_certificate(b"certificate bytes");
        let text = fp.to_string();
        assert!(text.starts_with("SHA256:"));
        assert_eq!(text.len(), "SHA256:".len() + 43);
        assert!(!text.ends_with('='));
        assert_eq!(text.parse::<Fingerprint>(), Ok(fp));
    }

    #[test]
    fn fingerprint_matches_an_independent_sha256() {
        // sha256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 b00361a3 96177a9c b410ff61 f20015ad
        let fp = Fingerprint::of_certificate(b"abc");
        assert_eq!(
            fp.to_string(),
            "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"
        );
    }

    #[test]
    fn malformed_fingerprints_are_refused() {
        for bad in ["", "MD5:abc", "SHA256:", "SHA256:!!!!", "SHA256:YWJj"] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_errors_read_in_plain_words_without_links() {
        // rustls's own words for a cut connection, link included.
        let cut = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: \
             https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        );
        let plain = in_plain_words(cut, Phase::Stream);
        assert_eq!(plain.kind(), io::ErrorKind::UnexpectedEof);
        assert!(closed_without_notify(&plain));
        assert_eq!(
            plain.to_string(),
            "the other end closed the connection without ending TLS (no close_notify)"
        );
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        let plain = in_plain_words(eof, Phase::Handshake);
        assert!(!closed_without_notify(&plain));
        assert!(
            plain.to_string().contains("during the TLS handshake"),
            "{plain}"
        );
        let not_tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        let plain = in_plain_words(not_tls, Phase::Handshake);
        assert_eq!(plain.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            plain.to_string(),
            "what arrived is not TLS as ferry speaks it"
        );
        for err in [
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
            rustls::Error::DecryptError,
        ] {
            let plain = in_plain_words(
                io::Error::new(io::ErrorKind::InvalidData, err),
                Phase::Stream,
            );
            let text = plain.to_string();
            assert!(!text.contains("://") && !text.contains("rustls"), "{text}");
        }
        // Errors that are not TLS's pass unchanged.
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            in_plain_words(refused, Phase::Stream).kind(),
            io::ErrorKind::ConnectionRefused
        );
    }

    #[test]
    fn generated_certificates_load_into_a_server_config() {
        let (cert, key) = generate_certificate().unwrap();
        let key = PrivateKeyDer::try_from(key).unwrap();
        server_config(CertificateDer::from(cert), key).unwrap();
        client_config();
    }

    #[test]
    fn our_client_and_server_agree_on_aes_128_gcm() {
        let (cert, key) = generate_certificate().unwrap();
        let key = PrivateKeyDer::try_from(key).unwrap();
        let server_config = server_config(CertificateDer::from(cert), key).unwrap();
        let mut server = rustls::ServerConnection::new(server_config).unwrap();
        let mut client =
            rustls::ClientConnection::new(client_config(), server_name("127.0.0.1")).unwrap();
        // Shuttle the handshake through memory until both ends are done.
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            wire.clear();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!client.is_handshaking());
        let suite = client.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(server.negotiated_cipher_suite().unwrap().suite(), suite);
        // And on the post-quantum hybrid key exchange.
        let group = key_exchange_group(&client);
        assert_eq!(group.as_deref(), Some("X25519MLKEM768"));
        assert_eq!(key_exchange_group(&server), group);
    }
}
