//! The simulated cache behind `reprise profile` and `GET /v1/cache/profile`.
//!
//! Requests (`Event`s) are replayed in time order. For each TTL in [`TTLS`]
//! and unbounded memory, a request hits when its key was written less than
//! TTL ago, and a miss (re)writes the key — exactly reprise's exact tier.
//! The recommended TTL of a model is the smallest TTL whose hit rate is
//! within [`TOLERANCE`] (2 points) of the best one: longer TTLs past that
//! point buy little and serve older answers. Memory budgets are then
//! simulated at the recommended TTLs with one LRU shared by every model
//! (entries weigh their estimated stored size), as reprise's byte-bounded
//! memory tier does.

use std::collections::HashMap;

/// Simulated TTLs: (label, seconds).
pub const TTLS: [(&str, u64); 7] = [
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("6h", 21_600),
    ("1d", 86_400),
    ("7d", 604_800),
];

/// Simulated memory budgets in bytes (None = unbounded).
pub const BUDGETS: [Option<u64>; 5] = [
    Some(16 << 20),
    Some(64 << 20),
    Some(256 << 20),
    Some(1 << 30),
    None,
];

/// A recommended TTL is within this many hit-rate points of the best.
pub const TOLERANCE: f64 = 0.02;

/// One request, reduced to what the simulation needs.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// Seconds (Unix time, or 0 when the log had no times).
    pub ts: f64,
    pub model: u32,
    /// Interned key (see [`Events::key`]).
    pub key: u32,
    /// What the request costs when it goes upstream.
    pub call_usd: f64,
    /// Estimated bytes of its stored answer.
    pub bytes: u32,
}

/// The events of one or more inputs, with models and keys interned.
#[derive(Default)]
pub struct Events {
    pub models: Vec<String>,
    /// Per model: whether its events carried real times.
    pub timed: Vec<bool>,
    pub events: Vec<Event>,
    model_index: HashMap<String, u32>,
    key_index: HashMap<(u32, u128), u32>,
}

impl Events {
    pub fn model(&mut self, name: &str, timed: bool) -> u32 {
        if let Some(&i) = self.model_index.get(name) {
            self.timed[i as usize] &= timed;
            return i;
        }
        let i = self.models.len() as u32;
        self.models.push(name.to_owned());
        self.timed.push(timed);
        self.model_index.insert(name.to_owned(), i);
        i
    }

    /// Interns (model, first 16 bytes of the key digest).
    pub fn key(&mut self, model: u32, digest: u128) -> u32 {
        let next = self.key_index.len() as u32;
        *self.key_index.entry((model, digest)).or_insert(next)
    }

    pub fn keys(&self) -> usize {
        self.key_index.len()
    }

    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }
}

/// Per model, per TTL.
#[derive(Debug, Clone, Default)]
pub struct ModelOutcome {
    pub requests: u64,
    pub distinct_keys: u64,
    pub spend_usd: f64,
    /// Hits and USD saved per entry of [`TTLS`].
    pub hits: [u64; TTLS.len()],
    pub saved_usd: [f64; TTLS.len()],
    /// Index into [`TTLS`]; None when no TTL yields a hit.
    pub recommended: Option<usize>,
}

impl ModelOutcome {
    pub fn hit_rate(&self, ttl: usize) -> f64 {
        ratio(self.hits[ttl], self.requests)
    }

    pub fn repeat_rate(&self) -> f64 {
        ratio(
            self.requests.saturating_sub(self.distinct_keys),
            self.requests,
        )
    }
}

/// One memory budget at the recommended TTLs.
#[derive(Debug, Clone, Copy)]
pub struct BudgetOutcome {
    pub max_bytes: Option<u64>,
    pub hits: u64,
    pub saved_usd: f64,
}

pub struct Outcome {
    pub models: Vec<ModelOutcome>,
    pub budgets: Vec<BudgetOutcome>,
    pub requests: u64,
}

pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Runs every simulation over `events` (sorted here by time, stably).
pub fn run(events: &mut Events) -> Outcome {
    events.events.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    let keys = events.keys();
    let mut models = vec![ModelOutcome::default(); events.models.len()];
    // Last write time per key and TTL.
    let mut written = vec![[f64::NEG_INFINITY; TTLS.len()]; keys];
    let mut seen = vec![false; keys];
    for e in &events.events {
        let m = &mut models[e.model as usize];
        m.requests += 1;
        m.spend_usd += e.call_usd;
        let k = e.key as usize;
        if !seen[k] {
            seen[k] = true;
            m.distinct_keys += 1;
        }
        for (i, (_, ttl)) in TTLS.iter().enumerate() {
            if e.ts - written[k][i] < *ttl as f64 {
                m.hits[i] += 1;
                m.saved_usd[i] += e.call_usd;
            } else {
                written[k][i] = e.ts;
            }
        }
    }
    drop(written);
    for m in &mut models {
        m.recommended = recommend(m);
    }
    let ttl_of = |model: u32| -> Option<f64> {
        let m = &models[model as usize];
        let rec = m.recommended?;
        Some(if events.timed[model as usize] {
            TTLS[rec].1 as f64
        } else {
            f64::INFINITY
        })
    };
    let ttls: Vec<Option<f64>> = (0..events.models.len() as u32).map(ttl_of).collect();
    let budgets = BUDGETS
        .iter()
        .map(|&max_bytes| simulate_budget(&events.events, keys, &ttls, max_bytes))
        .collect();
    Outcome {
        requests: events.events.len() as u64,
        models,
        budgets,
    }
}

/// The smallest TTL within [`TOLERANCE`] of the best hit rate.
fn recommend(m: &ModelOutcome) -> Option<usize> {
    let best = (0..TTLS.len()).map(|i| m.hit_rate(i)).fold(0.0, f64::max);
    if best <= 0.0 {
        return None;
    }
    (0..TTLS.len()).find(|&i| m.hit_rate(i) >= best - TOLERANCE)
}

const NIL: u32 = u32::MAX;

/// A byte-bounded LRU over interned keys (intrusive list in vectors).
struct Lru {
    prev: Vec<u32>,
    next: Vec<u32>,
    resident: Vec<bool>,
    written: Vec<f64>,
    size: Vec<u32>,
    head: u32,
    tail: u32,
    used: u64,
}

impl Lru {
    fn new(keys: usize) -> Self {
        Lru {
            prev: vec![NIL; keys],
            next: vec![NIL; keys],
            resident: vec![false; keys],
            written: vec![0.0; keys],
            size: vec![0; keys],
            head: NIL,
            tail: NIL,
            used: 0,
        }
    }

    fn unlink(&mut self, k: u32) {
        let (p, n) = (self.prev[k as usize], self.next[k as usize]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
    }

    fn push_front(&mut self, k: u32) {
        self.prev[k as usize] = NIL;
        self.next[k as usize] = self.head;
        if self.head != NIL {
            self.prev[self.head as usize] = k;
        }
        self.head = k;
        if self.tail == NIL {
            self.tail = k;
        }
    }

    fn evict_to(&mut self, budget: u64) {
        while self.used > budget && self.tail != NIL {
            let t = self.tail;
            self.unlink(t);
            self.resident[t as usize] = false;
            self.used -= u64::from(self.size[t as usize]);
        }
    }
}

fn simulate_budget(
    events: &[Event],
    keys: usize,
    ttls: &[Option<f64>],
    max_bytes: Option<u64>,
) -> BudgetOutcome {
    let budget = max_bytes.unwrap_or(u64::MAX);
    let mut lru = Lru::new(keys);
    let mut out = BudgetOutcome {
        max_bytes,
        hits: 0,
        saved_usd: 0.0,
    };
    for e in events {
        let Some(ttl) = ttls[e.model as usize] else {
            continue;
        };
        let k = e.key;
        let ku = k as usize;
        if lru.resident[ku] {
            lru.unlink(k);
            lru.push_front(k);
            if e.ts - lru.written[ku] < ttl {
                out.hits += 1;
                out.saved_usd += e.call_usd;
            } else {
                lru.written[ku] = e.ts;
            }
            continue;
        }
        lru.resident[ku] = true;
        lru.written[ku] = e.ts;
        lru.size[ku] = e.bytes;
        lru.used += u64::from(e.bytes);
        lru.push_front(k);
        lru.evict_to(budget);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(spec: &[(&str, u128, f64)]) -> Events {
        let mut ev = Events::default();
        for &(model, key, ts) in spec {
            let m = ev.model(model, true);
            let k = ev.key(m, key);
            ev.push(Event {
                ts,
                model: m,
                key: k,
                call_usd: 0.01,
                bytes: 1000,
            });
        }
        ev
    }

    #[test]
    fn repeats_every_ten_minutes_for_a_day_recommend_one_day() {
        // One prompt asked every 10 minutes for a day: 1m and 5m never
        // hit, 15m hits every other request (the entry expires in between),
        // 6h misses once per 6 hours (97.2%), 1d hits every repeat (99.3%):
        // only 1d and 7d are within two points of the best.
        let spec: Vec<(&str, u128, f64)> = (0..144)
            .map(|i| ("gpt-4o-mini", 7, f64::from(i) * 600.0))
            .collect();
        let outcome = run(&mut events(&spec));
        let m = &outcome.models[0];
        assert_eq!(m.requests, 144);
        assert_eq!(m.distinct_keys, 1);
        assert_eq!(m.hits[0], 0);
        assert_eq!(m.hits[1], 0);
        // 15m: write at 0, hit at 600, write at 1200 (expired at 900)…
        assert_eq!(m.hits[2], 72);
        assert_eq!(m.hits[3], 143 - 143 / 6);
        assert_eq!(m.hits[6], 143);
        assert_eq!(TTLS[m.recommended.unwrap()].0, "1d");
    }

    #[test]
    fn recommendation_is_the_smallest_ttl_near_the_best() {
        // Keys repeat after 30 s: every TTL catches them, so 1m wins.
        let mut spec = Vec::new();
        for k in 0..50u128 {
            spec.push(("m", k, k as f64 * 100.0));
            spec.push(("m", k, k as f64 * 100.0 + 30.0));
        }
        // A model whose prompts never repeat: no recommendation.
        for k in 0..20u128 {
            spec.push(("unique", 1000 + k, k as f64));
        }
        let outcome = run(&mut events(&spec));
        assert_eq!(outcome.models[0].recommended, Some(0));
        assert!((outcome.models[0].hit_rate(0) - 0.5).abs() < 1e-9);
        assert_eq!(outcome.models[1].recommended, None);
        assert_eq!(outcome.models[1].repeat_rate(), 0.0);
    }

    #[test]
    fn small_budgets_evict_and_lose_hits() {
        // 100 keys cycled twice: they all fit in 1 GiB, none in 16 MiB
        // (each weighs 1 MB here, and LRU over a cycle evicts before reuse).
        let mut ev = Events::default();
        let m = ev.model("m", true);
        for round in 0..2 {
            for k in 0..100u128 {
                let key = ev.key(m, k);
                ev.push(Event {
                    ts: f64::from(round * 100) + k as f64,
                    model: m,
                    key,
                    call_usd: 1.0,
                    bytes: 1 << 20,
                });
            }
        }
        let outcome = run(&mut ev);
        assert_eq!(outcome.budgets[0].hits, 0);
        assert_eq!(outcome.budgets[3].hits, 100);
        assert_eq!(outcome.budgets[4].hits, 100);
    }
}
