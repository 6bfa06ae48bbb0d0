//! `POST /v1/chat/completions`.

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

pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    super::cached_route(state, EndpointKind::Chat, headers, body, validate).await
}

pub(crate) fn validate(body: &Json<'_>) -> Result<(), ProxyError> {
    super::require_model(body)?;
    match body.get("messages") {
        Some(Json::Array(m)) if !m.is_empty() => {}
        Some(Json::Array(_)) => {
            return Err(ProxyError::bad_request(
                "`messages` must contain at least one message",
                Some("messages"),
            ))
        }
        None | Some(Json::Null) => {
            return Err(ProxyError::bad_request(
                "`messages` is required",
                Some("messages"),
            ))
        }
        Some(_) => {
            return Err(ProxyError::bad_request(
                "`messages` must be an array of message objects",
                Some("messages"),
            ))
        }
    }
    super::check_stream(body)
}
