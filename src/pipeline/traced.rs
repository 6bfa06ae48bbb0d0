//! The trace line of a finished request (`trace/`): metadata only.
//!
//! A streamed miss answers before the provider has sent its usage: its line
//! is built when the response starts and written when the stream ends
//! ([`StreamEnd`]), so it carries tokens, cost and the stream's duration
//! like a JSON miss does. A stream that breaks writes its line without them.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::facts::BodyFacts;
use super::Request;
use crate::cache::key::{scoped_key, KeyScope};
use crate::cost::{Cost, TokenCounts};
use crate::render::{CacheStatus, Tier};
use crate::stats::Record;
use crate::trace::line::{namespace_hash, TraceLine};

/// What a streamed miss learns once its stream is complete.
pub struct StreamEnd {
    /// The provider's `usage` object.
    pub usage: Option<Value>,
    pub cost: Option<Cost>,
    /// Request to last byte.
    pub elapsed: Duration,
}

/// Records `request`'s line when a trace sink is on. With `later`, the line
/// is written when the stream it describes ends.
pub fn record(
    request: &Request,
    facts: &BodyFacts,
    record: &Record,
    http_status: u16,
    upstream: Option<Duration>,
    later: Option<oneshot::Receiver<StreamEnd>>,
) {
    let Some(mut line) = line(request, facts, record, http_status, upstream) else {
        return;
    };
    let Some(later) = later else {
        request.state.tracer.record(&request.namespace, line);
        return;
    };
    let (state, namespace) = (request.state.clone(), request.namespace.clone());
    tokio::spawn(async move {
        // A dropped sender is a stream that never completed.
        if let Ok(end) = later.await {
            let tokens = end.usage.as_ref().and_then(crate::cost::normalize);
            fill_usage(&mut line, tokens.map(|u| u.counts()));
            if let Some(cost) = &end.cost {
                line.usd = cost.usd;
            }
            line.upstream_ms = Some(millis(end.elapsed));
        }
        state.tracer.record(&namespace, line);
    });
}

/// The line as far as the finished flow knows it (None: tracing is off).
fn line(
    request: &Request,
    facts: &BodyFacts,
    record: &Record,
    http_status: u16,
    upstream: Option<Duration>,
) -> Option<TraceLine> {
    if !request.state.tracer.enabled() {
        return None;
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
    let ttl = request.directives.write_ttl(request.default_ttl);
    let mut line = TraceLine {
        ts: crate::cache::entry::unix_ms_now() as f64 / 1000.0,
        ns: namespace_hash(&request.namespace),
        endpoint: request.kind.as_str().into(),
        provider: request.provider.name.clone(),
        model: request.model.clone(),
        key: key.hex(),
        partition: super::semantic::partition_hex(request),
        status: record.status.map_or("none", CacheStatus::as_str).into(),
        tier: record.tier.map(|t| Tier::as_str(t).into()),
        would_hit: record.would_hit,
        http_status,
        usd: record.usd_spent,
        saved_usd: record.usd_saved_cache,
        upstream_ms: upstream.map(millis),
        ttl_s: ttl.duration().map(|d| d.as_secs()),
        ..TraceLine::default()
    };
    fill_usage(&mut line, record.tokens);
    Some(line)
}

fn fill_usage(line: &mut TraceLine, tokens: Option<TokenCounts>) {
    let Some(t) = tokens else {
        return;
    };
    line.prompt_tokens = t.prompt;
    line.cached_tokens = t.cached;
    line.completion_tokens = t.completion;
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
