//! The UDP gateway into the chat hub (`--udp-chat`), for plain-UDP clients
//! such as the tutorial's QQ client: a datagram from an address is a chat
//! line from that address, and what the hub has for it comes back as
//! datagrams, one line each.
//!
//! A new address joins the default room as `~udp-IP:PORT`; `/nick NAME`
//! renames it `~NAME` (refused if taken), so framed clients can `/msg` it
//! by name. The `~` is the hub's mark of a gateway member, whom nobody
//! can mistake for a client with the token.
//! An address silent for the idle timeout is dropped from the hub. The
//! users kept, the datagrams queued and the size of one are all bounded.
//!
//! A plain UDP client prints what it receives as it is, so every line the
//! gateway sends passes [`escape_line`] first, as `ferry chat` prints: no
//! newline, escape sequence or bidi override reaches its terminal raw.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::guard::{reply_fits, Family, Guard};
use crate::escape::escape_line;
use crate::limits::{
    CHAT_GATEWAY_MAX_USERS, CHAT_GATEWAY_OUTGOING_QUEUE, UDP_RECEIVE_BUFFER_BYTES,
};
use crate::services::chat::hub::{Event, Hub, Sink, DEFAULT_ROOM, GATEWAY_NAME_PREFIX};
use crate::services::chat::line::{self, Line};

/// A gateway user.
struct User {
    name: String,
    last_heard: Instant,
}

/// Serves the gateway on `socket` until `cancel`; gateway users leave the
/// hub then. `guard` is what every datagram service of the server checks
/// sources against; a source it refuses or that is over its rate gets
/// nothing.
pub async fn serve(
    socket: UdpSocket,
    hub: Arc<Hub>,
    idle: Duration,
    guard: Arc<Guard>,
    cancel: CancellationToken,
) {
    let (out, mut outgoing) = mpsc::channel::<(SocketAddr, Event)>(CHAT_GATEWAY_OUTGOING_QUEUE);
    let mut users: HashMap<SocketAddr, User> = HashMap::new();
    // Text over the hub's cap is refused; one byte more shows it.
    let max = hub.limits().max_text_bytes + 64;
    let mut buf = vec![0u8; (max + 1).min(UDP_RECEIVE_BUFFER_BYTES)];
    let mut sweep = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some((addr, event)) = outgoing.recv() => {
                let _ = socket.send_to(escape_line(&event.line()).as_bytes(), addr).await;
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                if let Err(refusal) = guard.admit(from, false, std::time::Instant::now()) {
                    debug!(%from, "udp chat: not answered: {}", refusal.reason());
                    continue;
                }
                let reply = if len > max {
                    Some(format!("error: the datagram is over {max} bytes, the most the chat takes"))
                } else {
                    match std::str::from_utf8(&buf[..len]) {
                        Ok(text) => handle(&hub, &out, &mut users, from, text.trim_end()),
                        Err(_) => Some("error: chat lines are UTF-8 text".into()),
                    }
                };
                let reply = reply.map(|reply| escape_line(&reply));
                if let Some(reply) = reply.and_then(|reply| within_cap(len, from, reply)) {
                    let _ = socket.send_to(reply.as_bytes(), from).await;
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                users.retain(|addr, user| {
                    let keep = now.duration_since(user.last_heard) < idle;
                    if !keep {
                        debug!(%addr, name = user.name, "udp chat: silent past the idle timeout");
                        hub.leave(&user.name);
                    }
                    keep
                });
            }
        }
    }
    for user in users.values() {
        hub.leave(&user.name);
    }
}

/// What answers a line whose answer would be over the amplification cap
/// (a `/who` of a full room): short enough for an empty datagram, over
/// IPv4. Trailing spaces are trimmed from a line, so they make room.
const OVER_CAP_REPLY: &str = "error: the answer is over 4x your datagram; pad the line with spaces";

/// `reply` to a datagram of `request_bytes` from `from`, or the short
/// refusal when it is over the amplification cap.
fn within_cap(request_bytes: usize, from: SocketAddr, reply: String) -> Option<String> {
    let family = Family::of(from);
    if reply_fits(request_bytes, reply.len(), family) {
        Some(reply)
    } else {
        reply_fits(request_bytes, OVER_CAP_REPLY.len(), family).then(|| OVER_CAP_REPLY.into())
    }
}

/// The hub name for `/nick NAME`: NAME with the gateway's prefix, which
/// framed names never have, so a gateway member can never pass for a
/// token holder. `/nick ~NAME` is the same.
fn gateway_name(nick: &str) -> String {
    let bare = nick.strip_prefix(GATEWAY_NAME_PREFIX).unwrap_or(nick);
    format!("{GATEWAY_NAME_PREFIX}{bare}")
}

/// Acts on one line from `from`; returns what to answer it directly.
fn handle(
    hub: &Hub,
    out: &mpsc::Sender<(SocketAddr, Event)>,
    users: &mut HashMap<SocketAddr, User>,
    from: SocketAddr,
    text: &str,
) -> Option<String> {
    if !users.contains_key(&from) {
        if users.len() >= CHAT_GATEWAY_MAX_USERS {
            return Some(format!(
                "error: the gateway has its maximum of {CHAT_GATEWAY_MAX_USERS} users; try later"
            ));
        }
        let name = format!("{GATEWAY_NAME_PREFIX}udp-{from}");
        let sink = Sink::Datagram {
            addr: from,
            out: out.clone(),
        };
        if let Err(err) = hub.join(&name, DEFAULT_ROOM, sink) {
            return Some(format!("error: {err}"));
        }
        users.insert(
            from,
            User {
                name,
                last_heard: Instant::now(),
            },
        );
    }
    let user = users.get_mut(&from).expect("added above");
    user.last_heard = Instant::now();
    let name = user.name.clone();
    let result = match line::parse(text) {
        Line::Say("") => Ok(None),
        Line::Say(text) => hub.say(&name, text).map(|()| None),
        Line::Msg { to, text } => hub.msg(&name, to, text).map(|()| None),
        Line::Who => hub.who(&name).map(|who| Some(who.line())),
        Line::Join(room) => hub
            .move_to(&name, room)
            .map(|()| Some(format!("* you are in {room}"))),
        Line::Nick(new) => {
            let new = gateway_name(new);
            hub.rename(&name, &new).map(|()| {
                let reply = format!("* you are now {new}");
                user.name = new;
                Some(reply)
            })
        }
        Line::Quit => {
            hub.leave(&name);
            users.remove(&from);
            Ok(Some("* bye".into()))
        }
        Line::Bad(why) => Ok(Some(format!("error: {why}"))),
    };
    match result {
        Ok(reply) => reply,
        Err(err) => Some(format!("error: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::chat::hub::ChatLimits;

    fn hub() -> Hub {
        Hub::new(ChatLimits {
            max_members: 10,
            max_queue: 8,
            max_text_bytes: 100,
            max_name_bytes: 32,
        })
    }

    #[test]
    fn answers_over_the_cap_are_refused_in_a_datagram_that_fits_it() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(within_cap(4, from, "x".repeat(100)), Some("x".repeat(100)));
        assert_eq!(
            within_cap(4, from, "x".repeat(101)).as_deref(),
            Some(OVER_CAP_REPLY)
        );
        // Even an empty datagram (a new address joining) may be refused so.
        assert!(reply_fits(0, OVER_CAP_REPLY.len(), Family::V4));
    }

    #[test]
    fn the_gateway_holds_at_most_its_limit_of_users() {
        let hub = Hub::new(ChatLimits {
            max_members: 4 * CHAT_GATEWAY_MAX_USERS,
            ..crate::limits::CHAT
        });
        let (out, _outgoing) = mpsc::channel(16);
        let mut users = HashMap::new();
        let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16));
        for i in 0..CHAT_GATEWAY_MAX_USERS {
            let nick = format!("/nick u{i}");
            assert!(handle(&hub, &out, &mut users, addr(i), &nick)
                .unwrap()
                .starts_with("* you are now"));
        }
        let full = format!(
            "error: the gateway has its maximum of {CHAT_GATEWAY_MAX_USERS} users; try later"
        );
        for i in CHAT_GATEWAY_MAX_USERS..2 * CHAT_GATEWAY_MAX_USERS {
            assert_eq!(
                handle(&hub, &out, &mut users, addr(i), "hi"),
                Some(full.clone())
            );
        }
        assert_eq!(users.len(), CHAT_GATEWAY_MAX_USERS);
        assert_eq!(hub.len(), CHAT_GATEWAY_MAX_USERS);
        // A place freed is a place taken again.
        handle(&hub, &out, &mut users, addr(0), "/quit");
        assert_eq!(handle(&hub, &out, &mut users, addr(9999), "hi"), None);
        assert_eq!(hub.len(), CHAT_GATEWAY_MAX_USERS);
    }

    #[test]
    fn a_new_address_joins_and_can_take_a_name() {
        let hub = hub();
        let (out, mut outgoing) = mpsc::channel(16);
        let mut users = HashMap::new();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        assert_eq!(
            handle(&hub, &out, &mut users, a, "/nick alex"),
            Some("* you are now ~alex".into())
        );
        assert_eq!(
            handle(&hub, &out, &mut users, b, "/nick alex").unwrap(),
            "error: the name \"~alex\" is taken; pick another"
        );
        assert_eq!(
            handle(&hub, &out, &mut users, b, "/nick ~alex").unwrap(),
            "error: the name \"~alex\" is taken; pick another",
            "the prefix typed or not, one name"
        );
        while outgoing.try_recv().is_ok() {}
        assert_eq!(handle(&hub, &out, &mut users, b, "hello"), None);
        let (to, event) = outgoing.try_recv().unwrap();
        assert_eq!(to, a);
        assert_eq!(event.line(), "[lobby] ~udp-127.0.0.1:5001: hello");
        assert_eq!(
            handle(&hub, &out, &mut users, b, "/who").unwrap(),
            "* in lobby: ~alex, ~udp-127.0.0.1:5001"
        );
        assert_eq!(
            handle(&hub, &out, &mut users, a, "/quit"),
            Some("* bye".into())
        );
        assert_eq!(hub.len(), 1);
    }
}
