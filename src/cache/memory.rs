//! L1: the in-process tier, bounded by bytes, with per-entry TTL.
//!
//! quick_cache (S3-FIFO, sharded, no background work) evicts by weight (body
//! bytes). Freshness is decided by `Entry::is_fresh` on read (tokio clock);
//! an entry past TTL + stale grace is dropped when it is next read, swept by
//! a purge, or evicted like any cold entry: it stops being read, so it is
//! among the first to go, and the byte bound holds throughout.
//!
//! Each shard holds `max_bytes / shards`; an entry heavier than a shard is
//! not admitted (it stays in L2, if any). Shards are sized to at least
//! [`MIN_SHARD_BYTES`] (or all of L1 when smaller) so ordinary answers always
//! fit.

use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter};

use super::entry::Entry;
use super::key::CacheKey;

/// The smallest shard (bytes): bounds the largest entry L1 admits.
pub const MIN_SHARD_BYTES: u64 = 16 * 1024 * 1024;
/// Expected bytes per entry, for the shard count only (nothing is
/// preallocated from it).
const TYPICAL_ENTRY_BYTES: u64 = 4 * 1024;

#[derive(Clone)]
pub struct MemoryTier {
    cache: Arc<Cache<CacheKey, Slot, SlotWeight, DefaultHashBuilder>>,
    grace: Duration,
}

/// An entry and the namespace it was stored under (the key is a hash that
/// includes the namespace; export needs it back in clear).
#[derive(Clone)]
struct Slot {
    entry: Arc<Entry>,
    namespace: Arc<str>,
}

/// A slot weighs its body bytes and its namespace.
#[derive(Clone)]
struct SlotWeight;

impl Weighter<CacheKey, Slot> for SlotWeight {
    fn weight(&self, _: &CacheKey, slot: &Slot) -> u64 {
        // Never 0: a zero-weight item would never be evicted.
        (u64::from(slot.entry.weight()) + slot.namespace.len() as u64).max(1)
    }
}

/// Shards for a quick_cache of `max_bytes` on this machine: its default (4
/// per core), halved until each shard holds at least `min_shard_bytes` (an
/// item heavier than a shard is not admitted).
pub(crate) fn shard_count(max_bytes: u64, min_shard_bytes: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut shards = (cores * 4).next_power_of_two();
    while shards > 1 && max_bytes / (shards as u64) < min_shard_bytes {
        shards /= 2;
    }
    shards
}

impl MemoryTier {
    /// `grace`: how long past its TTL an entry is kept for stale-if-error.
    pub fn new(max_bytes: u64, grace: Duration) -> Self {
        let shards = shard_count(max_bytes, MIN_SHARD_BYTES);
        let options = OptionsBuilder::new()
            .shards(shards)
            .weight_capacity(max_bytes)
            .estimated_items_capacity(
                usize::try_from(max_bytes / TYPICAL_ENTRY_BYTES)
                    .unwrap_or(usize::MAX)
                    .max(32 * shards),
            )
            .build();
        let cache = match options {
            Ok(options) => Cache::with_options(
                options,
                SlotWeight,
                DefaultHashBuilder::default(),
                DefaultLifecycle::default(),
            ),
            // Only reachable with a zero capacity, which config validation refuses.
            Err(_) => Cache::with_weighter(1, max_bytes, SlotWeight),
        };
        MemoryTier {
            cache: Arc::new(cache),
            grace,
        }
    }

    /// The entry if it is fresh or still within the stale grace (the caller
    /// checks `is_fresh`); a dead one is dropped on the way.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key)?.entry;
        if entry.is_servable_stale(self.grace) {
            Some(entry)
        } else {
            self.cache.remove(key);
            None
        }
    }

    pub async fn insert(&self, key: CacheKey, namespace: &str, entry: Arc<Entry>) {
        let namespace = Arc::from(namespace);
        self.cache.insert(key, Slot { entry, namespace });
    }

    /// A snapshot of the live entries (fresh ones only), with their
    /// namespaces, for export.
    pub fn snapshot(&self) -> Vec<(CacheKey, Arc<str>, Arc<Entry>)> {
        self.cache
            .iter()
            .filter(|(_, slot)| slot.entry.is_fresh())
            .map(|(key, slot)| (key, slot.namespace, slot.entry))
            .collect()
    }

    pub async fn remove(&self, key: &CacheKey) {
        self.cache.remove(key);
    }

    /// Drops every entry `doomed` picks (purges) and every entry past its
    /// stale grace; returns how many `doomed` picked. Walks the whole tier
    /// one shard at a time: purges are rare, hits never pay for this.
    pub async fn sweep(&self, doomed: impl Fn(&CacheKey, &Entry) -> bool) -> u64 {
        let picked = std::cell::Cell::new(0u64);
        let grace = self.grace;
        self.cache.retain(|key, slot| {
            if doomed(key, &slot.entry) {
                picked.set(picked.get() + 1);
                false
            } else {
                slot.entry.is_servable_stale(grace)
            }
        });
        picked.get()
    }

    /// (entries, weighted bytes).
    pub async fn usage(&self) -> (u64, u64) {
        (self.cache.len() as u64, self.cache.weight())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::ttl::Ttl;
    use super::*;

    fn entry(ttl: Ttl, size: usize) -> Arc<Entry> {
        Arc::new(Entry::new(
            Bytes::from(vec![b'x'; size]),
            "application/json".into(),
            ttl,
            Some(3),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_expiry_follows_the_tokio_clock() {
        let tier = MemoryTier::new(1 << 20, Duration::ZERO);
        let k = CacheKey([1; 32]);
        tier.insert(k, "ns", entry(Ttl::After(Duration::from_secs(10)), 10))
            .await;
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(tier.get(&k).await.unwrap().is_fresh());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(tier.get(&k).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn stale_grace_keeps_expired_entries_readable() {
        let tier = MemoryTier::new(1 << 20, Duration::from_secs(60));
        let k = CacheKey([3; 32]);
        tier.insert(k, "ns", entry(Ttl::After(Duration::from_secs(10)), 10))
            .await;
        tokio::time::advance(Duration::from_secs(30)).await;
        let stale = tier.get(&k).await.unwrap();
        assert!(!stale.is_fresh());
        tokio::time::advance(Duration::from_secs(41)).await;
        assert!(tier.get(&k).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn forever_entries_do_not_expire() {
        let tier = MemoryTier::new(1 << 20, Duration::ZERO);
        let k = CacheKey([2; 32]);
        tier.insert(k, "ns", entry(Ttl::Forever, 10)).await;
        tokio::time::advance(Duration::from_secs(10 * 365 * 86400)).await;
        assert!(tier.get(&k).await.is_some());
    }

    #[tokio::test]
    async fn sweep_drops_only_what_it_picks() {
        let tier = MemoryTier::new(1 << 20, Duration::ZERO);
        for i in 0..10u8 {
            tier.insert(CacheKey([i; 32]), "ns", entry(Ttl::Forever, 10))
                .await;
        }
        assert_eq!(tier.sweep(|k, _| k.0[0] % 2 == 0).await, 5);
        assert!(tier.get(&CacheKey([2; 32])).await.is_none());
        assert!(tier.get(&CacheKey([3; 32])).await.is_some());
    }

    #[tokio::test]
    async fn bounded_by_bytes() {
        let tier = MemoryTier::new(100_000, Duration::ZERO);
        for i in 0..100u8 {
            tier.insert(CacheKey([i; 32]), "ns", entry(Ttl::Forever, 10_000))
                .await;
        }
        let (count, bytes) = tier.usage().await;
        assert!(bytes <= 100_000, "{bytes}");
        assert!(count < 100, "{count}");
    }
}
