//! Call recording and the `/_mock/*` control routes.
//!
//! - `GET /_mock/calls` → `{"chat": n, "embeddings": n, "models": n, "messages": n, "total": n}`
//! - `POST /_mock/reset` → zero the counters, forget the last request and the prompt cache
//! - `GET /_mock/last` → raw bytes of the last body received on a `/v1` POST route
//! - `GET /_mock/last_headers` → the last `/v1` request's headers as a JSON object
//!
//! Recording is cheap: one atomic increment, plus a refcounted `Bytes` clone and a
//! header-map clone under short mutex sections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::Shared;

/// A counted route family. Add a variant (and extend [`Endpoint::ALL`]) per new route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Embeddings,
    Models,
    /// Anthropic `/v1/messages`.
    Messages,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [
        Endpoint::Chat,
        Endpoint::Embeddings,
        Endpoint::Models,
        Endpoint::Messages,
    ];

    /// Key in the `/_mock/calls` JSON.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models => "models",
            Endpoint::Messages => "messages",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters and the last request, shared by all handlers.
#[derive(Debug, Default)]
pub struct Recorder {
    counts: [AtomicU64; Endpoint::ALL.len()],
    /// Monotonic sequence for response ids; never reset, so a refreshed cache
    /// entry is always distinguishable from an old one.
    seq: AtomicU64,
    last_body: Mutex<Option<Bytes>>,
    last_headers: Mutex<Option<HeaderMap>>,
}

/// Locks a mutex, recovering the data if a previous holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Recorder {
    /// Records one request to `endpoint`; `body` is `Some` for POST routes.
    pub fn record(&self, endpoint: Endpoint, headers: &HeaderMap, body: Option<&Bytes>) {
        self.counts[endpoint.index()].fetch_add(1, Ordering::Relaxed);
        // Clone and drop outside the locks to keep the critical sections tiny.
        if let Some(body) = body {
            let previous = lock(&self.last_body).replace(body.clone());
            drop(previous);
        }
        let headers = headers.clone();
        let previous = lock(&self.last_headers).replace(headers);
        drop(previous);
    }

    /// Next response sequence number (starts at 1).
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.counts[endpoint.index()].load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
        *lock(&self.last_body) = None;
        *lock(&self.last_headers) = None;
    }

    /// `{"chat": n, ..., "total": n}`.
    pub fn calls_json(&self) -> Value {
        let mut map = Map::new();
        let mut total = 0u64;
        for ep in Endpoint::ALL {
            let n = self.count(ep);
            total = total.saturating_add(n);
            map.insert(ep.name().to_owned(), Value::from(n));
        }
        map.insert("total".to_owned(), Value::from(total));
        Value::Object(map)
    }

    pub fn last_body(&self) -> Option<Bytes> {
        lock(&self.last_body).clone()
    }

    /// Last headers as `{lowercase-name: value}`; repeated headers are joined by ", ".
    pub fn last_headers_json(&self) -> Option<Value> {
        let guard = lock(&self.last_headers);
        let headers = guard.as_ref()?;
        let mut map = Map::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match map.get_mut(name.as_str()) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    map.insert(name.as_str().to_owned(), Value::String(value));
                }
            }
        }
        Some(Value::Object(map))
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/_mock/calls", get(calls))
        .route("/_mock/reset", post(reset))
        .route("/_mock/last", get(last))
        .route("/_mock/last_headers", get(last_headers))
}

async fn calls(State(state): State<Shared>) -> Json<Value> {
    Json(state.recorder.calls_json())
}

async fn reset(State(state): State<Shared>) -> Json<Value> {
    state.recorder.reset();
    state.prompt_cache.reset();
    state.prefix_cache.reset();
    state.faults.clear();
    state.fixed_answer.clear();
    Json(state.recorder.calls_json())
}

async fn last(State(state): State<Shared>) -> Response {
    match state.recorder.last_body() {
        Some(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => not_recorded("no request body recorded yet"),
    }
}

async fn last_headers(State(state): State<Shared>) -> Response {
    match state.recorder.last_headers_json() {
        Some(headers) => Json(headers).into_response(),
        None => not_recorded("no request recorded yet"),
    }
}

fn not_recorded(message: &str) -> Response {
    crate::openai::error_response(
        StatusCode::NOT_FOUND,
        message,
        "invalid_request_error",
        None,
        Some("mock_nothing_recorded"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn records_counts_and_resets() {
        let rec = Recorder::default();
        let mut headers = HeaderMap::new();
        headers.insert("x-test", HeaderValue::from_static("1"));
        headers.append("x-test", HeaderValue::from_static("2"));
        rec.record(Endpoint::Chat, &headers, Some(&Bytes::from_static(b"{}")));
        rec.record(Endpoint::Models, &HeaderMap::new(), None);
        rec.record(Endpoint::Chat, &headers, None);
        let calls = rec.calls_json();
        assert_eq!(calls["chat"], 2);
        assert_eq!(calls["models"], 1);
        assert_eq!(calls["embeddings"], 0);
        assert_eq!(calls["total"], 3);
        assert_eq!(rec.last_body().as_deref(), Some(&b"{}"[..]));
        let h = rec.last_headers_json().unwrap_or_default();
        assert_eq!(h["x-test"], "1, 2");

        let seq = rec.next_seq();
        rec.reset();
        assert_eq!(rec.calls_json()["total"], 0);
        assert!(rec.last_body().is_none());
        assert!(rec.last_headers_json().is_none());
        assert_eq!(rec.next_seq(), seq + 1, "the id sequence survives reset");
    }
}
