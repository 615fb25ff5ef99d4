//! Bytes in, bytes out. This module knows addresses, sockets, TLS and QUIC, and
//! nothing about frames or services; it serves only `client` and `server`.

pub mod endpoint;
pub mod listener;
pub mod quic;
pub mod read_ahead;
pub mod stream;
pub mod tls;

pub use endpoint::Endpoint;
pub use listener::Listener;
pub use read_ahead::ReadAhead;
pub use stream::Stream;
pub use tls::Fingerprint;
