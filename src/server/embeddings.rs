//! `POST /v1/embeddings`.

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
    super::cached_route(state, EndpointKind::Embeddings, headers, body, validate).await
}

pub(crate) fn validate(body: &Json<'_>) -> Result<(), ProxyError> {
    super::require_model(body)?;
    match body.get("input") {
        Some(Json::String(_)) | Some(Json::Array(_)) => Ok(()),
        None | Some(Json::Null) => Err(ProxyError::bad_request(
            "`input` is required",
            Some("input"),
        )),
        Some(_) => Err(ProxyError::bad_request(
            "`input` must be a string or an array",
            Some("input"),
        )),
    }
}
