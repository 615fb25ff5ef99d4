//! What the fuzz targets share: comparing headers after a trip over the
//! wire. Headers must come back exactly: ferry builds serde_json with
//! `float_roundtrip`, so even floats survive bit for bit (ferry's unit test
//! `headers_with_any_float_survive_the_wire` holds it to that).

use ferry::protocol::Header;

/// Whether two headers are the same, fields and body size.
pub fn same_header(a: &Header, b: &Header) -> bool {
    a == b
}
