//! What a chat line means: text for the room, or a slash command. One
//! parser for `ferry chat`'s input and for datagrams through the UDP
//! gateway, as pure code.

/// One line typed into a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// Text for everyone in the room.
    Say(&'a str),
    /// `/msg NAME text`: text for one user.
    Msg {
        /// Who it is for.
        to: &'a str,
        /// What it says.
        text: &'a str,
    },
    /// `/who`: who is in the room.
    Who,
    /// `/join ROOM`: move to another room.
    Join(&'a str),
    /// `/nick NAME`: take another name (the UDP gateway's users).
    Nick(&'a str),
    /// `/quit`: leave.
    Quit,
    /// A line that starts with `/` but is none of the above, with why.
    Bad(String),
}

/// Parses one line (without its line ending). `//text` says `/text`.
pub fn parse(line: &str) -> Line<'_> {
    let Some(command) = line.strip_prefix('/') else {
        return Line::Say(line);
    };
    if command.starts_with('/') {
        return Line::Say(command);
    }
    let (word, rest) = match command.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (command, ""),
    };
    match (word, rest) {
        ("who", "") => Line::Who,
        ("quit", "") => Line::Quit,
        ("join", room) if !room.is_empty() && !room.contains(char::is_whitespace) => {
            Line::Join(room)
        }
        ("nick", name) if !name.is_empty() && !name.contains(char::is_whitespace) => {
            Line::Nick(name)
        }
        ("msg", rest) => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Line::Msg {
                to,
                text: text.trim_start(),
            },
            _ => Line::Bad("usage: /msg NAME text".into()),
        },
        ("join", _) => Line::Bad("usage: /join ROOM".into()),
        ("nick", _) => Line::Bad("usage: /nick NAME".into()),
        ("who" | "quit", _) => Line::Bad(format!("/{word} takes nothing after it")),
        _ => Line::Bad(format!(
            "unknown command /{word}; try /msg NAME text, /who, /join ROOM, /quit (// to say /)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_and_commands_parse() {
        assert_eq!(parse("hello all"), Line::Say("hello all"));
        assert_eq!(parse("//etc"), Line::Say("/etc"));
        assert_eq!(parse("/who"), Line::Who);
        assert_eq!(parse("/quit"), Line::Quit);
        assert_eq!(parse("/join ops"), Line::Join("ops"));
        assert_eq!(parse("/nick 狗哥alex"), Line::Nick("狗哥alex"));
        assert_eq!(
            parse("/msg bob  hi there"),
            Line::Msg {
                to: "bob",
                text: "hi there"
            }
        );
        for bad in [
            "/msg bob",
            "/msg",
            "/join",
            "/join a b",
            "/who x",
            "/dance",
            "/",
        ] {
            assert!(matches!(parse(bad), Line::Bad(_)), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_line_parses_and_text_is_never_lost(line in ".{0,80}") {
            match parse(&line) {
                Line::Say(text) => prop_assert!(line.ends_with(text)),
                Line::Msg { to, text } => {
                    prop_assert!(line.contains(to) && line.contains(text));
                    prop_assert!(!text.is_empty());
                }
                Line::Join(name) | Line::Nick(name) => prop_assert!(!name.is_empty()),
                Line::Who | Line::Quit | Line::Bad(_) => prop_assert!(line.starts_with('/')),
            }
        }
    }
}
