//! JSON-RPC messages as raw JSON: only the members reprise acts on are read,
//! everything else (fields a newer protocol adds) stays in the original bytes,
//! which are what is forwarded and stored.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The envelope members of any JSON-RPC message (request, notification,
/// response), borrowed from the message bytes.
#[derive(Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// One message; None for a batch (an array), invalid JSON or a non-object.
    pub fn parse(bytes: &'a [u8]) -> Option<Envelope<'a>> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }

    /// A request: `method` and a non-null `id`.
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some_and(|id| id.get() != "null")
    }

    /// A notification: `method` without an `id`.
    pub fn is_notification(&self) -> bool {
        self.method.is_some() && self.id.is_none()
    }
}

/// Whether two raw ids are the same id: same JSON type and value (`1` is not
/// `"1"`; `1` and `1.0` are the same number).
pub fn same_id(a: &RawValue, b: &RawValue) -> bool {
    if a.get() == b.get() {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a.get()),
        serde_json::from_str::<serde_json::Value>(b.get()),
    ) {
        (Ok(serde_json::Value::Number(x)), Ok(serde_json::Value::Number(y))) => {
            x.as_f64() == y.as_f64()
        }
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The answer to request `id` from a stored result:
/// `{"jsonrpc":"2.0","id":<id, as the caller wrote it>,"result":<result>}`.
pub fn response_with_id(id: &RawValue, result: &[u8]) -> Bytes {
    let id = id.get().as_bytes();
    let mut out = Vec::with_capacity(result.len() + id.len() + 40);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id);
    out.extend_from_slice(br#","result":"#);
    out.extend_from_slice(result);
    out.push(b'}');
    Bytes::from(out)
}

/// A JSON-RPC error answer (reprise's own failures: unknown server,
/// unreachable upstream).
pub fn error_response(id: Option<&RawValue>, code: i64, message: &str) -> Bytes {
    let id = id.map_or("null", RawValue::get);
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn classifies_messages() {
        let req = Envelope::parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#).unwrap();
        assert!(req.is_request());
        let note =
            Envelope::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(note.is_notification() && !note.is_request());
        let resp = Envelope::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(!resp.is_request() && resp.result.is_some());
        assert!(Envelope::parse(br#"[{"jsonrpc":"2.0","id":1,"method":"x"}]"#).is_none());
        assert!(Envelope::parse(b"not json").is_none());
    }

    /// Hits answer with the caller's id exactly as written, whatever its type.
    #[test]
    fn rewrites_number_and_string_ids() {
        let stored = br#"{"tools":[{"name":"add"}],"nextCursor":null}"#;
        let with_number = response_with_id(&raw("42"), stored);
        let v: serde_json::Value = serde_json::from_slice(&with_number).unwrap();
        assert_eq!(v["id"], serde_json::json!(42));
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["result"]["tools"][0]["name"], "add");
        let with_string = response_with_id(&raw(r#""req-\"9\"""#), stored);
        let v: serde_json::Value = serde_json::from_slice(&with_string).unwrap();
        assert_eq!(v["id"], serde_json::json!("req-\"9\""));
        // The stored result's bytes are kept as they were.
        let text = std::str::from_utf8(&with_string).unwrap();
        assert!(text.ends_with(r#""result":{"tools":[{"name":"add"}],"nextCursor":null}}"#));
    }

    #[test]
    fn ids_compare_by_type_and_value() {
        assert!(same_id(&raw("1"), &raw("1")));
        assert!(same_id(&raw("1"), &raw("1.0")));
        assert!(!same_id(&raw("1"), &raw("\"1\"")));
        assert!(same_id(&raw("\"a\""), &raw("\"\\u0061\"")));
    }

    #[test]
    fn error_response_is_json_rpc() {
        let e = error_response(Some(&raw("3")), -32603, "upstream \"x\" down");
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(v["error"]["code"], -32603);
        let e = error_response(None, -32600, "bad");
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert!(v["id"].is_null());
    }
}
