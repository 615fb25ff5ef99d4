//! The JSON header of a frame. It is parsed once, at the edge, into a map of
//! fields plus the frame's body `size`, which the codec needs to find the next
//! frame. Typed messages are built from a `Header` with [`Header::to_message`];
//! unknown fields are ignored there so that newer peers can add optional
//! fields without breaking older ones.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Value};

use super::code::ErrorCode;
use super::FrameError;

/// The name of the header field that gives the length of the frame's body.
pub const SIZE_FIELD: &str = "size";

/// A frame header: a JSON object whose `size` field, if any, has been taken
/// out and checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Header {
    fields: Map<String, Value>,
    size: u64,
}

impl Header {
    /// A header with the given fields and no body. A `size` among `fields`
    /// is ignored: the body size is set with [`Header::with_size`].
    pub fn new(mut fields: Map<String, Value>) -> Header {
        fields.remove(SIZE_FIELD);
        Header { fields, size: 0 }
    }

    /// Builds a header from any message that serializes to a JSON object.
    pub fn from_message<T: Serialize>(message: &T) -> Header {
        match serde_json::to_value(message) {
            Ok(Value::Object(fields)) => Header::new(fields),
            // Our message types are all structs or tagged enums; anything else
            // is a programming error caught by the unit tests.
            other => panic!("message is not a JSON object: {other:?}"),
        }
    }

    /// Parses the header bytes of a frame, as the codec received them.
    pub fn parse(bytes: &[u8]) -> Result<Header, FrameError> {
        let text = std::str::from_utf8(bytes).map_err(|err| {
            FrameError::new(
                ErrorCode::HeaderNotUtf8,
                format!("header is not UTF-8 (at byte {})", err.valid_up_to()),
            )
        })?;
        let value: Value = serde_json::from_str(text).map_err(|err| {
            FrameError::new(
                ErrorCode::HeaderNotJson,
                format!("header is not JSON: {err}"),
            )
        })?;
        let Value::Object(mut fields) = value else {
            return Err(FrameError::new(
                ErrorCode::HeaderNotObject,
                format!("header is JSON but not an object: {}", json_kind(&value)),
            ));
        };
        let size = match fields.remove(SIZE_FIELD) {
            None => 0,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(0),
            Some(other) => {
                return Err(FrameError::new(
                    ErrorCode::BadSize,
                    format!(
                        "`size` must be an unsigned integer, got {}",
                        json_kind(&other)
                    ),
                ))
            }
        };
        Ok(Header { fields, size })
    }

    /// Serializes the header as it goes on the wire: the fields plus `size`
    /// when the frame has a body.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(b'{');
        let mut first = true;
        for (key, value) in &self.fields {
            if !first {
                out.push(b',');
            }
            first = false;
            // Writing into a Vec cannot fail, and a Map<String, Value> always
            // serializes.
            let _ = serde_json::to_writer(&mut out, key);
            out.push(b':');
            let _ = serde_json::to_writer(&mut out, value);
        }
        if self.size > 0 {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(b"\"size\":");
            out.extend_from_slice(self.size.to_string().as_bytes());
        }
        out.push(b'}');
        out
    }

    /// The length of this frame's body in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sets the length of the body that follows this header.
    pub fn with_size(mut self, size: u64) -> Header {
        self.size = size;
        self
    }

    /// The `cmd` field, if it is a string.
    pub fn cmd(&self) -> Option<&str> {
        self.fields.get("cmd").and_then(Value::as_str)
    }

    /// One field of the header (never `size`; see [`Header::size`]).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    /// Adds or replaces a field. Setting `size` this way is a no-op.
    pub fn insert(&mut self, key: &str, value: impl Into<Value>) {
        if key != SIZE_FIELD {
            self.fields.insert(key.to_string(), value.into());
        }
    }

    /// All fields but `size`.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// Reads the header as a typed message. Fields the type does not know are
    /// ignored.
    pub fn to_message<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&Value::Object(self.fields.clone()))
    }
}

/// Names a JSON value's kind for error messages, without echoing its content.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number that is not an unsigned 64-bit integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Header, ErrorCode> {
        Header::parse(text.as_bytes()).map_err(|e| e.code)
    }

    #[test]
    fn size_is_taken_out_of_the_fields() {
        let header = parse(r#"{"cmd":"echo","size":5}"#).unwrap();
        assert_eq!(header.size(), 5);
        assert_eq!(header.cmd(), Some("echo"));
        assert!(header.get("size").is_none());
    }

    #[test]
    fn absent_size_means_no_body() {
        assert_eq!(parse(r#"{"cmd":"hello"}"#).unwrap().size(), 0);
    }

    #[test]
    fn sizes_over_four_gib_parse() {
        let header = parse(r#"{"size":18446744073709551615}"#).unwrap();
        assert_eq!(header.size(), u64::MAX);
        let header = parse(r#"{"size":5000000000}"#).unwrap();
        assert_eq!(header.size(), 5_000_000_000);
    }

    #[test]
    fn malformed_headers_get_their_codes() {
        assert_eq!(parse("[1,2]"), Err(ErrorCode::HeaderNotObject));
        assert_eq!(parse("\"x\""), Err(ErrorCode::HeaderNotObject));
        assert_eq!(parse("{"), Err(ErrorCode::HeaderNotJson));
        assert_eq!(parse("not json"), Err(ErrorCode::HeaderNotJson));
        assert_eq!(parse(r#"{"size":-1}"#), Err(ErrorCode::BadSize));
        assert_eq!(parse(r#"{"size":1.5}"#), Err(ErrorCode::BadSize));
        assert_eq!(parse(r#"{"size":"5"}"#), Err(ErrorCode::BadSize));
        assert_eq!(parse(r#"{"size":null}"#), Err(ErrorCode::BadSize));
        assert_eq!(
            parse(r#"{"size":18446744073709551616}"#),
            Err(ErrorCode::BadSize)
        );
        assert_eq!(
            Header::parse(b"{\"cmd\":\"\xff\"}").map_err(|e| e.code),
            Err(ErrorCode::HeaderNotUtf8)
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep), Err(ErrorCode::HeaderNotJson));
    }

    #[test]
    fn to_json_round_trips_and_writes_size_only_with_a_body() {
        let header = Header::new(
            json!({"cmd": "echo", "upper": true})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(!String::from_utf8(header.to_json())
            .unwrap()
            .contains("size"));
        let header = header.with_size(7);
        let back = Header::parse(&header.to_json()).unwrap();
        assert_eq!(back, header);
        assert_eq!(
            Header::parse(&Header::default().to_json()).unwrap(),
            Header::default()
        );
    }
}
