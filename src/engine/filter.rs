//! Which paths `ferry sync` takes: `--exclude`, `--include`,
//! `--exclude-from FILE`, and the `.gitignore` files of the source tree.
//!
//! **Order is rsync's: the first rule that matches decides.** The rules are
//! checked in the order given; a path no rule matches is taken. So
//! `--include keep.log --exclude '*.log'` keeps `keep.log`, and the same two
//! the other way round drop it. When `.gitignore` files are honoured they
//! come after every rule given on the command line (so `--include` can take
//! a file `.gitignore` drops), the deepest file first, and within one file
//! git's own order holds: the last matching line wins.
//!
//! **A directory left out is not entered**, so nothing beneath it is taken,
//! whatever a later rule says, as in rsync: `--include build/keep
//! --exclude build/` takes nothing from `build/`; to keep one file, let its
//! directory in (`--include build/ --include build/keep --exclude 'build/*'`).
//! A walk asks [`Filter::verdict`] per entry and does not descend into an
//! excluded directory; [`Filter::verdict_with_parents`] answers for a path
//! on its own, by asking for each parent first.
//!
//! **Patterns are gitignore(5)'s**, matched by the `ignore` crate: a pattern
//! with a `/` at its start or in its middle is anchored at the top of the
//! transfer (for a `.gitignore`, at its directory), any other matches a name
//! at any depth; a trailing `/` matches only directories; `*` and `?` never
//! cross a `/`, `**` does; a leading `!` turns the rule round (an exclude
//! `!pat` includes). rsync differs on one point: there `foo/bar` also
//! matches `x/foo/bar`; here, as in git, it is anchored.
//!
//! Paths are relative, `/`-separated bytes, as in the manifest. Pure code:
//! the walk reads `.gitignore` files through the confining root and hands
//! their bytes to [`Filter::add_gitignore`].

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

/// The name of the files [`Filter`] honours when asked to.
pub const GITIGNORE: &[u8] = b".gitignore";

/// One rule from the command line or an `--exclude-from` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `--include PATTERN`: take what matches.
    Include(String),
    /// `--exclude PATTERN`: leave out what matches.
    Exclude(String),
}

impl Rule {
    /// The rules of an `--exclude-from` file, as rsync reads one: a line per
    /// exclude pattern; `+ ` before a pattern makes it an include and `- ` an
    /// exclude; blank lines and lines starting with `#` or `;` are skipped.
    pub fn parse_file(text: &str) -> Vec<Rule> {
        text.lines()
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .filter(|line| !line.trim().is_empty())
            .filter(|line| !line.starts_with('#') && !line.starts_with(';'))
            .map(
                |line| match (line.strip_prefix("+ "), line.strip_prefix("- ")) {
                    (Some(pattern), _) => Rule::Include(pattern.to_string()),
                    (_, Some(pattern)) => Rule::Exclude(pattern.to_string()),
                    _ => Rule::Exclude(line.to_string()),
                },
            )
            .collect()
    }

    /// The rule as a gitignore line: an exclude is the pattern itself, an
    /// include the pattern turned round with `!`.
    fn to_gitignore_line(&self) -> String {
        // A pattern given on the command line is never a comment.
        let escape = |pattern: &str| match pattern.starts_with('#') {
            true => format!("\\{pattern}"),
            false => pattern.to_string(),
        };
        match self {
            Rule::Exclude(pattern) => escape(pattern),
            Rule::Include(pattern) => match pattern.strip_prefix('!') {
                Some(excluded) => escape(excluded),
                None => format!("!{pattern}"),
            },
        }
    }

    fn pattern(&self) -> &str {
        match self {
            Rule::Include(pattern) | Rule::Exclude(pattern) => pattern,
        }
    }
}

/// Whether a path is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Taken (also what a path no rule matches gets).
    Include,
    /// Left out; for a directory, with everything beneath it.
    Exclude,
}

/// A pattern that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern {pattern:?}{origin}: {reason}; patterns are gitignore-style globs")]
pub struct FilterError {
    /// The pattern as given.
    pub pattern: String,
    /// Where it came from, when a `.gitignore` file: " in DIR/.gitignore".
    pub origin: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The rules of one sync, and the `.gitignore` files met so far.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The command-line rules, added last first: the matcher lets the last
    /// matching line win, as git does, which makes the first rule win.
    rules: Gitignore,
    /// Each directory's `.gitignore`, by directory; `None` when they are
    /// not honoured.
    gitignores: Option<BTreeMap<Vec<u8>, Gitignore>>,
}

impl Filter {
    /// A filter of `rules` in their order, honouring `.gitignore` files when
    /// `honour_gitignore` (the walk then hands them to
    /// [`Filter::add_gitignore`]).
    pub fn new(rules: &[Rule], honour_gitignore: bool) -> Result<Filter, FilterError> {
        let mut builder = GitignoreBuilder::new(".");
        for rule in rules.iter().rev() {
            if rule.pattern().trim().is_empty() {
                return Err(FilterError {
                    pattern: rule.pattern().to_string(),
                    origin: String::new(),
                    reason: "it is empty".to_string(),
                });
            }
            builder
                .add_line(None, &rule.to_gitignore_line())
                .map_err(|err| FilterError {
                    pattern: rule.pattern().to_string(),
                    origin: String::new(),
                    reason: err.to_string(),
                })?;
        }
        let rules = builder.build().map_err(|err| FilterError {
            pattern: String::new(),
            origin: String::new(),
            reason: err.to_string(),
        })?;
        Ok(Filter {
            rules,
            gitignores: honour_gitignore.then(BTreeMap::new),
        })
    }

    /// A filter that takes everything.
    pub fn take_all() -> Filter {
        Filter {
            rules: Gitignore::empty(),
            gitignores: None,
        }
    }

    /// Whether the walk should read `.gitignore` files for this filter.
    pub fn honours_gitignore(&self) -> bool {
        self.gitignores.is_some()
    }

    /// Adds the `.gitignore` of directory `dir` ("" for the top), with the
    /// bytes the walk read. As git does, a line that is not a valid pattern
    /// is skipped and the others still apply; the skipped lines come back
    /// so the caller can report them.
    pub fn add_gitignore(&mut self, dir: &[u8], contents: &[u8]) -> Vec<FilterError> {
        let Some(gitignores) = &mut self.gitignores else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        let mut builder = GitignoreBuilder::new(".");
        let text = String::from_utf8_lossy(contents);
        let origin = match dir {
            b"" => " in .gitignore".to_string(),
            _ => format!(" in {:?}/.gitignore", String::from_utf8_lossy(dir)),
        };
        for line in text.lines() {
            if let Err(err) = builder.add_line(None, line) {
                problems.push(FilterError {
                    pattern: line.to_string(),
                    origin: origin.clone(),
                    reason: err.to_string(),
                });
            }
        }
        match builder.build() {
            Ok(matcher) => {
                gitignores.insert(dir.to_vec(), matcher);
            }
            Err(err) => problems.push(FilterError {
                pattern: String::new(),
                origin,
                reason: err.to_string(),
            }),
        }
        problems
    }

    /// The verdict on one entry of a walk, whose parents the walk already
    /// took. The top of the transfer (`path` empty) is always taken.
    pub fn verdict(&self, path: &[u8], is_dir: bool) -> Verdict {
        if path.is_empty() {
            return Verdict::Include;
        }
        if let Some(verdict) = verdict_of(self.rules.matched(as_path(path), is_dir)) {
            return verdict;
        }
        let Some(gitignores) = &self.gitignores else {
            return Verdict::Include;
        };
        let mut dir = parent(path);
        loop {
            if let Some(matcher) = gitignores.get(dir) {
                let beneath = match dir {
                    b"" => path,
                    _ => &path[dir.len() + 1..],
                };
                if let Some(verdict) = verdict_of(matcher.matched(as_path(beneath), is_dir)) {
                    return verdict;
                }
            }
            if dir.is_empty() {
                return Verdict::Include;
            }
            dir = parent(dir);
        }
    }

    /// The verdict on a path on its own: left out if any directory above it
    /// is, as a walk would never have reached it.
    pub fn verdict_with_parents(&self, path: &[u8], is_dir: bool) -> Verdict {
        let mut end = 0;
        while let Some(slash) = path[end..].iter().position(|&b| b == b'/') {
            let dir = &path[..end + slash];
            if self.verdict(dir, true) == Verdict::Exclude {
                return Verdict::Exclude;
            }
            end += slash + 1;
        }
        self.verdict(path, is_dir)
    }
}

fn verdict_of<T>(matched: Match<T>) -> Option<Verdict> {
    match matched {
        Match::None => None,
        Match::Ignore(_) => Some(Verdict::Exclude),
        Match::Whitelist(_) => Some(Verdict::Include),
    }
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// The directory holding `path`: "" for a name at the top.
fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => &path[..slash],
        None => b"",
    }
}

#[cfg(test)]
mod tests;
