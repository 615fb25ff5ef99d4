//! Fuzzes the seed-compat request decoder on any bytes: the first byte
//! picks the header cap, the rest is what arrived. It never panics and
//! never consumes more than it was given; text (no NUL in the first four
//! bytes) is always a whole command; a put frame decodes the same however
//! much more follows it, a frame's shorter prefix asks for more, and a
//! decoded put re-encodes to the same request.

#![no_main]

use ferry::server::seed::request::{decode, is_frame, reply_head, SeedRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, buf)) = data.split_first() else {
        return;
    };
    let cap = match pick % 3 {
        0 => 64 * 1024,
        1 => 256,
        _ => 1 + pick as usize,
    };
    let decoded = decode(buf, cap);
    if !buf.is_empty() && !is_frame(buf) {
        let decoded = decoded.expect("text is never a frame error").expect("text is whole");
        assert_eq!(decoded.consumed, buf.len());
        assert!(!matches!(decoded.request, SeedRequest::Put { .. }));
        return;
    }
    let Ok(Some(decoded)) = decoded else {
        return;
    };
    assert!(decoded.consumed <= buf.len());
    let SeedRequest::Put { filename, filesize } = &decoded.request else {
        panic!("a frame decoded to {:?}", decoded.request);
    };
    // More bytes after the frame change nothing.
    let mut longer = buf.to_vec();
    longer.extend_from_slice(b"\0trailing");
    let again = decode(&longer, cap).unwrap().unwrap();
    assert_eq!(again, decoded);
    // A prefix that still holds the NUL asks for more.
    if decoded.consumed > 4 {
        assert_eq!(decode(&buf[..decoded.consumed - 1], cap), Ok(None));
    }
    let header = serde_json::json!({"cmd": "put", "filename": filename, "filesize": filesize});
    let frame = reply_head(&header);
    if frame.len() - 4 <= cap {
        let back = decode(&frame, cap).unwrap().unwrap();
        assert_eq!(back.request, decoded.request);
    }
});
