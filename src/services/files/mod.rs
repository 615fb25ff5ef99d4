//! The file service: get, put, ls, stat, mkdir and rm, confined to the
//! served root.
//!
//! - `root.rs`: confinement; every path resolves beneath a held handle.
//! - `atomic.rs`: partial file, hash, seal, publish by rename.
//! - `wire.rs`: the messages of both transfer directions, as pure code.
//! - `manifest.rs`: what a transfer sends, walked from the root or local paths.
//! - `error.rs`: the service's error: a wire code and a message.

pub mod atomic;
pub mod error;
pub mod manifest;
pub mod root;
pub mod transfer;
pub mod wire;
