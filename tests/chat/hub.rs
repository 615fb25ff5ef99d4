//! `ferry chat` clients talking through the hub, and the hub's limits.

use std::time::Duration;

use serde_json::json;

use super::{chat, chat_server, chat_with_input, Listener};
use crate::util::{poll_until, Raw, DEADLINE};

#[test]
fn two_clients_talk_in_the_room_and_in_private() {
    let server = chat_server(&[]);
    let bob = Listener::start(&server, "bob", &[]);
    let run = chat(&server, &["--name", "alice", "--send", "hi all"]);
    run.assert_ok();
    bob.expect(|l| l == "[lobby] alice: hi all");
    let run = chat(
        &server,
        &["--name", "alice", "--send", "psst", "--to", "bob"],
    );
    run.assert_ok();
    bob.expect(|l| l == "[private] alice: psst");

    let run = chat(
        &server,
        &["--name", "alice", "--send", "x", "--to", "nobody"],
    );
    run.assert_code(1)
        .assert_stderr_contains("nobody here is called \"nobody\"");

    let taken = chat(&server, &["--name", "bob", "--send", "x"]);
    taken.assert_code(1).assert_stderr_contains("taken");
}

#[test]
fn listen_json_gives_one_object_per_message() {
    let server = chat_server(&[]);
    let bob = Listener::start(&server, "bob", &["--json", "--room", "ops"]);
    let run = chat(
        &server,
        &[
            "--name",
            "eve",
            "--room",
            "ops",
            "--send",
            "line\none \u{1b}[31m",
        ],
    );
    run.assert_ok();
    let line = bob.expect(|l| l.contains("\"message\""));
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        value,
        json!({"event": "message", "room": "ops", "from": "eve", "text": "line\none \u{1b}[31m", "private": false})
    );
}

#[test]
fn the_interactive_client_reads_lines_and_slash_commands() {
    let server = chat_server(&[]);
    let bob = Listener::start(&server, "bob", &[]);
    let run = chat_with_input(
        &server,
        &["--name", "carol"],
        "hello\n/who\n/msg bob direct\n/dance\n/join ops\nin ops\n/quit\n",
    );
    run.assert_ok()
        .assert_stdout_contains("* in lobby: bob, carol\n")
        .assert_stdout_contains("* you are in ops\n")
        .assert_stderr_contains("unknown command /dance");
    bob.expect(|l| l == "[lobby] carol: hello");
    bob.expect(|l| l == "[private] carol: direct");
    bob.expect(|l| l == "* carol left lobby for ops");
}

#[test]
fn peer_text_cannot_forge_lines_or_drive_the_terminal() {
    let server = chat_server(&[]);
    let bob = Listener::start(&server, "bob", &[]);
    let forged = "hi\n[lobby] alice: fake \u{1b}[2J";
    let run = chat(&server, &["--name", "mallory", "--send", forged]);
    run.assert_ok();
    let line = bob.expect(|l| l.starts_with("[lobby] mallory:"));
    assert_eq!(line, "[lobby] mallory: hi\\n[lobby] alice: fake \\u{1b}[2J");
}

/// A raw client in the chat that reads nothing.
fn silent_member(server: &crate::util::Server, name: &str) -> Raw {
    let mut raw = Raw::hello(server);
    raw.send_frame(&json!({"cmd": "chat", "name": name}), b"");
    let welcome = raw.read_frame();
    assert!(welcome.is_ok(), "{welcome:?}");
    raw
}

fn who(server: &crate::util::Server) -> String {
    let run = chat_with_input(server, &["--name", "asker"], "/who\n/quit\n");
    run.assert_ok();
    run.stdout
}

#[test]
fn a_reader_that_stops_is_dropped_and_the_server_holds_little() {
    let server = chat_server(&[]);
    let _slow = silent_member(&server, "slow");
    assert!(who(&server).contains("slow"));
    // 3,000 messages of 4 KiB: 12 MiB the slow reader never takes.
    let text = "x".repeat(4000);
    let lines: String = (0..3000).map(|i| format!("{i} {text}\n")).collect();
    let run = chat_with_input(&server, &["--name", "talker"], lines);
    run.assert_ok();
    poll_until("the slow reader dropped", DEADLINE, || {
        (!who(&server).contains("slow")).then_some(())
    });
    let peak = server.peak_rss_bytes();
    assert!(peak < 64 * 1024 * 1024, "server peaked at {peak} bytes");
}

#[test]
fn a_client_that_goes_silent_leaves_who_within_the_idle_timeout() {
    let server = chat_server(&["--idle-timeout", "1"]);
    let _gone = silent_member(&server, "ghost");
    assert!(who(&server).contains("ghost"));
    poll_until("ghost removed", Duration::from_secs(5), || {
        (!who(&server).contains("ghost")).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_chat_at_once() {
    use ferry::client::chat::{self, Heard};
    use ferry::client::{Client, ClientOptions};
    use ferry::services::chat::hub::Event;
    use ferry::services::chat::ChatCommand;

    let server = chat_server(&[]);
    let options = ClientOptions {
        token: Some(server.token()),
        plaintext: true,
        known_hosts: None,
        state_dir: None,
        ..ClientOptions::new(server.addr().parse().unwrap())
    };
    let mut listener = Client::connect(&options)
        .await
        .unwrap()
        .chat("listener", None)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let options = options.clone();
        tasks.spawn(async move {
            let mut talker = Client::connect(&options)
                .await?
                .chat(&format!("c{i}"), None)
                .await?;
            let (_, writer) = talker.split();
            chat::send(
                writer,
                &ChatCommand::Say {
                    text: format!("hello from c{i}"),
                },
            )
            .await?;
            chat::send(writer, &ChatCommand::Quit).await?;
            let (reader, _) = talker.split();
            while let Some(header) = chat::next_header(reader).await? {
                if let Heard::End(_) = chat::heard(header)? {
                    break;
                }
            }
            Ok::<_, ferry::Error>(())
        });
    }
    let mut heard = std::collections::BTreeSet::new();
    let (reader, _) = listener.split();
    let collect = async {
        while heard.len() < 100 {
            let header = chat::next_header(reader).await.unwrap().expect("open");
            if let Heard::Event(Event::Message { text, .. }) = chat::heard(header).unwrap() {
                heard.insert(text);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .expect("all 100 messages within 60 s");
    for result in tasks.join_all().await {
        result.unwrap();
    }
    assert_eq!(heard.len(), 100);
}
