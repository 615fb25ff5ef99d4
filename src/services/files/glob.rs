//! `glob`: expands a pattern beneath the root, as a shell expands
//! `logs/*.log` for scp, so `get`, `ls` and `rm` can name many paths at
//! once. Each `/`-separated component is a pattern of its own: `*` (any
//! run of characters), `?` (one character), `[abc]`, `[a-z]`, `[!a]` (one
//! character of a set), and `\` before any character to match it as it
//! is. A wildcard never matches `/`, nor a leading `.` (as a shell), and
//! partial files are never matched.
//!
//! The walk lists directories through the root handle, so it stays where
//! every other operation stays: symlinks are followed only while they
//! lead to a directory beneath the root. A directory that cannot be listed
//! contributes no matches, as in a shell. Both the paths matched at each
//! step and the names read in all are capped
//! ([`crate::limits::MAX_GLOB_MATCHES`], [`crate::limits::MAX_GLOB_NAMES_READ`]),
//! so a pattern such as `*/*/*/*` costs the server bounded work.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};

use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::protocol::ErrorCode;

use super::super::{Outcome, ServiceContext};
use super::ops::{describe, send_listing, FileInfo};
use super::{blocking, refuse};
use crate::engine::atomic::is_reserved_name;
use crate::engine::error::{show, FileError};
use crate::engine::root::{split_names, RelPath, Root};
use crate::engine::wire::WirePath;

/// `{"cmd": "glob", "path": PATTERN}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobRequest {
    /// The pattern, relative to the root.
    #[serde(flatten)]
    pub path: WirePath,
}

/// The ok reply to `glob` has the shape of `ls`'s: its body is one
/// [`FileInfo`] per match, named by its whole path beneath the root,
/// sorted.
pub type GlobReply = super::ops::LsReply;

/// How much one expansion may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobCaps {
    /// Paths matched after any one component.
    pub max_matches: usize,
    /// Directory entries read in all.
    pub max_names_read: usize,
}

impl Default for GlobCaps {
    fn default() -> GlobCaps {
        GlobCaps {
            max_matches: crate::limits::MAX_GLOB_MATCHES,
            max_names_read: crate::limits::MAX_GLOB_NAMES_READ,
        }
    }
}

/// A character of a name: a Unicode scalar value, or for a byte that is
/// not part of valid UTF-8, that byte above the Unicode range. So `?`
/// matches one character of a UTF-8 name, and any name can be matched.
type Unit = u32;

const RAW_BYTE: Unit = 0x11_0000;

fn units(bytes: &[u8]) -> Vec<Unit> {
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars().map(|c| c as Unit));
        out.extend(chunk.invalid().iter().map(|&b| RAW_BYTE + b as Unit));
    }
    out
}

fn unit_bytes(units: &[Unit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(units.len());
    for &unit in units {
        match char::from_u32(unit) {
            Some(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            None => out.push((unit - RAW_BYTE) as u8),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This character.
    Unit(Unit),
    /// `?`
    Any,
    /// `*`
    Star,
    /// `[...]`: inclusive ranges, or with `negated` anything else.
    Class {
        negated: bool,
        ranges: Vec<(Unit, Unit)>,
    },
}

impl Token {
    fn matches(&self, unit: Unit) -> bool {
        match self {
            Token::Unit(u) => *u == unit,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&unit)) != *negated
            }
        }
    }
}

/// One component of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses one component (no `/`). An unclosed `[`, a trailing `\`
    /// and an empty set are errors.
    pub fn parse(component: &[u8]) -> Result<Pattern, String> {
        let shown = show(component);
        let input = units(component);
        let mut tokens = Vec::with_capacity(input.len());
        let mut i = 0;
        let escape = |i: usize| {
            input
                .get(i + 1)
                .copied()
                .ok_or_else(|| format!("{shown}: a `\\` at the end escapes nothing"))
        };
        while i < input.len() {
            let unit = input[i];
            match char::from_u32(unit) {
                Some('*') => {
                    // `**` is `*`: there is no crossing of `/` to ask for.
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                Some('?') => tokens.push(Token::Any),
                Some('\\') => {
                    tokens.push(Token::Unit(escape(i)?));
                    i += 1;
                }
                Some('[') => {
                    let (token, next) = parse_class(&input, i + 1)
                        .ok_or_else(|| format!("{shown}: a `[` without its `]`"))?;
                    tokens.push(token);
                    i = next;
                    continue;
                }
                _ => tokens.push(Token::Unit(unit)),
            }
            i += 1;
        }
        Ok(Pattern { tokens })
    }

    /// The name this component matches when it has no wildcard.
    pub fn literal(&self) -> Option<Vec<u8>> {
        let units: Option<Vec<Unit>> = self
            .tokens
            .iter()
            .map(|t| match t {
                Token::Unit(u) => Some(*u),
                _ => None,
            })
            .collect();
        units.map(|u| unit_bytes(&u))
    }

    /// Whether `name` matches. A leading `.` is matched only by a `.`.
    pub fn matches(&self, name: &[u8]) -> bool {
        let name = units(name);
        if name.first() == Some(&('.' as Unit))
            && self.tokens.first() != Some(&Token::Unit('.' as Unit))
        {
            return false;
        }
        // Linear in the name for each star backtracked to: at most the
        // name's length times the pattern's, both under 256 bytes.
        let (mut t, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t, n));
                    t += 1;
                    continue;
                }
                Some(token) if token.matches(name[n]) => {
                    t += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            }
        }
        self.tokens[t..].iter().all(|t| *t == Token::Star)
    }
}

/// A `[...]` set starting after its `[`; the token and where the pattern
/// goes on, or `None` if it never closes.
fn parse_class(input: &[Unit], mut i: usize) -> Option<(Token, usize)> {
    let is = |i: usize, c: char| input.get(i) == Some(&(c as Unit));
    let negated = is(i, '!') || is(i, '^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut lo = *input.get(i)?;
        if lo == ']' as Unit && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        if lo == '\\' as Unit {
            i += 1;
            lo = *input.get(i)?;
        }
        let mut hi = lo;
        if is(i + 1, '-') && input.get(i + 2).is_some_and(|&u| u != ']' as Unit) {
            i += 2;
            hi = input[i];
            if hi == '\\' as Unit {
                i += 1;
                hi = *input.get(i)?;
            }
        }
        ranges.push((lo.min(hi), lo.max(hi)));
        i += 1;
    }
}

/// Whether `path` is one `pattern` can match: as many components, each
/// matched by its own. A client checks a server's matches with it, so a
/// hostile server cannot slip another path (`.bashrc`) into a get.
pub fn matches_path(pattern: &[u8], path: &[u8]) -> bool {
    let (Ok(patterns), Ok(names)) = (split_names(pattern), split_names(path)) else {
        return false;
    };
    patterns.len() == names.len()
        && patterns.iter().zip(&names).all(|(p, n)| {
            !is_reserved_name(n)
                && Pattern::parse(p.as_bytes()).is_ok_and(|p| p.matches(n.as_bytes()))
        })
}

/// The paths beneath the root that `pattern` matches, sorted; an error
/// (`not_found`) when none does.
pub fn expand(root: &Root, pattern: &[u8], caps: GlobCaps) -> Result<Vec<RelPath>, FileError> {
    let components = split_names(pattern)?;
    if components.is_empty() {
        return Err(FileError::new(
            ErrorCode::BadPath,
            "an empty pattern matches nothing; name what to match",
        ));
    }
    let patterns = components
        .iter()
        .map(|c| Pattern::parse(c.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| FileError::new(ErrorCode::BadRequest, why))?;
    let too_many = |what: String| {
        FileError::new(
            ErrorCode::TooLarge,
            format!("{}: {what}; narrow the pattern", show(pattern)),
        )
    };
    let mut matched = vec![RelPath::root()];
    let mut names_read = 0usize;
    for pattern in &patterns {
        let mut next = Vec::new();
        for dir in &matched {
            if let Some(name) = pattern.literal() {
                let name = OsStr::from_bytes(&name);
                let path = dir.join(name)?;
                if !is_reserved_name(name) && root.lstat(&path).is_ok() {
                    next.push(path);
                }
                continue;
            }
            // Not a directory, gone, or unreadable: no matches in it.
            let Ok(mut names) = root.list(dir) else {
                continue;
            };
            names_read += names.len();
            if names_read > caps.max_names_read {
                return Err(too_many(format!(
                    "it reads over {} names",
                    caps.max_names_read
                )));
            }
            names.sort();
            for name in names {
                if !is_reserved_name(&name) && pattern.matches(name.as_bytes()) {
                    next.push(dir.join(&name)?);
                }
            }
            if next.len() > caps.max_matches {
                return Err(too_many(format!(
                    "it matches over {} paths",
                    caps.max_matches
                )));
            }
        }
        matched = next;
    }
    if matched.is_empty() {
        return Err(FileError::new(
            ErrorCode::NotFound,
            format!("no match for {}", show(pattern)),
        ));
    }
    matched.sort_by_key(RelPath::to_bytes);
    matched.dedup();
    Ok(matched)
}

/// Serves `glob`: every match, described as `ls` describes an entry.
pub async fn glob<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: GlobRequest,
) -> Result<Outcome, ConnectionError> {
    let root = context.root.clone();
    let cap = context.max_list_bytes;
    let expanded = blocking(move || {
        let pattern = request
            .path
            .to_bytes()
            .map_err(|m| FileError::new(ErrorCode::BadPath, m))?;
        let matched = expand(&root, &pattern, GlobCaps::default())?;
        // A path removed since it matched is left out.
        Ok(matched
            .iter()
            .filter_map(|path| {
                let st = describe(&root, path).ok()?;
                Some(FileInfo::new(&path.to_bytes(), &st))
            })
            .collect::<Vec<_>>())
    })
    .await;
    match expanded {
        Ok(infos) => send_listing(conn, &infos, cap).await,
        Err(err) => refuse(conn, err).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_caps_are_the_limits() {
        let caps = GlobCaps::default();
        assert_eq!(
            (caps.max_matches, caps.max_names_read),
            (
                crate::limits::MAX_GLOB_MATCHES,
                crate::limits::MAX_GLOB_NAMES_READ
            )
        );
    }

    fn matches(pattern: &str, name: &[u8]) -> bool {
        Pattern::parse(pattern.as_bytes()).unwrap().matches(name)
    }

    #[test]
    fn wildcards_match_as_in_a_shell() {
        assert!(matches("*.log", b"a.log"));
        assert!(!matches("*.log", b".log.log"), "a leading dot");
        assert!(matches(".*", b".hidden"));
        assert!(!matches("*.log", b"a.log.gz"));
        assert!(matches("a*b*c", b"aXXbYYbc"));
        assert!(matches("***", b"x"));
        assert!(matches("?", "ü".as_bytes()), "one character, two bytes");
        assert!(matches("?", b"\xff"), "one byte that is not UTF-8");
        assert!(!matches("?", b"ab"));
        assert!(matches("[a-c]x", b"bx"));
        assert!(!matches("[!a-c]x", b"bx"));
        assert!(matches("[^a-c]x", b"dx"));
        assert!(matches("[]]", b"]"));
        assert!(matches("[a-]", b"-"));
        assert!(matches("\\*", b"*"));
        assert!(!matches("\\*", b"x"));
        assert!(matches("[\\]]", b"]"));
        assert!(matches("bad\\\u{ff}", "bad\u{ff}".as_bytes()));
        assert_eq!(Pattern::parse(b"a\\*b").unwrap().literal().unwrap(), b"a*b");
        assert_eq!(Pattern::parse(b"a*").unwrap().literal(), None);
        for bad in ["[abc", "x\\", "[!", "[a-"] {
            assert!(Pattern::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_whole_path_matches_component_by_component() {
        assert!(matches_path(b"logs/*.log", b"logs/a.log"));
        assert!(matches_path(b"*/x", b"a/x"));
        assert!(!matches_path(b"logs/*.log", b".bashrc"));
        assert!(!matches_path(b"logs/*.log", b"logs/a/b.log"));
        assert!(!matches_path(b"logs/*", b"logs/.ferry-partial-a"));
        assert!(!matches_path(b"*/*", b"../etc"));
        assert!(!matches_path(b"logs/*", b"other/a"));
    }

    #[test]
    fn a_long_name_against_many_stars_costs_bounded_steps() {
        let pattern = "*a".repeat(100) + "b";
        let name = vec![b'a'; 255];
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &name));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    fn tree() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("logs/old")).unwrap();
        for f in [
            "logs/a.log",
            "logs/b.log",
            "logs/c.txt",
            "logs/.h.log",
            "logs/old/d.log",
        ] {
            std::fs::write(p.join(f), f).unwrap();
        }
        std::fs::write(p.join("logs/.ferry-partial-x.log"), b"").unwrap();
        std::os::unix::fs::symlink("/", p.join("logs/out")).unwrap();
        let root = Root::new(p).unwrap();
        (dir, root)
    }

    fn expanded(root: &Root, pattern: &str) -> Result<Vec<String>, FileError> {
        expand(root, pattern.as_bytes(), GlobCaps::default()).map(|paths| {
            paths
                .iter()
                .map(|p| String::from_utf8(p.to_bytes()).unwrap())
                .collect()
        })
    }

    #[test]
    fn patterns_expand_beneath_the_root_only() {
        let (_dir, root) = tree();
        assert_eq!(
            expanded(&root, "logs/*.log").unwrap(),
            ["logs/a.log", "logs/b.log"]
        );
        assert_eq!(expanded(&root, "*/*/*.log").unwrap(), ["logs/old/d.log"]);
        assert_eq!(expanded(&root, "logs/.*.log").unwrap(), ["logs/.h.log"]);
        assert_eq!(
            expanded(&root, "logs/[ab].log").unwrap(),
            ["logs/a.log", "logs/b.log"]
        );
        // The symlink to / is matched as a name, never listed through.
        assert_eq!(expanded(&root, "logs/out").unwrap(), ["logs/out"]);
        assert_eq!(
            expanded(&root, "logs/out/*").unwrap_err().code,
            ErrorCode::NotFound
        );
        let none = expanded(&root, "logs/*.zip").unwrap_err();
        assert_eq!(none.code, ErrorCode::NotFound);
        assert!(none.message.contains("logs/*.zip"), "{}", none.message);
        for (bad, code) in [
            ("../*", ErrorCode::BadPath),
            ("/etc/*", ErrorCode::BadPath),
            ("", ErrorCode::BadPath),
            ("logs/[a", ErrorCode::BadRequest),
        ] {
            assert_eq!(expanded(&root, bad).unwrap_err().code, code, "{bad}");
        }
    }

    #[test]
    fn an_expansion_over_its_caps_is_refused() {
        let (_dir, root) = tree();
        let caps = GlobCaps {
            max_matches: 2,
            max_names_read: 100,
        };
        let err = expand(&root, b"logs/*", caps).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        assert!(err.message.contains("over 2 paths"), "{}", err.message);
        let caps = GlobCaps {
            max_matches: 100,
            max_names_read: 3,
        };
        let err = expand(&root, b"*/*", caps).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        assert!(err.message.contains("over 3 names"), "{}", err.message);
        assert!(
            expand(&root, b"logs/a.log", caps).is_ok(),
            "literal paths read no names"
        );
    }
}
