//! `ferry::Error`: everything that can go wrong for a caller of the library,
//! with the exit code the CLI turns it into and a hint naming the next step.
//!
//! Exit codes: 0 success, 1 the server answered with an error or a
//! transfer failed (on either side), 2 usage, 3 ferry could not do its
//! part: cannot connect / TLS / fingerprint / authentication, or a local
//! failure outside a transfer. Messages of local failures start `local:`.

use std::path::PathBuf;

use crate::connection::ConnectionError;
use crate::protocol::{ErrorCode, ErrorReply};
use crate::transport::Fingerprint;

/// Exit status when the server refused a request or a transfer failed.
pub const EXIT_REMOTE: u8 = 1;
/// Exit status for a usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit status when ferry itself could not do its part: connection, TLS,
/// fingerprint, authentication, or a local failure outside a transfer
/// (stdin, stdout, the known-hosts file).
pub const EXIT_CONNECT: u8 = 3;

/// An error of the ferry library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or argument that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The server could not start.
    #[error("{0}")]
    Startup(String),
    /// The server could not be reached.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// Where we tried.
        endpoint: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A datagram service did not answer; UDP may have lost the datagrams.
    #[error("no reply from {endpoint} after {tries} tries")]
    NoReply {
        /// Where we asked.
        endpoint: String,
        /// Datagrams sent.
        tries: u32,
    },
    /// A datagram service answered with an error line.
    #[error("{endpoint} answered: {message}")]
    DatagramError {
        /// Who answered.
        endpoint: String,
        /// Its error line, without the `error: ` prefix.
        message: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {endpoint} failed: {source}")]
    Tls {
        /// Where we tried.
        endpoint: String,
        /// What rustls said.
        source: std::io::Error,
    },
    /// The server's certificate is not the one pinned for it.
    #[error(
        "the certificate of {endpoint} has changed!\n  pinned:  {pinned}\n  offered: {offered}\n\
         Someone may be intercepting the connection, or the server's state directory was reset."
    )]
    FingerprintChanged {
        /// The server.
        endpoint: String,
        /// The fingerprint in known_hosts.
        pinned: Fingerprint,
        /// The one the server showed.
        offered: Fingerprint,
        /// The known-hosts file, to name in the hint.
        known_hosts: PathBuf,
    },
    /// The server's certificate is not the one `--fingerprint` named.
    #[error(
        "the certificate of {endpoint} is {offered}, not {expected} as required (by --fingerprint \
         or the host's entry in the config file)"
    )]
    FingerprintMismatch {
        /// The server.
        endpoint: String,
        /// What `--fingerprint` said.
        expected: Fingerprint,
        /// What the server showed.
        offered: Fingerprint,
    },
    /// No token was given and none was found locally.
    #[error("no access token for {endpoint}")]
    NoToken {
        /// The server.
        endpoint: String,
        /// Where a local server's token was looked for.
        looked_in: Option<PathBuf>,
    },
    /// A `HOST:` names no host of the client's config file.
    #[error("unknown host `{name}`: it is not in {}", .config.display())]
    UnknownHost {
        /// The name as typed.
        name: String,
        /// The config file looked in.
        config: PathBuf,
    },
    /// The server refused the connection at `hello`.
    #[error("the server refused the connection: {}", .0.message)]
    Refused(ErrorReply),
    /// The server did not run a command (exec): a ferry failure, exit 3, so
    /// a wrapper can tell it from the command's own exit status.
    #[error("the command did not run: {}", .0.message)]
    NotRun(ErrorReply),
    /// The server answered a request with an error.
    #[error("{}", .0.message)]
    Remote(ErrorReply),
    /// A command or shell stopped before its end: the server said it is
    /// shutting down, or the connection broke.
    #[error(
        "{}",
        if *.shutting_down {
            format!("the server is shutting down and ended the {what}")
        } else {
            format!("the server closed the connection before the {what} ended")
        }
    )]
    Ended {
        /// What ended: `command` or `shell`.
        what: &'static str,
        /// Whether the server said it is shutting down.
        shutting_down: bool,
    },
    /// The connection failed or the server broke the protocol.
    #[error("connection to the server failed: {0}")]
    Connection(#[from] ConnectionError),
    /// The server sent something the protocol does not allow.
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    /// Files of a transfer failed, each reported with its side.
    #[error("{failed} of the files failed")]
    TransferFailed {
        /// How many.
        failed: usize,
    },
    /// A transfer failed on this side as a whole (a local file to send, a
    /// destination directory).
    #[error("local: {0}")]
    Files(crate::engine::error::FileError),
    /// A local IO error outside a transfer (stdin, stdout, a file).
    #[error("local: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The wire code, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused(reply) | Error::Remote(reply) | Error::NotRun(reply) => {
                reply.known_code()
            }
            _ => None,
        }
    }

    /// The process exit status this error maps to.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::UnknownHost { .. } => EXIT_USAGE,
            Error::Remote(_)
            | Error::TransferFailed { .. }
            | Error::Startup(_)
            | Error::Files(_)
            | Error::DatagramError { .. } => EXIT_REMOTE,
            Error::Connect { .. }
            | Error::NoReply { .. }
            | Error::Tls { .. }
            | Error::FingerprintChanged { .. }
            | Error::FingerprintMismatch { .. }
            | Error::NoToken { .. }
            | Error::Refused(_)
            | Error::NotRun(_)
            | Error::Ended { .. }
            | Error::Connection(_)
            | Error::Protocol(_)
            | Error::Io(_) => EXIT_CONNECT,
        }
    }

    /// What the user can do next, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Connect { .. } => {
                Some("is `ferry serve` running there? Check --server (or FERRY_SERVER)".into())
            }
            Error::UnknownHost { name, .. } => Some(format!(
                "pair with it (`ferry pair HOST[:PORT] CODE --name {name}`), or add a \
                 [hosts.{name}] table with its `server` to that file; an address needs its port \
                 ({name}:9001), and a local path with a colon is written ./{name}:..."
            )),
            Error::NoReply { .. } => Some(
                "is `ferry serve` running there with this service on? (the time service is on \
                 127.0.0.1:9000 unless --udp-time or --no-udp-time say otherwise)"
                    .into(),
            ),
            Error::Tls { source, .. } if closed_early(source) => Some(
                "the server closed the connection before TLS finished: it may be refusing this \
                 address for a while after failed logins (a wrong token); wait, then try again \
                 with the right token. If it runs with --plaintext, pass --plaintext here too"
                    .into(),
            ),
            Error::Tls { .. } => {
                Some("if the server runs with --plaintext, pass --plaintext here too".into())
            }
            Error::FingerprintChanged {
                endpoint,
                offered,
                known_hosts,
                ..
            } => Some(format!(
                "if the change is expected, check the fingerprint the server prints at start, then \
                 re-pin with `--fingerprint {offered}`, or delete the line for {endpoint} in {}",
                known_hosts.display()
            )),
            Error::FingerprintMismatch { .. } => {
                Some("compare with the fingerprint `ferry serve` prints at start".into())
            }
            Error::NoToken { looked_in, .. } => Some(format!(
                "copy the `token` file of the server's state directory (mode 0600) and pass \
                 --token-file PATH or set FERRY_TOKEN_FILE{}",
                looked_in
                    .as_ref()
                    .map(|p| format!(" (looked for {} here)", p.display()))
                    .unwrap_or_default()
            )),
            Error::Refused(reply) => match reply.known_code() {
                Some(ErrorCode::BadToken) => Some(
                    "check --token-file (or --token, FERRY_TOKEN) against the `token` file in the \
                     server's state directory"
                        .into(),
                ),
                Some(ErrorCode::Busy) => Some("try again in a moment".into()),
                Some(ErrorCode::UnsupportedVersion) => {
                    Some("use the same ferry version on both ends".into())
                }
                _ => None,
            },
            Error::Ended { .. } => Some(
                "it may have shut down, restarted or lost its network; try again once it is back"
                    .into(),
            ),
            Error::Connection(ConnectionError::Closed | ConnectionError::Truncated) => {
                Some(CLOSED_HINT.into())
            }
            Error::Connection(ConnectionError::Io(err)) if closed_early(err) => {
                Some(CLOSED_HINT.into())
            }
            _ => None,
        }
    }
}

/// What to try when a plain connection closes where a reply was due.
const CLOSED_HINT: &str = "the server closed the connection: if it requires TLS, drop \
    --plaintext; it may also be refusing this address for a while after failed logins (a wrong \
    token)";

/// Whether the server hung up instead of answering: what a client under a
/// login penalty sees, since the server closes such connections at accept.
fn closed_early(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        let remote = Error::Remote(ErrorReply::new(ErrorCode::UnknownCmd, "x"));
        assert_eq!(remote.exit_code(), 1);
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        let refused = Error::Refused(ErrorReply::new(ErrorCode::BadToken, "x"));
        assert_eq!(refused.exit_code(), 3);
        assert!(refused.hint().unwrap().contains("FERRY_TOKEN"));
        let fp = Fingerprint::of_certificate(b"a");
        let changed = Error::FingerprintChanged {
            endpoint: "h:1".into(),
            pinned: fp,
            offered: Fingerprint::of_certificate(b"b"),
            known_hosts: "/k/known_hosts".into(),
        };
        assert_eq!(changed.exit_code(), 3);
        assert!(changed.hint().unwrap().contains("/k/known_hosts"));
        // A transfer that failed, on either side, is 1; a local failure
        // outside a transfer (stdout, stdin) is ferry's own, 3.
        assert_eq!(Error::TransferFailed { failed: 2 }.exit_code(), 1);
        let missing = crate::engine::error::FileError::new(ErrorCode::NotFound, "x");
        assert_eq!(Error::Files(missing).exit_code(), 1);
        let stdout = Error::Io(std::io::Error::other("cannot write to stdout"));
        assert_eq!(stdout.exit_code(), 3);
        assert!(stdout.to_string().starts_with("local: "), "{stdout}");
    }
}
