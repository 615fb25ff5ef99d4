//! ferry's one integration-test binary: it links once, and every test file is
//! a module of it. `util` is the harness; each other module covers one
//! feature against the real `ferry` binary.

mod util;

mod addressing;
mod chat;
mod compat;
mod exec;
mod files;
mod fleet;
mod foundation;
mod install;
mod pairing;
mod regression;
mod shell;
mod tokens;
mod udp;
