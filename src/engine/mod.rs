//! What both peers run, so neither owns it: the server runs it for `put`
//! and the client for `get`, and the other way round.
//!
//! - `root.rs`: confinement; every path resolves beneath a held handle.
//! - `dirs.rs`: the chain of open directories a tree walk moves through.
//! - `atomic.rs`: partial file, hash, seal, publish by rename.
//! - `sparse.rs`: writes that keep zero blocks as holes.
//! - `wire.rs`: the messages of both transfer directions, as pure code.
//! - `manifest.rs`: what a transfer sends, walked from the root or local paths.
//! - `ranges.rs`: which ranges of a file sent over several streams arrived.
//! - `ranged.rs`: the partial file those ranges are written into, and its record.
//! - `transfer/`: the data phase by role: plan, write, receive, send.
//! - `error.rs`: a file's error: a wire code and a message.
//! - `chunks.rs`: content-defined chunks of a file, hashed on two threads.
//! - `hash_tree.rs`: the tree of chunk hashes sync compares top-down.
//! - `filter.rs`: sync's include and exclude rules, and `.gitignore` files.
//! - `index.rs`: what a sync last saw of a tree, kept in the state directory.
//! - `sync/`: `ferry sync`'s walk, receiver's rules, deltas and deletes.
//! - `state.rs`: the state directory: token, certificate, client tokens.

pub mod atomic;
pub mod chunks;
pub mod dirs;
pub mod error;
pub mod filter;
pub mod hash_tree;
pub mod index;
pub mod manifest;
pub mod ranged;
pub mod ranges;
pub mod root;
pub mod sparse;
pub mod state;
pub mod sync;
pub mod transfer;
pub mod wire;
