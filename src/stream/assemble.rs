//! [`assemble`]: a stored stream as the non-stream `chat.completion` object.
//!
//! Per choice (by `index`): `role`; `content` concatenated (`null` when no
//! content string came, or when it is empty and the choice called tools or
//! refused — OpenAI's non-stream shape); `reasoning_content` when any delta had
//! it; `tool_calls` merged by `index` (`id`, `type`, `name` taken once, the
//! `arguments` / custom `input` fragments concatenated); `refusal` concatenated
//! (always present, `null` when none — as OpenAI's non-stream API returns it);
//! then any other delta field in first-seen order (`annotations`, `audio`, …),
//! merged: strings concatenated (except identity fields such as `id`), arrays
//! appended, objects merged member-wise, other values last-wins. `logprobs`
//! merges the chunks' arrays (`content`, `refusal`), `null` when every chunk had
//! none. Unknown choice-level and top-level fields keep their last non-null value.
//! `usage` is the stored usage, else the last non-null `usage` a chunk carried
//! (DeepSeek puts it on the finish chunk).
//!
//! Not recoverable from a stream: `message.annotations: []` (OpenAI's non-stream
//! API adds an empty list that its streams never carry), so it is absent here.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{envelope_source, StoredStream};

/// Delta fields that are sent once (or repeated), never split: not concatenated.
const IDENTITY: [&str; 4] = ["id", "type", "name", "role"];

/// Top-level chunk fields that are not copied as "unknown" fields.
const KNOWN_TOP: [&str; 10] = [
    "id",
    "object",
    "created",
    "model",
    "choices",
    "usage",
    "service_tier",
    "system_fingerprint",
    "obfuscation",
    "routing_metadata",
];

/// Choice fields handled explicitly.
const KNOWN_CHOICE: [&str; 4] = ["index", "delta", "logprobs", "finish_reason"];

#[derive(Debug, Default)]
struct ChoiceAcc {
    role: Option<Value>,
    content: Option<String>,
    refusal: String,
    tool_calls: BTreeMap<u64, Map<String, Value>>,
    /// Other delta fields, merged.
    other: Map<String, Value>,
    logprobs: Option<Map<String, Value>>,
    finish_reason: Value,
    extra: Map<String, Value>,
}

/// The `chat.completion` object the non-stream API would have returned.
pub fn assemble(stored: &StoredStream) -> Value {
    let mut choices: BTreeMap<u64, ChoiceAcc> = BTreeMap::new();
    let mut top_extra = Map::new();
    let mut service_tier = None;
    let mut fingerprint = None;
    let mut chunk_usage = None;
    for chunk in stored.chunks.iter().filter_map(Value::as_object) {
        for (k, v) in chunk {
            match k.as_str() {
                "service_tier" => keep_last(&mut service_tier, v),
                "system_fingerprint" => keep_last(&mut fingerprint, v),
                "usage" if !v.is_null() => chunk_usage = Some(v),
                _ if KNOWN_TOP.contains(&k.as_str()) => {}
                _ => keep_last_in(&mut top_extra, k, v),
            }
        }
        let Some(list) = chunk.get("choices").and_then(Value::as_array) else {
            continue;
        };
        for (pos, choice) in list.iter().enumerate() {
            let index = choice
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(pos as u64);
            choices.entry(index).or_default().add(choice);
        }
    }

    let mut out = Map::new();
    let source = envelope_source(&stored.chunks);
    let field = |key: &str| source.and_then(|s| s.get(key)).cloned();
    if let Some(id) = field("id") {
        out.insert("id".into(), id);
    }
    out.insert("object".into(), "chat.completion".into());
    for key in ["created", "model"] {
        if let Some(v) = field(key) {
            out.insert(key.into(), v);
        }
    }
    let choices = choices
        .into_iter()
        .map(|(index, acc)| acc.finish(index))
        .collect();
    out.insert("choices".into(), Value::Array(choices));
    if let Some(usage) = stored.usage.as_ref().or(chunk_usage) {
        out.insert("usage".into(), usage.clone());
    }
    if let Some(tier) = service_tier {
        out.insert("service_tier".into(), tier);
    }
    if let Some(fp) = fingerprint {
        out.insert("system_fingerprint".into(), fp);
    }
    out.extend(top_extra);
    Value::Object(out)
}

/// `slot` takes `v` unless `v` is null and `slot` already has a value.
fn keep_last(slot: &mut Option<Value>, v: &Value) {
    if !v.is_null() || slot.is_none() {
        *slot = Some(v.clone());
    }
}

fn keep_last_in(map: &mut Map<String, Value>, k: &str, v: &Value) {
    if !v.is_null() || !map.contains_key(k) {
        map.insert(k.to_owned(), v.clone());
    }
}

impl ChoiceAcc {
    fn add(&mut self, choice: &Value) {
        let Some(choice) = choice.as_object() else {
            return;
        };
        if let Some(delta) = choice.get("delta").and_then(Value::as_object) {
            self.add_delta(delta);
        }
        if let Some(logprobs) = choice.get("logprobs").and_then(Value::as_object) {
            let acc = self.logprobs.get_or_insert_with(Map::new);
            for (k, v) in logprobs {
                merge(acc, k, v);
            }
        }
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            self.finish_reason = reason.clone();
        }
        for (k, v) in choice {
            if !KNOWN_CHOICE.contains(&k.as_str()) {
                keep_last_in(&mut self.extra, k, v);
            }
        }
    }

    fn add_delta(&mut self, delta: &Map<String, Value>) {
        for (k, v) in delta {
            match (k.as_str(), v) {
                ("role", Value::Null) => {}
                ("role", role) => self.role = Some(role.clone()),
                ("content", Value::String(s)) => {
                    self.content.get_or_insert_with(String::new).push_str(s);
                }
                ("content", _) => {}
                ("refusal", Value::String(s)) => self.refusal.push_str(s),
                ("refusal", _) => {}
                ("tool_calls", Value::Array(calls)) => {
                    for (pos, call) in calls.iter().enumerate() {
                        let Some(call) = call.as_object() else {
                            continue;
                        };
                        let index = call
                            .get("index")
                            .and_then(Value::as_u64)
                            .unwrap_or(pos as u64);
                        let acc = self.tool_calls.entry(index).or_default();
                        for (ck, cv) in call.iter().filter(|(ck, _)| *ck != "index") {
                            merge(acc, ck, cv);
                        }
                    }
                }
                ("tool_calls", _) => {}
                _ => merge(&mut self.other, k, v),
            }
        }
    }

    fn finish(mut self, index: u64) -> Value {
        let mut message = Map::new();
        message.insert(
            "role".into(),
            self.role.take().unwrap_or_else(|| "assistant".into()),
        );
        let called = !self.tool_calls.is_empty();
        let content = self
            .content
            .filter(|c| !(c.is_empty() && (called || !self.refusal.is_empty())));
        message.insert("content".into(), content.map_or(Value::Null, Value::String));
        if let Some(reasoning) = self.other.shift_remove("reasoning_content") {
            message.insert("reasoning_content".into(), reasoning);
        }
        if called {
            let calls = self.tool_calls.into_values().map(tool_call).collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let refusal = (!self.refusal.is_empty()).then_some(self.refusal);
        message.insert("refusal".into(), refusal.map_or(Value::Null, Value::String));
        message.extend(self.other);

        let mut choice = Map::new();
        choice.insert("index".into(), index.into());
        choice.insert("message".into(), Value::Object(message));
        choice.insert(
            "logprobs".into(),
            self.logprobs.map_or(Value::Null, Value::Object),
        );
        choice.insert("finish_reason".into(), self.finish_reason);
        choice.extend(self.extra);
        Value::Object(choice)
    }
}

/// A merged tool call in the non-stream order: `id`, `type`, then the rest
/// (`function` / `custom`). A missing `type` is `"function"`.
fn tool_call(mut merged: Map<String, Value>) -> Value {
    let mut call = Map::new();
    if let Some(id) = merged.shift_remove("id") {
        call.insert("id".into(), id);
    }
    let kind = merged
        .shift_remove("type")
        .unwrap_or_else(|| "function".into());
    call.insert("type".into(), kind);
    call.extend(merged);
    Value::Object(call)
}

/// Merges one streamed fragment `v` of field `k` into `acc`.
fn merge(acc: &mut Map<String, Value>, k: &str, v: &Value) {
    let Some(slot) = acc.get_mut(k) else {
        acc.insert(k.to_owned(), v.clone());
        return;
    };
    match (slot, v) {
        (_, Value::Null) => {}
        (slot @ Value::Null, v) => *slot = v.clone(),
        (Value::String(s), Value::String(t)) => {
            if !IDENTITY.contains(&k) {
                s.push_str(t);
            } else if s.is_empty() {
                s.clone_from(t);
            }
        }
        (Value::Array(a), Value::Array(b)) => a.extend(b.iter().cloned()),
        (Value::Object(a), Value::Object(b)) => {
            for (bk, bv) in b {
                merge(a, bk, bv);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(chunks: Vec<Value>) -> StoredStream {
        StoredStream {
            chunks,
            usage: None,
        }
    }

    fn delta(index: u64, delta: Value) -> Value {
        json!({"id": "x", "object": "chat.completion.chunk", "created": 5, "model": "m",
               "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}]})
    }

    fn finish(index: u64, reason: &str) -> Value {
        json!({"id": "x", "object": "chat.completion.chunk", "created": 5, "model": "m",
               "choices": [{"index": index, "delta": {}, "logprobs": null, "finish_reason": reason}]})
    }

    #[test]
    fn merge_rules() {
        let mut acc = Map::new();
        for v in [
            json!({"id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}),
            json!({"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\""}}),
            json!({"function": {"arguments": ":1}"}, "extra": [1]}),
            json!({"extra": [2], "n": 1}),
            json!({"n": 2, "id": null}),
        ] {
            for (k, v) in v.as_object().unwrap() {
                merge(&mut acc, k, v);
            }
        }
        assert_eq!(
            Value::Object(acc),
            json!({"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"},
                   "extra": [1, 2], "n": 2})
        );
    }

    #[test]
    fn role_repeated_on_every_chunk_is_not_concatenated() {
        let s = stored(vec![
            delta(0, json!({"role": "assistant", "content": "a"})),
            delta(0, json!({"role": "assistant", "content": "b"})),
            finish(0, "stop"),
        ]);
        let c = assemble(&s);
        assert_eq!(c["choices"][0]["message"]["role"], "assistant");
        assert_eq!(c["choices"][0]["message"]["content"], "ab");
    }

    #[test]
    fn content_null_rules() {
        let content = |deltas: Vec<Value>| {
            let mut chunks: Vec<Value> = deltas.into_iter().map(|d| delta(0, d)).collect();
            chunks.push(finish(0, "stop"));
            assemble(&stored(chunks))["choices"][0]["message"]["content"].clone()
        };
        // An empty answer is "" (a content string came), not null.
        assert_eq!(
            content(vec![json!({"role": "assistant", "content": ""})]),
            ""
        );
        assert_eq!(content(vec![json!({"role": "assistant"})]), Value::Null);
        let call = json!({"tool_calls": [{"index": 0, "id": "c", "type": "function",
                                           "function": {"name": "f", "arguments": "{}"}}]});
        assert_eq!(
            content(vec![
                json!({"role": "assistant", "content": ""}),
                call.clone()
            ]),
            Value::Null
        );
        assert_eq!(
            content(vec![
                json!({"role": "assistant", "content": "Let me check."}),
                call
            ]),
            "Let me check."
        );
        assert_eq!(
            content(vec![
                json!({"role": "assistant", "content": ""}),
                json!({"refusal": "No."})
            ]),
            Value::Null
        );
    }

    #[test]
    fn missing_tool_type_and_out_of_order_indexes() {
        let s = stored(vec![
            delta(
                0,
                json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "2"}}]}),
            ),
            delta(
                0,
                json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "1"}}]}),
            ),
            finish(0, "tool_calls"),
        ]);
        let calls = &assemble(&s)["choices"][0]["message"]["tool_calls"];
        assert_eq!(
            calls,
            &json!([
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "1"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "2"}},
            ])
        );
    }

    #[test]
    fn envelope_and_extras() {
        let mut first = json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                               "prompt_filter_results": [{"prompt_index": 0}]});
        let mut body = delta(0, json!({"role": "assistant", "content": "hi"}));
        body["service_tier"] = json!("default");
        body["system_fingerprint"] = json!("fp_1");
        body["obfuscation"] = json!("xyz");
        let mut end = finish(0, "stop");
        end["choices"][0]["stop_reason"] = json!(42);
        first["usage"] = Value::Null;
        let s = StoredStream {
            chunks: vec![first, body, end],
            usage: Some(json!({"total_tokens": 3})),
        };
        let c = assemble(&s);
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "id",
                "object",
                "created",
                "model",
                "choices",
                "usage",
                "service_tier",
                "system_fingerprint",
                "prompt_filter_results"
            ]
        );
        assert_eq!(c["id"], "x");
        assert_eq!(c["choices"][0]["stop_reason"], 42);
        assert_eq!(c["usage"]["total_tokens"], 3);
    }

    #[test]
    fn logprobs_merge() {
        let lp = |t: &str| json!({"content": [{"token": t, "logprob": -0.5, "bytes": [1], "top_logprobs": []}], "refusal": null});
        let mut a = delta(0, json!({"content": "a"}));
        a["choices"][0]["logprobs"] = lp("a");
        let mut b = delta(0, json!({"content": "b"}));
        b["choices"][0]["logprobs"] = lp("b");
        let s = stored(vec![
            delta(0, json!({"role": "assistant", "content": ""})),
            a,
            b,
            finish(0, "stop"),
        ]);
        let got = &assemble(&s)["choices"][0]["logprobs"];
        assert_eq!(got["content"].as_array().map(Vec::len), Some(2));
        assert_eq!(got["content"][1]["token"], "b");
        assert_eq!(got["refusal"], Value::Null);
        let plain = stored(vec![delta(0, json!({"content": "a"})), finish(0, "stop")]);
        assert_eq!(assemble(&plain)["choices"][0]["logprobs"], Value::Null);
    }
}
