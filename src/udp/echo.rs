//! The echo service (RFC 862) for datagrams, as pure code: the same bytes
//! back, or upper-cased as the tutorial's servers answer, by the same rule
//! as the framed `echo` (ASCII letters only, so a reply is never longer
//! than its request and the service cannot amplify traffic).

/// The reply to one datagram.
pub fn reply(request: &[u8], upper: bool) -> Vec<u8> {
    let mut out = request.to_vec();
    if upper {
        out.make_ascii_uppercase();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn echo_returns_the_bytes_or_upper_cases_them() {
        assert_eq!(reply(b"hello \xff", false), b"hello \xff");
        assert_eq!(reply(b"hello \xff", true), b"HELLO \xff");
        assert_eq!(reply("straße".as_bytes(), true), "STRAßE".as_bytes());
    }

    proptest! {
        #[test]
        fn a_reply_is_as_long_as_its_request(request in proptest::collection::vec(any::<u8>(), 0..100), upper: bool) {
            prop_assert_eq!(reply(&request, upper).len(), request.len());
        }
    }
}
