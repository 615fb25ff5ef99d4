//! Detachable commands (`ferry exec --detachable`): a command that outlives
//! its connection for its linger, a client that reconnects by itself with
//! nothing lost or repeated, `ferry jobs` and `ferry attach` from another
//! process, the output bound, and who may attach. One file per concern;
//! the helpers they share are here. Commands wait on gate files in the
//! server's root, so no test depends on timing.

mod jobs;
mod reconnect;
mod shell;

use std::path::Path;

use crate::util::{poll_until, Run, Server, DEADLINE};

/// A shell line that waits until `gate` exists in the command's directory.
pub(super) fn wait_for(gate: &str) -> String {
    format!("while [ ! -e {gate} ]; do sleep 0.01; done")
}

/// Opens `gate` in `server`'s root: the command waiting on it goes on.
pub(super) fn open_gate(server: &Server, gate: &str) {
    std::fs::write(server.root().join(gate), b"").unwrap();
}

/// `ferry jobs` against `server`, with the shared token.
pub(super) fn jobs(server: &Server) -> Run {
    let run = client(server, &["jobs"]).run();
    run.assert_ok();
    run
}

/// A client of `server` with its shared token, over TLS (pinned).
pub(super) fn client(server: &Server, args: &[&str]) -> crate::util::Invocation {
    server.client(args)
}

/// Waits until `ferry jobs` lists exactly one job whose line says `state`;
/// returns its id.
#[track_caller]
pub(super) fn one_job(server: &Server, state: &str) -> String {
    poll_until(&format!("one job {state}"), DEADLINE, || {
        let run = jobs(server);
        let lines: Vec<&str> = run.stdout.lines().collect();
        match lines[..] {
            [line] if line.contains(state) => {
                Some(line.split_whitespace().next().unwrap().to_string())
            }
            _ => None,
        }
    })
}

/// The path as a `&str`, for a command line.
pub(super) fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
