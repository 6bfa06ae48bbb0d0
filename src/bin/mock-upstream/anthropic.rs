//! `POST /v1/messages`: a deterministic fake of Anthropic's Messages API, with an
//! imitation of Anthropic's prompt caching (and DeepSeek's, for the chat mock).
//!
//! - Headers: `x-api-key` or `authorization` (else 401 `authentication_error`) and
//!   `anthropic-version` (else 400 `invalid_request_error`).
//! - Answer: one `text` block, `"Mock answer to: " + last user text (≤200 chars) +
//!   " [" + hash8 + "]"` (hash8 as in `chat.rs`: SHA-256 of the body without
//!   `stream`), `stop_reason: end_turn`; `max_tokens` below the word count truncates
//!   it (`stop_reason: max_tokens`). With `tools` and a last user turn that is text
//!   (not tool results), and `tool_choice` not `none`: one `tool_use` block (the
//!   forced tool, else the first) with input `{"query": <last user text ≤40 chars>}`,
//!   `stop_reason: tool_use`. With `thinking: {"type":"enabled"}`, a `thinking` block
//!   comes first.
//! - Usage (tokens = chars/4, rounded up, per tool / system block / content block):
//!   without any `cache_control` both cache fields are 0. With breakpoints, the
//!   prompt prefix (tools → system → messages; a string content counts as one text
//!   block; markers excluded; per model) is hashed at every block boundary. The
//!   longest prefix written before, at a breakpoint or up to 20 blocks before one
//!   (Anthropic's lookback), is a cache read (`cache_read_input_tokens`); the rest up
//!   to the last breakpoint is a cache write (`cache_creation_input_tokens`), and each
//!   breakpoint's prefix is written. `input_tokens` is the remainder. There is no
//!   minimum cacheable length. `POST /_mock/reset` forgets the cache.
//! - Failure models (Anthropic-shaped `{"type":"error","error":{"type","message"}}`):
//!   `mock-error-500` (500 `api_error`), `mock-error-529` (529 `overloaded_error`),
//!   `mock-error-429` (429 `rate_limit_error`, `retry-after: 1`), `mock-error-400`
//!   (400 `invalid_request_error`), `mock-slow` (sleeps `--slow-ms`),
//!   `mock-cut-stream` (JSON cut in half; a stream is cut before `message_stop`),
//!   `mock-stream-error` (a stream sends an `error` event after two text deltas),
//!   `mock-garbage` (200 `text/html`, a gateway's error page: not JSON, not SSE).
//! - `stream: true`: Anthropic SSE, `event: NAME\ndata: JSON\n\n` — `message_start`,
//!   per block `content_block_start` (a `ping` after the first), deltas (`text_delta`
//!   per word, `thinking_delta`/`signature_delta`, `input_json_delta` in 3 fragments
//!   after an empty one), `content_block_stop`, then `message_delta` (stop_reason,
//!   `usage.output_tokens`) and `message_stop`.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::control::Endpoint;
use crate::stream::{paced_response, split_n, SSE};
use crate::text::{
    body_hash8, message_text, truncate_chars, truncate_words, word_count, word_pieces,
};
use crate::{openai, Shared};

/// The prompt cache forgets everything past this many prefixes (bounds memory
/// under long load tests).
const MAX_REMEMBERED_PREFIXES: usize = 1_000_000;

/// How many block boundaries before a breakpoint are checked for a cache hit
/// (Anthropic documents about 20).
const LOOKBACK_BLOCKS: usize = 20;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/messages", post(handle))
}

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

/// `{"type":"error","error":{"type":kind,"message":message}}` with `status`.
pub fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (status, Json(body)).into_response()
}

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
    fn to_json(self) -> Value {
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

/// How the response body misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    None,
    Cut,
    StreamError,
}

async fn handle(State(state): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    state
        .recorder
        .record(Endpoint::Messages, &headers, Some(&raw));
    openai::delay(openai::latency(&headers, state.config.latency)).await;
    let (body, model, failure) = match prelude(&state, &headers, &raw).await {
        Ok(parsed) => parsed,
        Err(resp) => return resp,
    };
    let message = build_message(
        &body,
        &model,
        state.recorder.next_seq(),
        &state.prompt_cache,
    );
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    if !streaming {
        return openai::json_response(&render(&message), failure == Failure::Cut);
    }
    let delay = state.config.chunk_delay;
    let mut events = events(&message);
    match failure {
        Failure::None => paced_response(SSE, events, delay, false),
        Failure::Cut => {
            events.pop();
            paced_response(SSE, events, delay, true)
        }
        Failure::StreamError => {
            // message_start, content_block_start, ping and two deltas, then the error.
            events.truncate(5);
            events.push(sse(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ));
            paced_response(SSE, events, delay, false)
        }
    }
}

/// Headers, JSON body, required fields and failure models. `Err` is the response.
async fn prelude(
    state: &Shared,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<(Map<String, Value>, String, Failure), Response> {
    let invalid =
        |message: &str| error_response(StatusCode::BAD_REQUEST, "invalid_request_error", message);
    if !headers.contains_key("x-api-key") && !headers.contains_key(header::AUTHORIZATION) {
        return Err(error_response(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        ));
    }
    if !headers.contains_key("anthropic-version") {
        return Err(invalid("anthropic-version: header is required"));
    }
    let body = match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(invalid("Input should be a valid dictionary")),
        Err(err) => {
            return Err(invalid(&format!(
                "There was an issue with your request body: {err}"
            )))
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if model.is_empty() {
        return Err(invalid("model: Field required"));
    }
    let failure = match model.as_str() {
        "mock-error-500" => {
            return Err(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "mock upstream failure",
            ))
        }
        "mock-error-529" => {
            let status = StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Err(error_response(status, "overloaded_error", "Overloaded"));
        }
        "mock-error-429" => {
            let mut resp = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "mock rate limit reached",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(resp);
        }
        "mock-error-400" => return Err(invalid("mock invalid request")),
        "mock-garbage" => {
            let mut resp = (
                StatusCode::OK,
                "<html><body>502 Bad Gateway (not JSON)</body></html>",
            )
                .into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return Err(resp);
        }
        "mock-slow" => {
            openai::delay(state.config.slow).await;
            Failure::None
        }
        "mock-cut-stream" => Failure::Cut,
        "mock-stream-error" => Failure::StreamError,
        _ => Failure::None,
    };
    if !body.get("messages").is_some_and(Value::is_array) {
        return Err(invalid("messages: Field required"));
    }
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64);
    if max_tokens.unwrap_or(0) == 0 {
        return Err(invalid("max_tokens: Field required (a positive integer)"));
    }
    Ok((body, model, failure))
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
fn sse(name: &str, data: &Value) -> Bytes {
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
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
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
