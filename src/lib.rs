//! ferry moves files and runs commands between your own machines: one small
//! binary with a server (`ferry serve`) and a client for every service.
//!
//! # Layout
//!
//! Dependencies point one way: **cli → client | server → services →
//! engine → connection → protocol**; `transport` serves only the client
//! and the server; `limits` imports nothing above it. ARCHITECTURE.md
//! follows one request through these floors.
//!
//! - [`protocol`]: the wire format as pure code (no sockets, files or clock):
//!   the frame codec, headers, shared messages and the error-code table.
//! - [`connection`]: a framed, split stream with deadlines and bounded buffers.
//! - [`transport`]: addresses, listeners, TLS, QUIC and fingerprints;
//!   knows no services.
//! - [`services`]: one module per `cmd`, and the request dispatch.
//! - [`engine`]: what both peers run: confinement, atomic writes, the
//!   manifest, the transfer by role, sync (chunks, hash trees, deltas,
//!   deletes), the state directory.
//! - [`server`]: every door (framed, QUIC, the tutorial's, raw echo,
//!   datagrams, HTTP), who may come in, one task per connection, limits,
//!   shutdown.
//! - [`client`]: connect, pin, hello, one file per service, and the
//!   reconnects of a transfer whose connection drops or stalls.
//! - [`pairing`]: the code, key exchange and proofs of `ferry pair`, as
//!   both ends run them.
//! - [`limits`]: every cap and deadline, with its reason.
//! - [`log`]: peer text made safe for a log line, and a stderr writer that
//!   never stalls or stops the server.
//! - [`escape`]: peer text made safe for a terminal.
//! - [`error`]: the library's error, its exit code and hint.
//!
//! The binary's CLI (`src/cli/`) is a thin shell over this library.

pub mod client;
pub mod connection;
pub mod engine;
pub mod error;
pub mod escape;
pub mod limits;
pub mod log;
pub mod pairing;
pub mod protocol;
pub mod server;
pub mod services;
pub mod transport;

pub use error::Error;
