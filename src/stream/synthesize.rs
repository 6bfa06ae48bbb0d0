//! [`synthesize`]: a `chat.completion` object as the chunks OpenAI would stream.
//!
//! Per choice, in order: a role chunk (`{"role", "content": "" — or null when the
//! content is null —, "refusal": null}`), `reasoning_content`, the content in one
//! delta (carrying the choice's `logprobs`), the refusal in one delta (carrying
//! the `logprobs` when there was no content), per tool call a header delta
//! (`index`, `id`, `type`, `function: {name, arguments: ""}`) and one delta with the
//! whole `arguments` (custom tools: `input`), any other message field in one delta
//! each, then a finish chunk (`delta: {}`, `finish_reason`, and any unknown
//! choice-level fields). Every chunk has `id`, `object`, `created`, `model`,
//! `service_tier` / `system_fingerprint` when present, `choices` with one choice
//! and `"usage": null`; unknown top-level fields go on the first chunk only.
//!
//! [`super::assemble`] inverts this, up to what OpenAI does not round-trip either:
//! `object` is normalized; `refusal` is always present (`null` when absent or
//! empty); an empty `content` next to tool calls or a refusal becomes `null`;
//! message fields that are `null`, `""` or `[]` other than `content`/`refusal`
//! (notably `annotations: []`) are dropped (streams do not carry them); a tool
//! call without `type` gets `"function"`; `usage: null` is dropped.

use serde_json::{json, Map, Value};

use super::StoredStream;

/// Message fields that never get a delta of their own.
const HANDLED: [&str; 5] = [
    "role",
    "content",
    "reasoning_content",
    "refusal",
    "tool_calls",
];

/// Completion fields not copied as unknown top-level fields (a stale
/// `routing_metadata` must never be replayed).
const ENVELOPE: [&str; 9] = [
    "id",
    "object",
    "created",
    "model",
    "service_tier",
    "system_fingerprint",
    "choices",
    "usage",
    "routing_metadata",
];

/// Tool-call function fields that stream in fragments.
const FRAGMENTED: [&str; 2] = ["arguments", "input"];

/// The chunks of `completion` (and its usage) as a cached stream.
pub fn synthesize(completion: &Value) -> StoredStream {
    let Some(c) = completion.as_object() else {
        return StoredStream::default();
    };
    let mut envelope = Map::new();
    for key in [
        "id",
        "object",
        "created",
        "model",
        "service_tier",
        "system_fingerprint",
    ] {
        if key == "object" {
            envelope.insert(key.into(), "chat.completion.chunk".into());
        } else if let Some(v) = c.get(key) {
            envelope.insert(key.into(), v.clone());
        }
    }
    let mut extras: Map<String, Value> = c
        .iter()
        .filter(|(k, _)| !ENVELOPE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut s = Synth {
        envelope,
        chunks: Vec::new(),
    };
    let choices = c.get("choices").and_then(Value::as_array);
    for (pos, choice) in choices.into_iter().flatten().enumerate() {
        if let Some(choice) = choice.as_object() {
            s.choice(pos as u64, choice);
        }
    }
    if let Some(first) = s.chunks.first_mut().and_then(Value::as_object_mut) {
        // Before `choices`, in the completion's order.
        let tail: Vec<(String, Value)> = ["choices", "usage"]
            .iter()
            .filter_map(|k| first.shift_remove_entry(*k))
            .collect();
        first.append(&mut extras);
        first.extend(tail);
    }
    StoredStream {
        chunks: s.chunks,
        usage: c.get("usage").filter(|u| !u.is_null()).cloned(),
    }
}

struct Synth {
    envelope: Map<String, Value>,
    chunks: Vec<Value>,
}

impl Synth {
    fn push(
        &mut self,
        index: u64,
        delta: Value,
        logprobs: Value,
        finish: Option<&Map<String, Value>>,
    ) {
        let mut choice = Map::new();
        choice.insert("index".into(), index.into());
        choice.insert("delta".into(), delta);
        choice.insert("logprobs".into(), logprobs);
        match finish {
            Some(original) => {
                let reason = original
                    .get("finish_reason")
                    .cloned()
                    .unwrap_or(Value::Null);
                choice.insert("finish_reason".into(), reason);
                for (k, v) in original {
                    if !["index", "message", "logprobs", "finish_reason"].contains(&k.as_str()) {
                        choice.insert(k.clone(), v.clone());
                    }
                }
            }
            None => {
                choice.insert("finish_reason".into(), Value::Null);
            }
        }
        let mut chunk = self.envelope.clone();
        chunk.insert("choices".into(), Value::Array(vec![Value::Object(choice)]));
        chunk.insert("usage".into(), Value::Null);
        self.chunks.push(Value::Object(chunk));
    }

    fn choice(&mut self, pos: u64, choice: &Map<String, Value>) {
        let index = choice.get("index").and_then(Value::as_u64).unwrap_or(pos);
        let empty = Map::new();
        let message = choice
            .get("message")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let field = |k: &str| message.get(k).filter(|v| !is_empty(v));
        let mut logprobs = choice.get("logprobs").cloned().unwrap_or(Value::Null);

        let role = message
            .get("role")
            .cloned()
            .unwrap_or_else(|| "assistant".into());
        let start = match message.get("content") {
            Some(Value::String(_)) => Value::from(""),
            _ => Value::Null,
        };
        let role_delta = json!({"role": role, "content": start, "refusal": null});
        self.push(index, role_delta, Value::Null, None);
        if let Some(r) = field("reasoning_content") {
            self.push(index, json!({"reasoning_content": r}), Value::Null, None);
        }
        if let Some(text) = field("content") {
            let lp = std::mem::take(&mut logprobs);
            self.push(index, json!({"content": text}), lp, None);
        }
        if let Some(refusal) = field("refusal") {
            let lp = std::mem::take(&mut logprobs);
            self.push(index, json!({"refusal": refusal}), lp, None);
        }
        let calls = message.get("tool_calls").and_then(Value::as_array);
        for (i, call) in calls.into_iter().flatten().enumerate() {
            let Some(call) = call.as_object() else {
                continue;
            };
            let (header, fragments) = split_tool_call(i as u64, call);
            self.push(index, json!({"tool_calls": [header]}), Value::Null, None);
            if let Some(fragments) = fragments {
                self.push(index, json!({"tool_calls": [fragments]}), Value::Null, None);
            }
        }
        for (k, v) in message {
            if !HANDLED.contains(&k.as_str()) && !is_empty(v) {
                let mut delta = Map::new();
                delta.insert(k.clone(), v.clone());
                self.push(index, Value::Object(delta), Value::Null, None);
            }
        }
        self.push(index, json!({}), logprobs, Some(choice));
    }
}

/// A tool call as its header delta (fragmented fields emptied) and the delta
/// carrying the fragmented fields (`None` when they are all empty).
fn split_tool_call(index: u64, call: &Map<String, Value>) -> (Value, Option<Value>) {
    let mut header = Map::new();
    header.insert("index".into(), index.into());
    let mut body = Map::new();
    body.insert("index".into(), index.into());
    let mut has_body = false;
    for (k, v) in call {
        let Value::Object(inner) = v else {
            header.insert(k.clone(), v.clone());
            continue;
        };
        let mut head_inner = Map::new();
        let mut body_inner = Map::new();
        for (ik, iv) in inner {
            match iv {
                Value::String(s) if FRAGMENTED.contains(&ik.as_str()) => {
                    head_inner.insert(ik.clone(), "".into());
                    if !s.is_empty() {
                        body_inner.insert(ik.clone(), iv.clone());
                    }
                }
                _ => {
                    head_inner.insert(ik.clone(), iv.clone());
                }
            }
        }
        header.insert(k.clone(), Value::Object(head_inner));
        if !body_inner.is_empty() {
            has_body = true;
            body.insert(k.clone(), Value::Object(body_inner));
        }
    }
    (
        Value::Object(header),
        has_body.then_some(Value::Object(body)),
    )
}

/// `null`, `""`, `[]`: nothing a stream would carry.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}
