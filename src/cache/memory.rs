//! L1: the in-process tier, bounded by bytes, with per-entry TTL.
//!
//! moka evicts by weight (body bytes) and reclaims entries once TTL + stale
//! grace have passed; freshness itself is decided by `Entry::is_fresh` on read
//! (tokio clock), so a read never mistakes an expired entry for a fresh one
//! even before moka's housekeeping runs.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use moka::future::Cache;
use moka::Expiry;

use super::entry::Entry;
use super::key::CacheKey;

#[derive(Clone)]
pub struct MemoryTier {
    cache: Cache<CacheKey, Slot>,
    grace: Duration,
}

/// An entry and the namespace it was stored under (the key is a hash that
/// includes the namespace; export needs it back in clear).
#[derive(Clone)]
struct Slot {
    entry: Arc<Entry>,
    namespace: Arc<str>,
}

/// Entries are reclaimed once TTL + stale grace have passed.
struct EntryExpiry {
    grace: Duration,
}

impl Expiry<CacheKey, Slot> for EntryExpiry {
    fn expire_after_create(&self, _: &CacheKey, slot: &Slot, _: StdInstant) -> Option<Duration> {
        slot.entry.keep_for(self.grace)
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        slot: &Slot,
        _: StdInstant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        slot.entry.keep_for(self.grace)
    }
}

impl MemoryTier {
    /// `grace`: how long past its TTL an entry is kept for stale-if-error.
    pub fn new(max_bytes: u64, grace: Duration) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &CacheKey, s: &Slot| {
                s.entry
                    .weight()
                    .saturating_add(u32::try_from(s.namespace.len()).unwrap_or(u32::MAX))
            })
            .expire_after(EntryExpiry { grace })
            .build();
        MemoryTier { cache, grace }
    }

    /// The entry if it is fresh or still within the stale grace (the caller
    /// checks `is_fresh`); a dead one is dropped on the way.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key).await?.entry;
        if entry.is_servable_stale(self.grace) {
            Some(entry)
        } else {
            self.cache.invalidate(key).await;
            None
        }
    }

    pub async fn insert(&self, key: CacheKey, namespace: &str, entry: Arc<Entry>) {
        let namespace = Arc::from(namespace);
        self.cache.insert(key, Slot { entry, namespace }).await;
    }

    /// A snapshot of the live entries (fresh ones only), with their
    /// namespaces, for export.
    pub fn snapshot(&self) -> Vec<(CacheKey, Arc<str>, Arc<Entry>)> {
        self.cache
            .iter()
            .filter(|(_, slot)| slot.entry.is_fresh())
            .map(|(key, slot)| (*key, slot.namespace, slot.entry))
            .collect()
    }

    pub async fn remove(&self, key: &CacheKey) {
        self.cache.invalidate(key).await;
    }

    /// Drops every entry `doomed` picks (purges); returns how many. Walks the
    /// whole tier: purges are rare, hits never pay for this.
    pub async fn sweep(&self, doomed: impl Fn(&CacheKey, &Entry) -> bool) -> u64 {
        let keys: Vec<CacheKey> = self
            .cache
            .iter()
            .filter(|(k, s)| doomed(k, &s.entry))
            .map(|(k, _)| *k)
            .collect();
        for key in &keys {
            self.cache.invalidate(key).await;
        }
        keys.len() as u64
    }

    /// (entries, weighted bytes), after pending housekeeping.
    pub async fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks().await;
        (self.cache.entry_count(), self.cache.weighted_size())
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
