//! The mock's answer to a Messages request: built deterministically from the
//! body (text, `tool_use`, `thinking` blocks; see the module above), rendered as
//! one JSON message or as Anthropic's SSE events.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::prompt_cache::{input_usage, PromptCache};
use crate::stream::split_n;
use crate::text::{
    body_hash8, message_text, truncate_chars, truncate_words, word_count, word_pieces,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Thinking {
        thinking: String,
        signature: String,
    },
    Text(String),
    /// `input` is compact JSON.
    ToolUse {
        id: String,
        name: String,
        input: String,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub cache_creation: u64,
    pub cache_read: u64,
    pub output: u64,
}

impl Usage {
    pub(super) fn to_json(self) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": self.output,
        })
    }
}

/// Everything a response (JSON or SSE) is rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub model: String,
    pub blocks: Vec<Block>,
    pub stop_reason: &'static str,
    pub usage: Usage,
}

/// Builds the deterministic answer (and the cache accounting) for a request body.
pub fn build_message(
    body: &Map<String, Value>,
    model: &str,
    seq: u64,
    cache: &PromptCache,
) -> Message {
    let messages: &[Value] = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let is_user = |m: &&Value| m.get("role").and_then(Value::as_str) == Some("user");
    let last_user = messages
        .iter()
        .rev()
        .find(is_user)
        .map(message_text)
        .unwrap_or_default();
    let hash = body_hash8(body);
    let mut blocks = Vec::new();
    let mut output = 0u64;
    let thinking_on = body
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t != "disabled");
    if thinking_on {
        let thinking = format!("Thinking about: {}", truncate_chars(&last_user, 60));
        output += word_count(&thinking) as u64;
        blocks.push(Block::Thinking {
            thinking,
            signature: format!("mock-signature-{hash}"),
        });
    }
    let stop_reason = match tool_use(body, messages, &last_user, &hash) {
        Some(block) => {
            if let Block::ToolUse { input, .. } = &block {
                output += word_count(input) as u64;
            }
            blocks.push(block);
            "tool_use"
        }
        None => {
            let text = format!(
                "Mock answer to: {} [{hash}]",
                truncate_chars(&last_user, 200)
            );
            let words = word_count(&text) as u64;
            let limit = body
                .get("max_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if limit < words {
                let n = usize::try_from(limit).unwrap_or(usize::MAX);
                blocks.push(Block::Text(truncate_words(&text, n)));
                output += limit;
                "max_tokens"
            } else {
                blocks.push(Block::Text(text));
                output += words;
                "end_turn"
            }
        }
    };
    let mut usage = input_usage(body, model, cache);
    usage.output = output;
    Message {
        id: format!("msg_mock_{seq}"),
        model: model.to_owned(),
        blocks,
        stop_reason,
        usage,
    }
}

/// The tool_use block to answer with, if the request asks for one.
fn tool_use(
    body: &Map<String, Value>,
    messages: &[Value],
    last_user: &str,
    hash: &str,
) -> Option<Block> {
    let tools = body.get("tools")?.as_array()?;
    let first = tools.first()?;
    let choice = body.get("tool_choice");
    let choice_type = choice.and_then(|c| c.get("type")).and_then(Value::as_str);
    if choice_type == Some("none") {
        return None;
    }
    let last = messages.last()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    // A turn of tool results is answered with text.
    let only_results = last
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks
                .iter()
                .all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        });
    if only_results {
        return None;
    }
    let tool_name = |t: &Value| t.get("name").and_then(Value::as_str).map(str::to_owned);
    let forced = choice
        .filter(|_| choice_type == Some("tool"))
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
        .filter(|name| tools.iter().any(|t| tool_name(t).as_deref() == Some(name)))
        .map(str::to_owned);
    let name = forced
        .or_else(|| tool_name(first))
        .unwrap_or_else(|| "tool".to_owned());
    let input = json!({ "query": truncate_chars(last_user, 40) }).to_string();
    Some(Block::ToolUse {
        id: format!("toolu_mock_{hash}"),
        name,
        input,
    })
}

fn block_json(block: &Block) -> Value {
    match block {
        Block::Thinking {
            thinking,
            signature,
        } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
        Block::Text(text) => json!({"type": "text", "text": text}),
        Block::ToolUse { id, name, input } => {
            let input: Value = serde_json::from_str(input).unwrap_or_else(|_| json!({}));
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
    }
}

/// The non-stream message object.
pub fn render(m: &Message) -> Value {
    json!({
        "id": m.id,
        "type": "message",
        "role": "assistant",
        "model": m.model,
        "content": m.blocks.iter().map(block_json).collect::<Vec<_>>(),
        "stop_reason": m.stop_reason,
        "stop_sequence": null,
        "usage": m.usage.to_json(),
    })
}

/// Frames one event: `event: NAME\ndata: <compact json>\n\n`.
pub(super) fn sse(name: &str, data: &Value) -> Bytes {
    let mut buf = format!("event: {name}\ndata: ").into_bytes();
    if serde_json::to_writer(&mut buf, data).is_err() {
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

fn delta(index: usize, delta: Value) -> Bytes {
    sse(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

/// All SSE events of a complete streamed message.
pub fn events(m: &Message) -> Vec<Bytes> {
    let mut start_usage = m.usage;
    start_usage.output = 1;
    let mut out = vec![sse(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": m.id, "type": "message", "role": "assistant", "model": m.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": start_usage.to_json(),
        }}),
    )];
    for (index, block) in m.blocks.iter().enumerate() {
        let empty = match block {
            Block::Thinking { .. } => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Block::Text(_) => json!({"type": "text", "text": ""}),
            Block::ToolUse { id, name, .. } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            }
        };
        out.push(sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": empty}),
        ));
        if index == 0 {
            out.push(sse("ping", &json!({"type": "ping"})));
        }
        match block {
            Block::Thinking {
                thinking,
                signature,
            } => {
                for piece in split_n(thinking, 3) {
                    out.push(delta(
                        index,
                        json!({"type": "thinking_delta", "thinking": piece}),
                    ));
                }
                out.push(delta(
                    index,
                    json!({"type": "signature_delta", "signature": signature}),
                ));
            }
            Block::Text(text) => {
                for word in word_pieces(text) {
                    out.push(delta(index, json!({"type": "text_delta", "text": word})));
                }
            }
            Block::ToolUse { input, .. } => {
                out.push(delta(
                    index,
                    json!({"type": "input_json_delta", "partial_json": ""}),
                ));
                for piece in split_n(input, 3) {
                    out.push(delta(
                        index,
                        json!({"type": "input_json_delta", "partial_json": piece}),
                    ));
                }
            }
        }
        out.push(sse(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(sse(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": m.stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": m.usage.output}}),
    ));
    out.push(sse("message_stop", &json!({"type": "message_stop"})));
    out
}

#[cfg(test)]
mod tests {
    use super::super::prompt_cache::tests::body;
    use super::*;

    #[test]
    fn answer_tool_use_and_thinking() {
        let cache = PromptCache::default();
        let req = body(json!({"model": "claude-mock", "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hello there"}]}));
        let m = build_message(&req, "claude-mock", 3, &cache);
        let hash = body_hash8(&req);
        assert_eq!(m.id, "msg_mock_3");
        assert_eq!(
            m.blocks,
            vec![Block::Text(format!("Mock answer to: Hello there [{hash}]"))]
        );
        assert_eq!(m.stop_reason, "end_turn");
        assert_eq!(m.usage.output, 6);

        let mut short = req.clone();
        short.insert("max_tokens".into(), json!(2));
        let m = build_message(&short, "claude-mock", 4, &cache);
        assert_eq!(m.blocks, vec![Block::Text("Mock answer".into())]);
        assert_eq!(m.stop_reason, "max_tokens");

        let tools = body(json!({"model": "c", "max_tokens": 100,
            "tools": [{"name": "search", "input_schema": {}}, {"name": "other", "input_schema": {}}],
            "tool_choice": {"type": "tool", "name": "other"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "find \"x\""}]}]}));
        let m = build_message(&tools, "c", 5, &cache);
        assert_eq!(m.stop_reason, "tool_use");
        assert!(
            matches!(&m.blocks[0], Block::Thinking { thinking, .. } if thinking == "Thinking about: find \"x\"")
        );
        assert!(
            matches!(&m.blocks[1], Block::ToolUse { name, input, .. } if name == "other" && input == r#"{"query":"find \"x\""}"#)
        );
        let rendered = render(&m);
        assert_eq!(rendered["content"][1]["input"]["query"], "find \"x\"");

        let mut results = tools.clone();
        results.insert(
            "messages".into(),
            json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}]),
        );
        assert_eq!(
            build_message(&results, "c", 6, &cache).stop_reason,
            "end_turn"
        );
        let mut none = tools.clone();
        none.insert("tool_choice".into(), json!({"type": "none"}));
        assert_eq!(build_message(&none, "c", 7, &cache).stop_reason, "end_turn");
    }

    fn parse(events: &[Bytes]) -> Vec<(String, Value)> {
        events
            .iter()
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap_or_default();
                assert!(s.starts_with("event: ") && s.ends_with("\n\n"), "{s:?}");
                let (name, data) = s[7..s.len() - 2].split_once("\ndata: ").unwrap_or_default();
                (
                    name.to_owned(),
                    serde_json::from_str(data).unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn stream_events_concatenate_to_the_message() {
        let cache = PromptCache::default();
        let req = body(json!({"model": "c", "max_tokens": 100, "stream": true,
            "tools": [{"name": "search", "input_schema": {}}],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "find  rust crates"}]}));
        let m = build_message(&req, "c", 9, &cache);
        let evs = parse(&events(&m));
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
        assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
        for (name, data) in &evs {
            assert_eq!(data["type"], name.as_str());
        }
        assert_eq!(evs[0].1["message"]["id"], "msg_mock_9");
        assert_eq!(evs[0].1["message"]["usage"]["output_tokens"], 1);
        let rendered = render(&m);
        let text_of = |kind: &str, field: &str, index: usize| -> String {
            evs.iter()
                .filter(|(_, d)| d["index"] == index && d["delta"]["type"] == kind)
                .filter_map(|(_, d)| d["delta"][field].as_str())
                .collect()
        };
        assert_eq!(
            text_of("thinking_delta", "thinking", 0),
            rendered["content"][0]["thinking"]
        );
        let args = text_of("input_json_delta", "partial_json", 1);
        let parsed: Value = serde_json::from_str(&args).unwrap_or_default();
        assert_eq!(parsed, rendered["content"][1]["input"]);
        let delta = &evs[evs.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["output_tokens"], m.usage.output);

        // A plain text answer streams one text_delta per word.
        let plain = body(json!({"model": "c", "max_tokens": 100,
            "messages": [{"role": "user", "content": "a  b"}]}));
        let m = build_message(&plain, "c", 10, &cache);
        let evs = parse(&events(&m));
        let text: String = evs
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(render(&m)["content"][0]["text"], text.as_str());
    }
}
