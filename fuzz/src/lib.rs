//! What the fuzz targets share: comparing headers after a trip over the
//! wire.
//!
//! Headers are compared exactly except for floats, which may come back up to
//! [`FLOAT_ULPS`] off: serde_json, built without its `float_roundtrip`
//! feature, parses some floats inexactly (ferry's unit test
//! `headers_with_any_float_survive_the_wire` shows one). Any other
//! difference is a finding.

use ferry::protocol::Header;
use serde_json::Value;

/// How far apart, in units in the last place, a float may come back.
pub const FLOAT_ULPS: u64 = 2;

/// Whether two headers are the same but for float rounding.
pub fn same_header(a: &Header, b: &Header) -> bool {
    a.size() == b.size() && same_object(a.fields(), b.fields())
}

fn same_object(a: &serde_json::Map<String, Value>, b: &serde_json::Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(a), Value::Object(b)) => same_object(a, b),
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= FLOAT_ULPS)
        }
        _ => a == b,
    }
}
