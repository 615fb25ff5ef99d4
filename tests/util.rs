//! The harness every integration test stands on: a real `ferry serve` on
//! port 0, the `ferry` client binary, and a raw speaker of the wire protocol.
//!
//! Each server lives in a [`Sandbox`], a temporary directory that stands in
//! for a user's home: `HOME`, `XDG_STATE_HOME` and `XDG_CONFIG_HOME` point into
//! it and every other variable (all `FERRY_*` among them) is cleared, so no
//! test reads or writes the real user's pins, tokens or files. Nothing here
//! sleeps: readiness is the server's `ready` line, exits are waited for
//! through a pidfd, and every read carries a deadline, so a broken server
//! fails a test instead of hanging the suite.
//!
//! One file per type: [`Sandbox`] (`sandbox.rs`), [`Process`] (`process.rs`),
//! [`Server`] (`server.rs`), a client run and its result, [`Invocation`] and
//! [`Run`] (`command.rs`), and [`LibraryServer`], the server as a library
//! on the test's runtime, with [`WireClient`] (`library.rs`); [`Raw`] speaks
//! the protocol byte by byte, `fake` plays a broken or hostile server,
//! [`Proxy`] and [`UdpRelay`] stand between a client and a server and cut
//! or stall its connections, and `outside_tool` finds programs nobody here
//! wrote.

mod command;
pub mod fake;
mod library;
pub mod outside_tool;
mod process;
mod proxy;
mod raw;
mod relay;
mod sandbox;
mod server;

pub use command::{ferry, Invocation, Output, Run};
pub use library::{LibraryServer, WireClient};
pub use process::{read_all_in_background, Process};
pub use proxy::{Fault, Proxy};
pub use raw::{frame_bytes, hello_header, Raw};
pub use relay::UdpRelay;
pub use sandbox::{Sandbox, FERRY};
pub use server::{Listening, Server};

use std::time::{Duration, Instant};

/// How long anything that should happen "at once" may take before a test
/// gives up. Generous, because a debug build on a loaded two-core machine is
/// slow; it only costs time when a test is failing anyway.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` every millisecond until it gives a value, for at most
/// `within`; panics naming `what` if it never does. For what no event
/// announces: a file growing on disk, a process dying.
#[track_caller]
pub fn poll_until<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
