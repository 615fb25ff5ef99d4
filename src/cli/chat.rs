//! `ferry chat`: the interactive client (stdin lines and slash commands),
//! or, for scripts, `--send` one message and `--listen` for messages.

use std::io::Write;

use clap::Args;
use ferry::client::chat::{self, Chat, Heard};
use ferry::client::chat::{keepalive_interval, line, ChatCommand, Event, Line};
use ferry::client::Error;
use tokio::sync::mpsc;

use super::output::escape_line;
use super::{connect, GlobalArgs};

/// `ferry chat` arguments.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Your name in the chat; unique on the server, not starting with `~`
    /// (the mark of the UDP gateway's members).
    #[arg(long, value_name = "NAME")]
    name: String,

    /// The room to start in [default: lobby].
    #[arg(long, value_name = "ROOM")]
    room: Option<String>,

    /// Send TEXT (to the room, or with --to to one user) and exit.
    #[arg(long, value_name = "TEXT", conflicts_with = "listen")]
    send: Option<String>,

    /// With --send: to this user alone (a UDP gateway member as '~NAME').
    #[arg(long, value_name = "NAME", requires = "send")]
    to: Option<String>,

    /// Print messages as they arrive, one line each, until the chat ends.
    #[arg(long)]
    listen: bool,

    /// With --listen: one JSON object per line.
    #[arg(long, requires = "listen")]
    json: bool,
}

/// Runs `ferry chat`.
pub async fn run(args: ChatArgs, global: &GlobalArgs) -> Result<(), Error> {
    let client = connect(global).await?;
    let chat = client.chat(&args.name, args.room.as_deref()).await?;
    if let Some(text) = &args.send {
        let command = match &args.to {
            Some(to) => ChatCommand::Msg {
                to: to.clone(),
                text: text.clone(),
            },
            None => ChatCommand::Say { text: text.clone() },
        };
        return send_and_leave(chat, command).await;
    }
    let lines = if args.listen {
        None
    } else {
        Some(stdin_lines())
    };
    converse(chat, lines, args.json).await
}

/// Sends one command, then quits; an error the hub answers is the exit
/// status (1), other people's messages are not printed.
async fn send_and_leave(mut chat: Chat, command: ChatCommand) -> Result<(), Error> {
    let (reader, writer) = chat.split();
    chat::send(writer, &command).await?;
    chat::send(writer, &ChatCommand::Quit).await?;
    let mut refused = None;
    while let Some(header) = chat::next_header(reader).await? {
        match chat::heard(header)? {
            Heard::Refused(err) => refused = Some(err),
            Heard::End(_) => break,
            Heard::Event(_) => {}
        }
    }
    chat.close().await;
    match refused {
        Some(err) => Err(Error::Remote(err)),
        None => Ok(()),
    }
}

/// Prints what the hub says, and with `lines` sends what is typed, until
/// the chat ends; pings the server so it knows we are here.
async fn converse(
    mut chat: Chat,
    mut lines: Option<mpsc::Receiver<String>>,
    json: bool,
) -> Result<(), Error> {
    let mut ping = tokio::time::interval(keepalive_interval(chat.welcome.idle_timeout_secs));
    ping.tick().await;
    // On stderr: stdout carries only the messages, in either form.
    notice(&format!(
        "you are {} in {}",
        chat.welcome.name, chat.welcome.room
    ));
    let (reader, writer) = chat.split();
    loop {
        tokio::select! {
            header = chat::next_header(reader) => {
                let Some(header) = header? else { break };
                match chat::heard(header)? {
                    Heard::Event(event) => print_event(&event, json)?,
                    Heard::Refused(err) => eprintln!("ferry: {}", escape_line(&err.message)),
                    Heard::End(reason) => {
                        if reason != "quit" {
                            eprintln!("ferry: the chat ended: {}", escape_line(&reason));
                        }
                        break;
                    }
                }
            }
            line = next_line(&mut lines) => {
                let command = match &line {
                    None => {
                        lines = None; // end of input: leave
                        Some(ChatCommand::Quit)
                    }
                    Some(line) => command_for(line),
                };
                if let Some(command) = command {
                    chat::send(writer, &command).await?;
                }
            }
            _ = ping.tick() => chat::send(writer, &ChatCommand::Ping).await?,
        }
    }
    chat.close().await;
    Ok(())
}

/// The next typed line, or never when there is no input to read.
async fn next_line(lines: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match lines {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}

/// What a typed line asks the server; `None` (after saying why) for a
/// line that is not a command.
fn command_for(typed: &str) -> Option<ChatCommand> {
    match line::parse(typed) {
        Line::Say("") => None,
        Line::Say(text) => Some(ChatCommand::Say { text: text.into() }),
        Line::Msg { to, text } => Some(ChatCommand::Msg {
            to: to.into(),
            text: text.into(),
        }),
        Line::Who => Some(ChatCommand::Who),
        Line::Join(room) => Some(ChatCommand::Join { room: room.into() }),
        Line::Quit => Some(ChatCommand::Quit),
        Line::Nick(_) => {
            eprintln!("ferry: names are chosen with --name when joining");
            None
        }
        Line::Bad(why) => {
            eprintln!("ferry: {why}");
            None
        }
    }
}

/// Lines of stdin, read on a thread of their own so that reading cannot
/// hold up what arrives from the server.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// One line per event on stdout, flushed at once: `[lobby] bob: hi`, or
/// the event as JSON.
fn print_event(event: &Event, json: bool) -> Result<(), Error> {
    let text = if json {
        serde_json::to_string(event).map_err(|e| Error::Protocol(e.to_string()))?
    } else {
        // Escaped whole: a newline in a message cannot forge a line.
        escape_line(&event.line())
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

fn notice(text: &str) {
    eprintln!("* {text}");
}
