//! The file service: get, put, ls, stat, mkdir and rm, confined to the
//! served root.
//!
//! - `root.rs`: confinement; every path resolves beneath a held handle.
//! - `atomic.rs`: partial file, hash, seal, publish by rename.
//! - `wire.rs`: the messages of both transfer directions, as pure code.

pub mod atomic;
pub mod wire;
pub mod root;
