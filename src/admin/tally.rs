//! What the fleet counters and the time series count, per (namespace,
//! route, model): fixed counters plus hits and dollars saved by cache type
//! (`memory`, `redis`, `semantic`, `coalesced`, `stale`, `mcp`, … — a new
//! tier or route family shows up without a schema change). USD is kept in
//! integer nano-dollars so Redis `HINCRBY` adds it exactly.

use std::collections::{BTreeMap, HashMap};

use crate::render::{CacheStatus, Tier};
use crate::stats::{Counters, Record};

/// The fixed counters, in the order of `Tally::n`.
pub const FIELDS: [&str; 11] = [
    "requests",
    "misses",
    "bypass",
    "errors",
    "would_be_hits",
    "tokens_saved",
    "latency_saved_ms",
    "spent_nusd",
    "saved_cache_nusd",
    "saved_provider_nusd",
    "would_save_nusd",
];
const REQUESTS: usize = 0;
const MISSES: usize = 1;
const BYPASS: usize = 2;
const ERRORS: usize = 3;
const WOULD_BE_HITS: usize = 4;
const TOKENS_SAVED: usize = 5;
const LATENCY_SAVED_MS: usize = 6;
const SPENT: usize = 7;
const SAVED_CACHE: usize = 8;
const SAVED_PROVIDER: usize = 9;
const WOULD_SAVE: usize = 10;

pub fn nano(usd: f64) -> i64 {
    if usd.is_finite() {
        (usd * 1e9).round().clamp(i64::MIN as f64, i64::MAX as f64) as i64
    } else {
        0
    }
}

pub fn usd(nano: i64) -> f64 {
    nano as f64 / 1e9
}

/// Counters of one slot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub n: [i64; FIELDS.len()],
    /// cache type → (hits, nano-USD saved).
    pub hits: BTreeMap<String, [i64; 2]>,
}

/// The cache type a served-from-cache answer counts under, if it was one.
pub fn hit_type(route: &str, r: &Record) -> Option<&'static str> {
    let served = match r.status? {
        CacheStatus::Hit => match r.tier {
            Some(Tier::Redis) => "redis",
            Some(tier) => tier.as_str(),
            None => "memory",
        },
        CacheStatus::Coalesced => "coalesced",
        CacheStatus::Stale => "stale",
        _ => return None,
    };
    Some(if route.starts_with("mcp") {
        "mcp"
    } else {
        served
    })
}

impl Tally {
    pub fn add(&mut self, route: &str, r: &Record) {
        self.n[REQUESTS] += 1;
        match r.status {
            Some(CacheStatus::Miss) => self.n[MISSES] += 1,
            Some(CacheStatus::Bypass) => self.n[BYPASS] += 1,
            _ => {}
        }
        if r.error {
            self.n[ERRORS] += 1;
        }
        if r.would_hit {
            self.n[WOULD_BE_HITS] += 1;
            self.n[WOULD_SAVE] += nano(r.would_save_usd);
        }
        self.n[TOKENS_SAVED] += i64::try_from(r.tokens_saved).unwrap_or(i64::MAX);
        self.n[LATENCY_SAVED_MS] += i64::try_from(r.latency_saved_ms).unwrap_or(i64::MAX);
        self.n[SPENT] += nano(r.usd_spent);
        self.n[SAVED_CACHE] += nano(r.usd_saved_cache);
        self.n[SAVED_PROVIDER] += nano(r.usd_saved_provider);
        if let Some(kind) = hit_type(route, r) {
            let slot = match self.hits.get_mut(kind) {
                Some(s) => s,
                None => self.hits.entry(kind.to_owned()).or_default(),
            };
            slot[0] += 1;
            slot[1] += nano(r.usd_saved_cache);
        }
    }

    /// A cost learned after the response started (streams).
    pub fn add_cost(&mut self, r: &Record) {
        self.n[SPENT] += nano(r.usd_spent);
        self.n[SAVED_PROVIDER] += nano(r.usd_saved_provider);
    }

    pub fn merge(&mut self, o: &Tally) {
        for (a, b) in self.n.iter_mut().zip(o.n.iter()) {
            *a = a.saturating_add(*b);
        }
        for (k, v) in &o.hits {
            let slot = self.hits.entry(k.clone()).or_default();
            slot[0] += v[0];
            slot[1] += v[1];
        }
    }

    /// (field name, increment) pairs, non-zero only: how it is written to Redis.
    pub fn fields(&self) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = FIELDS
            .iter()
            .zip(self.n.iter())
            .filter(|(_, v)| **v != 0)
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        for (kind, [count, saved]) in &self.hits {
            out.push((format!("hit:{kind}"), *count));
            if *saved != 0 {
                out.push((format!("hitusd:{kind}"), *saved));
            }
        }
        out
    }

    /// Adds one field read back from Redis (unknown names are ignored).
    pub fn set_field(&mut self, name: &str, value: i64) {
        if let Some(i) = FIELDS.iter().position(|f| *f == name) {
            self.n[i] += value;
        } else if let Some(kind) = name.strip_prefix("hit:") {
            self.hits.entry(kind.to_owned()).or_default()[0] += value;
        } else if let Some(kind) = name.strip_prefix("hitusd:") {
            self.hits.entry(kind.to_owned()).or_default()[1] += value;
        }
    }

    /// The same counters as the per-instance stats (`stats::Counters`).
    pub fn counters(&self) -> Counters {
        let hit = |k: &str| self.hits.get(k).map_or(0, |v| v[0]).max(0) as u64;
        let u = |i: usize| self.n[i].max(0) as u64;
        Counters {
            requests: u(REQUESTS),
            hits_memory: hit("memory"),
            hits_redis: hit("redis"),
            misses: u(MISSES),
            bypass: u(BYPASS),
            coalesced: hit("coalesced"),
            stale: hit("stale"),
            errors: u(ERRORS),
            would_be_hits: u(WOULD_BE_HITS),
            would_save_usd: usd(self.n[WOULD_SAVE]),
            tokens_saved: u(TOKENS_SAVED),
            latency_saved_ms: u(LATENCY_SAVED_MS),
            usd_spent: usd(self.n[SPENT]),
            usd_saved_by_cache: usd(self.n[SAVED_CACHE]),
            usd_saved_by_provider_cache: usd(self.n[SAVED_PROVIDER]),
            // Refresh-ahead outcomes are per instance (`/v1/cache/stats`, `/metrics`).
            ..Counters::default()
        }
    }

    /// One series point's numbers.
    pub fn point(&self) -> serde_json::Value {
        let hits: serde_json::Map<String, serde_json::Value> = self
            .hits
            .iter()
            .map(|(k, v)| (k.clone(), v[0].into()))
            .collect();
        let saved: serde_json::Map<String, serde_json::Value> = self
            .hits
            .iter()
            .map(|(k, v)| (k.clone(), usd(v[1]).into()))
            .collect();
        serde_json::json!({
            "requests": self.n[REQUESTS],
            "misses": self.n[MISSES],
            "hits": hits,
            "saved_usd_by_type": saved,
            "spent_usd": usd(self.n[SPENT]),
            "saved_by_cache_usd": usd(self.n[SAVED_CACHE]),
            "saved_by_provider_usd": usd(self.n[SAVED_PROVIDER]),
            "tokens_saved": self.n[TOKENS_SAVED],
            "latency_saved_ms": self.n[LATENCY_SAVED_MS],
        })
    }
}

/// namespace → route → model → tally.
pub type Slots = HashMap<String, HashMap<&'static str, HashMap<String, Tally>>>;

/// The tally of one slot, created on first use (lookups borrow; allocation
/// only when the slot is new).
pub fn slot<'a>(
    slots: &'a mut Slots,
    ns: &str,
    route: &'static str,
    model: &str,
) -> Option<&'a mut Tally> {
    if !slots.contains_key(ns) {
        slots.insert(ns.to_owned(), HashMap::new());
    }
    let models = slots.get_mut(ns)?.entry(route).or_default();
    if !models.contains_key(model) {
        models.insert(model.to_owned(), Tally::default());
    }
    models.get_mut(model)
}
