//! The cache key: SHA-256 over a canonical, versioned byte string of
//! `key version | namespace | endpoint kind | provider | model | body digest`,
//! where the body digest is SHA-256 over the canonical form of the
//! output-affecting body (`key version | endpoint kind | body`). Two stages, so
//! the body's part depends on its bytes alone and can be remembered per body
//! (`cache::facts`), whoever sends it.
//!
//! The canonical form is a tagged, length-prefixed encoding (not JSON text), so
//! it is unambiguous and needs no escaping; it is streamed straight into the
//! hasher without building an intermediate string. Rules (each unit-tested):
//! - object keys are sorted; top-level `null` fields count as absent;
//! - numbers are normalized (`0` == `0.0`, `1e2` == `100`);
//! - a string message `content` equals `[{"type":"text","text":…}]`;
//! - `cache_control` markers are ignored only where providers define them: on
//!   message content blocks (and the blocks inside a `tool_result`'s content),
//!   on `system` blocks, on `tools` entries, and the top-level field. Anywhere
//!   else (tool-call input, arguments, schemas, unknown fields) it is data;
//! - fields that cannot change the output are excluded (see `chat_field`);
//!   unknown fields are included, because unknown means "may affect output".

use serde_json::Number;

use crate::json::Json;
use sha2::{Digest, Sha256};

/// Bump when the canonical form changes: old entries then simply stop matching.
pub const KEY_VERSION: &str = "reprise-key-v3";

/// A 32-byte SHA-256 digest identifying one cache entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    pub fn hex(&self) -> String {
        String::from_utf8(self.hex_bytes().to_vec()).unwrap_or_default()
    }

    /// The lowercase hex digits, without allocating (hot path: response headers).
    pub fn hex_bytes(&self) -> [u8; 64] {
        hex_into(&self.0)
    }
}

/// Lowercase hex of 32 bytes into a fixed buffer.
pub fn hex_into(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// Which endpoint a request belongs to; entries never cross kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    Chat,
    Embeddings,
    /// Anthropic's native `/v1/messages`.
    Messages,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Chat => "chat",
            EndpointKind::Embeddings => "embeddings",
            EndpointKind::Messages => "messages",
        }
    }
}

/// The identity of a request outside its body.
#[derive(Clone, Copy, Debug)]
pub struct KeyScope<'a> {
    pub namespace: &'a str,
    pub kind: EndpointKind,
    pub provider: &'a str,
    /// The model as sent upstream (after any `provider/` prefix is stripped).
    pub model: &'a str,
}

/// How a top-level body field takes part in the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldRole {
    /// Cannot change the output: left out.
    Excluded,
    /// Part of the scope (hashed separately).
    Scope,
    /// Chat messages: string content is normalized to a text-part array.
    Messages,
    /// Anthropic `system`: a string equals a one-text-block array.
    System,
    /// `tools`: each entry may carry a provider `cache_control` marker.
    Tools,
    /// Everything else, known or unknown.
    Included,
}

/// Every chat-completions field reprise knows, with its decision. A new
/// OpenAI field lands in `_ => Included` until someone decides otherwise.
fn chat_field(name: &str) -> FieldRole {
    match name {
        "model" => FieldRole::Scope,
        "messages" => FieldRole::Messages,
        // Transport, attribution and provider-side caching hints.
        "stream"
        | "stream_options"
        | "user"
        | "metadata"
        | "store"
        | "prompt_cache_key"
        | "prompt_cache_retention"
        | "cache_control"
        | "cache" => FieldRole::Excluded,
        "tools" => FieldRole::Tools,
        // Output-affecting, listed so the decision is visible.
        "tool_choice"
        | "functions"
        | "function_call"
        | "response_format"
        | "temperature"
        | "top_p"
        | "max_tokens"
        | "max_completion_tokens"
        | "stop"
        | "seed"
        | "n"
        | "logprobs"
        | "top_logprobs"
        | "logit_bias"
        | "presence_penalty"
        | "frequency_penalty"
        | "reasoning_effort"
        | "parallel_tool_calls"
        | "modalities"
        | "audio"
        | "prediction"
        | "web_search_options"
        | "verbosity"
        | "service_tier" => FieldRole::Included,
        _ => FieldRole::Included,
    }
}

/// Every embeddings field reprise knows, with its decision.
fn embeddings_field(name: &str) -> FieldRole {
    match name {
        "model" => FieldRole::Scope,
        "user" | "cache" => FieldRole::Excluded,
        // `encoding_format` changes the response bytes (base64 vs floats).
        "input" | "encoding_format" | "dimensions" => FieldRole::Included,
        _ => FieldRole::Included,
    }
}

/// Every Anthropic Messages field reprise knows, with its decision. Unlike
/// chat completions, `stream` is part of the key here: Anthropic streams are
/// replayed byte for byte and never converted to or from a JSON message.
fn messages_field(name: &str) -> FieldRole {
    match name {
        "model" => FieldRole::Scope,
        "messages" => FieldRole::Messages,
        "system" => FieldRole::System,
        // Top-level `cache_control`: Anthropic's automatic caching hint.
        "metadata" | "cache" | "cache_control" => FieldRole::Excluded,
        "tools" => FieldRole::Tools,
        "stream" | "max_tokens" | "temperature" | "top_p" | "top_k" | "stop_sequences"
        | "tool_choice" | "thinking" | "service_tier" | "container" | "mcp_servers" => {
            FieldRole::Included
        }
        _ => FieldRole::Included,
    }
}

/// Key of a request body (a JSON object; anything else keys as its value).
pub fn body_key(scope: &KeyScope<'_>, body: &Json<'_>) -> CacheKey {
    scoped_key(scope, &body_digest(scope.kind, body))
}

/// The digest of a body's canonical form: depends on the endpoint kind and
/// the body only (the model is part of the scope, not of the digest).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BodyDigest(pub [u8; 32]);

/// Key of a body whose digest is known.
pub fn scoped_key(scope: &KeyScope<'_>, digest: &BodyDigest) -> CacheKey {
    scoped_key_with(scope, digest, |_| {})
}

/// Key of a body whose digest is known, plus the upstream request headers
/// that can change the answer: `headers` is called with a sink taking
/// `(name, value)` pairs in a fixed order. No pairs: the same key as
/// [`scoped_key`].
pub fn scoped_key_with(
    scope: &KeyScope<'_>,
    digest: &BodyDigest,
    headers: impl FnOnce(&mut dyn FnMut(&str, &[u8])),
) -> CacheKey {
    let mut enc = Encoder::new(scope, b"body");
    enc.bytes(&digest.0);
    let mut first = true;
    headers(&mut |name, value| {
        if std::mem::take(&mut first) {
            enc.bytes(b"headers");
        }
        enc.str(name);
        enc.bytes(value);
    });
    enc.finish()
}

/// The canonical form of a body, hashed.
pub fn body_digest(kind: EndpointKind, body: &Json<'_>) -> BodyDigest {
    let role: fn(&str) -> FieldRole = match kind {
        EndpointKind::Chat => chat_field,
        EndpointKind::Embeddings => embeddings_field,
        EndpointKind::Messages => messages_field,
    };
    // Sorted by name already (`last_of_each_name`); filtering keeps the order.
    let fields: Vec<(&str, &Json<'_>, FieldRole)> = last_of_each_name(body)
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k, v, role(k)))
        .filter(|(_, _, r)| {
            matches!(
                r,
                FieldRole::Messages | FieldRole::System | FieldRole::Tools | FieldRole::Included
            )
        })
        .collect();

    let mut enc = Encoder {
        hasher: Sha256::new(),
    };
    enc.str(KEY_VERSION);
    enc.str(kind.as_str());
    enc.tag(b'{');
    enc.len(fields.len());
    for (name, value, role) in fields {
        enc.str(name);
        match role {
            FieldRole::Messages => enc.array_of(value, Shape::Message),
            FieldRole::System => match value {
                Json::String(text) => enc.text_part_array(text),
                other => enc.array_of(other, Shape::Block),
            },
            FieldRole::Tools => enc.array_of(value, Shape::Marked),
            _ => enc.value(value),
        }
    }
    BodyDigest(enc.hasher.finalize().into())
}

/// An object's members sorted by name, each name once with its last value
/// (what parsing into a `serde_json::Map` keeps). O(n log n) for any input.
fn last_of_each_name<'j, 'a>(object: &'j Json<'a>) -> Vec<(&'j str, &'j Json<'a>)> {
    let Json::Object(members) = object else {
        return Vec::new();
    };
    let mut sorted: Vec<(&str, &Json<'a>)> = members.iter().map(|(k, v)| (k.as_ref(), v)).collect();
    // Stable: among equal names, document order is kept, so the last is last;
    // each repeat hands its value to the one kept before it.
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 = later.1;
        }
        same
    });
    sorted
}

/// What a custom key is scoped by, besides namespace, endpoint kind and provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomKeyScope {
    /// The model too: a custom key never answers a request for another model.
    #[default]
    Model,
    /// The namespace only: every model of the namespace shares the entry.
    Namespace,
}

/// Key of a caller-chosen custom key (`x-cache-key`): replaces the body, stays
/// inside the namespace, endpoint kind and provider (and the model, unless
/// `scope_by` is `Namespace`).
pub fn custom_key(scope: &KeyScope<'_>, custom: &str, scope_by: CustomKeyScope) -> CacheKey {
    let mode: &[u8] = match scope_by {
        CustomKeyScope::Model => b"custom-model",
        CustomKeyScope::Namespace => b"custom",
    };
    let mut enc = Encoder::new(scope, mode);
    enc.str(custom);
    enc.finish()
}

/// SHA-256 of a JSON value's canonical form under `tag`, for keys built
/// outside this module (MCP tool arguments): sorted keys (last of repeated
/// members), normalized numbers, and every member kept, `cache_control` too.
pub fn canonical_digest(tag: &str, value: &Json<'_>) -> [u8; 32] {
    let mut enc = Encoder {
        hasher: Sha256::new(),
    };
    enc.str(KEY_VERSION);
    enc.str(tag);
    enc.value(value);
    enc.hasher.finalize().into()
}

/// Where an object sits, which decides what its members mean.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Plain data: every member counts, `cache_control` included.
    Plain,
    /// A chat/Messages message: string `content` is normalized, array
    /// `content` holds content blocks.
    Message,
    /// A provider content block: its own `cache_control` is a marker; a
    /// `content` array (a `tool_result`'s) holds content blocks again.
    Block,
    /// A `tools` entry: its own `cache_control` is a marker.
    Marked,
}

/// Streams the canonical form straight into SHA-256. (An own stack buffer in
/// front of the hasher was measured slower: `sha2` buffers blocks already.)
struct Encoder {
    hasher: Sha256,
}

impl Encoder {
    fn new(scope: &KeyScope<'_>, mode: &[u8]) -> Self {
        let mut enc = Encoder {
            hasher: Sha256::new(),
        };
        enc.str(KEY_VERSION);
        enc.str(scope.namespace);
        enc.str(scope.kind.as_str());
        enc.str(scope.provider);
        // Namespace-scoped custom keys are model-independent by choice.
        if mode != b"custom" {
            enc.str(scope.model);
        }
        enc.bytes(mode);
        enc
    }

    fn finish(self) -> CacheKey {
        CacheKey(self.hasher.finalize().into())
    }

    fn tag(&mut self, t: u8) {
        self.hasher.update([t]);
    }

    fn len(&mut self, n: usize) {
        self.hasher.update((n as u64).to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.hasher.update(b);
    }

    fn str(&mut self, s: &str) {
        self.tag(b's');
        self.bytes(s.as_bytes());
    }

    /// Numbers hash as their decimal text (`Display`), integral floats as
    /// integers; formatted on the stack.
    fn number(&mut self, n: &Number) {
        self.tag(b'#');
        let mut ints = itoa::Buffer::new();
        if let Some(i) = n.as_i64() {
            self.bytes(ints.format(i).as_bytes());
        } else if let Some(u) = n.as_u64() {
            self.bytes(ints.format(u).as_bytes());
        } else if let Some(f) = n.as_f64() {
            // Integral floats within the exact range print as integers.
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                self.bytes(ints.format(f as i64).as_bytes());
            } else {
                let mut text = StackText::default();
                if std::fmt::Write::write_fmt(&mut text, format_args!("{f}")).is_ok() {
                    self.bytes(text.as_bytes());
                } else {
                    self.bytes(f.to_string().as_bytes());
                }
            }
        }
    }

    fn value(&mut self, v: &Json<'_>) {
        match v {
            Json::Null => self.tag(b'n'),
            Json::Bool(b) => self.tag(if *b { b't' } else { b'f' }),
            Json::Number(n) => self.number(n),
            Json::String(s) => self.str(s),
            Json::Array(items) => {
                self.tag(b'[');
                self.len(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Json::Object(_) => self.object(v, Shape::Plain),
        }
    }

    /// An array whose object items have `shape` (anything else: plain data).
    fn array_of(&mut self, v: &Json<'_>, shape: Shape) {
        match v {
            Json::Array(items) => {
                self.tag(b'[');
                self.len(items.len());
                for item in items {
                    if item.is_object() {
                        self.object(item, shape);
                    } else {
                        self.value(item);
                    }
                }
            }
            other => self.value(other),
        }
    }

    /// An object with sorted keys; `shape` says which members are markers
    /// and which hold content blocks. Only the object's own `cache_control`
    /// is ever dropped, never one nested in its data.
    fn object(&mut self, object: &Json<'_>, shape: Shape) {
        let mut entries = last_of_each_name(object);
        if matches!(shape, Shape::Block | Shape::Marked) {
            entries.retain(|(k, _)| *k != "cache_control");
        }
        self.tag(b'{');
        self.len(entries.len());
        for (k, v) in entries {
            self.str(k);
            match (shape, k, v) {
                (Shape::Message, "content", Json::String(text)) => self.text_part_array(text),
                (Shape::Message | Shape::Block, "content", Json::Array(_)) => {
                    self.array_of(v, Shape::Block)
                }
                _ => self.value(v),
            }
        }
    }

    /// Exactly the encoding of `[{"text": text, "type": "text"}]`.
    fn text_part_array(&mut self, text: &str) {
        self.tag(b'[');
        self.len(1);
        self.tag(b'{');
        self.len(2);
        self.str("text");
        self.str(text);
        self.str("type");
        self.str("text");
    }
}

/// A short `Display` rendering without allocating; refuses (and the caller
/// falls back to `String`) when the text is longer than the buffer.
#[derive(Default)]
struct StackText {
    buf: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn scope(ns: &str) -> KeyScope<'_> {
        KeyScope {
            namespace: ns,
            kind: EndpointKind::Chat,
            provider: "openai",
            model: "gpt-4o",
        }
    }

    fn key(body: Value) -> CacheKey {
        body_key(&scope("ns"), &Json::from_value(&body))
    }

    fn base() -> Value {
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut b = base();
        b[field] = value;
        b
    }

    #[test]
    fn deterministic_and_hex() {
        assert_eq!(key(base()), key(base()));
        let k = key(base());
        assert_eq!(k.hex(), hex::encode(k.0));
    }

    /// The canonical form is a stored format (Redis entries outlive a
    /// process): this pins it to a hash computed independently from the
    /// format's definition (a 40-line Python encoder, quoted in the message of
    /// the commit that introduced key v3), covering floats, integers, a long
    /// string, an excluded field, content normalization, markers dropped on
    /// a content block and a tools entry, and a schema property named
    /// `cache_control` kept.
    #[test]
    fn canonical_form_is_stable() {
        let long = "You are terse. ".repeat(40);
        let k = key(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": long},
                {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"cache_control": 1}},
                       "cache_control": {"type": "ephemeral"}}],
            "temperature": 0.7, "max_tokens": 100, "top_p": 1.0, "user": "u1"
        }));
        assert_eq!(
            k.hex(),
            "1aa2c8ecb62ab2d31b20f8f4de605ccd3ac9af35285eaaf416b6c471d9e96d06"
        );
    }

    /// A repeated member keys like its last value (what the upstream's
    /// JSON parser, like serde_json's `Map`, would see).
    #[test]
    fn repeated_members_key_as_their_last_value() {
        let parse =
            |text: &'static str| body_key(&scope("ns"), &Json::parse(text.as_bytes()).unwrap());
        let once =
            parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1}"#);
        let twice = parse(
            r#"{"temperature":0,"model":"m","messages":[{"role":"user","content":"x","content":"hi"}],"temperature":1}"#,
        );
        assert_eq!(once, twice);
        let other = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1,"temperature":0}"#,
        );
        assert_ne!(once, other);
    }

    #[test]
    fn key_order_does_not_matter() {
        let a = json!({"temperature": 0.2, "messages": [{"content": "hi", "role": "user"}], "model": "gpt-4o"});
        assert_eq!(key(a), key(base()));
    }

    #[test]
    fn numbers_are_normalized() {
        assert_eq!(key(with("seed", json!(0))), key(with("seed", json!(0.0))));
        assert_eq!(key(with("seed", json!(100))), key(with("seed", json!(1e2))));
        assert_ne!(key(with("seed", json!(1))), key(with("seed", json!(1.5))));
    }

    #[test]
    fn string_content_equals_text_part_array() {
        let parts = with(
            "messages",
            json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
        );
        assert_eq!(key(parts), key(base()));
        let other = with(
            "messages",
            json!([{"role": "user", "content": [{"type": "text", "text": "ho"}]}]),
        );
        assert_ne!(key(other), key(base()));
    }

    #[test]
    fn excluded_fields_do_not_change_the_key() {
        for (field, value) in [
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("user", json!("u-1")),
            ("metadata", json!({"a": "b"})),
            ("store", json!(true)),
            ("prompt_cache_key", json!("pck")),
            ("prompt_cache_retention", json!("24h")),
            ("cache", json!({"ttl": 5})),
        ] {
            assert_eq!(key(with(field, value)), key(base()), "{field}");
        }
    }

    #[test]
    fn null_fields_count_as_absent() {
        assert_eq!(key(with("seed", Value::Null)), key(base()));
    }

    #[test]
    fn cache_control_markers_are_ignored() {
        let marked = with(
            "messages",
            json!([{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]),
        );
        assert_eq!(key(marked), key(base()));
    }

    #[test]
    fn markers_are_dropped_only_where_providers_define_them() {
        let s = KeyScope {
            kind: EndpointKind::Messages,
            ..scope("ns")
        };
        let k = |b: Value| body_key(&s, &Json::from_value(&b));
        let marker = json!({"type": "ephemeral"});
        let body = |m: Option<&Value>| {
            let mut tool_result = json!({"type": "tool_result", "tool_use_id": "t1",
                "content": [{"type": "text", "text": "42"}]});
            let mut text = json!({"type": "text", "text": "go"});
            let mut system = json!({"type": "text", "text": "be brief"});
            let mut tool = json!({"name": "calc", "input_schema": {"type": "object"}});
            let mut b = json!({"model": "claude", "max_tokens": 10});
            if let Some(m) = m {
                tool_result["content"][0]["cache_control"] = m.clone();
                tool_result["cache_control"] = m.clone();
                text["cache_control"] = m.clone();
                system["cache_control"] = m.clone();
                tool["cache_control"] = m.clone();
                b["cache_control"] = m.clone();
            }
            b["system"] = json!([system]);
            b["tools"] = json!([tool]);
            b["messages"] = json!([
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "calc", "input": {"x": 1}}]},
                {"role": "user", "content": [tool_result, text]}
            ]);
            b
        };
        assert_eq!(k(body(Some(&marker))), k(body(None)));

        // Elsewhere `cache_control` is data and changes the key.
        let base = body(None);
        let mut in_input = base.clone();
        in_input["messages"][0]["content"][0]["input"]["cache_control"] = marker.clone();
        let mut in_message = base.clone();
        in_message["messages"][1]["cache_control"] = marker.clone();
        let mut in_schema = base.clone();
        in_schema["tools"][0]["input_schema"]["cache_control"] = marker.clone();
        let mut in_unknown = base.clone();
        in_unknown["vendor_options"] = json!({"cache_control": marker.clone()});
        let mut in_block_data = base.clone();
        in_block_data["messages"][1]["content"][1]["citations"] = json!([{"cache_control": 1}]);
        for (name, changed) in [
            ("tool_use.input", in_input),
            ("message object", in_message),
            ("schema", in_schema),
            ("unknown field", in_unknown),
            ("block data", in_block_data),
        ] {
            assert_ne!(k(changed), k(base.clone()), "{name}");
        }

        // Chat: tool-call arguments and tool message JSON are data.
        let args = |a: &str| {
            with(
                "messages",
                json!([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                    "function": {"name": "f", "arguments": a}}]},
                    {"role": "tool", "tool_call_id": "c", "content": a}]),
            )
        };
        assert_ne!(key(args(r#"{"cache_control":1}"#)), key(args("{}")));
    }

    #[test]
    fn answer_headers_change_the_key() {
        let digest = body_digest(EndpointKind::Chat, &Json::from_value(&base()));
        let s = scope("ns");
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            scoped_key_with(&s, &digest, |sink| {
                for (n, v) in pairs {
                    sink(n, v.as_bytes());
                }
            })
        };
        assert_eq!(with(&[]), scoped_key(&s, &digest));
        let beta = with(&[("anthropic-beta", "x")]);
        assert_ne!(beta, scoped_key(&s, &digest));
        assert_ne!(beta, with(&[("anthropic-beta", "y")]));
        assert_ne!(beta, with(&[("openai-beta", "x")]));
        assert_ne!(
            with(&[("a", "bc")]),
            with(&[("ab", "c")]),
            "length-prefixed"
        );
    }

    #[test]
    fn cache_control_inside_a_schema_counts() {
        let tool = |props: Value| {
            with(
                "tools",
                json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": props}}}]),
            )
        };
        let a = tool(json!({"cache_control": {"type": "string"}}));
        let b = tool(json!({}));
        assert_ne!(key(a), key(b));
    }

    #[test]
    fn output_affecting_fields_change_the_key() {
        let b = key(base());
        for (field, value) in [
            ("temperature", json!(0.3)),
            ("top_p", json!(0.5)),
            ("max_tokens", json!(10)),
            ("max_completion_tokens", json!(10)),
            ("stop", json!(["x"])),
            ("seed", json!(1)),
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(2)),
            ("logit_bias", json!({"1": 5})),
            ("presence_penalty", json!(0.1)),
            ("frequency_penalty", json!(0.1)),
            ("reasoning_effort", json!("low")),
            ("parallel_tool_calls", json!(false)),
            ("modalities", json!(["text"])),
            ("response_format", json!({"type": "json_object"})),
            (
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
            ),
            ("tool_choice", json!("auto")),
            ("some_unknown_vendor_field", json!(1)),
        ] {
            assert_ne!(key(with(field, value)), b, "{field}");
        }
    }

    #[test]
    fn messages_fields_change_the_key() {
        let b = key(base());
        for messages in [
            json!([{"role": "user", "content": "hi", "name": "bob"}]),
            json!([{"role": "system", "content": "hi"}]),
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]),
            json!([{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]),
            json!([{"role": "tool", "tool_call_id": "c", "content": "hi"}]),
        ] {
            assert_ne!(key(with("messages", messages)), b);
        }
    }

    #[test]
    fn scope_parts_change_the_key() {
        let body = base();
        let map = &Json::from_value(&body);
        let b = body_key(&scope("ns"), map);
        assert_ne!(body_key(&scope("other"), map), b);
        let mut s = scope("ns");
        s.provider = "azure";
        assert_ne!(body_key(&s, map), b);
        let mut s = scope("ns");
        s.model = "gpt-4o-mini";
        assert_ne!(body_key(&s, map), b);
        let mut s = scope("ns");
        s.kind = EndpointKind::Embeddings;
        assert_ne!(body_key(&s, map), b);
    }

    #[test]
    fn custom_key_stays_in_namespace() {
        let m = CustomKeyScope::Model;
        let a = custom_key(&scope("ns"), "k", m);
        assert_eq!(a, custom_key(&scope("ns"), "k", m));
        assert_ne!(a, custom_key(&scope("other"), "k", m));
        assert_ne!(a, custom_key(&scope("ns"), "k2", m));
        assert_ne!(a, key(base()));
    }

    #[test]
    fn custom_key_scope_decides_about_the_model() {
        let other_model = KeyScope {
            model: "another-model",
            ..scope("ns")
        };
        let m = CustomKeyScope::Model;
        assert_ne!(
            custom_key(&scope("ns"), "k", m),
            custom_key(&other_model, "k", m)
        );
        let n = CustomKeyScope::Namespace;
        assert_eq!(
            custom_key(&scope("ns"), "k", n),
            custom_key(&other_model, "k", n)
        );
        assert_ne!(
            custom_key(&scope("ns"), "k", n),
            custom_key(&scope("ns"), "k", m)
        );
    }

    #[test]
    fn anthropic_messages_normalize_system_and_keep_stream() {
        let s = KeyScope {
            kind: EndpointKind::Messages,
            ..scope("ns")
        };
        let k = |b: Value| body_key(&s, &Json::from_value(&b));
        let base = json!({"model": "claude", "max_tokens": 10, "system": "be brief", "messages": [{"role": "user", "content": "hi"}]});
        let blocks = json!({"model": "claude", "max_tokens": 10,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
        assert_eq!(k(blocks), k(base.clone()));
        let mut streamed = base.clone();
        streamed["stream"] = json!(true);
        assert_ne!(k(streamed), k(base.clone()));
        let mut meta = base.clone();
        meta["metadata"] = json!({"user_id": "u"});
        assert_eq!(k(meta), k(base));
    }

    #[test]
    fn embeddings_exclude_user_only() {
        let s = KeyScope {
            kind: EndpointKind::Embeddings,
            ..scope("ns")
        };
        let k = |b: Value| body_key(&s, &Json::from_value(&b));
        let b = json!({"model": "e", "input": "x"});
        assert_eq!(
            k(json!({"model": "e", "input": "x", "user": "u"})),
            k(b.clone())
        );
        assert_ne!(
            k(json!({"model": "e", "input": "x", "encoding_format": "base64"})),
            k(b.clone())
        );
        assert_ne!(k(json!({"model": "e", "input": "y"})), k(b));
    }
}
