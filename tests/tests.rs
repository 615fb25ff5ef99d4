//! ferry's one integration-test binary: it links once, and every test file is
//! a module of it. `util` is the harness; each other module covers one
//! feature against the real `ferry` binary.

mod util;

mod addressing;
mod chat;
mod compat;
mod detach;
mod echo;
mod exec;
mod files;
mod fleet;
mod framing;
mod http;
mod install;
mod limits;
mod pairing;
mod quic;
mod reconnect;
mod regression;
mod shell;
mod shutdown;
mod striping;
mod sync;
mod tokens;
mod trust;
mod udp;
