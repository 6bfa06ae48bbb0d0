//! The trace line of a finished request (`trace/`): metadata only.

use std::time::Duration;

use serde_json::Value;

use super::facts::BodyFacts;
use super::Request;
use crate::cache::key::{scoped_key, KeyScope};
use crate::render::{CacheStatus, Tier};
use crate::stats::Record;
use crate::trace::line::{namespace_hash, TraceLine};

/// Records `request`'s line when a trace sink is on.
pub fn record(
    request: &Request,
    facts: &BodyFacts,
    record: &Record,
    http_status: u16,
    upstream: Option<Duration>,
) {
    let tracer = &request.state.tracer;
    if !tracer.enabled() {
        return;
    }
    // Uncached modes have no key; the profile still needs one.
    let key = request.key.unwrap_or_else(|| {
        let scope = KeyScope {
            namespace: &request.namespace,
            kind: request.kind,
            provider: &request.provider.name,
            model: &request.model,
        };
        scoped_key(&scope, &facts.digest)
    });
    let usage = record
        .usage
        .as_deref()
        .and_then(|u| serde_json::from_slice::<Value>(u).ok())
        .as_ref()
        .and_then(crate::cost::normalize);
    let ttl = request.directives.write_ttl(request.default_ttl);
    let line = TraceLine {
        ts: crate::cache::entry::unix_ms_now() as f64 / 1000.0,
        ns: namespace_hash(&request.namespace),
        endpoint: request.kind.as_str().to_owned(),
        provider: request.provider.name.clone(),
        model: request.model.clone(),
        key: key.hex(),
        partition: None,
        status: record.status.map_or("none", CacheStatus::as_str).to_owned(),
        tier: record.tier.map(|t| Tier::as_str(t).to_owned()),
        would_hit: record.would_hit,
        http_status,
        prompt_tokens: usage.as_ref().map_or(0, |u| u.prompt_tokens),
        cached_tokens: usage
            .as_ref()
            .map_or(0, |u| u.cached_tokens.unwrap_or(u.cache_read)),
        completion_tokens: usage.as_ref().map_or(0, |u| u.output),
        usd: record.usd_spent,
        saved_usd: record.usd_saved_cache,
        upstream_ms: upstream.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
        ttl_s: ttl.duration().map(|d| d.as_secs()),
    };
    tracer.record(&request.namespace, line);
}
