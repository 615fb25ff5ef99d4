//! The client side of `chat`: join, then send commands and read what the
//! hub says, through the two halves of the connection so a caller can do
//! both at once.

pub use crate::services::chat::hub::Event;
pub use crate::services::chat::line::{self, Line};
pub use crate::services::chat::{keepalive_interval, ChatCommand};

use bytes::Bytes;
use tokio::io::{ReadHalf, WriteHalf};

use super::{expect_ok, Client};
use crate::connection::{FrameReader, FrameWriter};
use crate::error::Error;
use crate::protocol::message::Reply;
use crate::protocol::{ErrorReply, Header};
use crate::services::chat::{ChatRequest, ChatWelcome};
use crate::services::Request;
use crate::transport::Stream;

/// One thing the server said during a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// An event of the hub.
    Event(Event),
    /// A command was refused (the chat goes on).
    Refused(ErrorReply),
    /// The chat is over, and why.
    End(String),
}

/// A client in the chat.
pub struct Chat {
    client: Client,
    /// What the server said when it let us in.
    pub welcome: ChatWelcome,
}

impl Client {
    /// Joins the chat as `name`, in `room` (the default room if `None`).
    pub async fn chat(mut self, name: &str, room: Option<&str>) -> Result<Chat, Error> {
        let request = ChatRequest {
            name: name.to_string(),
            room: room.map(str::to_string),
        };
        self.connection()
            .send(Request::Chat(request).to_header(), Bytes::new())
            .await?;
        let reply = expect_ok(self.connection().reader().expect_header().await?)?;
        let welcome: ChatWelcome = reply
            .to_message()
            .map_err(|e| Error::Protocol(format!("bad chat welcome: {e}")))?;
        Ok(Chat {
            client: self,
            welcome,
        })
    }
}

impl Chat {
    /// The reading and writing halves.
    pub fn split(
        &mut self,
    ) -> (
        &mut FrameReader<ReadHalf<Stream>>,
        &mut FrameWriter<WriteHalf<Stream>>,
    ) {
        self.client.connection().split()
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.client.close().await;
    }
}

/// Sends one command.
pub async fn send(
    writer: &mut FrameWriter<WriteHalf<Stream>>,
    command: &ChatCommand,
) -> Result<(), Error> {
    writer
        .send(Header::from_message(command), Bytes::new())
        .await?;
    Ok(())
}

/// Waits for the next frame's header; cancel-safe, so it can wait beside
/// other work in a `select!`. `None`: the server closed the connection.
pub async fn next_header(
    reader: &mut FrameReader<ReadHalf<Stream>>,
) -> Result<Option<Header>, Error> {
    Ok(reader.read_header().await?)
}

/// What a frame header from the server means. Frames carry no body.
pub fn heard(header: Header) -> Result<Heard, Error> {
    if header.size() > 0 {
        return Err(Error::Protocol("a chat frame with a body".into()));
    }
    if header.get("end") == Some(&serde_json::Value::Bool(true)) {
        let reason = header
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or("ended")
            .to_string();
        return Ok(Heard::End(reason));
    }
    if header.get("event").is_some() {
        return header
            .to_message::<Event>()
            .map(Heard::Event)
            .map_err(|e| Error::Protocol(format!("bad chat event: {e}")));
    }
    match Reply::from_header(header) {
        Some(Reply::Error(err)) => Ok(Heard::Refused(err)),
        _ => Err(Error::Protocol("expected a chat event".into())),
    }
}
