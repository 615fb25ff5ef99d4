//! One named test per fixed bug, each named after what it guards. Every test
//! here failed on the code before its fix; the commit that added it says how.

mod addressing;
mod auth;
mod cli;
mod datagram;
mod doors;
mod fresh_machine;
mod integrity;
mod python_client;
mod quic;
mod sync;
