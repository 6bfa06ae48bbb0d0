//! `GET /v1/models`: forwarded to the default provider, never cached.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};

use crate::error::ProxyError;
use crate::render;
use crate::state::AppState;
use crate::upstream::{self, Deadline};

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match forward(&state, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn forward(state: &AppState, headers: &HeaderMap) -> Result<Response, ProxyError> {
    state.authenticate(headers)?;
    let provider = state
        .providers
        .default_or_first()
        .ok_or_else(|| ProxyError::ModelNotFound("no provider is configured".into()))?;
    let deadline = Deadline::after(state.config.server.upstream_timeout);
    let response = upstream::send(
        &state.client,
        provider,
        Method::GET,
        "/models",
        provider.upstream_headers(headers),
        None,
        deadline,
    )
    .await?;
    let status = response.status();
    let out_headers = upstream::passthrough_headers(response.headers());
    let body = upstream::read_body(
        provider,
        response,
        deadline,
        state.config.limits.max_response_bytes,
    )
    .await?;
    Ok(render::response(
        status,
        out_headers,
        Body::from(body),
        None,
    ))
}
