//! A read-only JSON tree that borrows from the request bytes.
//!
//! The request side of every call (validation, directives, routing and the
//! cache key) only reads the caller's body, and a cache hit never needs more.
//! `serde_json::Value` (with `preserve_order`) would allocate a `String` per
//! key and per string and hash every key into an `IndexMap`; this tree keeps
//! strings as slices of the request bytes (owned only when they contain
//! escapes) and objects as plain vectors. The upstream payload, when there is
//! one, is built from the raw bytes on the miss path (`Request::payload`).
//!
//! Same parser (serde_json), so it accepts and rejects exactly what
//! `serde_json::Value` does; duplicate object keys resolve like
//! `serde_json::Map`: the last value wins ([`Json::get`], and the cache key).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in document order, duplicates included (see [`Json::entries`]).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses JSON text, borrowing strings from `bytes` where possible.
    pub fn parse(bytes: &'a [u8]) -> serde_json::Result<Json<'a>> {
        serde_json::from_slice(bytes)
    }

    /// A borrowed view of a `serde_json::Value` (tests, benches, tools).
    pub fn from_value(value: &'a Value) -> Json<'a> {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(items) => Json::Array(items.iter().map(Json::from_value).collect()),
            Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// An owned `serde_json::Value` (for the rare paths that want one).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.clone().into_owned()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            // `Map::insert` keeps a repeated key at its first position with
            // its last value: exactly what parsing into a `Map` does.
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone().into_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// The member `name` of an object (the last one, if repeated).
    pub fn get(&self, name: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
        // serde_json only produces finite floats; same as `Value`'s visitor.
        Ok(Number::from_f64(f).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(name) = map.next_key_seed(KeySeed)? {
            members.push((name, map.next_value()?));
        }
        Ok(Json::Object(members))
    }
}

/// Object keys, borrowed when they contain no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn borrows_plain_strings_and_owns_escaped_ones() {
        let bytes = br#"{"plain": "abc", "esc\"aped": "a\nb"}"#;
        let json = Json::parse(bytes).unwrap();
        let Json::Object(members) = &json else {
            panic!("object expected")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("plain")));
        assert!(matches!(members[0].1, Json::String(Cow::Borrowed("abc"))));
        assert_eq!(members[1].0, "esc\"aped");
        assert_eq!(json.get("esc\"aped").and_then(Json::as_str), Some("a\nb"));
    }

    #[test]
    fn round_trips_to_the_same_value_as_serde_json() {
        let text = r#"{"a": [1, -2, 3.5, 1e2, true, null, "x"], "b": {"c": {}}, "d": []}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(Json::parse(text.as_bytes()).unwrap().to_value(), expected);
        assert_eq!(Json::from_value(&expected).to_value(), expected);
    }

    #[test]
    fn duplicate_keys_resolve_like_serde_json_map() {
        let text = br#"{"k": 1, "other": 2, "k": 3}"#;
        let json = Json::parse(text).unwrap();
        assert_eq!(json.get("k").and_then(Json::as_u64), Some(3));
        let expected: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(json.to_value(), expected);
        assert_eq!(expected, json!({"k": 3, "other": 2}));
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"[1,]",
            b"nul",
            b"{\"a\":1e400}",
            b"\"\\x\"",
        ] {
            assert!(
                Json::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(serde_json::from_slice::<Value>(bad).is_err());
        }
    }
}
