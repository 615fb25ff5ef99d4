//! The server's side of pairing: the invites `ferry invite` opens in the
//! state directory, and the exchange a `pair` frame starts in place of a
//! hello (see [`crate::pairing`]). An invite is used once, lives
//! [`limits::INVITE_TTL`], and allows [`limits::INVITE_TRIES`] wrong codes;
//! a success mints the client a token of its own in `clients.toml`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::tokens::{Clients, Limits};
use crate::connection::Connection;
use crate::limits;
use crate::pairing::{Code, Exchange, PairConfirm, PairReply, PairRequest, Paired, Side};
use crate::protocol::message::ok_header;
use crate::protocol::{ErrorCode, Header, Refusal, PROTOCOL_VERSION};
use crate::transport::{Fingerprint, Stream};

/// The open invites in the state directory.
pub const INVITES_FILE: &str = "invites.toml";
/// Held (flock) while `invites.toml` is changed.
const LOCK_FILE: &str = "invites.lock";

/// One open invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The code's words, joined: the password.
    pub password: String,
    /// The name the paired client gets; the client's own choice if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Until when it can be used, seconds since the epoch.
    pub expires: i64,
    /// Wrong codes it still allows.
    pub tries_left: u8,
    /// What the paired client may do.
    #[serde(flatten)]
    pub limits: Limits,
}

/// The invites of `invites.toml`, by slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invites {
    /// Each open invite, by its slot (a TOML key is text).
    #[serde(default)]
    pub invites: BTreeMap<String, Invite>,
}

impl Invites {
    fn load(state_dir: &Path) -> io::Result<Invites> {
        match fs::read_to_string(state_dir.join(INVITES_FILE)) {
            Ok(text) => toml::from_str(&text).map_err(|err| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{INVITES_FILE}: {err}"))
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Invites::default()),
            Err(err) => Err(err),
        }
    }

    fn save(&self, state_dir: &Path) -> io::Result<()> {
        let text = toml::to_string(self).map_err(io::Error::other)?;
        crate::engine::state::write_private(&state_dir.join(INVITES_FILE), text.as_bytes())
    }

    /// Reads, changes and writes back the file under the state
    /// directory's lock; expired invites are dropped on the way.
    pub fn update<T>(
        state_dir: &Path,
        now: i64,
        change: impl FnOnce(&mut Invites) -> Result<T, String>,
    ) -> Result<T, String> {
        crate::engine::state::with_lock(state_dir, LOCK_FILE, || {
            let mut invites = Invites::load(state_dir).map_err(|err| err.to_string())?;
            invites.invites.retain(|_, invite| invite.expires > now);
            let result = change(&mut invites);
            invites
                .save(state_dir)
                .map_err(|err| format!("cannot write {INVITES_FILE}: {err}"))?;
            result
        })
    }
}

/// Opens an invite in `state_dir` and returns its code. The slot is a free
/// one; the words come from the system's random source.
pub fn invite(
    state_dir: &Path,
    name: Option<String>,
    limits: Limits,
    now: i64,
) -> Result<Code, String> {
    if let Some(name) = &name {
        super::tokens::check_name(name)?;
    }
    Invites::update(state_dir, now, |invites| {
        let free: Vec<u16> = (1..=crate::pairing::MAX_SLOT)
            .filter(|slot| !invites.invites.contains_key(&slot.to_string()))
            .collect();
        if free.is_empty() {
            return Err("every pairing slot is taken; wait for invites to expire".into());
        }
        let mut pick = [0u8; 2];
        aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut pick)
            .map_err(|_| "the system random source failed".to_string())?;
        let slot = free[u16::from_le_bytes(pick) as usize % free.len()];
        let code = Code::generate(slot).map_err(|err| err.to_string())?;
        invites.invites.insert(
            slot.to_string(),
            Invite {
                password: code.password(),
                name,
                expires: now + limits::INVITE_TTL.as_secs() as i64,
                tries_left: limits::INVITE_TRIES,
                limits,
            },
        );
        Ok(code)
    })
}

/// How a pairing attempt ended, for the session's log and penalties.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A client was paired under this name.
    Paired(String),
    /// The code was wrong (a try was spent), or the slot holds no invite:
    /// a failed login.
    Refused,
    /// The exchange broke off (the peer left, or sent what is not a
    /// pairing frame).
    Broken,
}

/// Runs a pairing whose first frame, `first`, has been read.
pub async fn serve(
    conn: &mut Connection<Stream>,
    first: &Header,
    state_dir: &Path,
    fingerprint: Fingerprint,
    peer: &str,
) -> Outcome {
    let now = || chrono::Utc::now().timestamp();
    let refuse = |message: &str| Refusal::new(ErrorCode::PairFailed, message);
    let request: PairRequest = match first.to_message() {
        Ok(request) if first.size() == 0 => request,
        _ => {
            let _ = conn
                .send_error(&Refusal::new(ErrorCode::BadRequest, "bad pair request"))
                .await;
            return Outcome::Broken;
        }
    };
    if request.version != PROTOCOL_VERSION {
        let message = format!("this server speaks protocol version {PROTOCOL_VERSION}");
        let _ = conn
            .send_error(&Refusal::new(ErrorCode::UnsupportedVersion, message))
            .await;
        return Outcome::Broken;
    }
    let slot = request.slot.to_string();
    let invite = Invites::update(state_dir, now(), |invites| {
        Ok(invites.invites.get(&slot).cloned())
    });
    let Ok(Some(invite)) = invite else {
        let _ = conn
            .send_error(&refuse(
                "no such pairing code, or it expired or was used; run `ferry invite` again",
            ))
            .await;
        return Outcome::Refused;
    };
    let theirs = base64::engine::general_purpose::STANDARD.decode(&request.spake2);
    let (exchange, ours) = Exchange::start(Side::Server, &invite.password, fingerprint);
    let key = match theirs
        .map_err(|e| e.to_string())
        .and_then(|t| exchange.finish(&t))
    {
        Ok(key) => key,
        Err(message) => {
            let _ = conn
                .send_error(&Refusal::new(ErrorCode::BadRequest, message))
                .await;
            return Outcome::Broken;
        }
    };
    let reply = PairReply {
        spake2: base64::engine::general_purpose::STANDARD.encode(ours),
    };
    if conn
        .send(ok_header(&reply), bytes::Bytes::new())
        .await
        .is_err()
    {
        return Outcome::Broken;
    }
    let confirm = match conn.reader().expect_header().await {
        Ok(header) if header.cmd() == Some("pair_confirm") && header.size() == 0 => {
            header.to_message::<PairConfirm>()
        }
        _ => return Outcome::Broken,
    };
    let Ok(confirm) = confirm else {
        return Outcome::Broken;
    };
    if !key.verify(Side::Client, &confirm.mac) {
        // A wrong code: spend a try, and the invite when none are left.
        let _ = Invites::update(state_dir, now(), |invites| {
            if let Some(open) = invites.invites.get_mut(&slot) {
                open.tries_left = open.tries_left.saturating_sub(1);
                if open.tries_left == 0 {
                    invites.invites.remove(&slot);
                }
            }
            Ok(())
        });
        warn!(%peer, slot = request.slot, "pairing refused: wrong code");
        let _ = conn.send_error(&refuse("wrong pairing code")).await;
        return Outcome::Refused;
    }
    // One use: the invite goes as the token comes.
    let asked = invite.name.clone().or(request.name.clone());
    let minted = Invites::update(state_dir, now(), |invites| {
        if !invites.invites.contains_key(&slot) {
            return Err("the pairing code was used meanwhile".to_string());
        }
        let minted = Clients::update(state_dir, |clients| {
            let name = free_name(asked.as_deref(), request.slot, clients);
            clients
                .add(&name, invite.limits.clone(), now())
                .map(|token| (name, token))
        })?;
        // Spent only once the token exists.
        invites.invites.remove(&slot);
        Ok(minted)
    });
    let (name, token) = match minted {
        Ok(minted) => minted,
        Err(message) => {
            let _ = conn.send_error(&refuse(&message)).await;
            return Outcome::Broken;
        }
    };
    let paired = Paired {
        mac: key.proof(Side::Server),
        name: name.clone(),
        token,
    };
    if conn
        .send(ok_header(&paired), bytes::Bytes::new())
        .await
        .is_err()
    {
        warn!(%peer, client = %name, "paired, but the client left before its token arrived");
        return Outcome::Broken;
    }
    info!(%peer, client = %name, "paired a new client");
    Outcome::Paired(name)
}

/// The name a paired client gets: the one asked for (by the invite, else
/// the client) made plain and unused: `laptop`, or `laptop-2` when a
/// `laptop` is paired already; `client-SLOT` when nothing usable was asked.
fn free_name(asked: Option<&str>, slot: u16, clients: &Clients) -> String {
    let plain: String = asked
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .skip_while(|&c| c == '-')
        .take(super::tokens::MAX_NAME_BYTES - 4)
        .collect();
    let base = if plain.is_empty() {
        format!("client-{slot}")
    } else {
        plain
    };
    (1..)
        .map(|n| {
            if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|name| !clients.clients.contains_key(name))
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paired_client_gets_a_plain_unused_name() {
        let mut clients = Clients::default();
        assert_eq!(free_name(Some("laptop"), 7, &clients), "laptop");
        clients.add("laptop", Limits::default(), 0).unwrap();
        assert_eq!(free_name(Some("laptop"), 7, &clients), "laptop-2");
        assert_eq!(free_name(Some("Mé's box"), 7, &clients), "M--s-box");
        assert_eq!(free_name(Some("--"), 7, &clients), "client-7");
        assert_eq!(free_name(None, 9, &clients), "client-9");
        let long = "x".repeat(200);
        assert!(super::super::tokens::check_name(&free_name(Some(&long), 1, &clients)).is_ok());
    }

    #[test]
    fn an_invite_takes_a_free_slot_and_expires() {
        let tmp = tempfile::tempdir().unwrap();
        let first = invite(tmp.path(), Some("nas".into()), Limits::default(), 1000).unwrap();
        let second = invite(tmp.path(), None, Limits::default(), 1000).unwrap();
        assert_ne!(first.slot, second.slot);
        let text = fs::read_to_string(tmp.path().join(INVITES_FILE)).unwrap();
        assert!(
            text.contains(&first.password()),
            "the server keeps the password"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(tmp.path().join(INVITES_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // Ten minutes later both are gone.
        let later = 1000 + limits::INVITE_TTL.as_secs() as i64;
        let left = Invites::update(tmp.path(), later, |invites| Ok(invites.invites.len()));
        assert_eq!(left, Ok(0));
        assert!(invite(tmp.path(), Some("bad name".into()), Limits::default(), 1).is_err());
    }
}
