//! The foundation, end to end, against the real binary: echo over every
//! transport, trust on first use and tokens, the frame rules a broken or
//! hostile peer runs into, deadlines and limits, and shutdown. One file per
//! concern; the helpers they share are here.

mod echo;
mod frames;
mod limits;
mod shutdown;
mod trust;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::util::Run;

pub(super) const MIB: u64 = 1024 * 1024;

/// Asserts a client run succeeded with exactly `stdout`.
#[track_caller]
pub(super) fn assert_answered(run: &Run, stdout: &str) {
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, stdout, "{run:?}");
}

/// Asserts a client run failed with exit 3, printed nothing on stdout, and
/// said each of `needles` on stderr.
#[track_caller]
pub(super) fn assert_refused(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    assert_stderr_says(run, needles);
}

/// Asserts a client run said each of `needles` on stderr.
#[track_caller]
pub(super) fn assert_stderr_says(run: &Run, needles: &[&str]) {
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}: {run:?}"
        );
    }
}

/// The permission bits of `path`.
pub(super) fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
