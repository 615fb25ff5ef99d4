//! One module per `cmd`. This file holds the typed [`Request`] every
//! request header is parsed into (and a client's is written from, so a
//! command is named once, in its tag), and the one `match` that hands it
//! to its service. Services answer with ok or error frames themselves; they return
//! an error only when the connection cannot go on.

pub mod chat;
pub mod echo;
pub mod exec;
pub mod files;
pub mod sntp;
pub mod sync;
pub mod time;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::protocol::{ErrorCode, Header, Refusal};

/// The `cmd`s this build serves, in the order `hello` lists them; a unit
/// test holds it to the [`Request`] tags.
pub const SERVICES: &[&str] = &[
    "echo", "get", "put", "ls", "stat", "mkdir", "rm", "glob", "exec", "shell", "chat", "sync",
    "attach", "jobs",
];

/// A request, parsed from its header by `cmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Return the body, optionally upper-cased.
    Echo(echo::EchoRequest),
    /// Send files or a tree to the client.
    Get(files::GetRequest),
    /// Receive files or a tree from the client.
    Put(files::PutRequest),
    /// List a directory.
    Ls(files::ops::LsRequest),
    /// Describe one path.
    Stat(files::ops::StatRequest),
    /// Create a directory.
    Mkdir(files::ops::MkdirRequest),
    /// Remove a file or tree.
    Rm(files::ops::RmRequest),
    /// Expand a pattern beneath the root.
    Glob(files::glob::GlobRequest),
    /// Run a command and stream its output.
    Exec(exec::ExecRequest),
    /// An interactive login shell on a pseudo-terminal.
    Shell(exec::pty::ShellRequest),
    /// Join the chat hub.
    Chat(chat::ChatRequest),
    /// Keep a tree the same as the client's, either way.
    Sync(sync::SyncRequest),
    /// Follow a detachable job again, from given offsets.
    Attach(exec::job::AttachRequest),
    /// List the caller's detachable jobs.
    Jobs(exec::job::JobsRequest),
}

impl Request {
    /// The header that carries this request: its fields plus `cmd`, the
    /// header [`Request::parse`] reads back. A client builds every request
    /// header here, so a command's name is written once, in its tag.
    pub fn to_header(&self) -> Header {
        Header::from_message(self)
    }

    /// The request's `cmd`, as its tag names it on the wire.
    pub fn cmd(&self) -> &'static str {
        match self {
            Request::Echo(_) => "echo",
            Request::Get(_) => "get",
            Request::Put(_) => "put",
            Request::Ls(_) => "ls",
            Request::Stat(_) => "stat",
            Request::Mkdir(_) => "mkdir",
            Request::Rm(_) => "rm",
            Request::Glob(_) => "glob",
            Request::Exec(_) => "exec",
            Request::Shell(_) => "shell",
            Request::Attach(_) => "attach",
            Request::Jobs(_) => "jobs",
            Request::Chat(_) => "chat",
            Request::Sync(_) => "sync",
        }
    }

    /// Reads a request header, or says which error code refuses it.
    pub fn parse(header: &Header) -> Result<Request, Refusal> {
        let cmd = match header.get("cmd") {
            None => {
                return Err(Refusal::new(
                    ErrorCode::MissingCmd,
                    "the header has no `cmd`; every request names one",
                ))
            }
            Some(serde_json::Value::String(cmd)) => cmd,
            Some(_) => {
                return Err(Refusal::new(
                    ErrorCode::MissingCmd,
                    "`cmd` must be a string",
                ))
            }
        };
        if cmd == "hello" {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                "`hello` was already said on this connection",
            ));
        }
        if !SERVICES.contains(&cmd.as_str()) {
            return Err(Refusal::new(
                ErrorCode::UnknownCmd,
                format!(
                    "unknown cmd {cmd:?}; this server offers: {}",
                    SERVICES.join(", ")
                ),
            ));
        }
        header.to_message::<Request>().map_err(|err| {
            Refusal::new(ErrorCode::BadRequest, format!("bad `{cmd}` request: {err}"))
        })
    }
}

/// What the services need from the server.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// The directory the file service serves, held open.
    pub root: Arc<crate::engine::root::Root>,
    /// Cap on a manifest, wants list or listing body.
    pub max_list_bytes: usize,
    /// The served root as a path: where commands start.
    pub root_path: std::path::PathBuf,
    /// Whether `exec` runs commands (`--allow-exec`).
    pub allow_exec: bool,
    /// Whether every `exec` and `shell` is detachable
    /// (`--detachable-default`).
    pub detachable_default: bool,
    /// One permit per command running at once.
    pub exec_slots: Arc<tokio::sync::Semaphore>,
    /// The chat hub, shared with the UDP chat gateway.
    pub chat: Arc<chat::hub::Hub>,
    /// Cancelled when the server shuts down: long-lived requests (chat)
    /// end then instead of holding the drain.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Silence after which a chat client is taken for gone.
    pub idle_timeout: std::time::Duration,
    /// The server's state directory, where `ferry sync` keeps its index
    /// of the trees it syncs (`None`: no index, every sync hashes anew).
    pub state_dir: Option<std::path::PathBuf>,
    /// The client's token is read-only: services that write refuse.
    pub read_only: bool,
    /// Tickets for the extra connections of striped transfers.
    pub tickets: Arc<files::stripe::Tickets>,
    /// Who the connection speaks for (the shared token, or a client's
    /// name): a striped transfer's ticket is bound to it.
    pub identity: Arc<str>,
    /// Deadline for each step of a request.
    pub request_timeout: std::time::Duration,
    /// Who the client is (the shared token, or one client's token): only
    /// the identity that started a detachable job may attach to it.
    pub owner: String,
    /// The server's detachable jobs.
    pub jobs: std::sync::Arc<exec::job::Jobs>,
}

/// How a request ended, for the server's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with ok.
    Ok,
    /// Refused or failed with this code; the connection goes on.
    Refused(ErrorCode),
}

/// Serves one request whose header has just been read.
pub async fn handle<S: ByteStream>(
    conn: &mut Connection<S>,
    header: Header,
    context: &ServiceContext,
) -> Result<Outcome, ConnectionError> {
    let request = match Request::parse(&header) {
        Ok(request) => request,
        Err(refusal) => {
            // Answer first: the client learns of the refusal without having
            // to send the body. Then skip the body to find the next frame.
            conn.send_error(&refusal).await?;
            conn.reader().discard_body().await?;
            return Ok(Outcome::Refused(refusal.code));
        }
    };
    // Only `echo`, `put` and a pushing `sync` carry a request body.
    let carries_body = match &request {
        Request::Echo(_) | Request::Put(_) => true,
        Request::Sync(sync) => sync.push,
        _ => false,
    };
    if header.size() > 0 && !carries_body {
        let refusal = Refusal::new(ErrorCode::BadRequest, "this request carries no body");
        conn.send_error(&refusal).await?;
        conn.reader().discard_body().await?;
        return Ok(Outcome::Refused(ErrorCode::BadRequest));
    }
    match request {
        Request::Echo(request) => echo::serve(conn, request, header.size()).await,
        Request::Get(request) => files::get(conn, context, request).await,
        Request::Put(request) => files::put(conn, context, request, header.size()).await,
        Request::Ls(request) => files::ops::ls(conn, context, request).await,
        Request::Stat(request) => files::ops::stat(conn, context, request).await,
        Request::Mkdir(request) => files::ops::mkdir(conn, context, request).await,
        Request::Rm(request) => files::ops::rm(conn, context, request).await,
        Request::Glob(request) => files::glob::glob(conn, context, request).await,
        Request::Exec(request) => exec::serve(conn, context, request).await,
        Request::Shell(request) => exec::pty::serve(conn, context, request).await,
        Request::Attach(request) => exec::job::attach(conn, context, request).await,
        Request::Jobs(_) => exec::job::list(conn, context).await,
        Request::Chat(request) => chat::serve(conn, context, request).await,
        Request::Sync(request) => sync::serve(conn, context, request, header.size()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(value: serde_json::Value) -> Header {
        Header::new(value.as_object().unwrap().clone())
    }

    fn code(value: serde_json::Value) -> ErrorCode {
        Request::parse(&header(value)).unwrap_err().code
    }

    #[test]
    fn requests_parse_by_cmd() {
        assert_eq!(
            Request::parse(&header(json!({"cmd": "echo", "upper": true}))),
            Ok(Request::Echo(echo::EchoRequest { upper: true }))
        );
        assert_eq!(
            Request::parse(&header(json!({"cmd": "echo", "future_option": 1}))),
            Ok(Request::Echo(echo::EchoRequest { upper: false })),
            "unknown fields are ignored"
        );
    }

    #[test]
    fn bad_requests_get_their_codes() {
        assert_eq!(code(json!({})), ErrorCode::MissingCmd);
        assert_eq!(code(json!({"cmd": 5})), ErrorCode::MissingCmd);
        assert_eq!(code(json!({"cmd": "launch"})), ErrorCode::UnknownCmd);
        assert_eq!(code(json!({"cmd": "hello"})), ErrorCode::BadRequest);
        assert_eq!(
            code(json!({"cmd": "echo", "upper": "yes"})),
            ErrorCode::BadRequest
        );
    }

    /// Every `cmd` the `Request` tag knows, as serde names them when it
    /// refuses an unknown one: the list comes from the derive itself, so
    /// a variant added to `Request` shows up here whatever else is missed.
    fn request_tags() -> Vec<String> {
        let err = serde_json::from_value::<Request>(json!({"cmd": "?"})).unwrap_err();
        let message = err.to_string();
        let (_, expected) = message
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("serde named no variants: {message}"));
        expected
            .split(", ")
            .map(|tag| tag.trim_matches('`').to_string())
            .collect()
    }

    #[test]
    fn services_lists_every_request_tag_and_nothing_else() {
        let mut tags = request_tags();
        let mut listed: Vec<String> = SERVICES.iter().map(|s| s.to_string()).collect();
        tags.sort();
        listed.sort();
        assert_eq!(tags, listed);
    }

    #[test]
    fn a_request_writes_the_header_it_is_parsed_from() {
        for cmd in SERVICES {
            let request = match *cmd {
                "chat" => json!({"cmd": cmd, "name": "alice"}),
                _ => json!({"cmd": cmd}),
            };
            let request = Request::parse(&header(request)).unwrap();
            assert_eq!(request.cmd(), *cmd);
            let written = request.to_header();
            assert_eq!(written.cmd(), Some(*cmd));
            assert_eq!(Request::parse(&written), Ok(request));
        }
        // The same bytes a header built from the message and its name had.
        let get = files::GetRequest {
            path: crate::engine::wire::WirePath::from_bytes(b"photos"),
            recursive: true,
            md5: false,
            streams: 1,
        };
        let put = files::PutRequest {
            path: crate::engine::wire::WirePath::from_bytes(b"bad\xff"),
            force: false,
            resume: true,
            preserve: true,
            streams: 0,
        };
        let wire = |header: Header| String::from_utf8(header.with_size(7).to_json()).unwrap();
        assert_eq!(
            wire(Request::Get(get).to_header()),
            r#"{"cmd":"get","path":"photos","recursive":true,"size":7}"#
        );
        assert_eq!(
            wire(Request::Put(put).to_header()),
            r#"{"cmd":"put","force":false,"path_b64":"YmFk/w==","preserve":true,"resume":true,"size":7}"#
        );
    }

    #[test]
    fn every_service_listed_parses() {
        for cmd in SERVICES {
            // Chat needs a name; every other service has defaults for all.
            let request = match *cmd {
                "chat" => json!({"cmd": cmd, "name": "alice"}),
                _ => json!({"cmd": cmd}),
            };
            assert!(Request::parse(&header(request)).is_ok(), "{cmd}");
        }
    }
}
