//! The entries that saved the most on this instance, for the dashboard's
//! "top entries" table (key hash, model, hits, USD saved). Bounded: at most
//! `CAP` keys; when full, one-hit keys make room, else a new key waits.

use std::collections::HashMap;

use crate::cache::key::CacheKey;
use crate::percpu::PerThread;

const CAP: usize = 10_000;

#[derive(Debug, Clone)]
pub struct TopEntry {
    pub key: CacheKey,
    pub namespace: String,
    pub model: String,
    pub hits: u64,
    pub saved_usd: f64,
}

/// Kept per thread (`percpu`; `CAP` keys each), merged by key on read.
#[derive(Default)]
pub struct TopEntries {
    entries: PerThread<HashMap<CacheKey, TopEntry>>,
}

impl TopEntries {
    /// One answer served from the cache for `key`.
    pub fn record(&self, key: &CacheKey, namespace: &str, model: &str, saved_usd: f64) {
        self.entries
            .with(|entries| add(entries, key, namespace, model, saved_usd));
    }

    /// The `limit` entries that saved most (then most hits) among the
    /// namespaces `visible` accepts.
    pub fn top(&self, limit: usize, visible: impl Fn(&str) -> bool) -> Vec<TopEntry> {
        let mut merged: HashMap<CacheKey, TopEntry> = HashMap::new();
        self.entries
            .for_each(|entries: &HashMap<CacheKey, TopEntry>| {
                for e in entries.values().filter(|e| visible(&e.namespace)) {
                    match merged.get_mut(&e.key) {
                        Some(m) => {
                            m.hits += e.hits;
                            m.saved_usd += e.saved_usd;
                        }
                        None => {
                            merged.insert(e.key, e.clone());
                        }
                    }
                }
            });
        let mut out: Vec<TopEntry> = merged.into_values().collect();
        out.sort_by(|a, b| {
            b.saved_usd
                .total_cmp(&a.saved_usd)
                .then(b.hits.cmp(&a.hits))
                .then(a.key.0.cmp(&b.key.0))
        });
        out.truncate(limit);
        out
    }
}

/// Counts one served answer in one thread's entries.
fn add(
    entries: &mut HashMap<CacheKey, TopEntry>,
    key: &CacheKey,
    namespace: &str,
    model: &str,
    saved_usd: f64,
) {
    if let Some(e) = entries.get_mut(key) {
        e.hits += 1;
        e.saved_usd += saved_usd;
        return;
    }
    if entries.len() >= CAP {
        entries.retain(|_, e| e.hits > 1);
        if entries.len() >= CAP {
            return;
        }
    }
    entries.insert(
        *key,
        TopEntry {
            key: *key,
            namespace: namespace.to_owned(),
            model: model.to_owned(),
            hits: 1,
            saved_usd,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_savings_and_scopes_by_namespace() {
        let t = TopEntries::default();
        let (a, b, c) = (CacheKey([1; 32]), CacheKey([2; 32]), CacheKey([3; 32]));
        t.record(&a, "ns", "m", 0.1);
        t.record(&b, "ns", "m", 0.5);
        t.record(&a, "ns", "m", 0.1);
        t.record(&c, "other", "m", 9.0);
        let top = t.top(10, |ns| ns == "ns");
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].key, b);
        assert_eq!(top[1].hits, 2);
        assert_eq!(t.top(1, |_| true)[0].key, c);
    }
}
