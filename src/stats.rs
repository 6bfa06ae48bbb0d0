//! Per-instance cache statistics for `GET /v1/cache/stats`, kept per
//! (namespace, cache type, model) so each caller sees only its own.

use std::collections::HashMap;

use serde::Serialize;

use crate::percpu::PerThread;
use crate::render::{CacheStatus, Tier};

/// What one finished request contributes.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub status: Option<CacheStatus>,
    pub tier: Option<Tier>,
    pub tokens_saved: u64,
    /// What the call cost (misses; 0 for hits).
    pub usd_spent: f64,
    /// Saved by reprise's own cache (hits, coalesced, stale).
    pub usd_saved_cache: f64,
    /// Saved by the provider's prompt cache (misses; may be negative).
    pub usd_saved_provider: f64,
    /// Observe mode: the lookup found an entry it did not serve.
    pub would_hit: bool,
    pub would_save_usd: f64,
    pub error: bool,
    /// Provider time a cached answer saved (the original call's latency).
    pub latency_saved_ms: u64,
    /// The answer's token counts, when known (read by traces only).
    pub tokens: Option<crate::cost::TokenCounts>,
    /// Verified semantic mode: forwarded to check a candidate (a miss).
    pub semantic_explored: bool,
    /// Verified semantic mode: a semantic hit its entry's history allowed.
    pub semantic_learned: bool,
}

/// What one refresh-ahead attempt came to (`pipeline::refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The entry was replaced by a fresh answer.
    Refreshed,
    /// The provider failed; the old entry is kept until it expires.
    Failed,
    /// Due, but `cache.refresh_max_per_minute` was spent.
    OverBudget,
    /// Not needed after all: a miss was already fetching the key, or
    /// another instance had refreshed it.
    Skipped,
}

impl RefreshOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshOutcome::Refreshed => "refreshed",
            RefreshOutcome::Failed => "failed",
            RefreshOutcome::OverBudget => "over_budget",
            RefreshOutcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub requests: u64,
    pub hits_memory: u64,
    pub hits_redis: u64,
    /// Paraphrases answered by the semantic tier.
    pub hits_semantic: u64,
    pub misses: u64,
    pub bypass: u64,
    pub coalesced: u64,
    pub stale: u64,
    pub errors: u64,
    pub would_be_hits: u64,
    pub would_save_usd: f64,
    pub tokens_saved: u64,
    pub latency_saved_ms: u64,
    pub usd_spent: f64,
    pub usd_saved_by_cache: f64,
    /// The part of `usd_saved_by_cache` answered by the semantic tier.
    pub usd_saved_by_semantic: f64,
    pub usd_saved_by_provider_cache: f64,
    /// Refresh-ahead outcomes (not requests: no caller waited on them).
    pub refreshed: u64,
    pub refresh_failed: u64,
    pub refresh_over_budget: u64,
    pub refresh_skipped: u64,
    /// Verified semantic mode: candidates explored (forwarded to check them).
    pub semantic_explorations: u64,
    /// Verified semantic mode: semantic hits served by an entry's history.
    pub semantic_learned_hits: u64,
    /// Verified semantic mode: explored answers that agreed / disagreed with
    /// the candidate's (not requests: counted once the comparison is made).
    pub semantic_agreed: u64,
    pub semantic_disagreed: u64,
}

impl Counters {
    fn add(&mut self, r: &Record) {
        self.requests += 1;
        match (r.status, r.tier) {
            (Some(CacheStatus::Hit), Some(Tier::Redis)) => self.hits_redis += 1,
            (Some(CacheStatus::Hit), Some(Tier::Semantic)) => self.hits_semantic += 1,
            (Some(CacheStatus::Hit), _) => self.hits_memory += 1,
            (Some(CacheStatus::Miss), _) => self.misses += 1,
            (Some(CacheStatus::Bypass), _) => self.bypass += 1,
            (Some(CacheStatus::Coalesced), _) => self.coalesced += 1,
            (Some(CacheStatus::Stale), _) => self.stale += 1,
            (None, _) => {}
        }
        if r.error {
            self.errors += 1;
        }
        if r.would_hit {
            self.would_be_hits += 1;
            self.would_save_usd += r.would_save_usd;
        }
        self.tokens_saved += r.tokens_saved;
        self.latency_saved_ms += r.latency_saved_ms;
        self.usd_spent += r.usd_spent;
        self.usd_saved_by_cache += r.usd_saved_cache;
        if r.tier == Some(Tier::Semantic) {
            self.usd_saved_by_semantic += r.usd_saved_cache;
        }
        self.usd_saved_by_provider_cache += r.usd_saved_provider;
        self.semantic_explorations += u64::from(r.semantic_explored);
        self.semantic_learned_hits += u64::from(r.semantic_learned);
    }

    fn merge(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.hits_memory += o.hits_memory;
        self.hits_redis += o.hits_redis;
        self.hits_semantic += o.hits_semantic;
        self.misses += o.misses;
        self.bypass += o.bypass;
        self.coalesced += o.coalesced;
        self.stale += o.stale;
        self.errors += o.errors;
        self.would_be_hits += o.would_be_hits;
        self.would_save_usd += o.would_save_usd;
        self.tokens_saved += o.tokens_saved;
        self.latency_saved_ms += o.latency_saved_ms;
        self.usd_spent += o.usd_spent;
        self.usd_saved_by_cache += o.usd_saved_by_cache;
        self.usd_saved_by_semantic += o.usd_saved_by_semantic;
        self.usd_saved_by_provider_cache += o.usd_saved_by_provider_cache;
        self.refreshed += o.refreshed;
        self.refresh_failed += o.refresh_failed;
        self.refresh_over_budget += o.refresh_over_budget;
        self.refresh_skipped += o.refresh_skipped;
        self.semantic_explorations += o.semantic_explorations;
        self.semantic_learned_hits += o.semantic_learned_hits;
        self.semantic_agreed += o.semantic_agreed;
        self.semantic_disagreed += o.semantic_disagreed;
    }

    /// The JSON view: counters plus derived totals and the hit rate.
    pub fn view(&self) -> serde_json::Value {
        let hits = self.hits_memory + self.hits_redis + self.hits_semantic;
        let answered_by_cache = hits + self.coalesced + self.stale;
        let looked_up = answered_by_cache + self.misses;
        let hit_rate = if looked_up == 0 {
            0.0
        } else {
            answered_by_cache as f64 / looked_up as f64
        };
        serde_json::json!({
            "requests": self.requests,
            "hits": {"memory": self.hits_memory, "redis": self.hits_redis, "semantic": self.hits_semantic, "total": hits},
            "misses": self.misses,
            "bypass": self.bypass,
            "coalesced": self.coalesced,
            "stale": self.stale,
            "errors": self.errors,
            "hit_rate": round4(hit_rate),
            "observe": {"would_be_hits": self.would_be_hits, "would_save_usd": round10(self.would_save_usd)},
            "tokens_saved": self.tokens_saved,
            "latency_saved_ms": self.latency_saved_ms,
            "usd": {
                "spent": round10(self.usd_spent),
                "saved_by_cache": round10(self.usd_saved_by_cache),
                "saved_by_semantic": round10(self.usd_saved_by_semantic),
                "saved_by_provider_cache": round10(self.usd_saved_by_provider_cache),
            },
            "refresh": {
                "refreshed": self.refreshed,
                "failed": self.refresh_failed,
                "over_budget": self.refresh_over_budget,
                "skipped": self.refresh_skipped,
            },
            "semantic_verified": {
                "explorations": self.semantic_explorations,
                "learned_hits": self.semantic_learned_hits,
                "agreed": self.semantic_agreed,
                "disagreed": self.semantic_disagreed,
            },
        })
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn round10(x: f64) -> f64 {
    (x * 1e10).round() / 1e10
}

/// namespace → (cache type, model) → counters. Nested so the per-request
/// lookup borrows its strings (no allocation once a slot exists).
type Slots = HashMap<String, HashMap<&'static str, HashMap<String, Counters>>>;

/// Counters per thread (see `percpu`): recording a request locks only the
/// calling worker's slots; a report merges every thread's.
#[derive(Default)]
pub struct Stats {
    slots: PerThread<Slots>,
}

/// Models with their own counters per (namespace, cache type) in one
/// thread's slots; later ones are counted under [`OTHER`]. Model names are caller input: without a bound
/// a stream of made-up names would grow memory (and this report) forever.
pub const MAX_MODELS_PER_NAMESPACE: usize = 32;
/// Namespaces with their own counters in one thread's slots; later ones
/// share [`OTHER_NAMESPACE`] (memory: this bound times the worker threads).
pub const MAX_NAMESPACES: usize = 4096;
/// Bucket for models past the per-namespace bound.
pub const OTHER: &str = "other";
/// Bucket for namespaces past the bound (parentheses: never a real namespace).
pub const OTHER_NAMESPACE: &str = "(other)";

/// The counters of one slot, created on first use (two lookups when it
/// exists already, allocation only when it does not). Past the bounds, the
/// `other` buckets are used instead of new slots.
fn slot<'a>(
    slots: &'a mut Slots,
    namespace: &str,
    kind: &'static str,
    model: &str,
) -> Option<&'a mut Counters> {
    let namespace = if slots.contains_key(namespace) || slots.len() < MAX_NAMESPACES {
        namespace
    } else {
        OTHER_NAMESPACE
    };
    if !slots.contains_key(namespace) {
        slots.insert(namespace.to_owned(), HashMap::new());
    }
    let models = slots.get_mut(namespace)?.entry(kind).or_default();
    let model = if models.contains_key(model) || models.len() < MAX_MODELS_PER_NAMESPACE {
        model
    } else {
        OTHER
    };
    if !models.contains_key(model) {
        models.insert(model.to_owned(), Counters::default());
    }
    models.get_mut(model)
}

impl Stats {
    pub fn record(&self, namespace: &str, kind: &'static str, model: &str, r: &Record) {
        self.slots.with(|slots| {
            if let Some(c) = slot(slots, namespace, kind, model) {
                c.add(r);
            }
        });
    }

    /// Adds a cost learned after the response started (streams), without
    /// counting another request.
    pub fn add_cost(&self, namespace: &str, kind: &'static str, model: &str, r: &Record) {
        self.slots.with(|slots| {
            if let Some(c) = slot(slots, namespace, kind, model) {
                c.usd_spent += r.usd_spent;
                c.usd_saved_by_provider_cache += r.usd_saved_provider;
            }
        });
    }

    /// How many threads hold counters (the contention check in tests).
    pub fn threads(&self) -> usize {
        self.slots.slots()
    }

    /// Counts a refresh-ahead attempt and what it spent, without counting
    /// a request.
    pub fn record_refresh(
        &self,
        namespace: &str,
        kind: &'static str,
        model: &str,
        outcome: RefreshOutcome,
        usd_spent: f64,
    ) {
        self.slots.with(|slots| {
            if let Some(c) = slot(slots, namespace, kind, model) {
                c.usd_spent += usd_spent;
                match outcome {
                    RefreshOutcome::Refreshed => c.refreshed += 1,
                    RefreshOutcome::Failed => c.refresh_failed += 1,
                    RefreshOutcome::OverBudget => c.refresh_over_budget += 1,
                    RefreshOutcome::Skipped => c.refresh_skipped += 1,
                }
            }
        });
    }

    /// Counts a verified-mode comparison (an explored answer against the
    /// candidate's), without counting a request.
    pub fn record_verification(
        &self,
        namespace: &str,
        kind: &'static str,
        model: &str,
        agreed: bool,
    ) {
        self.slots.with(|slots| {
            if let Some(c) = slot(slots, namespace, kind, model) {
                if agreed {
                    c.semantic_agreed += 1;
                } else {
                    c.semantic_disagreed += 1;
                }
            }
        });
    }

    /// Totals, by cache type and by model, for the namespaces `visible` accepts.
    pub fn report(&self, visible: impl Fn(&str) -> bool) -> serde_json::Value {
        let mut total = Counters::default();
        let mut by_type: HashMap<&'static str, Counters> = HashMap::new();
        let mut by_model: HashMap<String, Counters> = HashMap::new();
        self.slots.for_each(|slots: &Slots| {
            for (_, kinds) in slots.iter().filter(|(ns, _)| visible(ns)) {
                for (kind, models) in kinds {
                    for (model, c) in models {
                        total.merge(c);
                        by_type.entry(kind).or_default().merge(c);
                        by_model.entry(model.clone()).or_default().merge(c);
                    }
                }
            }
        });
        let mut types: Vec<_> = by_type.into_iter().collect();
        types.sort_by_key(|(k, _)| *k);
        let mut models: Vec<_> = by_model.into_iter().collect();
        models.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = total.view();
        if let Some(o) = out.as_object_mut() {
            o.insert(
                "by_type".into(),
                types
                    .into_iter()
                    .map(|(k, c)| (k.to_owned(), c.view()))
                    .collect(),
            );
            o.insert(
                "by_model".into(),
                models.into_iter().map(|(k, c)| (k, c.view())).collect(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_scopes() {
        let s = Stats::default();
        let hit = Record {
            status: Some(CacheStatus::Hit),
            tier: Some(Tier::Memory),
            tokens_saved: 10,
            usd_saved_cache: 0.5,
            ..Record::default()
        };
        let miss = Record {
            status: Some(CacheStatus::Miss),
            usd_spent: 0.5,
            ..Record::default()
        };
        s.record("a", "chat", "m", &miss);
        s.record("a", "chat", "m", &hit);
        s.record("b", "embeddings", "e", &miss);
        let a = s.report(|ns| ns == "a");
        assert_eq!(a["requests"], 2);
        assert_eq!(a["hits"]["memory"], 1);
        assert_eq!(a["hit_rate"], 0.5);
        assert_eq!(a["usd"]["saved_by_cache"], 0.5);
        assert_eq!(a["by_model"]["m"]["tokens_saved"], 10);
        assert!(a["by_type"].get("embeddings").is_none());
        let all = s.report(|_| true);
        assert_eq!(all["requests"], 3);
        assert_eq!(all["by_type"]["embeddings"]["misses"], 1);
    }

    #[test]
    fn cardinality_is_bounded() {
        let s = Stats::default();
        let miss = Record {
            status: Some(CacheStatus::Miss),
            ..Record::default()
        };
        for i in 0..1000 {
            s.record("a", "chat", &format!("made-up-model-{i}"), &miss);
        }
        for i in 0..MAX_NAMESPACES + 50 {
            s.record(&format!("ns{i}"), "chat", "m", &miss);
        }
        let a = s.report(|ns| ns == "a");
        assert_eq!(a["requests"], 1000);
        let models = a["by_model"].as_object().unwrap();
        assert_eq!(models.len(), MAX_MODELS_PER_NAMESPACE + 1);
        assert_eq!(
            models[OTHER]["requests"],
            1000 - MAX_MODELS_PER_NAMESPACE as u64
        );
        let slots = s.slots.local().unwrap();
        assert_eq!(slots.len(), MAX_NAMESPACES + 1);
        assert!(slots.contains_key(OTHER_NAMESPACE));
        drop(slots);
        let all = s.report(|_| true);
        assert_eq!(all["requests"], 1000 + MAX_NAMESPACES as u64 + 50);
    }
}
