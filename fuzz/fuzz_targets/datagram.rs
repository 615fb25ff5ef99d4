//! Fuzzes the datagram reply builders on any bytes: the SNTP reply and the
//! time service's format. Neither panics; an SNTP reply is exactly 48
//! bytes, never more than its request, echoes the request's transmit time
//! as its originate time, and is a kiss (stratum 0, `RATE`) exactly when
//! the source is limited; a time reply is the rendered format, or one
//! error line exactly when the format cannot be rendered.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use ferry::services::{sntp, time};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, request)) = data.split_first() else {
        return;
    };
    let at = UNIX_EPOCH + Duration::from_secs(1_764_165_789 + u64::from(pick));
    let limited = pick & 1 == 1;
    match sntp::reply(request, at, at, limited) {
        sntp::Reply::Drop => {}
        sntp::Reply::Time(out) => {
            assert!(!limited);
            assert!(out.len() <= request.len());
            assert_eq!(&out[24..32], &request[40..48]);
            assert_ne!(out[1], 0);
        }
        sntp::Reply::Rate(out) => {
            assert!(limited);
            assert!(out.len() <= request.len());
            assert_eq!((out[1], &out[12..16]), (0, &b"RATE"[..]));
        }
    }
    let now = chrono::DateTime::from_timestamp(1_764_165_789, 0).unwrap();
    // The reply is the rendered time, or, only for a format that cannot be
    // rendered, one error line. (A format may itself render to text that
    // starts with `error: `: the tutorial's protocol has no error channel.)
    let reply = time::reply(request, &now);
    match time::format(request, &now) {
        Ok(text) => assert_eq!(reply, text.into_bytes()),
        Err(message) => {
            assert_eq!(reply, format!("error: {message}").into_bytes());
            assert!(!message.contains('\n'));
        }
    }
});
