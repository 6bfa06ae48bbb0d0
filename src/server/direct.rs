//! The direct cache API: `POST /v1/cache/get` (a chat or embeddings request
//! body → the cached answer, or 404 `not_cached`) and `POST /v1/cache/set`
//! (`{"request", "response", "ttl"}` → stored under the request's key).
//! Parse and validate here; the flow is `pipeline::direct`.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::cache::facts::BodyFacts;
use crate::cache::key::EndpointKind;
use crate::cache::ttl::Ttl;
use crate::error::ProxyError;
use crate::pipeline::direct;
use crate::state::AppState;

/// The endpoint a request body is for, and its facts: `messages` = chat,
/// `input` = embeddings, validated like the endpoint itself.
fn facts_of(raw: &[u8]) -> Result<(EndpointKind, BodyFacts), ProxyError> {
    let json = super::parse_object(raw)?;
    let kind = if json.get("messages").is_some() {
        super::chat::validate(&json)?;
        EndpointKind::Chat
    } else if json.get("input").is_some() {
        super::embeddings::validate(&json)?;
        EndpointKind::Embeddings
    } else {
        return Err(ProxyError::bad_request(
            "the request must be a chat completion (`messages`) or embeddings (`input`) request",
            None,
        ));
    };
    Ok((kind, BodyFacts::derive(kind, &json)?))
}

fn not_cached() -> Response {
    let body = json!({"error": {
        "message": "no cached response for this request",
        "type": "invalid_request_error",
        "param": null,
        "code": "not_cached",
    }});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ProxyError> {
    body.map_err(|e| ProxyError::bad_request(format!("could not read the body: {e}"), None))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let raw = body_or_error(body)?;
        let (kind, facts) = facts_of(&raw)?;
        direct::get(state, kind, headers, raw, &facts).await
    }
    .await;
    match result {
        Ok(response) => response,
        Err(ProxyError::NotCached) => not_cached(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/cache/set`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    request: Box<RawValue>,
    response: Box<RawValue>,
    /// `"1h"`, seconds, or `"forever"`; default: what a real request would get.
    #[serde(default)]
    ttl: Option<Value>,
}

fn ttl_of(value: Option<&Value>) -> Result<Option<Ttl>, ProxyError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => String::new(),
    };
    Ttl::parse(&text).map(Some).ok_or_else(|| {
        ProxyError::bad_request(
            "`ttl` must be seconds, a duration such as \"1h\", or \"forever\"",
            Some("ttl"),
        )
    })
}

pub async fn set(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let raw = body_or_error(body)?;
        let parsed: SetBody = serde_json::from_slice(&raw).map_err(|e| {
            ProxyError::bad_request(format!("invalid cache.set request: {e}"), None)
        })?;
        let ttl = ttl_of(parsed.ttl.as_ref())?;
        let request = Bytes::copy_from_slice(parsed.request.get().as_bytes());
        let response = Bytes::copy_from_slice(parsed.response.get().as_bytes());
        let (kind, facts) = facts_of(&request)?;
        direct::set(state, kind, headers, request, &facts, response, ttl).await
    }
    .await;
    match result {
        Ok(stored) => axum::Json(json!({
            "object": "cache.entry",
            "key": stored.key.hex(),
            "model": stored.model,
            "ttl_s": stored.ttl.duration().map(|d| d.as_secs()),
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}
