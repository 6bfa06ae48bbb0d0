//! Anthropic Messages SSE events → OpenAI `chat.completion.chunk` objects.
//!
//! [`AnthropicToOpenAiStream`] is fed one parsed SSE event at a time (event name and
//! JSON `data`) and returns the chunks to send; the caller frames them as
//! `data: <json>\n\n` and ends a complete stream with `data: [DONE]`.
//!
//! Mapping:
//! - `message_start` → the role chunk (`{"role":"assistant","content":""}`); the id
//!   is `chatcmpl-` + the message id; input and cache token counts are kept.
//! - `content_block_start`: `text` → nothing (or its initial text, if any);
//!   `tool_use` → a `tool_calls` delta with `index` (0, 1, … over tool blocks), `id`,
//!   `type` and `function {name, arguments: ""}`; `thinking` → nothing.
//! - `content_block_delta`: `text_delta` → `content`; `input_json_delta` → the
//!   `tool_calls[index].function.arguments` fragment; `thinking_delta` →
//!   `reasoning_content`; `signature_delta` / `citations_delta` → nothing.
//! - `message_delta` → the finish chunk (`delta: {}`, mapped `finish_reason`); its
//!   usage (output tokens, and any updated input counts) is merged.
//! - `message_stop` → with `include_usage`, a final `choices: []` chunk carrying the
//!   normalized usage (as `translate::normalize_usage`); [`finished`] turns true.
//! - `ping`, `content_block_stop` and unknown events → nothing (Anthropic may add
//!   event types; they are ignored, as its docs ask).
//! - `error` → `Err(StreamError)`: the caller ends the stream as errored (and must
//!   never cache it).
//!
//! With `include_usage`, every chunk carries `"usage": null` as OpenAI's do.
//!
//! [`finished`]: AnthropicToOpenAiStream::finished

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::translate::{finish_reason, normalize_usage};

/// An `error` event from Anthropic in the middle of a stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("upstream stream error ({kind}): {message}")]
pub struct StreamError {
    /// Anthropic's error type, e.g. `overloaded_error`.
    pub kind: String,
    pub message: String,
}

impl StreamError {
    /// The OpenAI-shaped error object to send as the stream's last `data:` event.
    pub fn to_openai(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": null, "code": null}})
    }
}

/// Translates one Anthropic message stream into OpenAI chunks.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    model: String,
    created: u64,
    include_usage: bool,
    id: String,
    /// Anthropic content block index → OpenAI tool call index, for tool_use blocks.
    tool_index: HashMap<u64, u64>,
    usage: Map<String, Value>,
    finished: bool,
}

impl AnthropicToOpenAiStream {
    /// `model` is the name reported to the client; `created` its unix time.
    pub fn new(model: impl Into<String>, created: u64, include_usage: bool) -> Self {
        Self {
            model: model.into(),
            created,
            include_usage,
            id: "chatcmpl-".to_owned(),
            tool_index: HashMap::new(),
            usage: Map::new(),
            finished: false,
        }
    }

    /// Whether `message_stop` was seen: only then is the stream complete.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The chunks for one SSE event. `event_name` is the SSE `event:` field; when it
    /// is empty, the `type` inside `data` is used.
    pub fn on_event(&mut self, event_name: &str, data: &Value) -> Result<Vec<Value>, StreamError> {
        let name = if event_name.is_empty() {
            data.get("type").and_then(Value::as_str).unwrap_or_default()
        } else {
            event_name
        };
        let chunks = match name {
            "message_start" => self.message_start(data),
            "content_block_start" => self.block_start(data),
            "content_block_delta" => self.block_delta(data),
            "message_delta" => self.message_delta(data),
            "message_stop" => {
                self.finished = true;
                if self.include_usage {
                    vec![self.usage_chunk()]
                } else {
                    Vec::new()
                }
            }
            "error" => {
                let error = data.get("error");
                let field = |k: &str| {
                    error
                        .and_then(|e| e.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let kind = field("type");
                return Err(StreamError {
                    kind: if kind.is_empty() {
                        "api_error".into()
                    } else {
                        kind
                    },
                    message: field("message"),
                });
            }
            // ping, content_block_stop, future event types.
            _ => Vec::new(),
        };
        Ok(chunks)
    }

    fn message_start(&mut self, data: &Value) -> Vec<Value> {
        let message = data.get("message");
        if let Some(id) = message.and_then(|m| m.get("id")).and_then(Value::as_str) {
            self.id = format!("chatcmpl-{id}");
        }
        if let Some(usage) = message
            .and_then(|m| m.get("usage"))
            .and_then(Value::as_object)
        {
            self.merge_usage(usage);
        }
        vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
    }

    fn block_start(&mut self, data: &Value) -> Vec<Value> {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let Some(block) = data.get("content_block") else {
            return Vec::new();
        };
        match block.get("type").and_then(Value::as_str) {
            Some("text") => match block.get("text").and_then(Value::as_str) {
                Some(text) if !text.is_empty() => {
                    vec![self.chunk(json!({ "content": text }), None)]
                }
                _ => Vec::new(),
            },
            Some("tool_use") => {
                let tool = self.tool_index.len() as u64;
                self.tool_index.insert(index, tool);
                let delta = json!({"tool_calls": [{
                    "index": tool,
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": block.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": "",
                    },
                }]});
                vec![self.chunk(delta, None)]
            }
            _ => Vec::new(),
        }
    }

    fn block_delta(&mut self, data: &Value) -> Vec<Value> {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let Some(delta) = data.get("delta") else {
            return Vec::new();
        };
        let text = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or_default();
        let out = match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => Some(json!({ "content": text("text") })),
            Some("thinking_delta") => Some(json!({ "reasoning_content": text("thinking") })),
            Some("input_json_delta") => {
                let fragment = text("partial_json");
                match self.tool_index.get(&index) {
                    Some(tool) if !fragment.is_empty() => Some(json!({"tool_calls": [{
                        "index": tool, "function": {"arguments": fragment},
                    }]})),
                    _ => None,
                }
            }
            _ => None,
        };
        out.map(|d| vec![self.chunk(d, None)]).unwrap_or_default()
    }

    fn message_delta(&mut self, data: &Value) -> Vec<Value> {
        if let Some(usage) = data.get("usage").and_then(Value::as_object) {
            self.merge_usage(usage);
        }
        let stop_reason = data
            .get("delta")
            .and_then(|d| d.get("stop_reason"))
            .and_then(Value::as_str);
        vec![self.chunk(json!({}), Some(finish_reason(stop_reason)))]
    }

    /// Later counts win (message_delta's output tokens are cumulative).
    fn merge_usage(&mut self, usage: &Map<String, Value>) {
        for (k, v) in usage {
            if v.is_u64() {
                self.usage.insert(k.clone(), v.clone());
            }
        }
    }

    fn envelope(&self, choices: Value) -> Map<String, Value> {
        let mut chunk = Map::new();
        chunk.insert("id".into(), self.id.clone().into());
        chunk.insert("object".into(), "chat.completion.chunk".into());
        chunk.insert("created".into(), self.created.into());
        chunk.insert("model".into(), self.model.clone().into());
        chunk.insert("choices".into(), choices);
        chunk
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        let choice = json!({
            "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason,
        });
        let mut chunk = self.envelope(Value::Array(vec![choice]));
        if self.include_usage {
            chunk.insert("usage".into(), Value::Null);
        }
        Value::Object(chunk)
    }

    fn usage_chunk(&self) -> Value {
        let mut chunk = self.envelope(Value::Array(Vec::new()));
        chunk.insert("usage".into(), normalize_usage(&self.usage));
        Value::Object(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::translate::messages_to_chat;

    /// A realistic stream: text, then a tool call whose input arrives in fragments.
    fn events() -> Vec<(&'static str, Value)> {
        vec![
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_01", "type": "message",
                    "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null,
                    "stop_sequence": null, "usage": {"input_tokens": 12, "cache_creation_input_tokens": 30,
                    "cache_read_input_tokens": 200, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "check."}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use",
                    "id": "toolu_01", "name": "get_weather", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":\"Pa"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "ris\",\"days\":2}"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                    "usage": {"output_tokens": 42}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ]
    }

    /// The equivalent non-stream response.
    fn response() -> Value {
        json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "days": 2}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 30,
                      "cache_read_input_tokens": 200, "output_tokens": 42}})
    }

    /// Folds chunks into a `chat.completion`, the way an OpenAI SDK accumulates them.
    fn assemble(chunks: &[Value]) -> Value {
        let mut content: Option<String> = None;
        let mut reasoning: Option<String> = None;
        let mut tools: Vec<Value> = Vec::new();
        let mut finish = Value::Null;
        let mut usage = Value::Null;
        let mut role = Value::Null;
        for c in chunks {
            if let Some(u) = c.get("usage").filter(|u| !u.is_null()) {
                usage = u.clone();
            }
            let Some(choice) = c["choices"].get(0) else {
                continue;
            };
            let d = &choice["delta"];
            if let Some(r) = d.get("role") {
                role = r.clone();
            }
            if let Some(t) = d.get("content").and_then(Value::as_str) {
                content.get_or_insert_with(String::new).push_str(t);
            }
            if let Some(t) = d.get("reasoning_content").and_then(Value::as_str) {
                reasoning.get_or_insert_with(String::new).push_str(t);
            }
            for call in d["tool_calls"].as_array().into_iter().flatten() {
                let i = call["index"].as_u64().unwrap() as usize;
                if i == tools.len() {
                    tools.push(json!({"id": call["id"], "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""}}));
                }
                let frag = call["function"]["arguments"].as_str().unwrap_or_default();
                let args = tools[i]["function"]["arguments"]
                    .as_str()
                    .unwrap()
                    .to_owned()
                    + frag;
                tools[i]["function"]["arguments"] = args.into();
            }
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
        }
        let mut message = json!({"role": role, "content": content.filter(|c| !c.is_empty())});
        if let Some(r) = reasoning {
            message["reasoning_content"] = r.into();
        }
        if !tools.is_empty() {
            message["tool_calls"] = Value::Array(tools);
        }
        message["refusal"] = Value::Null;
        json!({"id": chunks[0]["id"], "object": "chat.completion", "created": chunks[0]["created"],
            "model": chunks[0]["model"],
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage})
    }

    fn run(include_usage: bool) -> (AnthropicToOpenAiStream, Vec<Value>) {
        let mut s = AnthropicToOpenAiStream::new("claude-alias", 1_700_000_000, include_usage);
        let mut chunks = Vec::new();
        for (name, data) in events() {
            assert!(!s.finished());
            chunks.extend(s.on_event(name, &data).unwrap());
        }
        assert!(s.finished());
        (s, chunks)
    }

    #[test]
    fn deltas_assemble_to_the_non_stream_translation() {
        let (_, chunks) = run(true);
        let expected = messages_to_chat(&response(), "claude-alias", 1_700_000_000);
        assert_eq!(assemble(&chunks), expected);
        assert_eq!(
            expected["usage"],
            json!({"prompt_tokens": 242, "completion_tokens": 42, "total_tokens": 284,
                   "prompt_tokens_details": {"cached_tokens": 200, "cache_creation_tokens": 30}})
        );
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.get("usage").is_some_and(Value::is_null));
            assert_eq!(c["id"], "chatcmpl-msg_01");
            assert_eq!(c["object"], "chat.completion.chunk");
        }
    }

    #[test]
    fn chunk_shapes() {
        let (_, chunks) = run(false);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(
            deltas,
            vec![
                &json!({"role": "assistant", "content": ""}),
                &json!({"content": "Let me "}),
                &json!({"content": "check."}),
                &json!({"tool_calls": [{"index": 0, "id": "toolu_01", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Pa"}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "ris\",\"days\":2}"}}]}),
                &json!({}),
            ]
        );
        assert_eq!(chunks[6]["choices"][0]["finish_reason"], "tool_calls");
        assert!(chunks[..6]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null()));
    }

    #[test]
    fn whitespace_in_fragments_still_parses_to_the_same_arguments() {
        // Real Anthropic fragments contain spaces; the non-stream translation is compact.
        let mut s = AnthropicToOpenAiStream::new("m", 0, false);
        let mut args = String::new();
        let evs = [
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\": "}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "[1, 2]}"}}),
        ];
        for e in &evs {
            for c in s.on_event("", e).unwrap() {
                if let Some(f) =
                    c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
                {
                    args.push_str(f);
                }
            }
        }
        let parsed: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(parsed, json!({"a": [1, 2]}));
    }

    #[test]
    fn thinking_two_tools_and_error() {
        let mut s = AnthropicToOpenAiStream::new("m", 0, false);
        let mut out = Vec::new();
        let evs = [
            json!({"type": "message_start", "message": {"id": "msg_x", "usage": {"input_tokens": 5, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "a", "name": "f", "input": {}}}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "b", "name": "g", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "some_future_event"}),
        ];
        for e in &evs {
            out.extend(s.on_event("", e).unwrap());
        }
        let deltas: Vec<&Value> = out.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(deltas[1], &json!({"reasoning_content": "hmm"}));
        assert_eq!(deltas[2]["tool_calls"][0]["index"], 0);
        assert_eq!(deltas[3]["tool_calls"][0]["index"], 1);
        assert_eq!(
            deltas[4],
            &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]})
        );
        assert_eq!(out.len(), 5);

        let err = s
            .on_event(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            )
            .unwrap_err();
        assert_eq!(err.kind, "overloaded_error");
        assert_eq!(err.to_openai()["error"]["message"], "Overloaded");
        assert!(!s.finished());
    }

    #[test]
    fn max_tokens_finish_and_usage_without_cache_fields() {
        let mut s = AnthropicToOpenAiStream::new("m", 0, true);
        let start = json!({"type": "message_start", "message": {"id": "msg_y", "usage": {"input_tokens": 7, "output_tokens": 1}}});
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 9}});
        s.on_event("message_start", &start).unwrap();
        let fin = s.on_event("message_delta", &delta).unwrap();
        assert_eq!(fin[0]["choices"][0]["finish_reason"], "length");
        let usage = s.on_event("message_stop", &json!({})).unwrap();
        assert_eq!(
            usage[0]["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16})
        );
    }
}
