//! The tutorial's UDP time service, as pure code: a datagram in is a
//! strftime format, the datagram out is the local time in that format. An
//! empty datagram means `%Y-%m-%d %X`. A format that cannot be rendered (a
//! lone `%`, an unknown specifier) or bytes that are not UTF-8 get a
//! one-line error instead: never a panic, never silence.

use std::fmt::Write;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, TimeZone};

use crate::limits::TIME_MAX_FORMAT_BYTES;

/// Where `ferry serve` runs the time service and `ferry time` asks.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9000";

/// The format an empty request asks for, as the tutorial's server uses.
pub const DEFAULT_FORMAT: &str = "%Y-%m-%d %X";

/// What answers a request whose reply would be too large to send back
/// (over 4x the request on the wire): short enough to answer even an empty
/// request, over IPv4.
pub const OVER_CAP_REPLY: &str =
    "error: the reply would be over 4x the request's size; use fewer specifiers";

/// The reply to one request: the formatted time, or an error line starting
/// with `error: `.
pub fn reply<Tz: TimeZone>(request: &[u8], now: &DateTime<Tz>) -> Vec<u8>
where
    Tz::Offset: std::fmt::Display,
{
    match format(request, now) {
        Ok(text) => text.into_bytes(),
        Err(message) => format!("error: {message}").into_bytes(),
    }
}

/// `now` in the format `request` gives, or why it cannot be.
pub fn format<Tz: TimeZone>(request: &[u8], now: &DateTime<Tz>) -> Result<String, String>
where
    Tz::Offset: std::fmt::Display,
{
    if request.len() > TIME_MAX_FORMAT_BYTES {
        return Err(format!(
            "the format is {} bytes; the most this service takes is {TIME_MAX_FORMAT_BYTES}",
            request.len()
        ));
    }
    let format =
        std::str::from_utf8(request).map_err(|_| "the format is not UTF-8 text".to_string())?;
    let format = if format.is_empty() {
        DEFAULT_FORMAT
    } else {
        format
    };
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(format!(
            "{format:?} is not a valid strftime format (a lone `%` or an unknown specifier)"
        ));
    }
    let mut text = String::new();
    // Rendering can still fail (a specifier the time cannot supply);
    // `write!` reports that where `to_string` would panic.
    write!(text, "{}", now.format_with_items(items.into_iter()))
        .map_err(|_| format!("{format:?} cannot be rendered for this time"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;
    use proptest::prelude::*;

    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-26T14:03:09+01:00").unwrap()
    }

    fn text(request: &[u8]) -> String {
        String::from_utf8(reply(request, &now())).unwrap()
    }

    #[test]
    fn an_empty_request_gets_the_tutorials_default_format() {
        assert_eq!(text(b""), "2026-11-26 14:03:09");
    }

    #[test]
    fn a_format_is_rendered_in_local_time() {
        assert_eq!(text(b"%H:%M"), "14:03");
        assert_eq!(text(b"%Y/%m/%d %z"), "2026/11/26 +0100");
        assert_eq!(text(b"no specifiers"), "no specifiers");
        assert_eq!(text("%d 日".as_bytes()), "26 日");
    }

    #[test]
    fn bad_formats_get_a_one_line_error() {
        for bad in [&b"%"[..], b"%Q", b"50%", b"%Y %"] {
            let answer = text(bad);
            assert!(answer.starts_with("error: "), "{bad:?}: {answer}");
            assert!(!answer.contains('\n'), "{answer}");
        }
        assert_eq!(text(b"\xff\xfe"), "error: the format is not UTF-8 text");
        assert!(text(&[b'a'; TIME_MAX_FORMAT_BYTES + 1]).starts_with("error: the format is 1025"));
        assert_eq!(
            text(&[b'a'; TIME_MAX_FORMAT_BYTES]).len(),
            TIME_MAX_FORMAT_BYTES
        );
    }

    #[test]
    fn a_format_that_reads_like_an_error_is_still_a_format() {
        // Found by the `datagram` fuzz target: the tutorial's protocol has
        // no error channel, so such a reply is the rendered text.
        assert_eq!(format(b"error: \n", &now()), Ok("error: \n".to_string()));
    }

    proptest! {
        #[test]
        fn any_bytes_get_an_answer_and_never_a_panic(request in proptest::collection::vec(any::<u8>(), 0..64)) {
            let answer = reply(&request, &now());
            prop_assert!(!answer.is_empty());
            prop_assert!(answer.len() < 64 * 1024);
        }

        #[test]
        fn any_percent_sequence_gets_an_answer(spec in "(%[a-zA-Z%:#.0-9-]{0,3}){1,8}") {
            let answer = reply(spec.as_bytes(), &now());
            prop_assert!(!answer.is_empty());
        }
    }
}
