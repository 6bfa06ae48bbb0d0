//! `POST /v1/chat/completions`: the deterministic answer and its JSON rendering.
//!
//! content = `"Mock answer to: " + last user text (≤200 chars) + " [" + hash8 + "]"`
//! where hash8 is the first 8 hex chars of SHA-256 over the request body without
//! `stream` / `stream_options`, so a streamed and a non-streamed request get the
//! same content. Models named `judge-yes*` always answer `"yes"` (a judge that
//! confirms, for reprise's semantic-tier tests). See `stream.rs` for the SSE rendering of the same [`Answer`].

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::control::Endpoint;
use crate::text::{body_hash8, message_text, truncate_chars, truncate_words, word_count};
use crate::{openai, stream, Shared};

/// Upper bound on `n`, so a typo cannot make the mock allocate without bound.
const MAX_CHOICES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub index: usize,
    /// `None` for a tool-call answer (`"content": null`).
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_call: Option<ToolCall>,
    pub finish_reason: &'static str,
}

/// Everything a response (JSON or SSE) is rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Value,
}

pub async fn handle(State(state): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    let req = match openai::prelude(&state, Endpoint::Chat, &headers, &raw).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    if !req.body.get("messages").is_some_and(Value::is_array) {
        return openai::error_response(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'messages'.",
            "invalid_request_error",
            Some("messages"),
            Some("missing_required_parameter"),
        );
    }
    let mut answer = build_answer(&req.body, &req.model, state.recorder.next_seq(), unix_now());
    if let (Some(text), false) = (state.fixed_answer.get(), req.model.starts_with("judge-yes")) {
        for choice in answer.choices.iter_mut().filter(|c| c.content.is_some()) {
            choice.content = Some(text.clone());
        }
    }
    let pad = openai::padding(&headers);
    if !pad.is_empty() {
        for content in answer.choices.iter_mut().filter_map(|c| c.content.as_mut()) {
            content.push_str(&pad);
        }
    }
    if req.model.starts_with("deepseek") {
        crate::anthropic::deepseek_usage(&state.prompt_cache, &req.body, &mut answer.usage);
    } else if state.config.prefix_cache {
        state.prefix_cache.account(&req.body, &mut answer.usage);
    }
    let streaming = req.body.get("stream").and_then(Value::as_bool) == Some(true);
    if !streaming {
        if req.stall {
            return stream::stalled_response("application/json", json_half(&render(&answer)));
        }
        return openai::json_response(&render(&answer), req.cut);
    }
    let include_usage = req
        .body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let delay = state.config.chunk_delay;
    if req.stall {
        let mut events = stream::events(&answer, include_usage);
        // Drop the finish chunk and `[DONE]` (and the usage chunk): an unfinished stream.
        events.truncate(
            events
                .len()
                .saturating_sub(if include_usage { 3 } else { 2 }),
        );
        stream::stalled_response(stream::SSE, events)
    } else if req.cut {
        let events = stream::cut_events(&answer, include_usage);
        stream::paced_response(stream::SSE, events, delay, true)
    } else {
        let events = stream::events(&answer, include_usage);
        stream::paced_response(stream::SSE, events, delay, false)
    }
}

/// The first half of `value`'s JSON bytes.
fn json_half(value: &Value) -> Vec<Bytes> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let half = bytes.len() / 2;
    vec![Bytes::from(bytes).slice(..half)]
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Builds the deterministic answer for a chat request body.
pub fn build_answer(body: &Map<String, Value>, model: &str, seq: u64, created: u64) -> Answer {
    let messages: &[Value] = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(message_text)
        .unwrap_or_default();
    let hash = body_hash8(body);
    let base = if model.starts_with("judge-yes") {
        "yes".to_owned()
    } else {
        format!(
            "Mock answer to: {} [{hash}]",
            truncate_chars(&last_user, 200)
        )
    };
    let reasoning = model
        .contains("reasoning")
        .then(|| format!("Thinking about: {}", truncate_chars(&last_user, 60)));
    let reasoning_words = reasoning.as_deref().map_or(0, word_count);
    let tool = tool_call(body, messages, &last_user, &hash);
    let n = body
        .get("n")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1)
        .clamp(1, MAX_CHOICES);
    let limit = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
        .and_then(|l| usize::try_from(l).ok());

    let mut choices = Vec::with_capacity(n);
    let mut completion_tokens = 0usize;
    for index in 0..n {
        let (content, tool_call, finish_reason, words) = match &tool {
            Some(tc) => (
                None,
                Some(tc.clone()),
                "tool_calls",
                word_count(&tc.arguments),
            ),
            None => {
                let mut text = base.clone();
                if index > 0 {
                    text.push_str(&format!(" (choice {index})"));
                }
                let words = word_count(&text);
                match limit {
                    Some(limit) if limit < words => {
                        (Some(truncate_words(&text, limit)), None, "length", limit)
                    }
                    _ => (Some(text), None, "stop", words),
                }
            }
        };
        completion_tokens += words + reasoning_words;
        choices.push(Choice {
            index,
            content,
            reasoning: reasoning.clone(),
            tool_call,
            finish_reason,
        });
    }
    let prompt_chars: usize = messages
        .iter()
        .map(|m| message_text(m).chars().count())
        .sum();
    let prompt_tokens = prompt_chars / 4 + 1;
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning_words * n},
    });
    Answer {
        id: format!("chatcmpl-mock-{seq}"),
        created,
        model: model.to_owned(),
        choices,
        usage,
    }
}

/// The non-stream `chat.completion` object.
pub fn render(answer: &Answer) -> Value {
    let choices: Vec<Value> = answer
        .choices
        .iter()
        .map(|c| {
            let mut message = Map::new();
            message.insert("role".into(), "assistant".into());
            message.insert("content".into(), c.content.clone().into());
            if let Some(r) = &c.reasoning {
                message.insert("reasoning_content".into(), r.clone().into());
            }
            if let Some(tc) = &c.tool_call {
                let call = json!({
                    "id": tc.id, "type": "function",
                    "function": {"name": tc.name, "arguments": tc.arguments},
                });
                message.insert("tool_calls".into(), Value::Array(vec![call]));
            }
            message.insert("refusal".into(), Value::Null);
            json!({"index": c.index, "message": message, "logprobs": null, "finish_reason": c.finish_reason})
        })
        .collect();
    json!({
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": choices,
        "usage": answer.usage,
        "system_fingerprint": "fp_mock",
    })
}

/// The tool call to answer with, if the request asks for one.
fn tool_call(
    body: &Map<String, Value>,
    messages: &[Value],
    last_user: &str,
    hash: &str,
) -> Option<ToolCall> {
    let tools = body.get("tools")?.as_array()?;
    let first = tools.first()?;
    let choice = body.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    if messages.last()?.get("role")?.as_str()? != "user" {
        return None;
    }
    let tool_name = |t: &Value| t.get("function")?.get("name")?.as_str().map(str::to_owned);
    // A forced `{"type":"function","function":{"name":..}}` picks that tool.
    let forced = choice
        .and_then(|c| c.get("function"))
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .filter(|name| tools.iter().any(|t| tool_name(t).as_deref() == Some(name)))
        .map(str::to_owned);
    let name = forced
        .or_else(|| tool_name(first))
        .unwrap_or_else(|| "tool".to_owned());
    let query =
        serde_json::to_string(&truncate_chars(last_user, 40)).unwrap_or_else(|_| "\"\"".to_owned());
    Some(ToolCall {
        id: format!("call_mock_{hash}"),
        name,
        arguments: format!("{{\"query\": {query}}}"),
    })
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

    fn content(a: &Answer, i: usize) -> String {
        a.choices[i].content.clone().unwrap_or_default()
    }

    #[test]
    fn content_is_deterministic_and_ignores_stream_fields() {
        let plain = body(json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "Hello there"}]}));
        let mut streamed = plain.clone();
        streamed.insert("stream".into(), true.into());
        streamed.insert("stream_options".into(), json!({"include_usage": true}));
        let a = build_answer(&plain, "gpt-4o-mini", 1, 0);
        let b = build_answer(&plain, "gpt-4o-mini", 2, 0);
        let s = build_answer(&streamed, "gpt-4o-mini", 3, 0);
        let hash = body_hash8(&plain);
        assert_eq!(hash.len(), 8);
        assert_eq!(
            content(&a, 0),
            format!("Mock answer to: Hello there [{hash}]")
        );
        assert_eq!(content(&a, 0), content(&b, 0));
        assert_eq!(content(&a, 0), content(&s, 0));
        assert_eq!(a.id, "chatcmpl-mock-1");
        assert_eq!(a.choices[0].finish_reason, "stop");

        let mut other = plain.clone();
        other.insert("temperature".into(), json!(0.5));
        assert_ne!(
            content(&build_answer(&other, "gpt-4o-mini", 1, 0), 0),
            content(&a, 0)
        );

        // "be brief" + "Hello there" = 19 chars → 19/4 + 1; content has 6 words.
        assert_eq!(a.usage["prompt_tokens"], 5);
        assert_eq!(a.usage["completion_tokens"], 6);
        assert_eq!(a.usage["total_tokens"], 11);
        assert_eq!(a.usage["prompt_tokens_details"]["cached_tokens"], 0);
        assert_eq!(a.usage["completion_tokens_details"]["reasoning_tokens"], 0);
    }

    #[test]
    fn text_parts_truncation_and_n() {
        let long = "x".repeat(300);
        let b = body(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": long}, {"type": "text", "text": "tail"}]}], "n": 2}));
        let a = build_answer(&b, "m", 1, 0);
        assert_eq!(a.choices.len(), 2);
        let c0 = content(&a, 0);
        assert!(c0.starts_with(&format!("Mock answer to: {} [", "x".repeat(200))));
        assert_eq!(content(&a, 1), format!("{c0} (choice 1)"));
        assert_eq!(a.choices[1].index, 1);
    }

    #[test]
    fn max_tokens_truncates_with_length() {
        let b = body(
            json!({"messages": [{"role": "user", "content": "one two three"}],
            "max_tokens": 3}),
        );
        let a = build_answer(&b, "m", 1, 0);
        assert_eq!(content(&a, 0), "Mock answer to:");
        assert_eq!(a.choices[0].finish_reason, "length");
        assert_eq!(a.usage["completion_tokens"], 3);
    }

    #[test]
    fn tool_call_and_reasoning() {
        let b = body(
            json!({"messages": [{"role": "user", "content": "weather in \"Paris\""}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}},
                      {"type": "function", "function": {"name": "other"}}]}),
        );
        let a = build_answer(&b, "mock-reasoning", 1, 0);
        let c = &a.choices[0];
        assert_eq!(c.content, None);
        assert_eq!(c.finish_reason, "tool_calls");
        let tc = c.tool_call.clone().unwrap_or_else(|| unreachable!());
        assert_eq!(tc.name, "get_weather");
        assert_eq!(tc.id, format!("call_mock_{}", body_hash8(&b)));
        assert_eq!(tc.arguments, r#"{"query": "weather in \"Paris\""}"#);
        let args: Value = serde_json::from_str(&tc.arguments).unwrap_or_default();
        assert_eq!(args["query"], "weather in \"Paris\"");
        assert_eq!(
            c.reasoning.as_deref(),
            Some("Thinking about: weather in \"Paris\"")
        );
        assert_eq!(a.usage["completion_tokens_details"]["reasoning_tokens"], 5);

        let mut none = b.clone();
        none.insert("tool_choice".into(), "none".into());
        assert!(build_answer(&none, "m", 1, 0).choices[0]
            .tool_call
            .is_none());
        let mut forced = b.clone();
        forced.insert(
            "tool_choice".into(),
            json!({"type": "function", "function": {"name": "other"}}),
        );
        let f = build_answer(&forced, "m", 1, 0);
        assert_eq!(
            f.choices[0].tool_call.as_ref().map(|t| t.name.as_str()),
            Some("other")
        );
    }
}
