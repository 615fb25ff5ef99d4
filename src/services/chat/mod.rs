//! `chat`: the tutorial's QQ chat grown into a hub. After the request is
//! accepted, the connection carries chat frames both ways until one side
//! ends it: commands from the client, events from the hub.
//!
//! ```text
//! client                                         server
//!   | -- {"cmd":"chat","name":"alice","room":"lobby"} -->
//!   | <-- {"ok":true,"name":"alice","room":"lobby","idle_timeout_secs":300}
//!   | -- {"chat":"say","text":"hi"} --------------->      (to the room)
//!   | <-- {"event":"message","room":"lobby","from":"bob","text":"yo","private":false}
//!   | -- {"chat":"quit"} -------------------------->
//!   | <-- {"end":true,"reason":"quit"}
//! ```
//!
//! A client that sends nothing for the idle timeout is taken for gone and
//! removed, so a listening client sends `ping` now and then. Every queue is
//! bounded (see [`hub`]).

pub mod hub;
pub mod line;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Outcome, ServiceContext};
use crate::connection::{ByteStream, Connection, ConnectionError};
use crate::protocol::message::{ok_header, StreamFrame};
use crate::protocol::{ErrorCode, Header, Refusal};
use hub::{Event, HubError, Sink, DEFAULT_ROOM};

/// `{"cmd": "chat", "name": NAME, "room": ROOM}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The name to chat under; unique on the server.
    pub name: String,
    /// The room to start in; the default room if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// The reply that admits a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatWelcome {
    /// The name, as taken.
    pub name: String,
    /// The room the client is in.
    pub room: String,
    /// Seconds of silence after which the server takes the client for
    /// gone: send `ping` more often than that.
    pub idle_timeout_secs: u64,
}

/// What a chatting client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "chat", rename_all = "snake_case")]
pub enum ChatCommand {
    /// Text for the room.
    Say {
        /// What to say.
        text: String,
    },
    /// Text for one user.
    Msg {
        /// Who.
        to: String,
        /// What.
        text: String,
    },
    /// Who is in my room?
    Who,
    /// Move to another room.
    Join {
        /// Which.
        room: String,
    },
    /// Still here.
    Ping,
    /// Leave.
    Quit,
}

impl HubError {
    /// The wire code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::NameTaken(_) => ErrorCode::NameTaken,
            HubError::NoSuchUser(_) => ErrorCode::NoSuchUser,
            HubError::BadName(_) | HubError::TooLong(..) => ErrorCode::BadRequest,
            HubError::Full(_) => ErrorCode::Busy,
        }
    }

    fn refusal(&self) -> Refusal {
        Refusal::new(self.code(), self.to_string())
    }
}

/// The header of an event frame.
pub fn event_header(event: &Event) -> Header {
    Header::from_message(event)
}

/// Serves one chat from its request to its end.
pub async fn serve<S: ByteStream>(
    conn: &mut Connection<S>,
    context: &ServiceContext,
    request: ChatRequest,
) -> Result<Outcome, ConnectionError> {
    let hub = &context.chat;
    let name = request.name;
    let room = request.room.unwrap_or_else(|| DEFAULT_ROOM.to_string());
    let (queue, mut events) = mpsc::channel(hub.limits().max_queue);
    if let Err(refusal) = hub.join(&name, &room, Sink::Framed(queue)) {
        conn.send_error(&refusal.refusal()).await?;
        return Ok(Outcome::Refused(refusal.code()));
    }
    // Leaves the hub however this function ends, errors included.
    let _member = Membership { hub, name: &name };
    let idle = context.idle_timeout;
    let welcome = ChatWelcome {
        name: name.clone(),
        room,
        idle_timeout_secs: idle.as_secs().max(1),
    };
    conn.send(ok_header(&welcome), bytes::Bytes::new()).await?;
    let (reader, writer) = conn.split();
    let mut deadline = tokio::time::Instant::now() + idle;
    let reason = loop {
        tokio::select! {
            biased;
            _ = context.shutdown.cancelled() => break "the server is shutting down",
            event = events.recv() => match event {
                Some(event) => writer.send(event_header(&event), bytes::Bytes::new()).await?,
                // The hub dropped us: our queue was full.
                None => break "disconnected: too slow to read; messages were piling up",
            },
            _ = tokio::time::sleep_until(deadline) => break "nothing heard for the idle timeout",
            header = reader.read_header() => {
                let Some(header) = header? else { return Ok(Outcome::Ok) };
                deadline = tokio::time::Instant::now() + idle;
                if header.size() > 0 {
                    reader.discard_body().await?;
                }
                let command = match header.to_message::<ChatCommand>() {
                    Ok(command) => command,
                    Err(err) => {
                        let refusal = Refusal::new(ErrorCode::BadRequest, format!("bad chat frame: {err}"));
                        writer.send(refusal.to_header(), bytes::Bytes::new()).await?;
                        continue;
                    }
                };
                let done = matches!(command, ChatCommand::Quit);
                let answer = match command {
                    ChatCommand::Say { text } => hub.say(&name, &text).map(|()| None),
                    ChatCommand::Msg { to, text } => hub.msg(&name, &to, &text).map(|()| None),
                    ChatCommand::Who => hub.who(&name).map(Some),
                    ChatCommand::Join { room } => hub
                        .move_to(&name, &room)
                        .map(|()| Some(Event::Joined { room })),
                    ChatCommand::Ping | ChatCommand::Quit => Ok(None),
                };
                match answer {
                    Ok(Some(event)) => writer.send(event_header(&event), bytes::Bytes::new()).await?,
                    Ok(None) => {}
                    Err(refusal) => writer.send(refusal.refusal().to_header(), bytes::Bytes::new()).await?,
                }
                if done {
                    break "quit";
                }
            }
        }
    };
    let end = StreamFrame::end_header(&serde_json::json!({ "reason": reason }));
    writer.send(end, bytes::Bytes::new()).await?;
    Ok(Outcome::Ok)
}

/// Takes a member out of the hub when its session ends.
struct Membership<'a> {
    hub: &'a hub::Hub,
    name: &'a str,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.hub.leave(self.name);
    }
}

/// How often a client says `ping`, given the server's idle timeout.
pub fn keepalive_interval(idle_timeout_secs: u64) -> Duration {
    Duration::from_secs(idle_timeout_secs.max(1)) / 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_and_events_have_the_documented_shape() {
        let say = ChatCommand::Say { text: "hi".into() };
        assert_eq!(
            serde_json::to_value(&say).unwrap(),
            json!({"chat": "say", "text": "hi"})
        );
        let msg: ChatCommand =
            serde_json::from_value(json!({"chat": "msg", "to": "bob", "text": "yo"})).unwrap();
        assert_eq!(
            msg,
            ChatCommand::Msg {
                to: "bob".into(),
                text: "yo".into()
            }
        );
        let event = Event::Message {
            room: "lobby".into(),
            from: "bob".into(),
            text: "yo".into(),
            private: false,
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"event": "message", "room": "lobby", "from": "bob", "text": "yo", "private": false})
        );
        assert!(serde_json::from_value::<ChatCommand>(json!({"chat": "dance"})).is_err());
    }

    #[test]
    fn the_keepalive_is_well_inside_the_idle_timeout() {
        assert_eq!(keepalive_interval(300), Duration::from_secs(100));
        assert!(keepalive_interval(0) > Duration::ZERO);
    }
}
