//! The file service end to end: `put`, `get`, `ls`, `stat`, `mkdir` and
//! `rm` from the real client binary against a real server, over TLS unless
//! a test moves enough bytes that plaintext keeps it fast. One file per
//! concern; the helpers they share are here.
//!
//! Every test keeps its "victim" files (what no operation may touch) in its
//! own sandbox, beside the served root, and compares trees byte for byte
//! and name for name, so a stray partial file or a lost mode shows up.

mod confinement;
mod distrust;
mod ops;
mod report;
mod resume;
mod scale;
pub(crate) mod space;
mod transfer;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

pub(super) use crate::util::poll_until;
use crate::util::{Invocation, Run, Server};

pub(crate) const MIB: u64 = 1024 * 1024;

/// The prefix of the partial files a receiver writes beside their target.
pub(crate) const PARTIAL_PREFIX: &str = ".ferry-partial-";

/// A client run against `server`, with `--plaintext` when the server
/// listens in plaintext.
pub(crate) fn client(server: &Server, args: &[&str]) -> Invocation {
    let mut full = Vec::with_capacity(args.len() + 1);
    if server.listening()[0].mode == "plaintext" {
        full.push("--plaintext");
    }
    full.extend_from_slice(args);
    server.client(&full)
}

/// Runs the client against `server` to its end.
pub(crate) fn run(server: &Server, args: &[&str]) -> Run {
    client(server, args).run()
}

/// Asserts a transfer succeeded and printed nothing on stdout: progress and
/// summaries belong on stderr.
#[track_caller]
pub(crate) fn assert_transferred(run: &Run) {
    run.assert_ok();
    assert_eq!(
        run.stdout, "",
        "put and get print nothing on stdout: {run:?}"
    );
}

/// Asserts a run failed with `code`, printed nothing on stdout, and said
/// each of `needles` on stderr.
#[track_caller]
pub(crate) fn assert_failed(run: &Run, code: i32, needles: &[&str]) {
    run.assert_code(code).assert_stdout("");
    for needle in needles {
        run.assert_stderr_contains(needle);
    }
}

/// A fresh directory `name` in the server's sandbox, beside its root.
pub(crate) fn local_dir(server: &Server, name: &str) -> PathBuf {
    let dir = server.sandbox.path().join(name);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A path as a `&str` argument for the client.
pub(crate) fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Writes `bytes` to `path` with permission bits `mode` and mtime
/// `secs`.123456789.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32, secs: u64) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(path, secs);
}

/// Sets `path`'s mtime to `secs`.123456789, nanoseconds included so a
/// receiver that drops them is caught.
pub(crate) fn set_mtime(path: &Path, secs: u64) {
    let time = UNIX_EPOCH + Duration::new(secs, 123_456_789);
    File::options()
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// The permission bits of `path` with setuid, setgid and sticky.
pub(crate) fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The mtime of `path`, seconds and nanoseconds.
pub(crate) fn mtime_of(path: &Path) -> (i64, i64) {
    let md = fs::symlink_metadata(path).unwrap();
    (md.mtime(), md.mtime_nsec())
}

/// `len` pseudo-random bytes from `seed` (BLAKE3's extendable output: fast,
/// and different for every seed).
pub(crate) fn random_reader(seed: u64, len: u64) -> impl Read {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.finalize_xof().take(len)
}

/// `len` pseudo-random bytes from `seed`, in memory.
pub(crate) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    random_reader(seed, len as u64)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Writes a file of `len` pseudo-random bytes from `seed` and returns its
/// BLAKE3.
pub(crate) fn write_random_file(path: &Path, seed: u64, len: u64) -> blake3::Hash {
    let mut file = File::create(path).unwrap();
    io::copy(&mut random_reader(seed, len), &mut file).unwrap();
    hash_file(path)
}

/// The BLAKE3 of a file's content, computed here, not by ferry.
pub(crate) fn hash_file(path: &Path) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    let mut file = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return hasher.finalize();
        }
        hasher.update(&buf[..n]);
    }
}

/// What one path in a tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    /// A regular file: its length and BLAKE3.
    File(u64, String),
    /// A symlink and its target.
    Symlink(PathBuf),
    Other,
}

/// One path in a tree: its kind and content, mode, and mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub mode: u32,
    pub mtime: (i64, i64),
}

/// Every path under a directory (not the directory itself), relative to it.
pub(crate) type Tree = BTreeMap<PathBuf, Node>;

/// Snapshots everything under `dir`, never following symlinks.
pub(crate) fn tree(dir: &Path) -> Tree {
    let mut out = Tree::new();
    walk(dir, Path::new(""), &mut out);
    out
}

fn walk(dir: &Path, prefix: &Path, out: &mut Tree) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = prefix.join(entry.file_name());
        let md = fs::symlink_metadata(&path).unwrap();
        let kind = if md.is_dir() {
            Kind::Dir
        } else if md.is_file() {
            Kind::File(md.len(), hash_file(&path).to_hex().to_string())
        } else if md.file_type().is_symlink() {
            Kind::Symlink(fs::read_link(&path).unwrap())
        } else {
            Kind::Other
        };
        let node = Node {
            kind,
            mode: md.mode() & 0o7777,
            mtime: (md.mtime(), md.mtime_nsec()),
        };
        let is_dir = node.kind == Kind::Dir;
        out.insert(rel.clone(), node);
        if is_dir {
            walk(&path, &rel, out);
        }
    }
}

/// A tree's names and contents, without modes and mtimes.
pub(crate) fn shape(tree: &Tree) -> BTreeMap<PathBuf, Kind> {
    tree.iter()
        .map(|(path, node)| (path.clone(), node.kind.clone()))
        .collect()
}

/// The names directly in `dir`, sorted.
pub(crate) fn names_in(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

/// Partial files anywhere under `dir`.
pub(crate) fn partials_under(dir: &Path) -> Vec<PathBuf> {
    tree(dir)
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.as_bytes().starts_with(PARTIAL_PREFIX.as_bytes()))
        })
        .collect()
}

/// Asserts no partial file is left anywhere under `dir`.
#[track_caller]
pub(crate) fn assert_no_partials(dir: &Path) {
    let left = partials_under(dir);
    assert!(left.is_empty(), "partial files left in {dir:?}: {left:?}");
}

/// Everything a test keeps outside the served root: a victim file and a
/// victim directory beside the root, and the sandbox's own names. Taken
/// before a test tries to escape the root, checked after.
pub(crate) struct Outside {
    sandbox: PathBuf,
    names: Vec<OsString>,
    victims: Tree,
}

impl Outside {
    /// Creates `outside/victim` and `outside/dir/inner` beside `server`'s
    /// root and snapshots the sandbox.
    pub(crate) fn create(server: &Server) -> Outside {
        Outside::create_in(server.sandbox.path())
    }

    /// Creates `outside/victim` and `outside/dir/inner` in `sandbox` and
    /// snapshots it.
    pub(crate) fn create_in(sandbox: &Path) -> Outside {
        let outside = sandbox.join("outside");
        fs::create_dir_all(outside.join("dir")).unwrap();
        fs::write(outside.join("victim"), b"precious").unwrap();
        fs::write(outside.join("dir/inner"), b"also precious").unwrap();
        Outside {
            names: Outside::sandbox_names(sandbox),
            victims: tree(&outside),
            sandbox: sandbox.to_path_buf(),
        }
    }

    /// The victim file.
    pub(crate) fn victim(&self) -> PathBuf {
        self.sandbox.join("outside/victim")
    }

    /// The victim directory.
    pub(crate) fn dir(&self) -> PathBuf {
        self.sandbox.join("outside/dir")
    }

    /// The sandbox's names, but those a client creates for itself on first
    /// use (its known_hosts under xdg-config).
    fn sandbox_names(sandbox: &Path) -> Vec<OsString> {
        names_in(sandbox)
            .into_iter()
            .filter(|n| n != "xdg-config" && n != "home")
            .collect()
    }

    /// Asserts the victims are byte for byte as they were and nothing new
    /// appeared beside the root or among them.
    #[track_caller]
    pub(crate) fn assert_untouched(&self) {
        assert_eq!(
            tree(&self.sandbox.join("outside")),
            self.victims,
            "something outside the root changed"
        );
        assert_eq!(
            Outside::sandbox_names(&self.sandbox),
            self.names,
            "something appeared beside the root"
        );
    }
}

/// The bytes a transfer summary on stderr says moved: `ferry: sent 1 file,
/// 12.5 MiB in 0.40 s (...)`.
#[track_caller]
pub(crate) fn bytes_moved(run: &Run) -> u64 {
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("ferry: sent ") || l.starts_with("ferry: received "))
        .unwrap_or_else(|| panic!("no transfer summary on stderr: {run:?}"));
    let amount = line
        .split_once(", ")
        .and_then(|(_, rest)| rest.split_once(" in "))
        .map(|(amount, _)| amount)
        .unwrap_or_else(|| panic!("unexpected summary {line:?}"));
    let (number, unit) = amount.split_once(' ').unwrap();
    let number: f64 = number.parse().unwrap();
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => MIB as f64,
        "GiB" => (1024 * MIB) as f64,
        _ => panic!("unexpected unit in {line:?}"),
    };
    (number * scale) as u64
}

#[test]
fn the_helpers_see_what_they_claim() {
    // The tree snapshot sees names, content, modes and nanosecond mtimes;
    // the summary parser reads the CLI's sizes.
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("a"), b"x", 0o640, 1_000_000_000);
    let before = tree(dir.path());
    set_mtime(&dir.path().join("a"), 1_000_000_001);
    assert_ne!(tree(dir.path()), before);
    assert_eq!(shape(&tree(dir.path())), shape(&before));
    fs::write(dir.path().join("a"), b"y").unwrap();
    assert_ne!(shape(&tree(dir.path())), shape(&before));
    let run = Run {
        code: 0,
        stdout: String::new(),
        stderr: "ferry: sent 2 files, 12.5 MiB in 0.40 s (31.2 MiB/s)\n".into(),
    };
    assert_eq!(bytes_moved(&run), 12 * MIB + MIB / 2);
}
