//! Fuzzes `Header::parse` on any bytes: it never panics, refuses with one of
//! the header codes, and whatever it accepts writes back (`to_json`) as a
//! header that parses to the same fields and size.

#![no_main]

use ferry::protocol::{ErrorCode, Header};
use ferry_fuzz::same_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = match Header::parse(data) {
        Ok(header) => header,
        Err(err) => {
            assert!(
                matches!(
                    err.code,
                    ErrorCode::HeaderNotUtf8
                        | ErrorCode::HeaderNotJson
                        | ErrorCode::HeaderNotObject
                        | ErrorCode::BadSize
                ),
                "parse answered {}",
                err.code
            );
            return;
        }
    };
    assert!(header.get("size").is_none(), "`size` left among the fields");
    let json = header.to_json();
    let back = Header::parse(&json).unwrap_or_else(|err| {
        panic!(
            "to_json wrote {:?}, which does not parse: {err}",
            String::from_utf8_lossy(&json)
        )
    });
    assert!(
        same_header(&header, &back),
        "{header:?} came back as {back:?}"
    );
});
