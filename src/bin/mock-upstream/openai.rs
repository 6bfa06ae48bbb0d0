//! OpenAI routes, the shared request prelude (record → latency → parse → failure
//! models) and OpenAI-shaped errors.
//!
//! Failure models, by exact model name, on every POST route:
//! - `mock-error-500` → 500 `server_error`
//! - `mock-error-429` → 429 `rate_limit_error` with `retry-after: 1`
//! - `mock-error-400` → 400 `invalid_request_error`
//! - `mock-slow` → sleeps `--slow-ms`, then answers normally
//! - `mock-cut-stream` → the body is cut mid-way and the connection aborted
//! - `mock-garbage` → 200 `application/json` whose body is not JSON (an HTML
//!   error page from a misbehaving gateway)
//! - `mock-stall-stream` → a stream sends its events but the finish chunk and
//!   `[DONE]`, then stays open and silent (a JSON answer: its first half)
//!
//! `x-mock-pad-bytes: N` (at most [`MAX_PAD_BYTES`]) makes answers about N bytes
//! larger: filler words appended to every choice's content (and to the garbage
//! page), so tests can push large bodies through reprise.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::control::Endpoint;
use crate::{chat, embeddings, stream, Shared};

/// Per-request override of `--latency-ms`.
pub const LATENCY_HEADER: &str = "x-mock-latency-ms";

/// Per-request padding of the answer, in bytes.
pub const PAD_HEADER: &str = "x-mock-pad-bytes";

/// Upper bound on the padding, so a typo cannot make the mock allocate without bound.
pub const MAX_PAD_BYTES: usize = 64 * 1024 * 1024;

/// Models listed by `GET /v1/models`.
const MODELS: [&str; 6] = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "o4-mini",
    "mock-reasoning",
    "text-embedding-3-small",
];

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/embeddings", post(embeddings::handle))
        .route("/v1/models", get(models))
}

/// `{"error":{"message","type","param","code"}}` with `status`.
pub fn error_response(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let body = json!({
        "error": {"message": message, "type": kind, "param": param, "code": code}
    });
    (status, Json(body)).into_response()
}

/// Fallback for unknown routes.
pub async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "mock-upstream: unknown route",
        "invalid_request_error",
        None,
        Some("unknown_url"),
    )
}

async fn models(State(state): State<Shared>, headers: HeaderMap) -> Response {
    state.recorder.record(Endpoint::Models, &headers, None);
    delay(latency(&headers, state.config.latency)).await;
    if let Some(fault) = state.faults.response() {
        return fault;
    }
    let data: Vec<Value> = MODELS
        .iter()
        .map(
            |id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"}),
        )
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// The latency for this request: the header override, else the CLI default.
pub fn latency(headers: &HeaderMap, default: Duration) -> Duration {
    headers
        .get(LATENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(default, Duration::from_millis)
}

/// `x-mock-pad-bytes` as filler text: 1 KiB words separated by spaces (so a
/// stream carries it as many ordinary-sized content deltas), empty when absent.
pub fn padding(headers: &HeaderMap) -> String {
    const WORD: usize = 1024;
    let bytes = headers
        .get(PAD_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_PAD_BYTES);
    let mut pad = String::with_capacity(bytes + WORD);
    while pad.len() < bytes {
        pad.push(' ');
        pad.extend(std::iter::repeat_n('x', WORD - 1));
    }
    pad
}

pub async fn delay(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// A parsed POST request that passed the prelude.
pub struct Request {
    pub body: Map<String, Value>,
    pub model: String,
    /// `mock-cut-stream`: cut the response body mid-way.
    pub cut: bool,
    /// `mock-stall-stream`: stop before the end and keep the connection open.
    pub stall: bool,
}

/// Shared start of every POST handler: record the call, wait the latency, parse the
/// JSON object body, and apply the failure models. `Err` is the response to send.
pub async fn prelude(
    state: &Shared,
    endpoint: Endpoint,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<Request, Response> {
    state.recorder.record(endpoint, headers, Some(raw));
    delay(latency(headers, state.config.latency)).await;
    if let Some(fault) = state.faults.response() {
        return Err(fault);
    }

    let body = match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                "Invalid type for request body: expected a JSON object.",
                "invalid_request_error",
                None,
                Some("invalid_type"),
            ))
        }
        Err(err) => {
            let message = format!(
                "We could not parse the JSON body of your request. (HINT: This likely \
                 means you aren't using your HTTP library correctly. The OpenAI API expects \
                 a JSON payload, but what was sent was not valid JSON: {err})"
            );
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                None,
                None,
            ));
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if model.is_empty() {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            Some("model"),
            None,
        ));
    }

    match model.as_str() {
        "mock-error-500" => Err(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mock upstream failure",
            "server_error",
            None,
            Some("mock_500"),
        )),
        "mock-error-429" => {
            let mut resp = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "mock rate limit reached",
                "rate_limit_error",
                None,
                Some("mock_429"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            Err(resp)
        }
        "mock-garbage" => {
            let page = format!(
                "<html><body>502 Bad Gateway (not JSON){}</body></html>",
                padding(headers)
            );
            let mut resp = (StatusCode::OK, page).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            Err(resp)
        }
        "mock-error-400" => Err(error_response(
            StatusCode::BAD_REQUEST,
            "mock invalid request",
            "invalid_request_error",
            None,
            Some("mock_400"),
        )),
        "mock-slow" => {
            delay(state.config.slow).await;
            Ok(Request {
                body,
                model,
                cut: false,
                stall: false,
            })
        }
        "mock-cut-stream" => Ok(Request {
            body,
            model,
            cut: true,
            stall: false,
        }),
        "mock-stall-stream" => Ok(Request {
            body,
            model,
            cut: false,
            stall: true,
        }),
        _ => Ok(Request {
            body,
            model,
            cut: false,
            stall: false,
        }),
    }
}

/// A 200 JSON response, or for `cut` the first half of its bytes followed by an
/// aborted body (the client sees a truncated, unterminated response).
pub fn json_response(value: &Value, cut: bool) -> Response {
    let bytes = match serde_json::to_vec(value) {
        Ok(bytes) => bytes,
        Err(err) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("mock-upstream could not serialize its response: {err}"),
                "server_error",
                None,
                None,
            )
        }
    };
    if cut {
        let half = bytes.len() / 2;
        let first_half = Bytes::from(bytes).slice(..half);
        stream::paced_response("application/json", vec![first_half], Duration::ZERO, true)
    } else {
        ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn latency_header_overrides_default() {
        let mut headers = HeaderMap::new();
        let default = Duration::from_millis(7);
        assert_eq!(latency(&headers, default), default);
        headers.insert(LATENCY_HEADER, HeaderValue::from_static("25"));
        assert_eq!(latency(&headers, default), Duration::from_millis(25));
        headers.insert(LATENCY_HEADER, HeaderValue::from_static("junk"));
        assert_eq!(latency(&headers, default), default);
    }
}
