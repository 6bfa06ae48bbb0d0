//! Refresh-ahead: a hot entry close to expiry is re-fetched in the
//! background, so popular answers never expire under traffic. Which hits
//! start a refresh is decided by `cache::refresh` (hit counts, window,
//! budget); this is the re-fetch.
//!
//! - The entry carries the caller's request (`Entry::request`, kept only for
//!   rules with `refresh_ahead`, inside the stored value so it is sealed and
//!   bounded with it). The refresh replays it as a JSON request (`stream` and
//!   reprise's `cache` extension removed) through the normal forward step
//!   (routing, translation, prompt-cache injection), with the triggering
//!   hit's headers: its credential, for bring-your-own-key providers, is
//!   never stored.
//! - It leads the key's single-flight: a miss for the same key during the
//!   refresh waits for it instead of calling the provider too. With a shared
//!   Redis, an entry another instance refreshed already is taken instead, and
//!   `single_flight.distributed` also takes the cross-instance lock.
//! - Only a complete 2xx JSON answer replaces the entry (same TTL, counted
//!   from now). Anything else — an error, a non-2xx, a truncated or invalid
//!   body, a timeout — leaves the old entry to expire as it would have.
//! - The hit that triggers it is answered from the old entry as usual.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{costing, forward, Request};
use crate::cache::entry::{unix_ms_now, Entry};
use crate::cache::flight::{LeaderGuard, Outcome, Role};
use crate::cache::key::{CacheKey, EndpointKind};
use crate::cache::policy::Directives;
use crate::cache::redis::RedisTier;
use crate::cache::refresh::Decision;
use crate::error::ProxyError;
use crate::providers::routing::RouteNote;
use crate::render::{CacheStatus, Tier};
use crate::stats::RefreshOutcome;

/// The caller's body to keep in an entry of `stored_len` bytes, when its
/// rule refreshes ahead and both fit under `cache.max_entry_bytes`.
/// Anthropic streams are not kept: a JSON refresh could not answer them.
pub fn request_to_keep(request: &Request, stored_len: usize) -> Option<Bytes> {
    request.refresh?;
    if request.kind == EndpointKind::Messages && request.streaming {
        return None;
    }
    let fits =
        stored_len.saturating_add(request.raw.len()) <= request.state.config.cache.max_entry_bytes;
    fits.then(|| Bytes::copy_from_slice(&request.raw))
}

/// Counts a fresh hit on `entry` and starts its refresh when it is due.
pub fn after_hit(request: &Request, key: CacheKey, entry: &Arc<Entry>, tier: Tier) {
    let Some(policy) = request.refresh else {
        return;
    };
    let Some(stored) = &entry.request else {
        return;
    };
    if request.directives.no_store {
        return;
    }
    let state = &request.state;
    match state.refresher.on_hit(&key, entry, policy) {
        Decision::Wait => return,
        Decision::OverBudget => {
            count(request, RefreshOutcome::OverBudget, 0.0);
            tracing::debug!(key = %key.hex(), "refresh due but over cache.refresh_max_per_minute");
            return;
        }
        Decision::Refresh => {}
    }
    let guard = match state.flights.join(key, None) {
        Role::Leader(guard) => guard,
        // A miss for this key is already on its way to the provider.
        Role::Follower(_) => {
            count(request, RefreshOutcome::Skipped, 0.0);
            return;
        }
    };
    let Some(replay) = replay_request(request, key, entry, stored) else {
        count(request, RefreshOutcome::Failed, 0.0);
        tracing::warn!(key = %key.hex(), reason = "stored request unreadable", "refresh failed");
        return;
    };
    tokio::spawn(run(replay, key, guard, entry.clone(), tier));
}

/// The stored request as a fresh JSON request in the hit's context.
fn replay_request(hit: &Request, key: CacheKey, entry: &Entry, stored: &Bytes) -> Option<Request> {
    let mut body: Map<String, Value> = serde_json::from_slice(stored).ok()?;
    for field in ["cache", "stream", "stream_options"] {
        body.shift_remove(field);
    }
    body.insert("model".into(), Value::String(hit.model.clone()));
    let raw = Bytes::from(serde_json::to_vec(&body).ok()?);
    Some(Request {
        state: hit.state.clone(),
        kind: hit.kind,
        headers: hit.headers.clone(),
        provider: hit.provider.clone(),
        model: hit.model.clone(),
        directives: Directives {
            ttl: Some(entry.ttl),
            key: hit.directives.key.clone(),
            ..Directives::default()
        },
        mode: hit.mode,
        default_ttl: entry.ttl,
        namespace: hit.namespace.clone(),
        // The hit's tenant: the refreshed entry is sealed for the same key.
        sealing: hit.sealing.clone(),
        key: Some(key),
        raw,
        has_extension: false,
        model_prefixed: false,
        streaming: false,
        wants_usage: false,
        wire: hit.wire,
        affinity: hit.affinity,
        alias: hit.alias.clone(),
        route: RouteNote::default(),
        requested_at_ms: unix_ms_now(),
        bucket: 1,
        refresh: hit.refresh,
        // The entry's semantic item (if any) already points at this key.
        semantic: super::semantic::Plan::default(),
    })
}

async fn run(request: Request, key: CacheKey, guard: LeaderGuard, old: Arc<Entry>, tier: Tier) {
    let state = request.state.clone();
    let mut lock = None;
    if let Some(redis) = state.tiers.redis.as_ref() {
        let entry_key = redis.entry_key(&request.namespace, &key);
        if tier == Tier::Memory {
            if let Some(newer) = newer_shared(&request, redis, &entry_key, &key, &old).await {
                if let Some(memory) = &state.tiers.memory {
                    memory.insert(key, &request.namespace, newer.clone()).await;
                }
                guard.complete(Outcome::Shared(newer));
                count(&request, RefreshOutcome::Skipped, 0.0);
                return;
            }
        }
        let cfg = &state.config.cache.single_flight;
        if cfg.distributed {
            let lock_key = RedisTier::lock_key(&entry_key);
            match redis.try_lock(&lock_key, cfg.lock_ttl).await {
                Some(false) => {
                    count(&request, RefreshOutcome::Skipped, 0.0);
                    return;
                }
                Some(true) => lock = Some(lock_key),
                None => {}
            }
        }
    }
    match fetch(&request, &old).await {
        Ok((entry, usd)) => {
            guard.complete(Outcome::Shared(entry.clone()));
            let upstream_ms = entry.origin.upstream_ms;
            state
                .tiers
                .store(key, &request.namespace, &request.sealing, entry)
                .await;
            count(&request, RefreshOutcome::Refreshed, usd);
            tracing::info!(
                model = %crate::telemetry::clip(&request.model),
                provider = %request.provider.name,
                key = %key.hex(),
                upstream_ms,
                usd,
                "refreshed ahead of expiry"
            );
        }
        Err(reason) => {
            guard.complete(Outcome::Failed(None));
            count(&request, RefreshOutcome::Failed, 0.0);
            tracing::warn!(
                model = %crate::telemetry::clip(&request.model),
                provider = %request.provider.name,
                key = %key.hex(),
                reason,
                "refresh failed; the entry is kept until it expires"
            );
        }
    }
    if let (Some(lock), Some(redis)) = (lock, state.tiers.redis.as_ref()) {
        redis.unlock(&lock).await;
    }
}

/// A fresher entry another instance wrote to the shared tier.
async fn newer_shared(
    request: &Request,
    redis: &RedisTier,
    entry_key: &str,
    key: &CacheKey,
    old: &Entry,
) -> Option<Arc<Entry>> {
    let entry = redis.get(entry_key, key, &request.sealing).await?;
    let newer = entry.written_at_ms > old.written_at_ms
        && entry.is_fresh()
        && request.not_purged(key, &entry);
    newer.then(|| Arc::new(entry))
}

/// Calls the provider; the new entry and what it cost, or why not.
async fn fetch(request: &Request, old: &Entry) -> Result<(Arc<Entry>, f64), &'static str> {
    let state = &request.state;
    let mut reply = forward::json(request).await.map_err(|e| {
        let kind = match e {
            ProxyError::UpstreamTimeout { .. } => "timeout",
            ProxyError::UpstreamConnect { .. } => "connect",
            ProxyError::UpstreamBroken { .. } => "broken",
            _ => "other",
        };
        metrics::counter!("reprise_upstream_errors_total", "kind" => kind).increment(1);
        kind
    })?;
    if !reply.status.is_success() {
        metrics::counter!("reprise_upstream_errors_total", "kind" => "status").increment(1);
        return Err("status");
    }
    if !reply.is_json {
        return Err("not_json");
    }
    // A complete JSON object (validated whole), or nothing is stored.
    let usage = reply.usage.take().ok_or("invalid_json")?;
    if reply.body.len() > state.config.cache.max_entry_bytes {
        metrics::counter!("reprise_cache_oversized_total").increment(1);
        return Err("oversized");
    }
    let usage_value: Option<Value> = usage
        .as_ref()
        .and_then(|raw| serde_json::from_str(raw.get()).ok());
    if let Some(u) = &usage_value {
        request.observe_usage(u);
    }
    let cost = usage_value
        .as_ref()
        .and_then(|u| costing::miss(state, &request.model, u));
    let spent = costing::miss_record(CacheStatus::Miss, cost.as_ref());
    let total = usage_value
        .as_ref()
        .and_then(crate::cost::normalize)
        .map(|n| n.total_tokens);
    let raw_usage = usage.map(|r| Bytes::copy_from_slice(r.get().as_bytes()));
    let kept = old
        .request
        .clone()
        .filter(|r| reply.body.len() + r.len() <= state.config.cache.max_entry_bytes);
    let entry = Entry::new(reply.body, "application/json".into(), old.ttl, total)
        .with_usage(raw_usage)
        .with_origin(request.origin(), Some(reply.elapsed))
        .with_request(kept);
    Ok((Arc::new(entry), spent.usd_spent))
}

/// Stats, fleet stats and `reprise_refresh_total`.
fn count(request: &Request, outcome: RefreshOutcome, usd: f64) {
    let state = &request.state;
    let route = request.kind.as_str();
    metrics::counter!("reprise_refresh_total", "outcome" => outcome.as_str()).increment(1);
    state
        .stats
        .record_refresh(&request.namespace, route, &request.model, outcome, usd);
    if usd > 0.0 && state.config.admin.fleet_stats {
        let record = crate::stats::Record {
            usd_spent: usd,
            ..crate::stats::Record::default()
        };
        state
            .fleet
            .add_cost(&request.namespace, route, &request.model, &record);
    }
}
