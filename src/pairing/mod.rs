//! Pairing, as both ends run it: a second machine earns a token of its own
//! by typing a short one-time code the server's machine printed, with no
//! secret copied by hand and no trust-on-first-use window.
//!
//! The code is `SLOT-word-word-word`: the slot names the invite on the
//! server, the three words (24 bits) are a password. Over the TLS
//! connection, before any hello, the two ends run SPAKE2 with that password
//! and with the server's certificate fingerprint bound into the exchange
//! (the server uses its own, the client the one it was shown), then prove
//! to each other that they derived the same key. A man in the middle with
//! his own certificate makes the fingerprints differ, so the keys differ
//! and the proofs fail; a wrong code fails the same way, and teaches the
//! guesser nothing beyond "wrong". The server allows a few tries per code.
//!
//! ```text
//! client                                                         server
//!   | -- {"cmd":"pair","version":1,"slot":7,"spake2":A,"name":N} -->
//!   | <--------------------------------- {"ok":true,"spake2":B} -----
//!   | -- {"cmd":"pair_confirm","mac":MAC(K,"client",fp)} ----------->
//!   | <-- {"ok":true,"mac":MAC(K,"server",fp),"name":N,"token":T} ---
//! ```
//!
//! Pure code: no sockets, no files, no clock.

pub mod words;

use std::fmt;

use serde::{Deserialize, Serialize};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;

use crate::transport::Fingerprint;

/// Words in a code: 8 bits each, from [`words::WORDS`].
pub const CODE_WORDS: usize = 3;
/// Slots a server has for open invites (a code's number, 1 to this).
pub const MAX_SLOT: u16 = 99;

/// A pairing code: which invite, and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Code {
    /// The invite's slot on the server.
    pub slot: u16,
    /// The password words.
    pub words: [String; CODE_WORDS],
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The words are a secret until used.
        write!(f, "Code {{ slot: {}, .. }}", self.slot)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.slot, self.words.join("-"))
    }
}

impl Code {
    /// A fresh code for `slot`, its words drawn from the system's random
    /// source.
    pub fn generate(slot: u16) -> std::io::Result<Code> {
        let mut random = [0u8; CODE_WORDS];
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut random)
            .map_err(|_| std::io::Error::other("the system random source failed"))?;
        let words = random.map(|b| words::WORDS[b as usize].to_string());
        Ok(Code { slot, words })
    }

    /// Parses `7-crossword-sunset-river`, forgiving case and spaces around
    /// it; every word must be one of the list.
    pub fn parse(text: &str) -> Result<Code, String> {
        let text = text.trim().to_ascii_lowercase();
        let bad = || {
            format!(
                "{text:?} is not a pairing code: it looks like 7-crossword-sunset-river, as \
                 `ferry invite` printed it"
            )
        };
        let mut parts = text.split('-');
        let slot: u16 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        if !(1..=MAX_SLOT).contains(&slot) {
            return Err(bad());
        }
        let words: Vec<String> = parts.map(str::to_string).collect();
        let words: [String; CODE_WORDS] = words.try_into().map_err(|_| bad())?;
        if !words
            .iter()
            .all(|w| words::WORDS.binary_search(&w.as_str()).is_ok())
        {
            return Err(bad());
        }
        Ok(Code { slot, words })
    }

    /// The password both ends feed SPAKE2.
    pub fn password(&self) -> String {
        self.words.join("-")
    }
}

/// Which end of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The machine that typed the code.
    Client,
    /// The server that issued it.
    Server,
}

/// One end's SPAKE2 exchange, started.
pub struct Exchange {
    state: Spake2<Ed25519Group>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}

impl Exchange {
    /// Starts the exchange for `side` with `password` and the server's
    /// certificate fingerprint (the client: the one it was shown); returns
    /// the message to send.
    pub fn start(side: Side, password: &str, fingerprint: Fingerprint) -> (Exchange, Vec<u8>) {
        let password = Password::new(password.as_bytes());
        let client = Identity::new(b"ferry pair client");
        let server_id = format!("ferry pair server {fingerprint}");
        let server = Identity::new(server_id.as_bytes());
        let (state, message) = match side {
            Side::Client => Spake2::<Ed25519Group>::start_a(&password, &client, &server),
            Side::Server => Spake2::<Ed25519Group>::start_b(&password, &client, &server),
        };
        (Exchange { state, fingerprint }, message)
    }

    /// Finishes with the other end's message: the shared key, or an error
    /// for a message that is not one.
    pub fn finish(self, theirs: &[u8]) -> Result<SharedKey, String> {
        let key = self
            .state
            .finish(theirs)
            .map_err(|err| format!("bad pairing message: {err:?}"))?;
        Ok(SharedKey {
            key,
            fingerprint: self.fingerprint,
        })
    }
}

/// The key both ends derived, if their codes and fingerprints matched.
pub struct SharedKey {
    key: Vec<u8>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKey").finish_non_exhaustive()
    }
}

impl SharedKey {
    /// The proof `side` sends that it holds this key: an HMAC-SHA256 over
    /// its role and the fingerprint, hex.
    pub fn proof(&self, side: Side) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.key);
        let role = match side {
            Side::Client => "ferry pair client proof ",
            Side::Server => "ferry pair server proof ",
        };
        let message = format!("{role}{}", self.fingerprint);
        let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `proof` is `side`'s proof for this key, compared in
    /// constant time.
    pub fn verify(&self, side: Side, proof: &str) -> bool {
        let expected = self.proof(side);
        expected.len() == proof.len() && bool::from(expected.as_bytes().ct_eq(proof.as_bytes()))
    }
}

/// The first frame of a pairing: `{"cmd": "pair", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRequest {
    /// Protocol version the client speaks.
    pub version: u32,
    /// The invite's slot, the code's number.
    pub slot: u16,
    /// The client's SPAKE2 message, base64.
    pub spake2: String,
    /// The name the client would like (the invite's name wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The server's answer to [`PairRequest`]: its SPAKE2 message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairReply {
    /// The server's SPAKE2 message, base64.
    pub spake2: String,
}

/// The client's proof: `{"cmd": "pair_confirm", "mac": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairConfirm {
    /// The client's proof, hex.
    pub mac: String,
}

/// The server's proof and what the client earned.
#[derive(Serialize, Deserialize)]
pub struct Paired {
    /// The server's proof, hex.
    pub mac: String,
    /// The client's name on the server.
    pub name: String,
    /// The client's own token.
    pub token: String,
}

impl fmt::Debug for Paired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paired")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(byte: u8) -> Fingerprint {
        Fingerprint::of_certificate(&[byte; 10])
    }

    fn run(client_code: &str, server_code: &str, seen: Fingerprint, own: Fingerprint) -> bool {
        let (client, to_server) = Exchange::start(Side::Client, client_code, seen);
        let (server, to_client) = Exchange::start(Side::Server, server_code, own);
        let client_key = client.finish(&to_client).unwrap();
        let server_key = server.finish(&to_server).unwrap();
        let client_proof = client_key.proof(Side::Client);
        let accepted = server_key.verify(Side::Client, &client_proof);
        if accepted {
            assert!(client_key.verify(Side::Server, &server_key.proof(Side::Server)));
        }
        accepted
    }

    #[test]
    fn the_same_code_and_certificate_pair_and_anything_else_does_not() {
        let fp = fingerprint(1);
        assert!(run(
            "crossword-sunset-river",
            "crossword-sunset-river",
            fp,
            fp
        ));
        assert!(!run(
            "crossword-sunset-raven",
            "crossword-sunset-river",
            fp,
            fp
        ));
        // A man in the middle showed the client his own certificate.
        assert!(!run(
            "crossword-sunset-river",
            "crossword-sunset-river",
            fingerprint(2),
            fp
        ));
    }

    #[test]
    fn a_proof_is_for_one_side_only() {
        let fp = fingerprint(1);
        let (client, a) = Exchange::start(Side::Client, "a-b-c", fp);
        let (server, b) = Exchange::start(Side::Server, "a-b-c", fp);
        let client_key = client.finish(&b).unwrap();
        let server_key = server.finish(&a).unwrap();
        // A server cannot pass the client's proof back as its own.
        assert!(!client_key.verify(Side::Server, &client_key.proof(Side::Client)));
        assert!(!server_key.verify(Side::Client, ""));
    }

    #[test]
    fn codes_parse_and_print_and_only_list_words_count() {
        let code = Code::parse(" 7-Crossword-Sunset-River ").unwrap();
        assert_eq!(code.slot, 7);
        assert_eq!(code.to_string(), "7-crossword-sunset-river");
        assert_eq!(code.password(), "crossword-sunset-river");
        for bad in [
            "",
            "7",
            "0-crossword-sunset-river",
            "100-crossword-sunset-river",
            "7-crossword-sunset",
            "7-crossword-sunset-river-oak",
            "7-crossword-sunset-xyzzy",
            "x-crossword-sunset-river",
        ] {
            assert!(Code::parse(bad).is_err(), "{bad:?}");
        }
        let fresh = Code::generate(42).unwrap();
        assert_eq!(Code::parse(&fresh.to_string()).unwrap(), fresh);
        assert!(
            !format!("{fresh:?}").contains(&fresh.words[0]),
            "words stay out of logs"
        );
    }
}
