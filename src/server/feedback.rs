//! `POST /v1/cache/feedback {"key": "<x-cache-key>", "correct": false}`:
//! a caller says whether a semantic hit's answer was right. `false` stops
//! that entry from answering paraphrases (its exact hits are unaffected).
//! An optional `"similarity"` (the hit's `x-cache-similarity`) also records
//! the label as a verified-mode observation of the entry.
//! Caller-scoped: the key is looked up in the caller's own namespace (plus
//! its `x-cache-namespace` segment), so nobody can block another tenant's
//! entries.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::cache::key::CacheKey;
use crate::cache::policy::Directives;
use crate::error::ProxyError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Feedback {
    key: String,
    correct: bool,
    #[serde(default)]
    similarity: Option<f32>,
}

fn not_found(message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error",
        "param": "key", "code": "not_found"}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let credential = match state.authenticate(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let directives = match Directives::default().with_headers(&headers) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let feedback: Feedback = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return ProxyError::bad_request(
                format!("expected {{\"key\": \"<x-cache-key>\", \"correct\": true|false}}: {e}"),
                None,
            )
            .into_response()
        }
    };
    let key = hex::decode(&feedback.key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(CacheKey);
    let Some(key) = key else {
        return ProxyError::bad_request(
            "`key` must be an x-cache-key value (64 hex digits)",
            Some("key"),
        )
        .into_response();
    };
    if feedback
        .similarity
        .is_some_and(|s| !(s.is_finite() && (0.0..=1.0).contains(&s)))
    {
        return ProxyError::bad_request(
            "`similarity` must be between 0 and 1 (the hit's x-cache-similarity)",
            Some("similarity"),
        )
        .into_response();
    }
    let Some(tier) = state.semantic.as_ref() else {
        return not_found("the semantic tier is not enabled (semantic.enabled)");
    };
    let namespace = state.namespace(credential.as_deref(), directives.namespace.as_deref());
    let found = tier
        .feedback(
            state.tiers.redis.as_ref(),
            &state.sealing(credential.as_deref()),
            &namespace,
            &key,
            feedback.correct,
            feedback.similarity,
        )
        .await;
    if !found {
        return not_found("no semantic entry with this key in your namespace");
    }
    Json(json!({"key": feedback.key, "correct": feedback.correct, "applied": true})).into_response()
}
