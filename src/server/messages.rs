//! `POST /v1/messages`: Anthropic's Messages API, cached like chat completions.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;

use crate::cache::key::EndpointKind;
use crate::error::ProxyError;
use crate::json::Json;
use crate::state::AppState;

pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    super::cached_route(state, EndpointKind::Messages, headers, body, validate).await
}

fn validate(body: &Json<'_>) -> Result<(), ProxyError> {
    super::require_model(body)?;
    match body.get("messages") {
        Some(Json::Array(m)) if !m.is_empty() => {}
        None | Some(Json::Null) => {
            return Err(ProxyError::bad_request(
                "`messages` is required",
                Some("messages"),
            ))
        }
        Some(_) => {
            return Err(ProxyError::bad_request(
                "`messages` must be a non-empty array of message objects",
                Some("messages"),
            ))
        }
    }
    match body.get("max_tokens") {
        Some(Json::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {}
        None | Some(Json::Null) => {
            return Err(ProxyError::bad_request(
                "`max_tokens` is required",
                Some("max_tokens"),
            ))
        }
        Some(_) => {
            return Err(ProxyError::bad_request(
                "`max_tokens` must be a positive integer",
                Some("max_tokens"),
            ))
        }
    }
    super::check_stream(body)
}
