//! The arguments of file commands, as scp reads them: which are sources,
//! which is the destination, and on which host (see
//! [`ferry::client::address`] for `HOST:PATH` itself).
//!
//! - `put LOCAL... [HOST:DEST]`: the last argument is the destination when
//!   it names a host (or follows a lone `-`); otherwise every argument is
//!   a local source and `--to` (or the root) is the remote directory.
//! - `get SOURCE... [LOCAL_DEST]`: the last argument is the local
//!   destination when it is `-`, or when it names no host and every other
//!   argument does; otherwise every argument is a source and `--to` (or
//!   `.`) is the local directory. So `ferry get a b`, as before, fetches
//!   two files from the default server.
//! - A destination names a directory when it is one, ends with `/`, or
//!   takes several sources or a pattern; otherwise it is the new name of
//!   the one source, as `cp a b` does.
//!
//! All remote paths of one command are on one host.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ferry::client::address::{is_pattern, may_name_host, parse_arg, Arg, Target};
use ferry::client::Error;

use super::GlobalArgs;

/// A remote path as the command line gave it.
#[derive(Debug, Clone)]
pub struct RemotePath {
    /// The path beneath the served root.
    pub path: Vec<u8>,
    /// The path as typed after `HOST:` (or whole, without a host).
    pub typed: Vec<u8>,
    /// The remote directory the path was taken from, when one applied,
    /// so matches can be shown as typed.
    pub base: Vec<u8>,
    /// Typed from the root, with a leading `/`.
    pub absolute: bool,
}

impl RemotePath {
    fn new(target: Option<&Target>, typed: &[u8]) -> RemotePath {
        let path = match target {
            Some(target) => target.remote_path(typed),
            None => typed.to_vec(),
        };
        let base = match target {
            Some(target) if typed.first() != Some(&b'/') => target.remote_dir.clone(),
            _ => Vec::new(),
        };
        RemotePath {
            path,
            typed: typed.to_vec(),
            base,
            absolute: target.is_some() && typed.first() == Some(&b'/'),
        }
    }

    /// Whether it was written as a directory: empty or ending with `/`.
    pub fn names_a_directory(&self) -> bool {
        self.typed.is_empty() || self.typed.ends_with(b"/")
    }

    /// Whether the server must expand it.
    pub fn is_pattern(&self) -> bool {
        is_pattern(&self.path)
    }

    /// A path the server matched, as the user would have typed it.
    pub fn shown(&self, matched: &[u8]) -> Vec<u8> {
        if self.absolute {
            return [b"/", matched].concat();
        }
        if self.base.is_empty() {
            return matched.to_vec();
        }
        match matched.strip_prefix(self.base.as_slice()) {
            Some(rest) if rest.first() == Some(&b'/') => rest[1..].to_vec(),
            _ => [b"/", matched].concat(),
        }
    }
}

/// Reads every argument, loading the config file only if one may name a
/// host.
fn parse_all(args: &[&OsStr], global: &GlobalArgs) -> Result<Vec<Arg>, Error> {
    if !args.iter().any(|a| may_name_host(a)) {
        return Ok(args.iter().map(|a| Arg::Plain(a.to_os_string())).collect());
    }
    let config = global.client_config()?;
    args.iter().map(|a| parse_arg(a, &config)).collect()
}

/// The one host of several remote paths (`None`: the default server).
fn one_host(args: Vec<Arg>) -> Result<(Option<Target>, Vec<RemotePath>), Error> {
    let mut host: Option<Option<Target>> = None;
    let mut paths = Vec::with_capacity(args.len());
    for arg in args {
        let (target, typed) = match arg {
            Arg::Plain(path) => (None, path.as_bytes().to_vec()),
            Arg::Remote { target, path } => (Some(target), path),
        };
        paths.push(RemotePath::new(target.as_ref(), &typed));
        match &host {
            None => host = Some(target),
            Some(seen) if *seen == target => {}
            Some(seen) => {
                let name = |t: &Option<Target>| {
                    t.as_ref()
                        .map(|t| format!("`{}`", t.name))
                        .unwrap_or_else(|| "the default server".into())
                };
                return Err(Error::Usage(format!(
                    "one command talks to one server, and these paths are on {} and {}",
                    name(seen),
                    name(&target)
                )));
            }
        }
    }
    Ok((host.flatten(), paths))
}

/// Remote paths of `ls`, `stat`, `mkdir` and `rm`, all on one host.
pub fn remote_paths(
    args: &[OsString],
    global: &GlobalArgs,
) -> Result<(Option<Target>, Vec<RemotePath>), Error> {
    let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    one_host(parse_all(&refs, global)?)
}

/// What `put` sends.
#[derive(Debug)]
pub enum PutSources {
    /// Local files and directories.
    Files(Vec<PathBuf>),
    /// Standard input, as one file.
    Stdin,
}

/// Where `put` stores.
#[derive(Debug)]
pub enum PutDest {
    /// Into this directory (created with its parents).
    Dir(Vec<u8>),
    /// Into this path if it is a directory, else as this path.
    DirOrName(Vec<u8>),
    /// As this path; a directory there is an error.
    Name(Vec<u8>),
}

/// `ferry put`, read.
#[derive(Debug)]
pub struct PutPlan {
    /// The host, if one was named.
    pub target: Option<Target>,
    /// What to send.
    pub sources: PutSources,
    /// Where to.
    pub dest: PutDest,
}

impl PutPlan {
    /// Reads `put`'s arguments and `--to`.
    pub fn new(
        args: &[OsString],
        to: Option<&OsStr>,
        global: &GlobalArgs,
    ) -> Result<PutPlan, Error> {
        let mut refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        refs.extend(to);
        let mut parsed = parse_all(&refs, global)?;
        let to = match to {
            Some(_) => parsed.pop(),
            None => None,
        };
        let stdin_first = parsed.len() == 2 && parsed[0] == Arg::Plain("-".into());
        let positional = match parsed.last() {
            Some(Arg::Remote { .. }) if parsed.len() >= 2 => parsed.pop(),
            Some(Arg::Plain(_)) if stdin_first => parsed.pop(),
            Some(Arg::Remote { .. }) => {
                return Err(Error::Usage(format!(
                    "nothing to put: name local files before {}",
                    show_arg(refs[0])
                )))
            }
            _ => None,
        };
        if positional.is_some() && to.is_some() {
            return Err(Error::Usage(
                "give the destination as HOST:DEST or with --to, not both".into(),
            ));
        }
        let mut locals = Vec::with_capacity(parsed.len());
        for (arg, raw) in parsed.into_iter().zip(&refs) {
            match arg {
                Arg::Plain(path) => locals.push(PathBuf::from(path)),
                Arg::Remote { .. } => {
                    return Err(Error::Usage(format!(
                        "put sends local files, and {} is remote (fetch it with `ferry get`; a \
                         local path with a colon is written ./{})",
                        show_arg(raw),
                        raw.to_string_lossy()
                    )))
                }
            }
        }
        let stdin = locals.iter().any(|l| l.as_os_str() == "-");
        if stdin && locals.len() > 1 {
            return Err(Error::Usage(
                "`-` (stdin) is the only source when given; write ./- for a file named -".into(),
            ));
        }
        let (target, dest) = match (positional, to) {
            (Some(arg), _) => {
                let (target, typed) = match arg {
                    Arg::Remote { target, path } => (Some(target), path),
                    Arg::Plain(path) => (None, path.as_bytes().to_vec()),
                };
                let remote = RemotePath::new(target.as_ref(), &typed);
                let dest = if stdin {
                    if remote.names_a_directory() {
                        return Err(Error::Usage(format!(
                            "stdin needs a file name to be stored as, as in {}report.pdf",
                            show_arg(refs[refs.len() - 1])
                        )));
                    }
                    PutDest::Name(remote.path)
                } else if remote.names_a_directory() || locals.len() > 1 {
                    PutDest::Dir(remote.path)
                } else {
                    PutDest::DirOrName(remote.path)
                };
                (target, dest)
            }
            (None, to) => {
                if stdin {
                    return Err(Error::Usage(
                        "stdin needs a file name to be stored as: ferry put - HOST:PATH".into(),
                    ));
                }
                match to {
                    Some(Arg::Remote { target, path }) => {
                        let dir = target.remote_path(&path);
                        (Some(target), PutDest::Dir(dir))
                    }
                    Some(Arg::Plain(dir)) => (None, PutDest::Dir(dir.as_bytes().to_vec())),
                    None => (None, PutDest::Dir(Vec::new())),
                }
            }
        };
        let sources = if stdin {
            PutSources::Stdin
        } else {
            PutSources::Files(locals)
        };
        Ok(PutPlan {
            target,
            sources,
            dest,
        })
    }
}

/// Where `get` stores.
#[derive(Debug, PartialEq, Eq)]
pub enum GetDest {
    /// Into this directory (created if missing).
    Dir(PathBuf),
    /// As this path: the one source under a new name.
    Name(PathBuf),
    /// To standard output.
    Stdout,
}

/// `ferry get`, read.
#[derive(Debug)]
pub struct GetPlan {
    /// The host, if one was named.
    pub target: Option<Target>,
    /// What to fetch.
    pub sources: Vec<RemotePath>,
    /// Where to.
    pub dest: GetDest,
}

impl GetPlan {
    /// Reads `get`'s arguments and `--to`.
    pub fn new(
        args: &[OsString],
        to: Option<&Path>,
        global: &GlobalArgs,
    ) -> Result<GetPlan, Error> {
        let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let mut parsed = parse_all(&refs, global)?;
        let last_is_dest = parsed.len() >= 2
            && match parsed.last() {
                Some(Arg::Plain(p)) if p == "-" => true,
                Some(Arg::Plain(_)) => parsed[..parsed.len() - 1]
                    .iter()
                    .all(|a| matches!(a, Arg::Remote { .. })),
                _ => false,
            };
        let positional = match last_is_dest {
            true => match parsed.pop() {
                Some(Arg::Plain(path)) => Some(PathBuf::from(path)),
                _ => None,
            },
            false => None,
        };
        if positional.is_some() && to.is_some() {
            return Err(Error::Usage(
                "give the destination as the last argument or with --to, not both".into(),
            ));
        }
        let (target, sources) = one_host(parsed)?;
        let dest = match (positional, to.map(Path::to_path_buf)) {
            (Some(path), _) | (None, Some(path)) if path.as_os_str() == "-" => GetDest::Stdout,
            (None, Some(dir)) => GetDest::Dir(dir),
            (None, None) => GetDest::Dir(PathBuf::from(".")),
            (Some(path), _) => {
                let bytes = path.as_os_str().as_bytes();
                let into = sources.len() > 1
                    || sources.iter().any(|s| s.is_pattern() || s.typed.is_empty())
                    || bytes.ends_with(b"/")
                    || bytes.ends_with(b"/.")
                    || bytes.ends_with(b"/..")
                    || bytes == b"."
                    || bytes == b".."
                    || path.is_dir();
                if into {
                    GetDest::Dir(path)
                } else {
                    GetDest::Name(path)
                }
            }
        };
        Ok(GetPlan {
            target,
            sources,
            dest,
        })
    }
}

/// An argument for a message.
fn show_arg(arg: &OsStr) -> String {
    format!("{:?}", arg.to_string_lossy())
}

/// Splits a remote path into its directory and last name.
pub fn split_last(path: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(at) => (trimmed[..at].to_vec(), trimmed[at + 1..].to_vec()),
        None => (Vec::new(), trimmed.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Global options whose config file holds the host `nas`.
    fn global(dir: &Path) -> GlobalArgs {
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            "[hosts.nas]\nserver = \"127.0.0.1:9\"\nremote-dir = \"backup\"\n",
        )
        .unwrap();
        let cli = super::super::Cli::try_parse_from([
            "ferry".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
            "hosts".as_ref(),
        ])
        .unwrap();
        cli.global
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn put(args: &[&str], to: Option<&str>) -> Result<PutPlan, Error> {
        let dir = tempfile::tempdir().unwrap();
        PutPlan::new(&os(args), to.map(OsStr::new), &global(dir.path()))
    }

    fn get(args: &[&str], to: Option<&str>) -> Result<GetPlan, Error> {
        let dir = tempfile::tempdir().unwrap();
        GetPlan::new(&os(args), to.map(Path::new), &global(dir.path()))
    }

    fn usage(result: Result<impl std::fmt::Debug, Error>, needle: &str) {
        match result {
            Err(Error::Usage(message)) => assert!(message.contains(needle), "{message}"),
            other => panic!("expected a usage error with {needle:?}: {other:?}"),
        }
    }

    #[test]
    fn put_reads_todays_forms_and_the_host_forms() {
        let plan = put(&["a", "b"], None).unwrap();
        assert!(plan.target.is_none());
        assert!(matches!(plan.dest, PutDest::Dir(ref d) if d.is_empty()));
        assert!(matches!(plan.sources, PutSources::Files(ref f) if f.len() == 2));
        let plan = put(&["a"], Some("dir")).unwrap();
        assert!(matches!(plan.dest, PutDest::Dir(ref d) if d == b"dir"));
        let plan = put(&["a"], Some("nas:x")).unwrap();
        assert_eq!(plan.target.unwrap().name, "nas");
        assert!(matches!(plan.dest, PutDest::Dir(ref d) if d == b"backup/x"));
        let plan = put(&["a.txt", "nas:b.txt"], None).unwrap();
        assert!(matches!(plan.dest, PutDest::DirOrName(ref d) if d == b"backup/b.txt"));
        let plan = put(&["a.txt", "nas:sub/"], None).unwrap();
        assert!(matches!(plan.dest, PutDest::Dir(ref d) if d == b"backup/sub/"));
        let plan = put(&["a", "b", "nas:/top"], None).unwrap();
        assert!(matches!(plan.dest, PutDest::Dir(ref d) if d == b"top"));
        let plan = put(&["./nas:x", "nas:"], None).unwrap();
        assert!(matches!(plan.sources, PutSources::Files(ref f) if f[0] == Path::new("./nas:x")));
        let plan = put(&["-", "nas:d.tar"], None).unwrap();
        assert!(matches!(plan.sources, PutSources::Stdin));
        assert!(matches!(plan.dest, PutDest::Name(ref d) if d == b"backup/d.tar"));
        let plan = put(&["-", "d.tar"], None).unwrap();
        assert!(plan.target.is_none());
        assert!(matches!(plan.dest, PutDest::Name(ref d) if d == b"d.tar"));
    }

    #[test]
    fn put_refuses_what_reads_two_ways() {
        usage(put(&["a", "nas:b"], Some("c")), "not both");
        usage(put(&["nas:b"], None), "nothing to put");
        usage(put(&["nas:a", "nas:b"], None), "is remote");
        usage(put(&["-", "a", "nas:b"], None), "only source");
        usage(put(&["-", "nas:"], None), "file name");
        usage(put(&["-", "nas:dir/"], None), "file name");
        usage(put(&["-"], None), "file name");
        assert!(matches!(
            put(&["x:y"], None),
            Err(Error::UnknownHost { .. })
        ));
    }

    #[test]
    fn get_reads_todays_forms_and_the_host_forms() {
        let plan = get(&["a", "b"], None).unwrap();
        assert!(plan.target.is_none());
        assert_eq!(plan.sources.len(), 2, "two remote files, as before");
        assert_eq!(plan.dest, GetDest::Dir(".".into()));
        let plan = get(&["a"], Some("out")).unwrap();
        assert_eq!(plan.dest, GetDest::Dir("out".into()));
        let plan = get(&["nas:a.txt", "b.txt"], None).unwrap();
        assert_eq!(plan.sources[0].path, b"backup/a.txt");
        assert_eq!(plan.dest, GetDest::Name("b.txt".into()));
        let plan = get(&["nas:a", "nas:b", "out"], None).unwrap();
        assert_eq!(plan.dest, GetDest::Dir("out".into()));
        let plan = get(&["nas:a", "nas:b"], None).unwrap();
        assert_eq!(plan.sources.len(), 2);
        assert_eq!(plan.dest, GetDest::Dir(".".into()));
        for into in ["out/", ".", "..", "x/.", "/"] {
            let plan = get(&["nas:a", into], None).unwrap();
            assert_eq!(plan.dest, GetDest::Dir(into.into()), "{into}");
        }
        let plan = get(&["nas:logs/*.log", "out"], None).unwrap();
        assert_eq!(
            plan.dest,
            GetDest::Dir("out".into()),
            "a pattern fills a directory"
        );
        assert!(plan.sources[0].is_pattern());
        let plan = get(&["nas:", "out"], None).unwrap();
        assert_eq!(
            plan.dest,
            GetDest::Dir("out".into()),
            "the root fills a directory"
        );
        assert_eq!(get(&["nas:a", "-"], None).unwrap().dest, GetDest::Stdout);
        assert_eq!(get(&["a", "-"], None).unwrap().dest, GetDest::Stdout);
        assert_eq!(get(&["a"], Some("-")).unwrap().dest, GetDest::Stdout);
        let plan = get(&["nas:a", "./x:y"], None).unwrap();
        assert_eq!(plan.dest, GetDest::Name("./x:y".into()));
    }

    #[test]
    fn get_refuses_what_reads_two_ways() {
        usage(get(&["nas:a", "b"], Some("c")), "not both");
        usage(get(&["a", "nas:b"], None), "one server");
        usage(get(&["nas:a", "127.0.0.1:9:b"], None), "one server");
        assert!(matches!(
            get(&["nas:a", "x:y"], None),
            Err(Error::UnknownHost { .. })
        ));
    }

    #[test]
    fn matches_are_shown_as_typed() {
        let target = Target {
            remote_dir: b"backup".to_vec(),
            ..Target::address("h:1".parse().unwrap())
        };
        let relative = RemotePath::new(Some(&target), b"logs/*.log");
        assert_eq!(relative.path, b"backup/logs/*.log");
        assert_eq!(relative.shown(b"backup/logs/a.log"), b"logs/a.log");
        let absolute = RemotePath::new(Some(&target), b"/etc/*");
        assert_eq!(absolute.shown(b"etc/x"), b"/etc/x");
        assert_eq!(
            split_last(b"a/b/c.txt"),
            (b"a/b".to_vec(), b"c.txt".to_vec())
        );
        assert_eq!(split_last(b"c.txt"), (Vec::new(), b"c.txt".to_vec()));
    }
}

/// Which way a `ferry sync` goes, read from its two arguments.
#[derive(Debug)]
pub enum SyncSides {
    /// The local tree to the server's.
    Push {
        /// The local source, with whether it was written `DIR/`.
        local: PathBuf,
        /// The host.
        target: Target,
        /// The destination beneath the served root.
        remote: RemotePath,
    },
    /// The server's tree to a local one.
    Pull {
        /// The host.
        target: Target,
        /// The source beneath the served root.
        remote: RemotePath,
        /// The local destination.
        local: PathBuf,
    },
}

impl SyncSides {
    /// Reads `SRC DST`: exactly one of them is `HOST:PATH`.
    pub fn new(src: &OsStr, dst: &OsStr, global: &GlobalArgs) -> Result<SyncSides, Error> {
        let mut parsed = parse_all(&[src, dst], global)?.into_iter();
        let (Some(src_arg), Some(dst_arg)) = (parsed.next(), parsed.next()) else {
            return Err(Error::Usage("ferry sync takes SRC and DST".into()));
        };
        match (src_arg, dst_arg) {
            (Arg::Plain(local), Arg::Remote { target, path }) => Ok(SyncSides::Push {
                local: PathBuf::from(local),
                remote: RemotePath::new(Some(&target), &path),
                target,
            }),
            (Arg::Remote { target, path }, Arg::Plain(local)) => Ok(SyncSides::Pull {
                remote: RemotePath::new(Some(&target), &path),
                target,
                local: PathBuf::from(local),
            }),
            (Arg::Remote { .. }, Arg::Remote { .. }) => Err(Error::Usage(
                "both SRC and DST are remote; one side of a sync is a local path".into(),
            )),
            (Arg::Plain(_), Arg::Plain(_)) => Err(Error::Usage(format!(
                "neither {} nor {} names a host; write the remote side as HOST:PATH \
                 (a host of `ferry hosts`, or ADDR:PORT)",
                show_arg(src),
                show_arg(dst)
            ))),
        }
    }
}
