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
//!
//! Split by concern: this file is the endpoint (headers, validation, failure
//! models, JSON or SSE); `message.rs` builds and renders the answer;
//! `prompt_cache.rs` is the prompt-cache imitation (also DeepSeek's, for the
//! chat mock).

mod message;
mod prompt_cache;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use message::sse;
use message::{build_message, events, render};
pub use prompt_cache::{deepseek_usage, PromptCache};

use crate::control::Endpoint;
use crate::stream::{paced_response, SSE};
use crate::{openai, Shared};

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/messages", post(handle))
}

/// `{"type":"error","error":{"type":kind,"message":message}}` with `status`.
pub fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (status, Json(body)).into_response()
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
