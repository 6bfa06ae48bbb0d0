//! Checks on the request head, before any body byte is read: caller
//! authentication on the API routes, key or loopback peer on `/metrics`.
//! A request refused here costs a header lookup, never a body read, a parse
//! or a hash.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::limits::render;
use crate::state::AppState;

/// The API routes' gate, one middleware (each layer costs boxed futures and
/// services per request): 401 unless the caller presents an accepted key
/// (when keys are configured), decided from the headers before any body byte
/// is read; then the whole body under `server.body_limit_bytes` /
/// `limits.body_read_timeout` (`limits::requests::buffered`).
pub async fn authenticate_then_read(
    State((state, read)): State<(Arc<AppState>, crate::limits::requests::BodyRead)>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(e) = state.authenticate(request.headers()) {
        return render(request.uri().path(), e);
    }
    match crate::limits::requests::buffered(read, request).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// `/metrics`: a metrics or admin key, or (with no metrics keys configured)
/// a loopback peer.
pub async fn metrics_access(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback());
    if let Err(e) = state.may_read_metrics(request.headers(), loopback) {
        return render(request.uri().path(), e);
    }
    next.run(request).await
}
