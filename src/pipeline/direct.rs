//! The direct cache API's flow (`POST /v1/cache/get`, `/v1/cache/set`):
//! the same preparation as a real request (authentication, directives,
//! routing, namespace, key), so `set` stores under exactly the key a real
//! request would use and `get` answers exactly what it would get. Neither
//! calls a provider or counts in the request stats.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use super::{costing, prepare, respond};
use crate::cache::entry::Entry;
use crate::cache::facts::BodyFacts;
use crate::cache::key::{CacheKey, EndpointKind};
use crate::cache::ttl::Ttl;
use crate::error::ProxyError;
use crate::render::CacheStatus;
use crate::state::AppState;

/// The cached answer for this request, rendered like a hit; `NotCached`
/// when there is none (or caching is off for it).
pub async fn get(
    state: Arc<AppState>,
    kind: EndpointKind,
    headers: HeaderMap,
    raw: Bytes,
    facts: &BodyFacts,
) -> Result<Response, ProxyError> {
    let request = prepare(state, kind, headers, raw, facts)?;
    let Some(key) = request.key else {
        return Err(ProxyError::NotCached);
    };
    let found = request
        .state
        .tiers
        .lookup(
            &key,
            &request.namespace,
            &request.sealing,
            request.directives.max_age,
            |e| request.not_purged(&key, e),
        )
        .await;
    let Some((entry, tier)) = found
        .fresh
        .filter(|(e, _)| respond::compatible(&request, e))
    else {
        return Err(ProxyError::NotCached);
    };
    let cost = costing::hit(&request.state, &request.model, &entry);
    Ok(respond::cached(
        &request,
        &entry,
        CacheStatus::Hit,
        Some(tier),
        cost.as_ref(),
    ))
}

/// What `set` stored.
pub struct Stored {
    pub key: CacheKey,
    pub ttl: Ttl,
    pub model: String,
}

/// Stores `response` as the answer to this request, in every tier, after
/// checking it looks like the provider's answer would (a JSON object with
/// `choices` / `data`, within `cache.max_entry_bytes`). Its `usage` is kept,
/// so hits on it report savings.
pub async fn set(
    state: Arc<AppState>,
    kind: EndpointKind,
    headers: HeaderMap,
    raw: Bytes,
    facts: &BodyFacts,
    response: Bytes,
    ttl: Option<Ttl>,
) -> Result<Stored, ProxyError> {
    let request = prepare(state, kind, headers, raw, facts)?;
    let Some(key) = request.key else {
        return Err(ProxyError::bad_request(
            "caching is off for this model, so nothing can be stored for it",
            Some("request.model"),
        ));
    };
    let max = request.state.config.cache.max_entry_bytes;
    if response.len() > max {
        return Err(ProxyError::bad_request(
            format!("`response` is larger than cache.max_entry_bytes ({max} bytes)"),
            Some("response"),
        ));
    }
    check_shape(kind, &response)?;
    let usage = costing::raw_usage(&response).flatten();
    let usage_value: Option<Value> = usage
        .as_ref()
        .and_then(|raw| serde_json::from_str(raw.get()).ok());
    let total = usage_value
        .as_ref()
        .and_then(crate::cost::normalize)
        .map(|n| n.total_tokens);
    let ttl = ttl.unwrap_or_else(|| request.directives.write_ttl(request.default_ttl));
    if ttl.is_zero() {
        return Err(ProxyError::bad_request(
            "`ttl` must be positive",
            Some("ttl"),
        ));
    }
    let entry = Entry::new(response, "application/json".into(), ttl, total)
        .with_usage(usage.map(|u| Bytes::copy_from_slice(u.get().as_bytes())))
        .with_origin(request.origin(), None);
    request
        .state
        .tiers
        .store(key, &request.namespace, &request.sealing, Arc::new(entry))
        .await;
    Ok(Stored {
        key,
        ttl,
        model: request.model.clone(),
    })
}

/// A chat answer has a non-empty `choices` array, an embeddings answer a
/// `data` array.
fn check_shape(kind: EndpointKind, body: &[u8]) -> Result<(), ProxyError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ProxyError::bad_request(format!("`response` is not JSON: {e}"), Some("response"))
    })?;
    let ok = match kind {
        EndpointKind::Chat => value
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty()),
        EndpointKind::Embeddings => value.get("data").and_then(Value::as_array).is_some(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ProxyError::bad_request(
            match kind {
                EndpointKind::Embeddings => {
                    "`response` must be an embeddings answer (a `data` array)"
                }
                _ => "`response` must be a chat completion (a non-empty `choices` array)",
            },
            Some("response"),
        ))
    }
}
