//! Purge routes: `POST /v1/cache/purge`, `DELETE /v1/cache` (the caller's
//! namespace), `DELETE /v1/cache/entries/{key}` (one entry). Parse, check
//! the caller, hand over to `admin::purge`.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::admin::purge::{self, Caller, PurgeRequest};
use crate::cache::entry::unix_ms_now;
use crate::cache::policy::Directives;
use crate::error::ProxyError;
use crate::state::AppState;

/// The caller's namespace (with an `x-cache-namespace` segment, if sent),
/// admin flag, and the base namespace hash for the log.
fn caller(state: &AppState, headers: &HeaderMap) -> Result<(Caller, String), ProxyError> {
    let credential = state.authenticate(headers)?;
    let segment = Directives::default().with_headers(headers)?.namespace;
    let namespace = state.namespace(credential.as_deref(), segment.as_deref());
    let who = state.namespace(credential.as_deref(), None);
    let admin = state.is_admin(credential.as_deref());
    Ok((Caller { namespace, admin }, who))
}

async fn apply(state: Arc<AppState>, headers: HeaderMap, request: PurgeRequest) -> Response {
    let (caller, who) = match caller(&state, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let plan = match purge::plan(&request, &caller, unix_ms_now()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let outcome = purge::execute(&state, plan, &who).await;
    axum::Json(json!({
        "object": "cache.purge",
        "id": outcome.id,
        "watermark_ms": outcome.watermark_ms,
        "deleted": outcome.deleted,
    }))
    .into_response()
}

/// `POST /v1/cache/purge` with a JSON body (an empty body = the whole
/// namespace).
pub async fn purge(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return ProxyError::bad_request(e.to_string(), None).into_response(),
    };
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        PurgeRequest::default()
    } else {
        match serde_json::from_slice::<PurgeRequest>(&body) {
            Ok(r) => r,
            Err(e) => {
                return ProxyError::bad_request(format!("invalid purge request: {e}"), None)
                    .into_response()
            }
        }
    };
    apply(state, headers, request).await
}

/// `DELETE /v1/cache`: everything in the caller's namespace.
pub async fn purge_namespace(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    apply(state, headers, PurgeRequest::default()).await
}

/// `DELETE /v1/cache/entries/{key}`: one entry, by its `x-cache-key`.
pub async fn purge_entry(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request = PurgeRequest {
        keys: vec![key],
        ..PurgeRequest::default()
    };
    apply(state, headers, request).await
}
