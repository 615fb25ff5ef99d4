//! Share links: a URL that grants one path beneath the root (a file or a
//! folder), for a time, a number of uses, and with or without uploads,
//! without the token. `ferry link` makes, lists and revokes them on the
//! server's machine; they live in `links.toml` in the state directory
//! (mode 0600) by id and SHA-256 of their secret, never the secret itself,
//! as `clients.toml` keeps client tokens. The running server reads the file
//! at each use, so a revoke takes effect at the link's next request.
//!
//! A use is a download (a file, or a folder's tar) or an upload begun;
//! browsing a folder's listing is not, so `--uses 1` on a folder lets its
//! holder look before taking one thing.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::engine::root::RelPath;

/// The file of share links in the state directory.
pub const LINKS_FILE: &str = "links.toml";
/// Held (flock) while `links.toml` is changed.
const LOCK_FILE: &str = "links.lock";
/// The file where a running server notes its HTTP address, for
/// `ferry link` to build its URL.
pub const ADDRESS_FILE: &str = "http-address";

/// Links kept at once ([`crate::limits::HttpLimits::max_links`]).
pub const MAX_LINKS: usize = crate::limits::HTTP.max_links;

/// One share link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The path it grants, beneath the root.
    pub path: String,
    /// SHA-256 of its secret, hex.
    pub sha256: String,
    /// When it was made, seconds since the epoch.
    pub created: i64,
    /// When it stops working, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// How many uses it grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    /// How many it has had.
    #[serde(default)]
    pub uses: u64,
    /// Whether it may upload into its folder.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upload: bool,
}

/// Why a link grants nothing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No link has this secret (never made, or revoked).
    Unknown,
    /// Its time is up.
    Expired,
    /// Its uses are spent.
    UsedUp,
}

impl Link {
    /// Whether the link grants anything at `now`.
    pub fn check(&self, now: i64) -> Result<(), Refused> {
        if self.expires.is_some_and(|t| now >= t) {
            return Err(Refused::Expired);
        }
        if self.max_uses.is_some_and(|max| self.uses >= max) {
            return Err(Refused::UsedUp);
        }
        Ok(())
    }
}

/// The links of `links.toml`, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// Each link, by its id.
    #[serde(default)]
    pub links: BTreeMap<String, Link>,
}

/// What a new link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    /// The path beneath the root.
    pub path: String,
    /// Seconds it lasts.
    pub lasts_secs: Option<u64>,
    /// Uses it grants.
    pub max_uses: Option<u64>,
    /// Uploads into its folder.
    pub upload: bool,
}

impl Links {
    /// Reads `links.toml` in `state_dir`; no file is no links.
    pub fn load(state_dir: &Path) -> io::Result<Links> {
        match fs::read_to_string(state_dir.join(LINKS_FILE)) {
            Ok(text) => toml::from_str(&text).map_err(|err| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{LINKS_FILE} is not valid: {err}"),
                )
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Links::default()),
            Err(err) => Err(err),
        }
    }

    /// Reads, changes and writes back the file under an exclusive lock, so
    /// a use counted by the server and a revoke cannot lose one another.
    pub fn update<T>(
        state_dir: &Path,
        change: impl FnOnce(&mut Links) -> Result<T, String>,
    ) -> Result<T, String> {
        crate::engine::state::with_lock(state_dir, LOCK_FILE, || {
            let mut links = Links::load(state_dir).map_err(|err| err.to_string())?;
            let result = change(&mut links)?;
            let text = toml::to_string(&links).map_err(|err| err.to_string())?;
            crate::engine::state::write_private(&state_dir.join(LINKS_FILE), text.as_bytes())
                .map_err(|err| format!("cannot write {LINKS_FILE}: {err}"))?;
            Ok(result)
        })
    }

    /// Adds a link; returns its id and secret (the only time the secret
    /// exists outside the URL).
    pub fn add(
        &mut self,
        new: &NewLink,
        now: i64,
        max_links: usize,
    ) -> Result<(String, String), String> {
        RelPath::parse(new.path.as_bytes()).map_err(|err| format!("{:?}: {err}", new.path))?;
        if self.links.len() >= max_links {
            return Err(format!(
                "there are {max_links} links already; revoke some with `ferry link --revoke ID`"
            ));
        }
        let secret = crate::engine::state::new_token().map_err(|err| err.to_string())?;
        let id = crate::server::tokens::token_hash(&secret)[..12].to_string();
        let link = Link {
            path: new.path.clone(),
            sha256: crate::server::tokens::token_hash(&secret),
            created: now,
            expires: new.lasts_secs.map(|s| now.saturating_add(s as i64)),
            max_uses: new.max_uses,
            uses: 0,
            upload: new.upload,
        };
        self.links.insert(id.clone(), link);
        Ok((id, secret))
    }

    /// The link whose secret is `secret`, compared in constant time.
    pub fn find(&self, secret: &str) -> Option<(&str, &Link)> {
        let given = crate::server::tokens::token_hash(secret);
        let mut found = None;
        for (id, link) in &self.links {
            if bool::from(given.as_bytes().ct_eq(link.sha256.as_bytes())) {
                found = Some((id.as_str(), link));
            }
        }
        found
    }
}

/// Counts one use of the link `secret` at `now`, if it has one left;
/// returns the link as it was before.
pub fn take_use(state_dir: &Path, secret: &str, now: i64) -> Result<Link, Refused> {
    let outcome = Links::update(state_dir, |links| {
        let given = crate::server::tokens::token_hash(secret);
        let Some(link) = links.links.values_mut().find(|l| l.sha256 == given) else {
            return Ok(Err(Refused::Unknown));
        };
        if let Err(refused) = link.check(now) {
            return Ok(Err(refused));
        }
        let before = link.clone();
        link.uses += 1;
        Ok(Ok(before))
    });
    outcome.unwrap_or_else(|err| {
        tracing::warn!("http: cannot count a link's use: {err}");
        Err(Refused::Unknown)
    })
}

/// Whether the link `id` still grants anything (not revoked, not expired;
/// its uses may be spent: an upload begun finishes).
pub fn still_holds(state_dir: &Path, id: &str, now: i64) -> bool {
    Links::load(state_dir).is_ok_and(|links| {
        links
            .links
            .get(id)
            .is_some_and(|link| link.expires.is_none_or(|t| now < t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_lasts_its_time_and_its_uses_and_keeps_no_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let new = NewLink {
            path: "docs/a.pdf".into(),
            lasts_secs: Some(3600),
            max_uses: Some(2),
            upload: false,
        };
        let (id, secret) = Links::update(tmp.path(), |links| links.add(&new, 1000, 10)).unwrap();
        let text = fs::read_to_string(tmp.path().join(LINKS_FILE)).unwrap();
        assert!(!text.contains(&secret) && text.contains(&id), "{text}");
        assert_eq!(take_use(tmp.path(), &secret, 1001).unwrap().uses, 0);
        assert_eq!(take_use(tmp.path(), &secret, 1002).unwrap().uses, 1);
        assert_eq!(take_use(tmp.path(), &secret, 1003), Err(Refused::UsedUp));
        assert_eq!(take_use(tmp.path(), "wrong", 1003), Err(Refused::Unknown));
        assert!(still_holds(tmp.path(), &id, 4599));
        assert!(!still_holds(tmp.path(), &id, 4600));
        let links = Links::load(tmp.path()).unwrap();
        assert_eq!(
            links.find(&secret).unwrap().1.check(4600),
            Err(Refused::Expired)
        );
    }

    #[test]
    fn links_are_bounded_and_their_paths_checked() {
        let mut links = Links::default();
        let new = |path: &str| NewLink {
            path: path.into(),
            lasts_secs: None,
            max_uses: None,
            upload: true,
        };
        assert!(links.add(&new("../x"), 0, 10).is_err());
        assert!(links.add(&new("/etc"), 0, 10).is_err());
        links.add(&new("a"), 0, 1).unwrap();
        let err = links.add(&new("b"), 0, 1).unwrap_err();
        assert!(err.contains("--revoke"), "{err}");
    }
}
