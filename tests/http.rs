//! The HTTP door (`ferry serve --http`) end to end: a real server and a
//! real HTTP client ([`client::Client`], hyper), plus raw TCP where a
//! request must be one no client would send. One file per concern:
//! logging in, browsing and downloading, resumable uploads, share links.

mod blake3_js;
mod browse;
mod browser;
mod client;
mod links;
mod login;
mod upload;

use crate::util::Server;
use client::Client;

/// A server with an HTTP door on loopback, plain HTTP (`--plaintext`),
/// and `extra` flags.
fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--plaintext", "--http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A client of `server`'s HTTP door with the shared token.
fn authorized(server: &Server) -> Client {
    Client::of(server).bearer(&server.token())
}
