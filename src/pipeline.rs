//! The cached-request flow, shared by every cached endpoint:
//! directives → route → key → tiers → provider → store → render.
//!
//! Route handlers (`server/`) parse and validate the body, then call [`run`].

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::cache::entry::Entry;
use crate::cache::key::{body_key, custom_key, CacheKey, EndpointKind, KeyScope};
use crate::cache::policy::Directives;
use crate::error::ProxyError;
use crate::render::{self, CacheMetadata, CacheStatus, RoutingMetadata, Tier};
use crate::state::AppState;
use crate::upstream::{self, Deadline};

/// A parsed request body, as the route handler validated it.
pub struct ParsedRequest {
    /// The original bytes: forwarded unchanged when reprise modified nothing.
    pub raw: Bytes,
    pub body: Map<String, Value>,
}

/// Upstream path of each endpoint, relative to the provider's base URL.
fn upstream_path(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::Chat => "/chat/completions",
        EndpointKind::Embeddings => "/embeddings",
    }
}

/// Runs the flow; every failure becomes an OpenAI-shaped error response.
pub async fn run(
    state: Arc<AppState>,
    kind: EndpointKind,
    headers: HeaderMap,
    request: ParsedRequest,
) -> Response {
    match flow(&state, kind, &headers, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn flow(
    state: &Arc<AppState>,
    kind: EndpointKind,
    headers: &HeaderMap,
    request: ParsedRequest,
) -> Result<Response, ProxyError> {
    let credential = state.authenticate(headers)?;
    let ParsedRequest { raw, mut body } = request;
    let had_extension = body.contains_key("cache");
    let directives = Directives::extract(headers, &mut body)?;

    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let route = state.providers.route(&model)?;
    let provider = route.provider.clone();
    let upstream_model = route.stripped_model.clone().unwrap_or(model);
    if let Some(stripped) = &route.stripped_model {
        body.insert("model".into(), Value::String(stripped.clone()));
    }
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);

    // Streams bypass the cache for now (stream caching is its own feature).
    let cacheable = state.config.cache.enabled && !streaming;
    let key = cacheable.then(|| {
        let namespace = state.namespace(credential.as_deref(), directives.namespace.as_deref());
        let scope = KeyScope {
            namespace: &namespace,
            kind,
            provider: &provider.name,
            model: &upstream_model,
        };
        match &directives.key {
            Some(custom) => custom_key(&scope, custom),
            None => body_key(&scope, &body),
        }
    });

    // Read.
    let read = key.filter(|_| !directives.no_cache);
    if let Some(key) = read {
        if let Some(entry) = state.memory.get(&key).await {
            let young_enough = directives.max_age.is_none_or(|max| entry.age() <= max);
            if young_enough {
                return Ok(hit_response(&entry, Tier::Memory, &key, &provider.name));
            }
        }
    }
    if directives.only_if_cached {
        return Err(ProxyError::NotCached);
    }
    let status = if read.is_some() {
        CacheStatus::Miss
    } else {
        CacheStatus::Bypass
    };

    // Forward: the caller's bytes when nothing changed, else the edited body.
    let payload = if had_extension || route.stripped_model.is_some() {
        Bytes::from(
            serde_json::to_vec(&body).map_err(|e| ProxyError::bad_request(e.to_string(), None))?,
        )
    } else {
        raw
    };
    let deadline = Deadline::after(state.config.server.upstream_timeout);
    let upstream_headers = provider.upstream_headers(headers);
    let response = upstream::send(
        &state.client,
        &provider,
        Method::POST,
        upstream_path(kind),
        upstream_headers,
        Some(payload),
        deadline,
    )
    .await?;
    let upstream_status = response.status();
    let mut out_headers = upstream::passthrough_headers(response.headers());
    render::cache_headers(&mut out_headers, status, key.as_ref());

    if streaming {
        let body = Body::from_stream(response.bytes_stream());
        return Ok(render::response(upstream_status, out_headers, body, None));
    }

    let bytes = upstream::read_body(&provider, response, deadline).await?;
    let is_json = out_headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));

    // Store off the response path: only complete 2xx JSON, within limits.
    if let Some(key) = key {
        let ttl = directives.write_ttl(state.config.cache.ttl);
        let storable = upstream_status.is_success()
            && is_json
            && !directives.no_store
            && !ttl.is_zero()
            && bytes.len() <= state.config.cache.max_entry_bytes;
        if storable {
            let state = state.clone();
            let bytes = bytes.clone();
            tokio::spawn(async move {
                match total_tokens_if_valid(&bytes) {
                    Some(tokens) => {
                        let entry = Entry::new(bytes, "application/json".into(), ttl, tokens);
                        state.memory.insert(key, Arc::new(entry)).await;
                    }
                    None => tracing::warn!("upstream 2xx body is not a JSON object; not cached"),
                }
            });
        }
    }

    let body = if upstream_status.is_success() && is_json {
        let meta = RoutingMetadata {
            provider: &provider.name,
            cache: CacheMetadata {
                status,
                tier: None,
                age_s: None,
                tokens_saved: None,
            },
        };
        render::with_routing_metadata(&bytes, &meta)
    } else {
        bytes
    };
    Ok(render::response(
        upstream_status,
        out_headers,
        Body::from(body),
        None,
    ))
}

/// `Some(usage.total_tokens)` when the body is a complete JSON object.
fn total_tokens_if_valid(body: &[u8]) -> Option<Option<u64>> {
    #[derive(Deserialize)]
    struct Usage {
        total_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct UsageOnly {
        usage: Option<Usage>,
    }
    let parsed: UsageOnly = serde_json::from_slice(body).ok()?;
    Some(parsed.usage.and_then(|u| u.total_tokens))
}

fn hit_response(entry: &Entry, tier: Tier, key: &CacheKey, provider: &str) -> Response {
    let age = entry.age().as_secs();
    let meta = RoutingMetadata {
        provider,
        cache: CacheMetadata {
            status: CacheStatus::Hit,
            tier: Some(tier),
            age_s: Some(age),
            tokens_saved: entry.total_tokens,
        },
    };
    let body = render::with_routing_metadata(&entry.body, &meta);
    let mut headers = HeaderMap::new();
    render::cache_headers(&mut headers, CacheStatus::Hit, Some(key));
    headers.insert(
        HeaderName::from_static("x-cache-tier"),
        HeaderValue::from_static(tier.as_str()),
    );
    headers.insert(axum::http::header::AGE, HeaderValue::from(age));
    render::response(
        StatusCode::OK,
        headers,
        Body::from(body),
        Some(&entry.content_type),
    )
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
