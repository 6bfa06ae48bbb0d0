//! Automatic prompt-cache injection: the provider's own prompt-caching fields, added
//! to a request on its way upstream when the caller did not set them.
//!
//! Anthropic ([`inject_anthropic`]): `cache_control: {"type":"ephemeral"}` breakpoints
//! on the last tool, the last system block and, in multi-turn conversations, the last
//! block of the message just before the newest user turn. A caller who placed any
//! `cache_control` has taken charge: nothing is injected. Anthropic's cache prefix
//! runs tools → system → messages, so the breakpoints are considered in that order,
//! and one whose prefix is estimated below `min_tokens` (the model's minimum
//! cacheable length) is skipped. Only the marker key is added, at the end of the
//! block object; no other byte of the prefix changes, except that a string `system`
//! or string message content that receives a breakpoint becomes a one-text-block
//! array (Anthropic treats both forms as the same prompt).
//!
//! OpenAI-compatible ([`inject_openai`]): a `prompt_cache_key` derived from the
//! namespace (already a hash of the caller's credential) and the stable prefix, so
//! requests sharing a prefix are routed to the same cache machines; for providers that
//! use `user` for cache affinity (Fireworks-style), that field instead.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tiktoken_rs::CoreBPE;

/// Anthropic accepts at most this many `cache_control` breakpoints per request.
pub const MAX_BREAKPOINTS: usize = 4;

/// Token estimate for an image or document block (Anthropic bills an image at about
/// width×height/750 tokens, ~1,600 at most). Overestimating only means a breakpoint
/// may be placed below the minimum, which Anthropic ignores at no cost.
const MEDIA_BLOCK_TOKENS: u64 = 1_600;

/// Text is tokenized in pieces of about this many bytes, so an estimate can stop as
/// soon as the minimum is reached instead of tokenizing a whole long prompt.
const TOKENIZE_PIECE_BYTES: usize = 8 * 1024;

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref()
}

/// cl100k tokens of `text`, stopping early once `enough` is reached.
fn count_tokens(text: &str, enough: u64) -> u64 {
    let Some(bpe) = bpe() else {
        // The tokenizer is compiled in; should it ever fail to build, ~4 bytes/token.
        return (text.len() as u64).div_ceil(4);
    };
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() && total < enough {
        let mut cut = rest.len().min(TOKENIZE_PIECE_BYTES);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        total += bpe.encode_ordinary(piece).len() as u64;
        rest = tail;
    }
    total
}

/// Estimated tokens of one content block (or tool definition), up to `enough`.
fn block_tokens(block: &Value, enough: u64) -> u64 {
    match block {
        Value::String(s) => count_tokens(s, enough),
        Value::Array(items) => {
            let mut total = 0u64;
            for item in items {
                if total >= enough {
                    break;
                }
                total += block_tokens(item, enough - total);
            }
            total
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("text") => count_tokens(
                o.get("text").and_then(Value::as_str).unwrap_or_default(),
                enough,
            ),
            Some("image" | "document") => MEDIA_BLOCK_TOKENS,
            Some("tool_result") => o.get("content").map_or(0, |c| block_tokens(c, enough)),
            _ => count_tokens(&serde_json::to_string(block).unwrap_or_default(), enough),
        },
        other => count_tokens(&other.to_string(), enough),
    }
}

/// Where a breakpoint goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spot {
    Tool(usize),
    /// A string `system` (converted to one block when marked).
    SystemString,
    SystemBlock(usize),
    /// A message's string content (converted to one block when marked).
    MessageString(usize),
    MessageBlock(usize, usize),
}

/// Whether the caller placed a `cache_control` anywhere Anthropic reads one.
fn caller_marked(body: &Map<String, Value>) -> bool {
    let has = |v: &Value| v.get("cache_control").is_some();
    let any_block = |v: Option<&Value>| {
        v.and_then(Value::as_array).is_some_and(|blocks| {
            blocks.iter().any(|b| {
                has(b)
                    || b.get("content")
                        .and_then(Value::as_array)
                        .is_some_and(|inner| inner.iter().any(has))
            })
        })
    };
    body.contains_key("cache_control")
        || any_block(body.get("tools"))
        || any_block(body.get("system"))
        || body
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|ms| ms.iter().any(|m| any_block(m.get("content"))))
}

/// Whether Anthropic accepts a `cache_control` on this block.
fn cacheable(block: &Value) -> bool {
    match block.get("type").and_then(Value::as_str) {
        Some("thinking" | "redacted_thinking") | None => false,
        Some("text") => block
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty()),
        Some(_) => block.is_object(),
    }
}

/// The last cacheable block of `content`, as a spot.
fn content_spot(
    content: Option<&Value>,
    string_spot: Spot,
    block_spot: impl Fn(usize) -> Spot,
) -> Option<Spot> {
    match content? {
        Value::String(s) if !s.is_empty() => Some(string_spot),
        Value::Array(blocks) => blocks.iter().rposition(cacheable).map(block_spot),
        _ => None,
    }
}

/// Adds Anthropic `cache_control` breakpoints (see the module doc); returns how many.
///
/// `min_tokens`: skip a breakpoint whose prefix (tools + system [+ messages up to
/// it]) is estimated below this many tokens (cl100k); `None` never skips.
pub fn inject_anthropic(body: &mut Map<String, Value>, min_tokens: Option<u64>) -> usize {
    if caller_marked(body) {
        return 0;
    }
    // Candidate spots, each with the number of prefix pieces it closes.
    // The cache prefix in Anthropic's order (tools → system → messages).
    let mut pieces: Vec<&Value> = Vec::new();
    let mut candidates: Vec<(Spot, usize)> = Vec::new();
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        pieces.extend(tools.iter());
        if let Some(last) = tools.iter().rposition(Value::is_object) {
            candidates.push((Spot::Tool(last), pieces.len()));
        }
    }
    let system = body.get("system");
    if let Some(spot) = content_spot(system, Spot::SystemString, Spot::SystemBlock) {
        if let Some(s) = system {
            pieces.push(s);
        }
        candidates.push((spot, pieces.len()));
    } else if let Some(s) = system {
        pieces.push(s);
    }
    let messages: &[Value] = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let is_user = |m: &Value| m.get("role").and_then(Value::as_str) == Some("user");
    if messages.iter().filter(|m| is_user(m)).count() > 1 {
        if let Some(target) = messages
            .iter()
            .rposition(is_user)
            .and_then(|newest| newest.checked_sub(1))
        {
            let spot = content_spot(
                messages[target].get("content"),
                Spot::MessageString(target),
                |b| Spot::MessageBlock(target, b),
            );
            if let Some(spot) = spot {
                pieces.extend(messages[..=target].iter().filter_map(|m| m.get("content")));
                candidates.push((spot, pieces.len()));
            }
        }
    }

    let chosen = choose(&pieces, &candidates, min_tokens);
    let mut added = 0;
    for spot in chosen.into_iter().take(MAX_BREAKPOINTS) {
        if mark(body, spot) {
            added += 1;
        }
    }
    added
}

/// The candidates whose prefix reaches `min_tokens`. Prefixes grow with each
/// candidate, so counting stops at the first one that reaches the minimum.
fn choose(pieces: &[&Value], candidates: &[(Spot, usize)], min_tokens: Option<u64>) -> Vec<Spot> {
    let Some(min) = min_tokens else {
        return candidates.iter().map(|(s, _)| *s).collect();
    };
    let mut counted = 0usize;
    let mut tokens = 0u64;
    let mut chosen = Vec::new();
    for (spot, end) in candidates {
        while tokens < min && counted < *end {
            tokens += block_tokens(pieces[counted], min - tokens);
            counted += 1;
        }
        if tokens >= min {
            chosen.push(*spot);
        }
    }
    chosen
}

fn insert_marker(block: &mut Value) -> bool {
    match block {
        Value::Object(o) => {
            o.insert("cache_control".into(), ephemeral());
            true
        }
        _ => false,
    }
}

fn text_block_array(text: String) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), "text".into());
    block.insert("text".into(), text.into());
    block.insert("cache_control".into(), ephemeral());
    Value::Array(vec![Value::Object(block)])
}

fn mark(body: &mut Map<String, Value>, spot: Spot) -> bool {
    match spot {
        Spot::Tool(i) => body
            .get_mut("tools")
            .and_then(|t| t.get_mut(i))
            .is_some_and(insert_marker),
        Spot::SystemBlock(i) => body
            .get_mut("system")
            .and_then(|s| s.get_mut(i))
            .is_some_and(insert_marker),
        Spot::SystemString => match body.get_mut("system") {
            Some(system @ Value::String(_)) => {
                let text = std::mem::take(system)
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                *system = text_block_array(text);
                true
            }
            _ => false,
        },
        Spot::MessageBlock(m, b) => body
            .get_mut("messages")
            .and_then(|ms| ms.get_mut(m))
            .and_then(|msg| msg.get_mut("content"))
            .and_then(|c| c.get_mut(b))
            .is_some_and(insert_marker),
        Spot::MessageString(m) => {
            let content = body
                .get_mut("messages")
                .and_then(|ms| ms.get_mut(m))
                .and_then(|msg| msg.get_mut("content"));
            match content {
                Some(content @ Value::String(_)) => {
                    let text = std::mem::take(content)
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    *content = text_block_array(text);
                    true
                }
                _ => false,
            }
        }
    }
}

/// The `prompt_cache_key` for an OpenAI-compatible request: `reprise-` + 32 hex of
/// SHA-256 over the namespace, the model and the stable prefix (tools and the leading
/// system/developer messages). The namespace is already a hash, so no credential can
/// appear in (or be recovered from) the key.
pub fn openai_prompt_cache_key(namespace: &str, body: &Map<String, Value>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"reprise-prompt-cache-key-v1\0");
    hasher.update(namespace.as_bytes());
    hasher.update(b"\0");
    if let Some(model) = body.get("model").and_then(Value::as_str) {
        hasher.update(model.as_bytes());
    }
    hasher.update(b"\0");
    if let Some(tools) = body.get("tools").filter(|t| !t.is_null()) {
        // Writing into a hasher cannot fail.
        let _ = serde_json::to_writer(&mut hasher, tools);
    }
    hasher.update(b"\0");
    let messages: &[Value] = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "system" && role != "developer" {
            break;
        }
        hasher.update(role.as_bytes());
        hasher.update(b"\0");
        if let Some(content) = m.get("content") {
            let _ = serde_json::to_writer(&mut hasher, content);
        }
        hasher.update(b"\0");
    }
    let digest = hasher.finalize();
    format!("reprise-{}", &hex::encode(digest)[..32])
}

/// Sets `prompt_cache_key` (or `user`, when `use_user_field`) and, when given,
/// `prompt_cache_retention`, unless the caller already chose any of them. Returns
/// whether anything was added. Pass `retention: None` for providers that do not
/// know `prompt_cache_retention`.
pub fn inject_openai(
    body: &mut Map<String, Value>,
    namespace: &str,
    retention: Option<&str>,
    use_user_field: bool,
) -> bool {
    let caller_chose = body.contains_key("prompt_cache_key")
        || body.contains_key("prompt_cache_retention")
        || (use_user_field && body.contains_key("user"));
    if caller_chose {
        return false;
    }
    let key = openai_prompt_cache_key(namespace, body);
    let field = if use_user_field {
        "user"
    } else {
        "prompt_cache_key"
    };
    body.insert(field.into(), key.into());
    if let Some(retention) = retention {
        body.insert("prompt_cache_retention".into(), retention.into());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn inject(v: Value, min: Option<u64>) -> (Value, usize) {
        let mut body = obj(v);
        let n = inject_anthropic(&mut body, min);
        (Value::Object(body), n)
    }

    /// Count of `cache_control` markers, not looking inside tool schemas (where a
    /// property may be named `cache_control`).
    fn markers(v: &Value) -> usize {
        match v {
            Value::Object(o) => {
                usize::from(o.contains_key("cache_control"))
                    + o.iter()
                        .filter(|(k, _)| k.as_str() != "input_schema")
                        .map(|(_, v)| markers(v))
                        .sum::<usize>()
            }
            Value::Array(a) => a.iter().map(markers).sum(),
            _ => 0,
        }
    }

    /// `after` equals `before` except for `cache_control` keys appended at the end of
    /// objects and string contents turned into one text block.
    fn same_except_markers(before: &Value, after: &Value) -> bool {
        match (before, after) {
            (Value::String(s), Value::Array(a)) => {
                a.len() == 1
                    && a[0]["type"] == "text"
                    && a[0]["text"] == *s
                    && a[0]["cache_control"] == ephemeral()
                    && a[0].as_object().is_some_and(|o| o.len() == 3)
            }
            (Value::Object(b), Value::Object(a)) => {
                let mut keys: Vec<&String> = a.keys().collect();
                if a.len() == b.len() + 1 {
                    if keys.last().map(|k| k.as_str()) != Some("cache_control") {
                        return false;
                    }
                    keys.pop();
                }
                keys.len() == b.len()
                    && keys.iter().zip(b.keys()).all(|(x, y)| *x == y)
                    && b.iter().all(|(k, v)| same_except_markers(v, &a[k]))
            }
            (Value::Array(b), Value::Array(a)) => {
                a.len() == b.len() && b.iter().zip(a).all(|(x, y)| same_except_markers(x, y))
            }
            (b, a) => a == b,
        }
    }

    fn tools(n: usize) -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"name": format!("t{i}"), "description": "d", "input_schema": {"type": "object", "properties": {"cache_control": {"type": "string"}}}}))
                .collect(),
        )
    }

    #[test]
    fn string_system_single_turn() {
        let (out, n) = inject(
            json!({"model": "c", "max_tokens": 5, "system": "be brief",
                   "messages": [{"role": "user", "content": "hi"}]}),
            None,
        );
        assert_eq!(n, 1);
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(out["messages"], json!([{"role": "user", "content": "hi"}]));
    }

    #[test]
    fn block_system_tools_multi_turn() {
        let before = json!({"model": "c", "tools": tools(2),
            "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}, {"type": "text", "text": ""}],
            "messages": [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"},
                {"role": "user", "content": [{"type": "text", "text": "q2"}]}]});
        let (out, n) = inject(before.clone(), None);
        assert_eq!(n, 3);
        assert_eq!(out["tools"][1]["cache_control"], ephemeral());
        assert!(out["tools"][0].get("cache_control").is_none());
        // The empty last block cannot carry a marker: the one before it does.
        assert_eq!(out["system"][1]["cache_control"], ephemeral());
        assert_eq!(
            out["messages"][1]["content"],
            json!([{"type": "text", "text": "a1", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(out["messages"][2], before["messages"][2]);
        assert!(same_except_markers(&before, &out));
    }

    #[test]
    fn prefix_bytes_unchanged() {
        let before = json!({"model": "c", "max_tokens": 9,
            "tools": [{"name": "z", "input_schema": {"type": "object"}, "description": "x"}],
            "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "q1"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "tool_use", "id": "tu", "name": "z", "input": {"b": 1, "a": 2}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu", "content": "r"}]}],
            "temperature": 0.5});
        let (out, n) = inject(before.clone(), None);
        assert_eq!(n, 3);
        let marker = r#","cache_control":{"type":"ephemeral"}"#;
        let before_s = serde_json::to_string(&before).unwrap();
        let after_s = serde_json::to_string(&out).unwrap();
        assert_eq!(after_s.matches(marker).count(), 3);
        assert_eq!(after_s.replace(marker, ""), before_s);
        // Everything before the first marker is byte-identical.
        let first = after_s.find(marker).unwrap();
        assert_eq!(&after_s[..first], &before_s[..first]);
        assert_eq!(
            out["messages"][1]["content"][1]["cache_control"],
            ephemeral()
        );
    }

    #[test]
    fn no_system_no_tools() {
        let (out, n) = inject(
            json!({"model": "c", "messages": [{"role": "user", "content": "only"}]}),
            None,
        );
        assert_eq!(n, 0);
        assert_eq!(markers(&out), 0);
        let (out, n) = inject(
            json!({"model": "c", "messages": [
                {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}),
            None,
        );
        // The newest user turn is messages[2]: the breakpoint goes on messages[1].
        assert_eq!(n, 1);
        assert_eq!(
            out["messages"][1]["content"][0]["cache_control"],
            ephemeral()
        );
    }

    #[test]
    fn caller_marked_anywhere_is_untouched() {
        let marked = [
            json!({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
                   "tools": tools(1), "messages": [{"role": "user", "content": "x"}]}),
            json!({"system": "s", "tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}],
                   "messages": [{"role": "user", "content": "x"}]}),
            json!({"system": "s", "messages": [
                {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
                {"role": "assistant", "content": "y"}, {"role": "user", "content": "z"}]}),
            json!({"system": "s", "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [
                    {"type": "text", "text": "r", "cache_control": {"type": "ephemeral"}}]}]}]}),
            json!({"system": "s", "cache_control": {"type": "ephemeral"},
                   "messages": [{"role": "user", "content": "x"}]}),
            json!({"tools": tools(4).as_array().unwrap().iter().map(|t| {
                let mut t = t.clone();
                t["cache_control"] = ephemeral();
                t
            }).collect::<Vec<_>>(), "system": "s", "messages": [{"role": "user", "content": "x"}]}),
        ];
        for body in marked {
            let (out, n) = inject(body.clone(), None);
            assert_eq!(n, 0, "{body}");
            assert_eq!(out, body);
        }
        // A property named `cache_control` inside a schema is not a marker.
        let (_, n) = inject(json!({"tools": tools(1), "messages": []}), None);
        assert_eq!(n, 1);
    }

    #[test]
    fn min_tokens_skips_short_prefixes() {
        let long = "word ".repeat(1500);
        let body = json!({"tools": tools(1), "system": long,
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                         {"role": "user", "content": "c"}]});
        let (out, n) = inject(body.clone(), Some(1024));
        // Tools alone are far below 1024 tokens; with the system prompt they are not.
        assert_eq!(n, 2);
        assert!(out["tools"][0].get("cache_control").is_none());
        assert_eq!(out["system"][0]["cache_control"], ephemeral());
        assert_eq!(
            out["messages"][1]["content"][0]["cache_control"],
            ephemeral()
        );
        let (_, n) = inject(body.clone(), Some(100_000));
        assert_eq!(n, 0);
        let (_, n) = inject(body, Some(0));
        assert_eq!(n, 3);
        let short = json!({"system": "tiny", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(inject(short.clone(), Some(1024)).1, 0);
        assert_eq!(inject(short, None).1, 1);
        let image = json!({"system": "s", "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "user", "content": "what is it?"}]});
        // Two user messages in a row: the newest user turn's predecessor is a user message.
        let (out, n) = inject(image, Some(1024));
        assert_eq!(n, 1);
        assert_eq!(
            out["messages"][0]["content"][0]["cache_control"],
            ephemeral()
        );
    }

    #[test]
    fn token_count_is_cl100k_and_stops_early() {
        assert_eq!(count_tokens("hello world", u64::MAX), 2);
        let long = "abc ".repeat(100_000);
        assert!(count_tokens(&long, 10) < 3_000);
        let n = count_tokens(&"abc ".repeat(1000), u64::MAX);
        assert!((1000..=1001).contains(&n), "{n}");
    }

    /// A tiny deterministic generator for the property test.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    fn gen_content(r: &mut Lcg, role: &str) -> Value {
        match r.next(4) {
            0 => json!(format!("text {}", r.next(100))),
            1 => json!(""),
            2 => Value::Array(
                (0..r.next(4))
                    .map(|i| match (role, r.next(4)) {
                        ("assistant", 0) => json!({"type": "thinking", "thinking": "t", "signature": "s"}),
                        ("assistant", 1) => json!({"type": "tool_use", "id": format!("tu{i}"), "name": "f", "input": {}}),
                        ("user", 0) => json!({"type": "tool_result", "tool_use_id": "tu", "content": "r"}),
                        (_, 2) => json!({"type": "text", "text": ""}),
                        _ => json!({"type": "text", "text": format!("b{i}")}),
                    })
                    .collect(),
            ),
            _ => json!([{"type": "text", "text": "x"}]),
        }
    }

    #[test]
    fn property_never_more_than_four_and_prefix_preserved() {
        let mut r = Lcg(42);
        for _ in 0..3000 {
            let mut body = Map::new();
            body.insert("model".into(), "c".into());
            if r.next(2) == 0 {
                body.insert("tools".into(), tools(r.next(4) as usize));
            }
            match r.next(4) {
                0 => {}
                1 => {
                    body.insert("system".into(), gen_content(&mut r, "system"));
                }
                2 => {
                    body.insert("system".into(), json!("sys"));
                }
                _ => {
                    body.insert("system".into(), json!([{"type": "text", "text": "s"}]));
                }
            }
            let messages: Vec<Value> = (0..r.next(7))
                .map(|_| {
                    let role = if r.next(2) == 0 { "user" } else { "assistant" };
                    json!({"role": role, "content": gen_content(&mut r, role)})
                })
                .collect();
            body.insert("messages".into(), Value::Array(messages));
            // Sometimes the caller marks one to four blocks itself.
            let caller_marks = r.next(5) == 0;
            if caller_marks {
                if let Some(Value::Array(ts)) = body.get_mut("tools") {
                    for t in ts.iter_mut().take(4) {
                        t["cache_control"] = ephemeral();
                    }
                }
            }
            let before = Value::Object(body.clone());
            let min = match r.next(3) {
                0 => None,
                1 => Some(0),
                _ => Some(r.next(2000)),
            };
            let n = inject_anthropic(&mut body, min);
            let after = Value::Object(body);
            let existing = markers(&before);
            assert!(n < MAX_BREAKPOINTS, "{n}");
            assert_eq!(markers(&after), existing + n, "{before}");
            assert!(markers(&after) <= MAX_BREAKPOINTS);
            if existing > 0 {
                assert_eq!(n, 0);
                assert_eq!(after, before);
            }
            assert!(same_except_markers(&before, &after), "{before}\n{after}");
            // Inserting again never adds more: the body is now caller-marked.
            let mut again = obj(after.clone());
            if n > 0 {
                assert_eq!(inject_anthropic(&mut again, min), 0);
            }
        }
    }

    #[test]
    fn openai_key_is_stable_and_prefix_scoped() {
        let a = obj(
            json!({"model": "gpt-4o", "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "q1"}]}),
        );
        let mut b = a.clone();
        b["messages"][1]["content"] = json!("a different question");
        b.insert("temperature".into(), json!(0.2));
        let ka = openai_prompt_cache_key("ns1", &a);
        assert!(ka.starts_with("reprise-"));
        assert_eq!(ka.len(), "reprise-".len() + 32);
        assert!(ka["reprise-".len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            ka,
            openai_prompt_cache_key("ns1", &b),
            "same prefix, same key"
        );
        assert_ne!(
            ka,
            openai_prompt_cache_key("ns2", &a),
            "namespaces never share"
        );
        let mut c = a.clone();
        c["messages"][0]["content"] = json!("other system");
        assert_ne!(ka, openai_prompt_cache_key("ns1", &c));
        let mut d = a.clone();
        d.remove("tools");
        assert_ne!(ka, openai_prompt_cache_key("ns1", &d));
        // A credential-like namespace never appears in the key.
        let secret = "sk-live-abcdef0123456789";
        assert!(!openai_prompt_cache_key(secret, &a).contains("sk-live"));
    }

    #[test]
    fn inject_openai_respects_the_caller() {
        let base = obj(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}));
        let mut body = base.clone();
        assert!(inject_openai(&mut body, "ns", Some("24h"), false));
        assert_eq!(
            body["prompt_cache_key"],
            json!(openai_prompt_cache_key("ns", &base))
        );
        assert_eq!(body["prompt_cache_retention"], "24h");
        assert!(body.get("user").is_none());
        // Keys are appended: the original fields keep their order.
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "model",
                "messages",
                "prompt_cache_key",
                "prompt_cache_retention"
            ]
        );

        let mut fireworks = base.clone();
        assert!(inject_openai(&mut fireworks, "ns", None, true));
        assert_eq!(
            fireworks["user"],
            json!(openai_prompt_cache_key("ns", &base))
        );
        assert!(fireworks.get("prompt_cache_key").is_none());
        assert!(fireworks.get("prompt_cache_retention").is_none());

        for (field, value, use_user) in [
            ("prompt_cache_key", json!("mine"), false),
            ("prompt_cache_retention", json!("in-memory"), false),
            ("user", json!("u1"), true),
            ("prompt_cache_key", json!("mine"), true),
        ] {
            let mut body = base.clone();
            body.insert(field.into(), value);
            let snapshot = body.clone();
            assert!(
                !inject_openai(&mut body, "ns", Some("24h"), use_user),
                "{field}"
            );
            assert_eq!(body, snapshot);
        }
        // A caller `user` does not stop a prompt_cache_key for OpenAI itself.
        let mut with_user = base.clone();
        with_user.insert("user".into(), json!("u1"));
        assert!(inject_openai(&mut with_user, "ns", None, false));
        assert_eq!(with_user["user"], "u1");
    }
}
