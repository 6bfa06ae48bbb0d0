//! The miss leg: (optionally) take the cross-instance lock, call the
//! provider, fall back to a stale entry when it fails, share the answer with
//! single-flight followers and store it — the last two off the response path.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{forward, respond, Request};
use crate::cache::entry::Entry;
use crate::cache::flight::{FailedReply, LeaderGuard, Outcome};
use crate::cache::redis::RedisTier;
use crate::error::ProxyError;
use crate::render::{self, CacheMetadata, CacheStatus, RoutingMetadata, Tier};

pub async fn forward_and_store(
    request: Request,
    status: CacheStatus,
    stale: Option<(Arc<Entry>, Tier)>,
    guard: Option<LeaderGuard>,
) -> Result<Response, ProxyError> {
    let mut guard = guard;
    let mut lock: Option<String> = None;
    if let (true, Some(key)) = (guard.is_some(), request.key) {
        let cfg = &request.state.config.cache.single_flight;
        if let (true, Some(redis)) = (cfg.distributed, request.state.tiers.redis.as_ref()) {
            let entry_key = redis.entry_key(&request.namespace, &key);
            let lock_key = RedisTier::lock_key(&entry_key);
            match redis.try_lock(&lock_key, cfg.lock_ttl).await {
                Some(true) => lock = Some(lock_key),
                Some(false) => {
                    if let Some(entry) =
                        wait_for_remote(redis, &entry_key, &lock_key, cfg.wait_timeout).await
                    {
                        let entry = Arc::new(entry);
                        if let Some(guard) = guard.take() {
                            guard.complete(Outcome::Shared(entry.clone()));
                        }
                        return Ok(respond::cached(
                            &entry,
                            CacheStatus::Coalesced,
                            None,
                            &key,
                            &request.provider.name,
                        ));
                    }
                }
                None => {}
            }
        }
    }

    let reply = match forward::json(&request).await {
        Ok(reply) => reply,
        Err(e) => {
            release(&request, lock).await;
            if let Some(guard) = guard {
                guard.complete(Outcome::Failed(Some(Arc::new(FailedReply {
                    status: e.status().as_u16(),
                    content_type: Some("application/json".into()),
                    body: bytes::Bytes::from(e.body().to_string()),
                }))));
            }
            if let (Some((entry, tier)), Some(key), true) =
                (&stale, request.key, serves_stale_on(&e))
            {
                return Ok(respond::cached(
                    entry,
                    CacheStatus::Stale,
                    Some(*tier),
                    &key,
                    &request.provider.name,
                ));
            }
            return Err(e);
        }
    };
    let upstream_failed =
        reply.status == StatusCode::TOO_MANY_REQUESTS || reply.status.is_server_error();
    if let (true, Some((entry, tier)), Some(key)) = (upstream_failed, &stale, request.key) {
        release(&request, lock).await;
        return Ok(respond::cached(
            entry,
            CacheStatus::Stale,
            Some(*tier),
            &key,
            &request.provider.name,
        ));
    }

    // Share with followers and store, off the response path.
    let shareable = reply.status.is_success() && reply.is_json;
    if request.key.is_some() && (shareable || guard.is_some() || lock.is_some()) {
        let state = request.state.clone();
        let body = reply.body.clone();
        let key = request.key;
        let namespace = request.namespace.clone();
        let directives = request.directives.clone();
        let failure = (!shareable).then(|| {
            Arc::new(FailedReply {
                status: reply.status.as_u16(),
                content_type: reply
                    .headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from),
                body: reply.body.clone(),
            })
        });
        tokio::spawn(async move {
            let ttl = directives.write_ttl(state.config.cache.ttl);
            let entry = shareable
                .then(|| total_tokens_if_valid(&body))
                .flatten()
                .map(|tokens| {
                    Arc::new(Entry::new(
                        body.clone(),
                        "application/json".into(),
                        ttl,
                        tokens,
                    ))
                });
            if shareable && entry.is_none() {
                tracing::warn!("upstream 2xx body is not a JSON object; not cached");
            }
            if let Some(guard) = guard {
                guard.complete(match &entry {
                    Some(entry) => Outcome::Shared(entry.clone()),
                    None => Outcome::Failed(failure),
                });
            }
            let storable = !directives.no_store
                && !ttl.is_zero()
                && body.len() <= state.config.cache.max_entry_bytes;
            if body.len() > state.config.cache.max_entry_bytes {
                metrics::counter!("reprise_cache_oversized_total").increment(1);
            }
            if let (Some(entry), Some(key), true) = (entry, key, storable) {
                state.tiers.store(key, &namespace, entry).await;
            }
            if let (Some(lock), Some(redis)) = (lock, state.tiers.redis.as_ref()) {
                redis.unlock(&lock).await;
            }
        });
    }

    let mut headers = reply.headers;
    render::cache_headers(&mut headers, status, request.key.as_ref());
    let body = if reply.status.is_success() && reply.is_json {
        let meta = RoutingMetadata {
            provider: &request.provider.name,
            cache: CacheMetadata {
                status,
                tier: None,
                age_s: None,
                tokens_saved: None,
            },
        };
        render::with_routing_metadata(&reply.body, &meta)
    } else {
        reply.body
    };
    Ok(render::response(
        reply.status,
        headers,
        Body::from(body),
        None,
    ))
}

/// Failures that stale-if-error covers: timeouts and unreachable providers.
fn serves_stale_on(e: &ProxyError) -> bool {
    matches!(
        e,
        ProxyError::UpstreamTimeout { .. }
            | ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamBroken { .. }
    )
}

async fn release(request: &Request, lock: Option<String>) {
    if let (Some(lock), Some(redis)) = (lock, request.state.tiers.redis.as_ref()) {
        redis.unlock(&lock).await;
    }
}

/// Another instance holds the lock: poll Redis for its entry until it
/// appears, the lock vanishes (that leader failed) or `timeout` passes.
async fn wait_for_remote(
    redis: &RedisTier,
    entry_key: &str,
    lock_key: &str,
    timeout: Duration,
) -> Option<Entry> {
    let give_up = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(entry) = redis.get(entry_key).await.filter(Entry::is_fresh) {
            return Some(entry);
        }
        if redis.exists(lock_key).await != Some(true) {
            return redis.get(entry_key).await.filter(Entry::is_fresh);
        }
    }
    None
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
