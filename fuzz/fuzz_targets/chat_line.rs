//! Fuzzes the chat line parser (`ferry chat` input and `--udp-chat`
//! datagrams): no panic on any text; said text is the line's end; a
//! private message names someone and says something; everything else came
//! from a line starting with `/`.

#![no_main]

use ferry::services::chat::line::{parse, Line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Line::Say(said) => assert!(text.ends_with(said)),
        Line::Msg { to, text: said } => {
            assert!(!to.is_empty() && !said.is_empty());
            assert!(text.starts_with("/msg"));
        }
        Line::Join(name) | Line::Nick(name) => {
            assert!(!name.is_empty() && !name.contains(char::is_whitespace))
        }
        Line::Who | Line::Quit | Line::Bad(_) => assert!(text.starts_with('/')),
    }
});
