//! The file service: get, put, ls, stat, mkdir and rm, confined to the
//! served root.
//!
//! - `root.rs`: confinement; every path resolves beneath a held handle.

pub mod root;
