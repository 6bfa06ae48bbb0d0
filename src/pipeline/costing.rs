//! Pricing responses: what a miss cost (and what the provider's prompt cache
//! saved), what a hit saved. Unknown models get no cost, never a guess.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::cache::entry::Entry;
use crate::cost::{self, Cost};
use crate::render::{CacheStatus, Tier};
use crate::state::AppState;
use crate::stats::Record;
use crate::telemetry::{self, Tally};

/// The raw `usage` object of a JSON response body, if it is a complete JSON
/// object (validates the whole body without building it).
pub fn raw_usage(body: &[u8]) -> Option<Option<Box<RawValue>>> {
    #[derive(Deserialize)]
    struct UsageOnly {
        usage: Option<Box<RawValue>>,
    }
    let parsed: UsageOnly = serde_json::from_slice(body).ok()?;
    Some(parsed.usage)
}

fn price<'a>(state: &'a AppState, model: &str) -> Option<&'a cost::ModelPrice> {
    let price = state.pricing.price(model);
    if price.is_none() {
        metrics::counter!("reprise_unpriced_model_total").increment(1);
    }
    price
}

/// A miss: its cost from the normalized usage.
pub fn miss(state: &AppState, model: &str, usage: &Value) -> Option<Cost> {
    miss_normalized(state, model, &cost::normalize(usage)?)
}

/// [`miss`] for usage the caller has already normalized.
pub fn miss_normalized(
    state: &AppState,
    model: &str,
    usage: &cost::NormalizedUsage,
) -> Option<Cost> {
    let price = price(state, model)?;
    Some(cost::miss_cost(price, usage))
}

/// A hit (or coalesced/stale answer): savings = what the original call cost.
pub fn hit(state: &AppState, model: &str, entry: &Entry) -> Option<Cost> {
    let compute = || -> Option<Cost> {
        let normalized = stored_usage(entry)?;
        let price = price(state, model)?;
        Some(cost::hit_cost(price, &normalized))
    };
    let (for_model, cost) = entry
        .derived
        .hit_cost
        .get_or_init(|| (model.to_owned(), compute()));
    if for_model == model {
        *cost
    } else {
        compute()
    }
}

/// The stats record of an answer served from the cache.
pub fn hit_record(
    status: CacheStatus,
    tier: Option<Tier>,
    entry: &Entry,
    cost: Option<&Cost>,
) -> Record {
    let tokens = entry.total_tokens.unwrap_or(0);
    let saved = cost.map_or(0.0, |c| c.cache_savings_usd);
    telemetry::add(Tally::TokensSaved, tokens);
    if saved > 0.0 {
        // Semantic savings are counted under their own source by
        // `pipeline::semantic` (off the exact-hit path).
        if tier != Some(Tier::Semantic) {
            telemetry::add(Tally::SavedCache, micro_usd(saved));
        }
    }
    Record {
        status: Some(status),
        tier,
        tokens_saved: tokens,
        latency_saved_ms: entry.origin.upstream_ms.unwrap_or(0),
        usd_saved_cache: saved,
        tokens: stored_usage(entry).map(|u| u.counts()),
        ..Record::default()
    }
}

/// An entry's stored usage, parsed and normalized once per entry.
fn stored_usage(entry: &Entry) -> Option<cost::NormalizedUsage> {
    *entry.derived.usage.get_or_init(|| {
        let usage: Value = serde_json::from_slice(entry.usage.as_deref()?).ok()?;
        cost::normalize(&usage)
    })
}

/// The stats record of a miss that reached the provider.
pub fn miss_record(status: CacheStatus, cost: Option<&Cost>) -> Record {
    let (spent, saved) = cost.map_or((0.0, 0.0), |c| (c.usd, c.cache_savings_usd));
    if spent > 0.0 {
        telemetry::add(Tally::Spent, micro_usd(spent));
    }
    if saved > 0.0 {
        telemetry::add(Tally::SavedProvider, micro_usd(saved));
    }
    Record {
        status: Some(status),
        usd_spent: spent,
        usd_saved_provider: saved,
        ..Record::default()
    }
}

/// Prometheus counters here are integers: USD is counted in micro-dollars.
pub(super) fn micro_usd(usd: f64) -> u64 {
    (usd * 1e6).round().max(0.0) as u64
}
