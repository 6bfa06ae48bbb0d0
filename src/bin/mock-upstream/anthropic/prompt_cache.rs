//! The prompt-cache imitation: Anthropic's breakpoints (with its 20-block
//! lookback) and DeepSeek's automatic whole-message prefixes, over one set of
//! remembered prefix hashes.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::message::Usage;
use crate::text::message_text;

/// The prompt cache forgets everything past this many prefixes (bounds memory
/// under long load tests).
const MAX_REMEMBERED_PREFIXES: usize = 1_000_000;

/// How many block boundaries before a breakpoint are checked for a cache hit
/// (Anthropic documents about 20).
const LOOKBACK_BLOCKS: usize = 20;

/// Hashes of the prompt prefixes seen so far (Anthropic breakpoints, DeepSeek
/// message prefixes).
#[derive(Debug, Default)]
pub struct PromptCache {
    seen: Mutex<HashSet<[u8; 32]>>,
}

impl PromptCache {
    fn lock(&self) -> MutexGuard<'_, HashSet<[u8; 32]>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reset(&self) {
        self.lock().clear();
    }

    /// The largest position among `lookups` whose prefix hash was written before;
    /// then writes `writes`.
    fn hit_then_write(&self, lookups: &[(usize, [u8; 32])], writes: &[[u8; 32]]) -> Option<usize> {
        let mut seen = self.lock();
        let hit = lookups
            .iter()
            .filter(|(_, h)| seen.contains(h))
            .map(|(p, _)| *p)
            .max();
        if seen.len() + writes.len() > MAX_REMEMBERED_PREFIXES {
            seen.clear();
        }
        seen.extend(writes.iter().copied());
        hit
    }
}

fn tokens_of_chars(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// One piece of the prompt, in cache-prefix order.
struct Segment {
    /// The bytes hashed for the prefix (`cache_control` removed).
    bytes: Vec<u8>,
    tokens: u64,
    breakpoint: bool,
}

fn has_marker(block: &Value) -> bool {
    block.get("cache_control").is_some()
        || block
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|inner| inner.iter().any(|b| b.get("cache_control").is_some()))
}

fn segment(tag: &str, block: &Value) -> Segment {
    // String content is the same prompt as one text block.
    let mut stripped = match block {
        Value::String(s) => json!({"type": "text", "text": s}),
        other => other.clone(),
    };
    if let Value::Object(o) = &mut stripped {
        o.remove("cache_control");
        if let Some(Value::Array(inner)) = o.get_mut("content") {
            for b in inner.iter_mut().filter_map(Value::as_object_mut) {
                b.remove("cache_control");
            }
        }
    }
    let mut bytes = tag.as_bytes().to_vec();
    bytes.push(0);
    let _ = serde_json::to_writer(&mut bytes, &stripped);
    let tokens = match block {
        Value::String(s) => tokens_of_chars(s.chars().count()),
        _ if block.get("type").and_then(Value::as_str) == Some("text") => tokens_of_chars(
            block
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .count(),
        ),
        _ => tokens_of_chars(bytes.len().saturating_sub(tag.len() + 1)),
    };
    Segment {
        bytes,
        tokens,
        breakpoint: has_marker(block),
    }
}

/// The prompt as segments: each tool, each system block, each message block.
fn segments(body: &Map<String, Value>) -> Vec<Segment> {
    fn push_content(tag: &str, content: &Value, out: &mut Vec<Segment>) {
        match content {
            Value::Array(blocks) => out.extend(blocks.iter().map(|b| segment(tag, b))),
            other => out.push(segment(tag, other)),
        }
    }
    let mut out = Vec::new();
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(segment("tool", tool));
    }
    if let Some(system) = body.get("system") {
        push_content("system", system, &mut out);
    }
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if let Some(content) = m.get("content") {
            push_content(role, content, &mut out);
        }
    }
    if body.contains_key("cache_control") {
        // Top-level (automatic) caching: a breakpoint on the last block.
        if let Some(last) = out.last_mut() {
            last.breakpoint = true;
        }
    }
    out
}

/// Input-side usage with the prompt-cache imitation.
pub fn input_usage(body: &Map<String, Value>, model: &str, cache: &PromptCache) -> Usage {
    let segs = segments(body);
    let total: u64 = segs.iter().map(|s| s.tokens).sum::<u64>().max(1);
    let mut hasher = Sha256::new();
    hasher.update(b"anthropic\0");
    hasher.update(model.as_bytes());
    // (prefix hash, cumulative tokens) at every block boundary.
    let mut prefixes: Vec<([u8; 32], u64)> = Vec::with_capacity(segs.len());
    let mut cumulative = 0u64;
    for s in &segs {
        hasher.update(&s.bytes);
        cumulative += s.tokens;
        prefixes.push((hasher.clone().finalize().into(), cumulative));
    }
    let breakpoints: Vec<usize> = (0..segs.len()).filter(|i| segs[*i].breakpoint).collect();
    let Some(&last) = breakpoints.last() else {
        return Usage {
            input: total,
            ..Usage::default()
        };
    };
    // Like Anthropic: a breakpoint also finds entries written at any of the
    // LOOKBACK_BLOCKS block boundaries before it; entries are written at breakpoints.
    let mut lookups: Vec<(usize, [u8; 32])> = Vec::new();
    for &b in &breakpoints {
        let from = b.saturating_sub(LOOKBACK_BLOCKS - 1);
        lookups.extend(
            prefixes[from..=b]
                .iter()
                .enumerate()
                .map(|(i, (h, _))| (from + i, *h)),
        );
    }
    let writes: Vec<[u8; 32]> = breakpoints.iter().map(|b| prefixes[*b].0).collect();
    let read = cache
        .hit_then_write(&lookups, &writes)
        .map_or(0, |p| prefixes[p].1);
    let creation = prefixes[last].1.saturating_sub(read);
    Usage {
        input: total.saturating_sub(read + creation),
        cache_creation: creation,
        cache_read: read,
        output: 0,
    }
}

/// DeepSeek-style usage for the OpenAI chat mock (models starting with `deepseek`):
/// caching is automatic over whole-message prefixes; the longest prefix seen before
/// is a hit. Adds `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens` and sets
/// `prompt_tokens_details.cached_tokens`, as DeepSeek does.
pub fn deepseek_usage(cache: &PromptCache, body: &Map<String, Value>, usage: &mut Value) {
    let messages: &[Value] = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let mut hasher = Sha256::new();
    hasher.update(b"deepseek\0");
    hasher.update(
        body.get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .as_bytes(),
    );
    let mut chars = 0usize;
    let mut prefixes: Vec<([u8; 32], usize)> = Vec::with_capacity(messages.len());
    for m in messages {
        let _ = serde_json::to_writer(&mut hasher, m);
        chars += message_text(m).chars().count();
        prefixes.push((hasher.clone().finalize().into(), chars));
    }
    let lookups: Vec<(usize, [u8; 32])> = prefixes
        .iter()
        .enumerate()
        .map(|(i, (h, _))| (i, *h))
        .collect();
    let writes: Vec<[u8; 32]> = prefixes.iter().map(|(h, _)| *h).collect();
    let prompt = usage
        .get("prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let hit = cache
        .hit_then_write(&lookups, &writes)
        .map_or(0, |i| (prefixes[i].1 / 4) as u64)
        .min(prompt);
    if let Value::Object(u) = usage {
        u.insert("prompt_cache_hit_tokens".into(), hit.into());
        u.insert("prompt_cache_miss_tokens".into(), (prompt - hit).into());
        u.insert(
            "prompt_tokens_details".into(),
            json!({ "cached_tokens": hit }),
        );
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A JSON object literal as the request body map (also used by `message.rs`).
    pub(in crate::anthropic) fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn usage(v: &Value, cache: &PromptCache) -> Usage {
        input_usage(&body(v.clone()), "claude-mock", cache)
    }

    const CC: &str = r#"{"type":"ephemeral"}"#;

    fn marked_request(question: &str) -> Value {
        let cc: Value = serde_json::from_str(CC).unwrap_or_default();
        json!({"model": "claude-mock", "max_tokens": 100,
            "system": [{"type": "text", "text": "s".repeat(400), "cache_control": cc}],
            "messages": [{"role": "user", "content": question}]})
    }

    #[test]
    fn no_cache_control_reports_zero_cache_fields() {
        let cache = PromptCache::default();
        let req = json!({"system": "abcdefgh", "messages": [{"role": "user", "content": "abcd"}]});
        let u = usage(&req, &cache);
        assert_eq!(
            u,
            Usage {
                input: 3,
                cache_creation: 0,
                cache_read: 0,
                output: 0
            }
        );
        assert_eq!(usage(&req, &cache), u, "nothing is remembered");
        let rendered = u.to_json();
        assert_eq!(rendered["cache_read_input_tokens"], 0);
        assert_eq!(rendered["cache_creation_input_tokens"], 0);
    }

    #[test]
    fn breakpoint_writes_then_reads() {
        let cache = PromptCache::default();
        let first = usage(&marked_request("question one"), &cache);
        assert_eq!(first.cache_creation, 100);
        assert_eq!(first.cache_read, 0);
        assert_eq!(first.input, 3); // "question one" = 12 chars
        let second = usage(&marked_request("another question"), &cache);
        assert_eq!(second.cache_read, 100);
        assert_eq!(second.cache_creation, 0);
        assert_eq!(second.input, 4);
        // The marker's own fields do not change the prefix; the model does.
        let other_model = input_usage(&body(marked_request("q")), "claude-other", &cache);
        assert_eq!(other_model.cache_creation, 100);
        cache.reset();
        assert_eq!(usage(&marked_request("q"), &cache).cache_creation, 100);
    }

    #[test]
    fn growing_conversation_reads_the_previous_breakpoint() {
        let cache = PromptCache::default();
        let cc: Value = serde_json::from_str(CC).unwrap_or_default();
        let turn1 = json!({"tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": cc}],
            "messages": [
                {"role": "user", "content": "a".repeat(40)},
                {"role": "assistant", "content": [{"type": "text", "text": "b".repeat(40), "cache_control": cc}]},
                {"role": "user", "content": "c".repeat(40)}]});
        let tool_tokens = tokens_of_chars(
            serde_json::to_vec(&json!({"name": "t", "input_schema": {"type": "object"}}))
                .map_or(0, |b| b.len()),
        );
        let u1 = usage(&turn1, &cache);
        assert_eq!(u1.cache_read, 0);
        assert_eq!(u1.cache_creation, tool_tokens + 20);
        assert_eq!(u1.input, 10);
        // Next turn: the breakpoint moves forward; the old prefix is read.
        let turn2 = json!({"tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": cc}],
            "messages": [
                {"role": "user", "content": "a".repeat(40)},
                {"role": "assistant", "content": "b".repeat(40)},
                {"role": "user", "content": "c".repeat(40)},
                {"role": "assistant", "content": [{"type": "text", "text": "d".repeat(40), "cache_control": cc}]},
                {"role": "user", "content": "e".repeat(40)}]});
        // The assistant turn is a string now: the same prompt as one text block, so
        // the lookback finds turn 1's entry even though no breakpoint is there now.
        let u2 = usage(&turn2, &cache);
        assert_eq!(u2.cache_read, tool_tokens + 20);
        assert_eq!(u2.cache_creation, 20);
        assert_eq!(u2.input, 10);
        // Beyond the lookback window nothing older is found.
        let mut long = vec![json!({"role": "user", "content": "a".repeat(40)})];
        for i in 0..30 {
            let role = if i % 2 == 0 { "assistant" } else { "user" };
            long.push(json!({"role": role, "content": format!("m{i}")}));
        }
        let first = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "a".repeat(40), "cache_control": cc}]}]});
        let fresh = PromptCache::default();
        assert_eq!(usage(&first, &fresh).cache_creation, 10);
        let mut far = long.clone();
        far[30]["content"] = json!([{"type": "text", "text": "m29", "cache_control": cc}]);
        let u = usage(&json!({"messages": far}), &fresh);
        assert_eq!(u.cache_read, 0);
    }

    #[test]
    fn deepseek_hits_on_a_repeated_prefix() {
        let cache = PromptCache::default();
        let turn1 = body(json!({"model": "deepseek-chat", "messages": [
            {"role": "system", "content": "x".repeat(400)},
            {"role": "user", "content": "hello"}]}));
        let mut usage = json!({"prompt_tokens": 102, "completion_tokens": 5, "total_tokens": 107,
            "prompt_tokens_details": {"cached_tokens": 0}});
        deepseek_usage(&cache, &turn1, &mut usage);
        assert_eq!(usage["prompt_cache_hit_tokens"], 0);
        assert_eq!(usage["prompt_cache_miss_tokens"], 102);
        let mut turn2 = turn1.clone();
        turn2.insert(
            "messages".into(),
            json!([{"role": "system", "content": "x".repeat(400)}, {"role": "user", "content": "other"}]),
        );
        let mut usage = json!({"prompt_tokens": 102});
        deepseek_usage(&cache, &turn2, &mut usage);
        assert_eq!(usage["prompt_cache_hit_tokens"], 100);
        assert_eq!(usage["prompt_cache_miss_tokens"], 2);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 100);
    }
}
