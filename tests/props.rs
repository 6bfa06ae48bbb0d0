//! Property tests (issue 11): the canonicalizer, the SSE parser, the entry
//! codec and the Anthropic↔OpenAI translation against arbitrary input.
//!
//! The default run is short (proptest's 256 cases per target). The long run,
//! one million cases per target:
//!
//! ```text
//! PROPTEST_CASES=1000000 cargo test --release --test props
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use reprise::cache::codec;
use reprise::cache::key::{body_digest, BodyDigest, EndpointKind};
use reprise::json::Json;
use reprise::providers::translate::{chat_to_messages, messages_to_chat};
use reprise::stream::SseParser;
use serde_json::{Map, Number, Value};

const KINDS: [EndpointKind; 3] = [
    EndpointKind::Chat,
    EndpointKind::Embeddings,
    EndpointKind::Messages,
];

/// Object keys biased towards the names the canonicalizer treats specially.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_]{1,8}",
        1 => prop::sample::select(vec![
            "model", "messages", "content", "role", "type", "text", "system", "tools",
            "cache_control", "input", "parameters", "stream", "user", "metadata", "cache",
            "tool_result", "temperature",
        ])
        .prop_map(String::from),
    ]
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
    ]
}

/// Arbitrary JSON, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A request-shaped body: the known fields plus arbitrary ones.
fn body() -> impl Strategy<Value = Map<String, Value>> {
    (json(), json(), prop::collection::vec((key(), json()), 0..4)).prop_map(
        |(messages, system, extra)| {
            let mut body: Map<String, Value> = extra.into_iter().collect();
            body.insert("model".into(), Value::String("m".into()));
            body.insert("messages".into(), Value::Array(vec![messages]));
            body.insert("system".into(), system);
            body
        },
    )
}

fn digest(kind: EndpointKind, v: &Value) -> BodyDigest {
    body_digest(kind, &Json::from_value(v))
}

/// The same value with every object's members in reverse order.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reversed(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Appends to the `n`-th string leaf (depth first, mod the count); false when
/// there is none.
fn mutate_string_leaf(v: &mut Value, n: usize) -> bool {
    fn leaves<'a>(v: &'a mut Value, out: &mut Vec<&'a mut String>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter_mut().for_each(|i| leaves(i, out)),
            Value::Object(map) => map.values_mut().for_each(|i| leaves(i, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    leaves(v, &mut found);
    let count = found.len();
    match found.get_mut(n % count.max(1)) {
        Some(s) if count > 0 => {
            s.push('\u{2603}');
            true
        }
        _ => false,
    }
}

proptest! {
    /// Arbitrary JSON, as a value and as text, never panics the canonicalizer.
    #[test]
    fn canonicalizer_never_panics(v in json(), b in body()) {
        for kind in KINDS {
            digest(kind, &v);
            digest(kind, &Value::Object(b.clone()));
            let text = serde_json::to_vec(&v).unwrap();
            if let Ok(parsed) = Json::parse(&text) {
                body_digest(kind, &parsed);
            }
        }
    }

    /// Member order never changes the key.
    #[test]
    fn key_ignores_member_order(b in body()) {
        let v = Value::Object(b);
        for kind in KINDS {
            prop_assert_eq!(digest(kind, &v), digest(kind, &reversed(&v)));
        }
    }

    /// `N`, `N.0` and `Ne0` are the same number.
    #[test]
    fn key_ignores_number_formatting(n in -9_000_000_000_000_000i64..9_000_000_000_000_000i64) {
        let n = n / 1000; // within f64's exact integer range
        let text = |num: String| format!(r#"{{"model":"m","messages":[],"temperature":{num}}}"#);
        let plain = text(n.to_string());
        for other in [text(format!("{n}.0")), text(format!("{n}e0")), text(format!("{n}.000"))] {
            let a = body_digest(EndpointKind::Chat, &Json::parse(plain.as_bytes()).unwrap());
            let b = body_digest(EndpointKind::Chat, &Json::parse(other.as_bytes()).unwrap());
            prop_assert_eq!(a, b, "{} vs {}", plain, other);
        }
    }

    /// Changing any string inside an output-affecting field (here: an
    /// unknown field, and a user message) changes the key, wherever it is —
    /// `cache_control` members included, since only provider-defined marker
    /// positions are excluded.
    #[test]
    fn key_changes_with_any_value_outside_the_exclusions(
        data in json(),
        text in "\\PC{0,20}",
        n in any::<usize>(),
    ) {
        for kind in KINDS {
            let base = serde_json::json!({
                "model": "m", "input": "x",
                "messages": [{"role": "user", "content": text.clone()}],
                "vendor_field": data.clone(),
            });
            let mut changed = base.clone();
            if mutate_string_leaf(&mut changed["vendor_field"], n) {
                prop_assert_ne!(digest(kind, &base), digest(kind, &changed));
            }
            let mut number_changed = base.clone();
            number_changed["vendor_field"] = serde_json::json!([data.clone(), 1]);
            let mut other_number = base.clone();
            other_number["vendor_field"] = serde_json::json!([data.clone(), 2]);
            prop_assert_ne!(digest(kind, &number_changed), digest(kind, &other_number));
        }
        let base = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text.clone()}]});
        let mut changed = base.clone();
        changed["messages"][0]["content"] = Value::String(format!("{text}!"));
        prop_assert_ne!(digest(EndpointKind::Chat, &base), digest(EndpointKind::Chat, &changed));
    }

    /// Any bytes, split anywhere: the same events (and the same end) as
    /// parsing them in one piece.
    #[test]
    fn sse_parser_is_split_invariant(
        pieces in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "data: ", "data:", "event: ", "id: ", "retry: 10", ": ping", "\n", "\r\n",
                    "\r", "\n\n", "[DONE]", "{\"a\":1}", "\u{feff}", "\0",
                ]).prop_map(|s| s.as_bytes().to_vec()),
                prop::collection::vec(any::<u8>(), 0..8),
            ],
            0..40,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let bytes: Vec<u8> = pieces.concat();
        let mut whole = SseParser::new();
        let expected = whole.push(&bytes);
        let expected_end = whole.finish();

        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut split = SseParser::new();
        let mut events = Vec::new();
        let mut at = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            events.extend(split.push(&bytes[at..p]));
            at = p;
        }
        // Fields are split-invariant. Raw bytes are too, except at a `\r` that
        // ends a push: the parser acts on it at once and a following `\n` goes
        // to the front of the next event (documented in stream/sse.rs), so the
        // byte-level invariant is "every raw plus the leftover is the input".
        let fields = |events: &[reprise::stream::SseEvent]| -> Vec<_> {
            events
                .iter()
                .map(|e| (e.event.clone(), e.data.clone(), e.has_data, e.id.clone(), e.retry))
                .collect()
        };
        prop_assert_eq!(fields(&events), fields(&expected));
        let end = split.finish();
        prop_assert_eq!(end.unterminated, expected_end.unterminated);
        let mut rebuilt: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
        rebuilt.extend_from_slice(&end.leftover);
        prop_assert_eq!(rebuilt, bytes);
    }

    /// Arbitrary bytes (and corrupted real entries) decode to None, never a panic.
    #[test]
    fn entry_codec_never_panics(
        noise in prop::collection::vec(any::<u8>(), 0..256),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        body in prop::collection::vec(any::<u8>(), 0..2048),
        compress in any::<bool>(),
    ) {
        codec::decode(&noise);
        let mut with_magic = b"RPR4".to_vec();
        with_magic.extend_from_slice(&noise);
        codec::decode(&with_magic);
        codec::peek(&with_magic);
        codec::restamp(&with_magic, 1);
        let key = reprise::cache::key::CacheKey([1; 32]);
        let sealing = reprise::cache::seal::Sealer::per_tenant(&[9; 32]).tenant("t");
        prop_assert!(codec::decode_for(&with_magic, &key, &sealing).is_err());

        let entry = reprise::cache::entry::Entry::new(
            body.into(),
            "application/json".into(),
            reprise::cache::ttl::Ttl::secs(60),
            Some(1),
        )
        // Half the cases carry a refresh-ahead request section.
        .with_request(compress.then(|| b"{\"model\":\"m\",\"messages\":[]}".to_vec().into()));
        let mut encoded = codec::encode(&entry, if compress { 1 } else { 0 }).to_vec();
        prop_assert!(codec::decode(&encoded).is_some());
        for (at, byte) in flips {
            let len = encoded.len();
            encoded[at % len] ^= byte;
        }
        codec::decode(&encoded);
        encoded.truncate(encoded.len() / 2);
        codec::decode(&encoded);

        // Sealed: opens intact; any damage to the sealed body is an error.
        let sealed = codec::encode_for(&entry, if compress { 1 } else { 0 }, &key, &sealing).unwrap();
        let opened = codec::decode_for(&sealed, &key, &sealing).unwrap();
        prop_assert_eq!(&opened.body, &entry.body);
        let mut damaged = sealed.to_vec();
        let len = damaged.len();
        damaged[len - 1 - (body_flip(&noise) % 28)] ^= 1;
        prop_assert!(codec::decode_for(&damaged, &key, &sealing).is_err());
        damaged.truncate(len / 2);
        prop_assert!(codec::decode_for(&damaged, &key, &sealing).is_err());
    }

    /// Translation both ways never panics, whatever the request or answer.
    #[test]
    fn translation_never_panics(b in body(), answer in json(), max in any::<u64>()) {
        let _ = chat_to_messages(&b, max);
        messages_to_chat(&answer, "m", 0);
        if let Value::Object(map) = &answer {
            let _ = chat_to_messages(map, max);
        }
    }
}

/// A position among the last 28 bytes of a sealed value (nonce-free tail:
/// ciphertext end and tag), picked from the noise.
fn body_flip(noise: &[u8]) -> usize {
    noise.first().map_or(0, |b| usize::from(*b))
}
