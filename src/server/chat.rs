//! `POST /v1/chat/completions`.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::cache::key::EndpointKind;
use crate::error::ProxyError;
use crate::pipeline;
use crate::state::AppState;

pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = super::parse_body(body, state.config.server.body_limit_bytes)
        .and_then(|p| validate(&p.body).map(|()| p));
    match parsed {
        Ok(parsed) => pipeline::run(state, EndpointKind::Chat, headers, parsed).await,
        Err(e) => e.into_response(),
    }
}

fn validate(body: &Map<String, Value>) -> Result<(), ProxyError> {
    super::require_model(body)?;
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(ProxyError::bad_request(
                "`messages` must contain at least one message",
                Some("messages"),
            ))
        }
        None | Some(Value::Null) => {
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
