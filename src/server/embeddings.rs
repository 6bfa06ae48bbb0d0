//! `POST /v1/embeddings`.

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

pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = super::parse_body(body, state.config.server.body_limit_bytes)
        .and_then(|p| validate(&p.body).map(|()| p));
    match parsed {
        Ok(parsed) => pipeline::run(state, EndpointKind::Embeddings, headers, parsed).await,
        Err(e) => e.into_response(),
    }
}

fn validate(body: &Map<String, Value>) -> Result<(), ProxyError> {
    super::require_model(body)?;
    match body.get("input") {
        Some(Value::String(_)) | Some(Value::Array(_)) => Ok(()),
        None | Some(Value::Null) => Err(ProxyError::bad_request(
            "`input` is required",
            Some("input"),
        )),
        Some(_) => Err(ProxyError::bad_request(
            "`input` must be a string or an array",
            Some("input"),
        )),
    }
}
