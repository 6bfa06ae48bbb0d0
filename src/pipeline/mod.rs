//! The cached-request flow, shared by every cached endpoint:
//! authenticate → directives → route → key → tiers (L1, L2) → single-flight
//! → provider → store (off the response path) → render.
//!
//! Route handlers (`server/`) parse and validate the body, then call [`run`].
//! `forward.rs` talks to the provider; `respond.rs` renders cached answers;
//! `miss.rs` is the upstream leg with coalescing, stale-if-error and storing.

mod forward;
mod miss;
mod respond;

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::cache::entry::Entry;
use crate::cache::flight::{self, Outcome, Role};
use crate::cache::key::{body_key, custom_key, CacheKey, EndpointKind, KeyScope};
use crate::cache::policy::Directives;
use crate::error::ProxyError;
use crate::providers::Provider;
use crate::render::{CacheStatus, Tier};
use crate::state::AppState;

/// A parsed request body, as the route handler validated it.
pub struct ParsedRequest {
    /// The original bytes: forwarded unchanged when reprise modified nothing.
    pub raw: Bytes,
    pub body: Map<String, Value>,
}

/// Everything the flow decided about one request.
pub(crate) struct Request {
    pub state: Arc<AppState>,
    pub kind: EndpointKind,
    pub headers: HeaderMap,
    pub provider: Arc<Provider>,
    pub directives: Directives,
    pub namespace: String,
    /// None when the request is not cacheable (caching disabled, streams).
    pub key: Option<CacheKey>,
    /// The bytes to send upstream.
    pub payload: Bytes,
    pub streaming: bool,
}

/// Runs the flow; every failure becomes an OpenAI-shaped error response.
pub async fn run(
    state: Arc<AppState>,
    kind: EndpointKind,
    headers: HeaderMap,
    request: ParsedRequest,
) -> Response {
    match flow(state, kind, headers, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn flow(
    state: Arc<AppState>,
    kind: EndpointKind,
    headers: HeaderMap,
    parsed: ParsedRequest,
) -> Result<Response, ProxyError> {
    let request = prepare(state, kind, headers, parsed)?;
    if request.streaming {
        // Streams bypass the cache for now (stream caching is its own feature).
        return forward::stream(&request, CacheStatus::Bypass).await;
    }
    let Some(key) = request.key else {
        return miss::forward_and_store(request, CacheStatus::Bypass, None, None).await;
    };

    let mut stale: Option<(Arc<Entry>, Tier)> = None;
    let reads = !request.directives.no_cache;
    if reads {
        let found = request
            .state
            .tiers
            .lookup(&key, &request.namespace, request.directives.max_age)
            .await;
        if let Some((entry, tier)) = found.fresh {
            return Ok(respond::cached(
                &entry,
                CacheStatus::Hit,
                Some(tier),
                &key,
                &request.provider.name,
            ));
        }
        stale = found.stale;
    }
    if request.directives.only_if_cached {
        return Err(ProxyError::NotCached);
    }
    let status = if reads {
        CacheStatus::Miss
    } else {
        CacheStatus::Bypass
    };
    if !request.state.config.cache.single_flight.enabled {
        return miss::forward_and_store(request, status, stale, None).await;
    }

    // Single-flight: lead, or follow an identical miss in progress. A failed
    // leader is not copied: followers re-join once, so one of them retries.
    let wait_timeout = request.state.config.cache.single_flight.wait_timeout;
    let mut rejoined = false;
    loop {
        match request.state.flights.join(key) {
            Role::Leader(guard) => {
                return miss::forward_and_store(request, status, stale, Some(guard)).await
            }
            Role::Follower(slot) => match flight::wait(slot, wait_timeout).await {
                Some(Outcome::Shared(entry)) => {
                    return Ok(respond::cached(
                        &entry,
                        CacheStatus::Coalesced,
                        None,
                        &key,
                        &request.provider.name,
                    ))
                }
                Some(Outcome::Failed(_)) if !rejoined => rejoined = true,
                Some(Outcome::Failed(Some(reply))) => return Ok(respond::failed(&reply, &key)),
                _ => return miss::forward_and_store(request, status, stale, None).await,
            },
        }
    }
}

/// Authentication, directives, routing, namespace, key and payload.
fn prepare(
    state: Arc<AppState>,
    kind: EndpointKind,
    headers: HeaderMap,
    parsed: ParsedRequest,
) -> Result<Request, ProxyError> {
    let credential = state.authenticate(&headers)?;
    let ParsedRequest { raw, mut body } = parsed;
    let had_extension = body.contains_key("cache");
    let directives = Directives::extract(&headers, &mut body)?;

    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let route = state.providers.route(&model)?;
    let upstream_model = route.stripped_model.clone().unwrap_or(model);
    if let Some(stripped) = &route.stripped_model {
        body.insert("model".into(), Value::String(stripped.clone()));
    }
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let namespace = state.namespace(credential.as_deref(), directives.namespace.as_deref());

    let cacheable = state.config.cache.enabled && !streaming;
    let key = cacheable.then(|| {
        let scope = KeyScope {
            namespace: &namespace,
            kind,
            provider: &route.provider.name,
            model: &upstream_model,
        };
        match &directives.key {
            Some(custom) => custom_key(&scope, custom),
            None => body_key(&scope, &body),
        }
    });

    // The caller's bytes when nothing changed, else the edited body (which
    // keeps the caller's key order: serde_json `preserve_order`).
    let payload = if had_extension || route.stripped_model.is_some() {
        Bytes::from(
            serde_json::to_vec(&body).map_err(|e| ProxyError::bad_request(e.to_string(), None))?,
        )
    } else {
        raw
    };
    Ok(Request {
        state,
        kind,
        headers,
        provider: route.provider,
        directives,
        namespace,
        key,
        payload,
        streaming,
    })
}

/// The namespace part derived from a credential: a hash, never the secret.
pub fn credential_namespace(credential: Option<&str>) -> String {
    match credential {
        None => "anonymous".into(),
        Some(c) => {
            let digest = Sha256::new()
                .chain_update(b"reprise-namespace-v1\0")
                .chain_update(c.as_bytes())
                .finalize();
            hex::encode(&digest[..16])
        }
    }
}
