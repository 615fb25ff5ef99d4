//! The chat hub: who is connected, in which room, and delivery. Framed
//! clients and the UDP gateway's users share one namespace of names, split
//! by a prefix: a gateway member's name starts with
//! [`GATEWAY_NAME_PREFIX`] and a framed client's never does, so nobody
//! without the token can pass for someone who has it, online or not.
//!
//! Delivery happens under the hub's lock, in the order calls arrive, so
//! each sender's messages reach everyone in order. Nothing here waits: a
//! framed member has a bounded queue, and one whose queue is full is
//! dropped from the hub (its session then tells it why and closes), so a
//! slow reader can never make the server buffer without bound. A gateway
//! member's datagrams go to the gateway's bounded queue and are dropped
//! when it is full, as UDP would drop them.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::escape::is_format_char;

/// The room everyone starts in.
pub const DEFAULT_ROOM: &str = "lobby";

/// What every UDP gateway member's name starts with, and no framed
/// client's may.
pub const GATEWAY_NAME_PREFIX: char = '~';

pub use crate::limits::ChatLimits;

/// Something a member is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A message: to the room, or only to this member (`private`).
    Message {
        /// The room it was said in (the sender's).
        room: String,
        /// Who said it.
        from: String,
        /// What was said.
        text: String,
        /// Whether it was sent to this member alone (`/msg`).
        private: bool,
    },
    /// Who is in a room, sorted by name.
    Who {
        /// The room.
        room: String,
        /// Its members.
        names: Vec<String>,
    },
    /// The member is now in `room`.
    Joined {
        /// The room.
        room: String,
    },
    /// A line from the hub: someone came or left.
    Notice {
        /// What happened.
        text: String,
    },
}

impl Event {
    /// The event as one line of text, as `ferry chat` prints it and the
    /// UDP gateway sends it: `[lobby] bob: hi`, `[private] bob: hi`,
    /// `* in lobby: alice, bob`. Peer text is not escaped here.
    pub fn line(&self) -> String {
        match self {
            Event::Message {
                room,
                from,
                text,
                private,
            } => {
                let place = if *private { "private" } else { room.as_str() };
                format!("[{place}] {from}: {text}")
            }
            Event::Who { room, names } => format!("* in {room}: {}", names.join(", ")),
            Event::Joined { room } => format!("* you are in {room}"),
            Event::Notice { text } => format!("* {text}"),
        }
    }
}

/// Where a member's events go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A framed client's bounded queue.
    Framed(mpsc::Sender<Event>),
    /// A UDP gateway user: datagrams to `addr` through the gateway's queue.
    Datagram {
        /// The user's address.
        addr: SocketAddr,
        /// The gateway's outgoing queue.
        out: mpsc::Sender<(SocketAddr, Event)>,
    },
}

/// Why the hub refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// Someone already has that name.
    #[error("the name {0:?} is taken; pick another")]
    NameTaken(String),
    /// Nobody has that name.
    #[error("nobody here is called {0:?}; /who lists who is in your room")]
    NoSuchUser(String),
    /// The name is empty, too long, or has spaces or control characters.
    #[error("{0}")]
    BadName(String),
    /// The message is too long.
    #[error("the message is {0} bytes; the most is {1}")]
    TooLong(usize, usize),
    /// The hub has its maximum of members.
    #[error("the chat is full ({0} members); try again later")]
    Full(usize),
}

#[derive(Debug)]
struct Member {
    room: String,
    sink: Sink,
}

/// The hub. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Hub {
    limits: ChatLimits,
    members: Mutex<HashMap<String, Member>>,
}

/// Checks a name or room name: 1 to `max` bytes, no spaces, no control or
/// format characters (zero-width, bidi overrides: two names that look the
/// same must be the same name), no leading `/`.
pub fn check_name(what: &str, name: &str, max: usize) -> Result<(), HubError> {
    if name.is_empty() || name.len() > max {
        return Err(HubError::BadName(format!(
            "a {what} must be 1 to {max} bytes, not {}",
            name.len()
        )));
    }
    let invisible = |c: char| c.is_whitespace() || c.is_control() || is_format_char(c);
    if name.starts_with('/') || name.chars().any(invisible) {
        return Err(HubError::BadName(format!(
            "a {what} has no spaces, control or format characters (zero-width, bidi) or \
             leading `/`: {name:?}"
        )));
    }
    Ok(())
}

/// Checks that `name` has the gateway's prefix if and only if `sink` is a
/// gateway member's.
fn check_prefix(name: &str, sink: &Sink) -> Result<(), HubError> {
    let prefixed = name.starts_with(GATEWAY_NAME_PREFIX);
    match sink {
        Sink::Framed(_) if prefixed => Err(HubError::BadName(format!(
            "names starting with `{GATEWAY_NAME_PREFIX}` belong to the UDP gateway's members; \
             pick one without it"
        ))),
        Sink::Datagram { .. } if !prefixed || name.len() == 1 => Err(HubError::BadName(format!(
            "a UDP gateway member's name is `{GATEWAY_NAME_PREFIX}` and then at least one character"
        ))),
        _ => Ok(()),
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(limits: ChatLimits) -> Hub {
        Hub {
            limits,
            members: Mutex::new(HashMap::new()),
        }
    }

    /// The caps it keeps.
    pub fn limits(&self) -> ChatLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Member>> {
        // A panic while holding the lock cannot leave the map half-changed
        // in a way that matters; keep serving.
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `name` to `room`, and tells the room.
    pub fn join(&self, name: &str, room: &str, sink: Sink) -> Result<(), HubError> {
        check_name("name", name, self.limits.max_name_bytes)?;
        check_prefix(name, &sink)?;
        check_name("room", room, self.limits.max_name_bytes)?;
        let mut members = self.lock();
        if members.contains_key(name) {
            return Err(HubError::NameTaken(name.into()));
        }
        if members.len() >= self.limits.max_members {
            return Err(HubError::Full(self.limits.max_members));
        }
        members.insert(
            name.into(),
            Member {
                room: room.into(),
                sink,
            },
        );
        let notice = Event::Notice {
            text: format!("{name} joined {room}"),
        };
        self.tell_room(&mut members, room, Some(name), notice);
        Ok(())
    }

    /// Removes `name`, and tells its room. Nothing if it is not there.
    pub fn leave(&self, name: &str) {
        let mut members = self.lock();
        if let Some(member) = members.remove(name) {
            let notice = Event::Notice {
                text: format!("{name} left {}", member.room),
            };
            self.tell_room(&mut members, &member.room, None, notice);
        }
    }

    /// `from` says `text` to its room (everyone but `from`).
    pub fn say(&self, from: &str, text: &str) -> Result<(), HubError> {
        self.check_text(text)?;
        let mut members = self.lock();
        let Some(room) = members.get(from).map(|m| m.room.clone()) else {
            return Err(HubError::NoSuchUser(from.into()));
        };
        let event = Event::Message {
            room: room.clone(),
            from: from.into(),
            text: text.into(),
            private: false,
        };
        self.tell_room(&mut members, &room, Some(from), event);
        Ok(())
    }

    /// `from` says `text` to `to` alone, wherever it is.
    pub fn msg(&self, from: &str, to: &str, text: &str) -> Result<(), HubError> {
        self.check_text(text)?;
        let mut members = self.lock();
        let Some(room) = members.get(from).map(|m| m.room.clone()) else {
            return Err(HubError::NoSuchUser(from.into()));
        };
        if !members.contains_key(to) {
            return Err(HubError::NoSuchUser(to.into()));
        }
        let event = Event::Message {
            room,
            from: from.into(),
            text: text.into(),
            private: true,
        };
        self.deliver(&mut members, to, event);
        Ok(())
    }

    /// Who is in `name`'s room.
    pub fn who(&self, name: &str) -> Result<Event, HubError> {
        let members = self.lock();
        let room = members
            .get(name)
            .map(|m| m.room.clone())
            .ok_or_else(|| HubError::NoSuchUser(name.into()))?;
        let names: BTreeSet<String> = members
            .iter()
            .filter(|(_, m)| m.room == room)
            .map(|(n, _)| n.clone())
            .collect();
        Ok(Event::Who {
            room,
            names: names.into_iter().collect(),
        })
    }

    /// Moves `name` to `room`, telling both rooms.
    pub fn move_to(&self, name: &str, room: &str) -> Result<(), HubError> {
        check_name("room", room, self.limits.max_name_bytes)?;
        let mut members = self.lock();
        let Some(member) = members.get_mut(name) else {
            return Err(HubError::NoSuchUser(name.into()));
        };
        let old = std::mem::replace(&mut member.room, room.into());
        let left = Event::Notice {
            text: format!("{name} left {old} for {room}"),
        };
        self.tell_room(&mut members, &old, Some(name), left);
        let joined = Event::Notice {
            text: format!("{name} joined {room}"),
        };
        self.tell_room(&mut members, room, Some(name), joined);
        Ok(())
    }

    /// Gives `old` the name `new`, keeping its room and sink.
    pub fn rename(&self, old: &str, new: &str) -> Result<(), HubError> {
        check_name("name", new, self.limits.max_name_bytes)?;
        let mut members = self.lock();
        if members.contains_key(new) {
            return Err(HubError::NameTaken(new.into()));
        }
        let Some(member) = members.get(old) else {
            return Err(HubError::NoSuchUser(old.into()));
        };
        check_prefix(new, &member.sink)?;
        let member = members.remove(old).expect("looked up above");
        let room = member.room.clone();
        members.insert(new.into(), member);
        let notice = Event::Notice {
            text: format!("{old} is now {new}"),
        };
        self.tell_room(&mut members, &room, Some(new), notice);
        Ok(())
    }

    /// Members now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nobody is here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_text(&self, text: &str) -> Result<(), HubError> {
        if text.len() > self.limits.max_text_bytes {
            return Err(HubError::TooLong(text.len(), self.limits.max_text_bytes));
        }
        Ok(())
    }

    /// Sends `event` to everyone in `room` but `except`.
    fn tell_room(
        &self,
        members: &mut HashMap<String, Member>,
        room: &str,
        except: Option<&str>,
        event: Event,
    ) {
        let names: Vec<String> = members
            .iter()
            .filter(|(n, m)| m.room == room && Some(n.as_str()) != except)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.deliver(members, &name, event.clone());
        }
    }

    /// Queues `event` for `name`; a framed member whose queue is full is
    /// dropped from the hub (its session sees its queue close).
    fn deliver(&self, members: &mut HashMap<String, Member>, name: &str, event: Event) {
        let Some(member) = members.get(name) else {
            return;
        };
        let dropped = match &member.sink {
            // A closed queue is a session on its way out; it leaves itself.
            Sink::Framed(queue) => matches!(
                queue.try_send(event),
                Err(mpsc::error::TrySendError::Full(_))
            ),
            Sink::Datagram { addr, out } => {
                let _ = out.try_send((*addr, event)); // lost, as UDP loses
                false
            }
        };
        if dropped {
            let room = members.remove(name).map(|m| m.room).unwrap_or_default();
            let notice = Event::Notice {
                text: format!("{name} was disconnected: too slow to read"),
            };
            self.tell_room(members, &room, None, notice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ChatLimits = ChatLimits {
        max_members: 4,
        max_queue: 3,
        max_text_bytes: 100,
        max_name_bytes: 16,
    };

    fn member(hub: &Hub, name: &str, room: &str) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(LIMITS.max_queue);
        hub.join(name, room, Sink::Framed(tx)).unwrap();
        rx
    }

    fn drain(rx: &mut mpsc::Receiver<Event>) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(event) = rx.try_recv() {
            out.push(event);
        }
        out
    }

    fn texts(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Message { from, text, .. } => Some(format!("{from}: {text}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rooms_hear_their_members_in_order_and_only_them() {
        let hub = Hub::new(LIMITS);
        let mut alice = member(&hub, "alice", "lobby");
        let mut bob = member(&hub, "bob", "lobby");
        let mut carol = member(&hub, "carol", "ops");
        drain(&mut alice);
        hub.say("bob", "one").unwrap();
        hub.say("bob", "two").unwrap();
        assert_eq!(texts(&drain(&mut alice)), ["bob: one", "bob: two"]);
        assert!(texts(&drain(&mut bob)).is_empty(), "not to oneself");
        assert!(drain(&mut carol).is_empty(), "another room hears nothing");
    }

    #[test]
    fn msg_reaches_one_member_anywhere_and_names_are_unique() {
        let hub = Hub::new(LIMITS);
        let mut alice = member(&hub, "alice", "lobby");
        let mut carol = member(&hub, "carol", "ops");
        drain(&mut alice);
        hub.msg("alice", "carol", "psst").unwrap();
        let got = drain(&mut carol);
        assert!(matches!(&got[..], [Event::Message { private: true, text, .. }] if text == "psst"));
        assert_eq!(
            hub.msg("alice", "dave", "x"),
            Err(HubError::NoSuchUser("dave".into()))
        );
        let (tx, _rx) = mpsc::channel(1);
        assert_eq!(
            hub.join("alice", "lobby", Sink::Framed(tx)),
            Err(HubError::NameTaken("alice".into()))
        );
    }

    #[test]
    fn who_join_and_rename_keep_the_rooms_straight() {
        let hub = Hub::new(LIMITS);
        let _a = member(&hub, "alice", "lobby");
        let _b = member(&hub, "bob", "lobby");
        assert_eq!(
            hub.who("alice").unwrap(),
            Event::Who {
                room: "lobby".into(),
                names: vec!["alice".into(), "bob".into()]
            }
        );
        hub.move_to("bob", "ops").unwrap();
        assert!(
            matches!(hub.who("alice").unwrap(), Event::Who { names, .. } if names == ["alice"])
        );
        hub.rename("bob", "robert").unwrap();
        assert!(
            matches!(hub.who("robert").unwrap(), Event::Who { room, names } if room == "ops" && names == ["robert"])
        );
        assert_eq!(
            hub.rename("robert", "alice"),
            Err(HubError::NameTaken("alice".into()))
        );
        hub.leave("alice");
        assert_eq!(hub.len(), 1);
    }

    #[test]
    fn a_member_that_does_not_read_is_dropped_not_buffered() {
        let hub = Hub::new(LIMITS);
        let mut slow = member(&hub, "slow", "lobby");
        let mut fast = member(&hub, "fast", "lobby");
        let _talker = member(&hub, "talker", "lobby");
        for i in 0..10 {
            hub.say("talker", &format!("m{i}")).unwrap();
            drain(&mut fast);
        }
        assert!(hub.who("slow").is_err(), "dropped from the hub");
        let queued = drain(&mut slow);
        assert!(queued.len() <= LIMITS.max_queue, "{queued:?}");
        assert!(slow.try_recv().is_err(), "its queue is closed");
        assert!(hub.who("fast").is_ok());
    }

    #[test]
    fn gateway_members_and_framed_clients_cannot_take_each_others_names() {
        let hub = Hub::new(LIMITS);
        let (out, _outgoing) = mpsc::channel(4);
        let datagram = || Sink::Datagram {
            addr: "127.0.0.1:5000".parse().unwrap(),
            out: out.clone(),
        };
        let (tx, _rx) = mpsc::channel(1);
        assert!(matches!(
            hub.join("~bob", "lobby", Sink::Framed(tx.clone())),
            Err(HubError::BadName(_))
        ));
        for bad in ["bob", "~"] {
            assert!(matches!(
                hub.join(bad, "lobby", datagram()),
                Err(HubError::BadName(_))
            ));
        }
        hub.join("~bob", "lobby", datagram()).unwrap();
        hub.join("alice", "lobby", Sink::Framed(tx)).unwrap();
        assert!(matches!(
            hub.rename("~bob", "carol"),
            Err(HubError::BadName(_))
        ));
        assert!(matches!(
            hub.rename("alice", "~alice"),
            Err(HubError::BadName(_))
        ));
        hub.rename("~bob", "~carol").unwrap();
        assert_eq!(hub.len(), 2);
    }

    #[test]
    fn limits_are_kept() {
        let hub = Hub::new(LIMITS);
        let _keep: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| member(&hub, n, "lobby"))
            .collect();
        let (tx, _rx) = mpsc::channel(1);
        assert_eq!(
            hub.join("e", "lobby", Sink::Framed(tx.clone())),
            Err(HubError::Full(4))
        );
        hub.leave("d");
        let long = "x".repeat(17);
        for bad in [
            "",
            "has space",
            "tab\t",
            "/slash",
            &long,
            "a\u{202e}b",
            "\u{200b}",
        ] {
            assert!(
                matches!(
                    hub.join(bad, "lobby", Sink::Framed(tx.clone())),
                    Err(HubError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            hub.say("a", &"x".repeat(101)),
            Err(HubError::TooLong(101, 100))
        );
    }
}
