//! The in-process vector index: per namespace, per partition, exact cosine
//! (a dot product: every vector is L2-normalized) by brute force.
//!
//! Brute force is right for partitions of thousands (BENCHMARKS.md has the
//! lookup time at 1k/10k vectors). Each namespace keeps at most
//! `max_entries` vectors; past that, the least recently stored or matched
//! one goes first, whatever its partition. The number of namespaces is
//! bounded the same way, so no caller input grows this without limit.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use tokio::time::Instant;

use super::partition::PartitionId;
use super::verified::Observations;
use crate::cache::key::CacheKey;

/// Namespaces with an index on one instance (least recently used dropped).
pub const MAX_NAMESPACES: usize = 4096;

/// One stored request's vector: it points at the exact entry holding the answer.
#[derive(Clone, Debug)]
pub struct Item {
    pub key: CacheKey,
    pub vector: Arc<[f32]>,
    /// The last user text (the lexical guard and the judge compare texts).
    pub text: Arc<str>,
    /// Explicit feedback said this entry answered a paraphrase wrongly: it
    /// no longer answers paraphrases (its exact hits are unaffected).
    pub blocked: bool,
    /// Verified mode: (similarity, was this entry's answer right?) so far.
    pub observations: Observations,
}

/// A stored item similar to the query.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub key: CacheKey,
    pub similarity: f32,
    pub text: Arc<str>,
    /// The item's verified-mode history when it was found.
    pub observations: Observations,
}

#[derive(Default)]
struct Partition {
    items: Vec<Item>,
    /// When it was last read from the shared tier (None: local only).
    loaded_at: Option<Instant>,
}

struct Space {
    /// Recency of every item, pointing at its partition.
    recency: LruCache<CacheKey, PartitionId>,
    partitions: HashMap<PartitionId, Partition>,
}

impl Space {
    fn new() -> Self {
        Space {
            recency: LruCache::unbounded(),
            partitions: HashMap::new(),
        }
    }

    fn remove(&mut self, partition: &PartitionId, key: &CacheKey) {
        self.recency.pop(key);
        if let Some(p) = self.partitions.get_mut(partition) {
            p.items.retain(|i| i.key != *key);
            if p.items.is_empty() && p.loaded_at.is_none() {
                self.partitions.remove(partition);
            }
        }
    }

    fn add(&mut self, partition: PartitionId, item: Item, max: usize) {
        if let Some(old) = self.recency.peek(&item.key).copied() {
            self.remove(&old, &item.key);
        }
        while self.recency.len() >= max {
            match self.recency.pop_lru() {
                Some((key, p)) => self.remove(&p, &key),
                None => break,
            }
        }
        self.recency.put(item.key, partition);
        self.partitions
            .entry(partition)
            .or_default()
            .items
            .push(item);
    }
}

pub struct Index {
    spaces: Mutex<LruCache<String, Arc<Mutex<Space>>>>,
    max_entries: usize,
}

impl Index {
    pub fn new(max_entries: usize) -> Self {
        let namespaces = NonZeroUsize::new(MAX_NAMESPACES).unwrap_or(NonZeroUsize::MIN);
        Index {
            spaces: Mutex::new(LruCache::new(namespaces)),
            max_entries: max_entries.max(1),
        }
    }

    fn space(&self, namespace: &str, create: bool) -> Option<Arc<Mutex<Space>>> {
        let mut spaces = self.spaces.lock().ok()?;
        if let Some(space) = spaces.get(namespace) {
            return Some(space.clone());
        }
        if !create {
            return None;
        }
        let space = Arc::new(Mutex::new(Space::new()));
        spaces.put(namespace.to_owned(), space.clone());
        Some(space)
    }

    /// Stores (or replaces) an item.
    pub fn insert(&self, namespace: &str, partition: PartitionId, item: Item) {
        if let Some(space) = self.space(namespace, true) {
            if let Ok(mut s) = space.lock() {
                s.add(partition, item, self.max_entries);
            }
        }
    }

    /// Replaces a partition's items with what the shared tier holds.
    pub fn replace(&self, namespace: &str, partition: PartitionId, items: Vec<Item>) {
        let Some(space) = self.space(namespace, true) else {
            return;
        };
        let Ok(mut s) = space.lock() else {
            return;
        };
        let old: Vec<CacheKey> = s
            .partitions
            .get(&partition)
            .map(|p| p.items.iter().map(|i| i.key).collect())
            .unwrap_or_default();
        for key in old {
            s.remove(&partition, &key);
        }
        for item in items.into_iter().take(self.max_entries) {
            s.add(partition, item, self.max_entries);
        }
        s.partitions.entry(partition).or_default().loaded_at = Some(Instant::now());
    }

    /// When the partition was last loaded from the shared tier.
    pub fn loaded_at(&self, namespace: &str, partition: &PartitionId) -> Option<Instant> {
        let space = self.space(namespace, false)?;
        let s = space.lock().ok()?;
        s.partitions.get(partition)?.loaded_at
    }

    /// The `limit` most similar unblocked items with similarity ≥ `floor`,
    /// best first. Returned items count as used (recency).
    pub fn search(
        &self,
        namespace: &str,
        partition: &PartitionId,
        query: &[f32],
        floor: f32,
        limit: usize,
    ) -> Vec<Candidate> {
        let Some(space) = self.space(namespace, false) else {
            return Vec::new();
        };
        let Ok(mut s) = space.lock() else {
            return Vec::new();
        };
        let Some(p) = s.partitions.get(partition) else {
            return Vec::new();
        };
        // Scores first; only the `limit` best are copied out (texts and
        // observations are not cloned for every item above the floor).
        let mut scored: Vec<(usize, f32)> = p
            .items
            .iter()
            .enumerate()
            .filter(|(_, i)| !i.blocked && i.vector.len() == query.len())
            .map(|(n, i)| (n, dot(&i.vector, query)))
            .filter(|(_, similarity)| *similarity >= floor)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(limit);
        let found: Vec<Candidate> = scored
            .into_iter()
            .filter_map(|(n, similarity)| {
                let i = p.items.get(n)?;
                Some(Candidate {
                    key: i.key,
                    similarity,
                    text: i.text.clone(),
                    observations: i.observations.clone(),
                })
            })
            .collect();
        for c in &found {
            s.recency.get(&c.key);
        }
        found
    }

    /// Drops an item (its exact entry is gone).
    pub fn remove(&self, namespace: &str, partition: &PartitionId, key: &CacheKey) {
        if let Some(space) = self.space(namespace, false) {
            if let Ok(mut s) = space.lock() {
                s.remove(partition, key);
            }
        }
    }

    /// Marks an item blocked (or not); returns its partition when it exists.
    pub fn set_blocked(
        &self,
        namespace: &str,
        key: &CacheKey,
        blocked: bool,
    ) -> Option<PartitionId> {
        self.update(namespace, key, |item| item.blocked = blocked)
    }

    /// Records a verified-mode observation on an item; returns its partition
    /// when it exists.
    pub fn record(
        &self,
        namespace: &str,
        key: &CacheKey,
        similarity: f32,
        correct: bool,
    ) -> Option<PartitionId> {
        self.update(namespace, key, |item| {
            item.observations.record(similarity, correct)
        })
    }

    fn update(
        &self,
        namespace: &str,
        key: &CacheKey,
        change: impl FnOnce(&mut Item),
    ) -> Option<PartitionId> {
        let space = self.space(namespace, false)?;
        let mut s = space.lock().ok()?;
        let partition = *s.recency.peek(key)?;
        let item = s
            .partitions
            .get_mut(&partition)?
            .items
            .iter_mut()
            .find(|i| i.key == *key)?;
        change(item);
        Some(partition)
    }

    /// Whether `key` has an item in `namespace`.
    pub fn contains(&self, namespace: &str, key: &CacheKey) -> bool {
        self.space(namespace, false)
            .and_then(|s| s.lock().ok().map(|s| s.recency.contains(key)))
            .unwrap_or(false)
    }

    /// Items stored for a namespace (tests, stats).
    pub fn len(&self, namespace: &str) -> usize {
        self.space(namespace, false)
            .and_then(|s| s.lock().ok().map(|s| s.recency.len()))
            .unwrap_or(0)
    }
}

/// Cosine similarity of two L2-normalized vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(angle: f32) -> Arc<[f32]> {
        Arc::from(vec![angle.cos(), angle.sin()])
    }

    fn item(n: u8, angle: f32) -> Item {
        Item {
            key: CacheKey([n; 32]),
            vector: unit(angle),
            text: Arc::from(format!("text {n}")),
            blocked: false,
            observations: Observations::new(),
        }
    }

    const P: PartitionId = PartitionId([1; 32]);
    const Q: PartitionId = PartitionId([2; 32]);

    #[test]
    fn finds_the_nearest_in_its_partition_only() {
        let index = Index::new(100);
        index.insert("ns", P, item(1, 0.0));
        index.insert("ns", P, item(2, 0.5));
        index.insert("ns", Q, item(3, 0.01));
        let found = index.search("ns", &P, &unit(0.02), 0.5, 4);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].key, CacheKey([1; 32]));
        assert!(found[0].similarity > 0.99 && found[0].similarity > found[1].similarity);
        assert!(index.search("ns", &P, &unit(0.02), 0.999, 4).len() == 1);
        assert!(index.search("other", &P, &unit(0.0), 0.0, 4).is_empty());
    }

    #[test]
    fn bounded_per_namespace_least_recent_first() {
        let index = Index::new(2);
        index.insert("ns", P, item(1, 0.0));
        index.insert("ns", Q, item(2, 1.0));
        // Matching item 1 makes item 2 the least recent.
        assert_eq!(index.search("ns", &P, &unit(0.0), 0.9, 1).len(), 1);
        index.insert("ns", P, item(3, 0.1));
        assert_eq!(index.len("ns"), 2);
        assert!(index.search("ns", &Q, &unit(1.0), 0.9, 4).is_empty());
        assert_eq!(index.search("ns", &P, &unit(0.0), 0.9, 4).len(), 2);
        // Re-inserting a key replaces it.
        index.insert("ns", Q, item(1, 1.0));
        assert_eq!(index.len("ns"), 2);
        assert_eq!(index.search("ns", &P, &unit(0.0), 0.9, 4).len(), 1);
    }

    #[test]
    fn blocked_and_removed_items_stop_matching() {
        let index = Index::new(10);
        index.insert("ns", P, item(1, 0.0));
        assert_eq!(index.set_blocked("ns", &CacheKey([1; 32]), true), Some(P));
        assert!(index.search("ns", &P, &unit(0.0), 0.5, 4).is_empty());
        assert_eq!(index.set_blocked("other", &CacheKey([1; 32]), true), None);
        index.insert("ns", P, item(2, 0.0));
        assert_eq!(index.record("ns", &CacheKey([2; 32]), 0.9, true), Some(P));
        assert_eq!(
            index.search("ns", &P, &unit(0.0), 0.5, 4)[0]
                .observations
                .len(),
            1
        );
        index.remove("ns", &P, &CacheKey([2; 32]));
        assert_eq!(index.record("ns", &CacheKey([2; 32]), 0.9, true), None);
        assert!(index.search("ns", &P, &unit(0.0), 0.5, 4).is_empty());
    }

    #[test]
    fn replace_swaps_a_partition_and_marks_it_loaded() {
        let index = Index::new(10);
        index.insert("ns", P, item(1, 0.0));
        assert!(index.loaded_at("ns", &P).is_none());
        index.replace("ns", P, vec![item(2, 0.0)]);
        assert!(index.loaded_at("ns", &P).is_some());
        let found = index.search("ns", &P, &unit(0.0), 0.5, 4);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, CacheKey([2; 32]));
    }
}
