//! `GET /v1/cache/top?limit=N`: the entries that saved the most on this
//! instance (key hash, model, hits, USD), for the caller's namespaces.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::ProxyError;
use crate::state::AppState;

const MAX_LIMIT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopQuery {
    limit: Option<usize>,
}

pub async fn top(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<TopQuery>, QueryRejection>,
) -> Response {
    let credential = match state.authenticate(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let limit = match query {
        Ok(Query(q)) => q.limit.unwrap_or(20).clamp(1, MAX_LIMIT),
        Err(e) => return ProxyError::bad_request(e.body_text(), Some("limit")).into_response(),
    };
    let admin = state.is_admin(credential.as_deref());
    let own = state.namespace(credential.as_deref(), None);
    let prefix = format!("{own}.");
    let data: Vec<_> = state
        .top
        .top(limit, |ns| admin || ns == own || ns.starts_with(&prefix))
        .into_iter()
        .map(|e| {
            let mut v = json!({
                "key": e.key.hex(),
                "model": e.model,
                "hits": e.hits,
                "saved_usd": e.saved_usd,
            });
            if admin {
                v["namespace"] = json!(e.namespace);
            }
            v
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
