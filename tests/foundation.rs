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

pub(super) const MIB: u64 = 1024 * 1024;

/// The permission bits of `path`.
pub(super) fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
