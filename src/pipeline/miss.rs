//! The miss leg: (optionally) take the cross-instance lock, call the
//! provider, fall back to a stale entry when it fails, price the answer,
//! share it with single-flight followers and store it — the last two off the
//! response path.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use bytes::Bytes;
use serde_json::Value;

use super::{costing, forward, respond, Answer, Request};
use crate::cache::entry::Entry;
use crate::cache::flight::{FailedReply, LeaderGuard, Outcome};
use crate::cache::key::{CacheKey, EndpointKind};
use crate::cache::redis::RedisTier;
use crate::cache::seal::Sealing;
use crate::cost::Cost;
use crate::error::ProxyError;
use crate::render::{self, CacheMetadata, CacheStatus, RoutingMetadata, Tier};
use crate::stats::Record;

pub async fn forward_and_store(
    request: &Request,
    status: CacheStatus,
    stale: Option<(Arc<Entry>, Tier)>,
    mut guard: Option<LeaderGuard>,
    observed: Record,
) -> Result<Answer, ProxyError> {
    let state = &request.state;
    let provider = &request.provider.name;
    let mut lock: Option<String> = None;
    if let (true, Some(key)) = (guard.is_some(), request.key) {
        let cfg = &state.config.cache.single_flight;
        if let (true, Some(redis)) = (cfg.distributed, state.tiers.redis.as_ref()) {
            let entry_key = redis.entry_key(&request.namespace, &key);
            let lock_key = RedisTier::lock_key(&entry_key);
            match redis.try_lock(&lock_key, cfg.lock_ttl).await {
                Some(true) => lock = Some(lock_key),
                Some(false) => {
                    let usable = |e: &Entry| e.is_fresh() && request.not_purged(&key, e);
                    let remote = Remote {
                        redis,
                        entry_key: &entry_key,
                        lock_key: &lock_key,
                        key: &key,
                        sealing: &request.sealing,
                    };
                    if let Some(entry) = wait_for_remote(usable, &remote, cfg.wait_timeout).await {
                        let entry = Arc::new(entry);
                        if let Some(guard) = guard.take() {
                            guard.complete(Outcome::Shared(entry.clone()));
                        }
                        let cost = costing::hit(state, &request.model, &entry);
                        let record = costing::hit_record(
                            CacheStatus::Coalesced,
                            None,
                            &entry,
                            cost.as_ref(),
                        );
                        let response = respond::cached(
                            request,
                            &entry,
                            CacheStatus::Coalesced,
                            None,
                            cost.as_ref(),
                        );
                        return Ok(Answer::new(response, record));
                    }
                }
                None => {}
            }
        }
    }

    let mut reply = match forward::json(request).await {
        Ok(reply) => reply,
        Err(e) => {
            metrics::counter!("reprise_upstream_errors_total", "kind" => error_kind(&e))
                .increment(1);
            release(request, lock).await;
            if let Some(guard) = guard {
                guard.complete(Outcome::Failed(Some(Arc::new(FailedReply {
                    status: e.status().as_u16(),
                    content_type: Some("application/json".into()),
                    body: Bytes::from(e.body().to_string()),
                }))));
            }
            if let (Some((entry, tier)), true) = (&stale, serves_stale_on(&e)) {
                return Ok(stale_answer(request, entry, *tier));
            }
            return Err(e);
        }
    };
    let upstream_time = reply.elapsed;
    let upstream_failed =
        reply.status == StatusCode::TOO_MANY_REQUESTS || reply.status.is_server_error();
    if upstream_failed {
        metrics::counter!("reprise_upstream_errors_total", "kind" => "status").increment(1);
    }
    if let (true, Some((entry, tier))) = (upstream_failed, &stale) {
        release(request, lock).await;
        let mut answer = stale_answer(request, entry, *tier);
        answer.upstream = Some(upstream_time);
        return Ok(answer);
    }

    let ok_json = reply.status.is_success() && reply.is_json;
    let route = request.route.get();
    // Usage (validating the body on the way) and cost.
    let usage = if ok_json { reply.usage.take() } else { None };
    let usage_value: Option<Value> = usage
        .as_ref()
        .and_then(|u| u.as_ref())
        .and_then(|raw| serde_json::from_str(raw.get()).ok());
    let normalized = usage_value.as_ref().and_then(crate::cost::normalize);
    let cost = normalized
        .as_ref()
        .and_then(|u| costing::miss_normalized(state, &request.model, u));
    if let Some(u) = &usage_value {
        request.observe_usage(u);
    }

    // Share with followers and store, off the response path.
    if request.key.is_some() {
        let shareable = usage.is_some();
        if ok_json && !shareable {
            tracing::warn!("upstream 2xx body is not a JSON object; not cached");
        }
        let failure = (!shareable).then(|| {
            Arc::new(FailedReply {
                status: reply.status.as_u16(),
                content_type: reply
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from),
                body: reply.body.clone(),
            })
        });
        let ttl = request.directives.write_ttl(request.default_ttl);
        let max_bytes = state.config.cache.max_entry_bytes;
        let oversized = reply.body.len() > max_bytes;
        let storable = shareable && request.writes() && !ttl.is_zero() && !oversized;
        let entry = shareable.then(|| {
            let raw_usage = usage
                .as_ref()
                .and_then(|u| u.as_ref())
                .map(|r| Bytes::copy_from_slice(r.get().as_bytes()));
            // Normalized, so Anthropic usage (no `total_tokens`) counts too.
            let total = usage_value
                .as_ref()
                .and_then(crate::cost::normalize)
                .map(|n| n.total_tokens);
            Arc::new(
                Entry::new(reply.body.clone(), "application/json".into(), ttl, total)
                    .with_usage(raw_usage)
                    .with_origin(request.origin(), Some(upstream_time))
                    .with_request(super::refresh::request_to_keep(request, reply.body.len())),
            )
        });
        if shareable && oversized {
            metrics::counter!("reprise_cache_oversized_total").increment(1);
        }
        let remember = if storable {
            super::semantic::Remember::from(request)
        } else {
            None
        };
        let (state, key, namespace) = (state.clone(), request.key, request.namespace.clone());
        let sealing = request.sealing.clone();
        // Memory first and the flight completed before the response leaves:
        // a caller who repeats the request after reading this answer must get
        // a hit, not join a flight whose clean-up task has not run yet.
        if let (Some(entry), Some(key), true) = (&entry, key, storable) {
            state
                .tiers
                .store_memory(key, &namespace, entry.clone())
                .await;
        }
        if let Some(guard) = guard {
            guard.complete(match &entry {
                Some(entry) => Outcome::Shared(entry.clone()),
                None => Outcome::Failed(failure),
            });
        }
        // The Redis write and the semantic index (an embedding) stay off the
        // response path. Memory only and no semantic tier: nothing is left to
        // do, and no task is spawned for it.
        let background = storable && (state.tiers.redis.is_some() || remember.is_some());
        if background || lock.is_some() {
            tokio::spawn(async move {
                if let (Some(entry), Some(key), true) = (entry, key, storable) {
                    let expire = entry.remaining();
                    state
                        .tiers
                        .store_shared(key, &namespace, &sealing, &entry)
                        .await;
                    if let Some(remember) = remember {
                        remember.run(key, expire, &entry).await;
                    }
                }
                if let (Some(lock), Some(redis)) = (lock, state.tiers.redis.as_ref()) {
                    redis.unlock(&lock).await;
                }
            });
        }
    }

    let mut headers = reply.headers;
    render::cache_headers(&mut headers, status, request.key.as_ref());
    if observed.would_hit {
        headers.insert("x-cache-observe", HeaderValue::from_static("would-hit"));
    }
    let body = if ok_json {
        let body = match (&usage_value, request.kind) {
            (Some(u), EndpointKind::Chat) => normalized_usage_body(&reply.body, u),
            _ => reply.body,
        };
        render::cost_headers(&mut headers, cost.as_ref());
        let meta = RoutingMetadata {
            provider,
            cache: CacheMetadata {
                status,
                tier: None,
                age_s: None,
                tokens_saved: None,
                similarity: None,
                matched_key: None,
                verified: None,
            },
            cost: cost.as_ref(),
            route: route.as_ref(),
        };
        render::with_routing_metadata(&body, &meta)
    } else {
        reply.body
    };
    let mut record = costing::miss_record(status, cost.as_ref());
    record.would_hit = observed.would_hit;
    record.would_save_usd = observed.would_save_usd;
    record.tokens = normalized.map(|u| u.counts());
    Ok(Answer {
        response: render::response(reply.status, headers, Body::from(body), None),
        record,
        upstream: Some(upstream_time),
        stream_end: None,
    })
}

/// Chat responses expose `prompt_tokens_details.cached_tokens` /
/// `cache_creation_tokens` whatever the provider's usage shape; the body is
/// rewritten only when that adds something.
fn normalized_usage_body(body: &Bytes, usage: &Value) -> Bytes {
    let Some(n) = crate::cost::normalize(usage) else {
        return body.clone();
    };
    let normalized = crate::cost::openai_usage_fields(&n, usage);
    if &normalized == usage {
        return body.clone();
    }
    let Ok(mut full) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    if let Some(o) = full.as_object_mut() {
        o.insert("usage".into(), normalized);
    }
    serde_json::to_vec(&full)
        .map(Bytes::from)
        .unwrap_or_else(|_| body.clone())
}

pub fn stale_answer(request: &Request, entry: &Entry, tier: Tier) -> Answer {
    let cost: Option<Cost> = costing::hit(&request.state, &request.model, entry);
    let record = costing::hit_record(CacheStatus::Stale, Some(tier), entry, cost.as_ref());
    let response = respond::cached(
        request,
        entry,
        CacheStatus::Stale,
        Some(tier),
        cost.as_ref(),
    );
    Answer::new(response, record)
}

/// Failures that stale-if-error covers: timeouts and unreachable providers.
pub fn serves_stale_on(e: &ProxyError) -> bool {
    matches!(
        e,
        ProxyError::UpstreamTimeout { .. }
            | ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamBroken { .. }
    )
}

fn error_kind(e: &ProxyError) -> &'static str {
    match e {
        ProxyError::UpstreamTimeout { .. } => "timeout",
        ProxyError::UpstreamConnect { .. } => "connect",
        ProxyError::UpstreamBroken { .. } => "broken",
        _ => "other",
    }
}

async fn release(request: &Request, lock: Option<String>) {
    if let (Some(lock), Some(redis)) = (lock, request.state.tiers.redis.as_ref()) {
        redis.unlock(&lock).await;
    }
}

/// Another instance holds the lock: poll Redis for its entry until it
/// appears, the lock vanishes (that leader failed) or `timeout` passes.
async fn wait_for_remote(
    usable: impl Fn(&Entry) -> bool,
    remote: &Remote<'_>,
    timeout: Duration,
) -> Option<Entry> {
    let give_up = tokio::time::Instant::now() + timeout;
    let fetch = || {
        remote
            .redis
            .get(remote.entry_key, remote.key, remote.sealing)
    };
    while tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(entry) = fetch().await.filter(&usable) {
            return Some(entry);
        }
        if remote.redis.exists(remote.lock_key).await != Some(true) {
            return fetch().await.filter(&usable);
        }
    }
    None
}

/// Where another instance's answer to this request will appear.
struct Remote<'a> {
    redis: &'a RedisTier,
    entry_key: &'a str,
    lock_key: &'a str,
    key: &'a CacheKey,
    sealing: &'a Sealing,
}
