//! The tiers together: memory L1 in front of Redis L2, per `cache.backend`.
//! Lookups go L1 then L2 (an L2 hit is promoted into L1 with its remaining
//! TTL); writes go to every configured tier.

use std::sync::Arc;
use std::time::Duration;

use super::codec::{self, Meta};
use super::entry::Entry;
use super::key::CacheKey;
use super::memory::MemoryTier;
use super::outcome::Tier;
use super::redis::{RedisSettings, RedisTier};
use super::seal::Sealing;

pub struct Tiers {
    pub memory: Option<MemoryTier>,
    pub redis: Option<RedisTier>,
    grace: Duration,
}

/// Which tiers to build, as plain values.
#[derive(Debug, Clone)]
pub struct TierSettings {
    /// Byte bound of the memory tier; None = no memory tier.
    pub memory_bytes: Option<u64>,
    /// The Redis tier; None = no Redis tier.
    pub redis: Option<RedisSettings>,
    /// How long past its TTL an entry is kept for stale-if-error.
    pub stale_grace: Duration,
}

/// What a lookup found.
#[derive(Default)]
pub struct Lookup {
    /// A fresh entry acceptable to the caller.
    pub fresh: Option<(Arc<Entry>, Tier)>,
    /// An expired entry still within the stale grace (stale-if-error).
    pub stale: Option<(Arc<Entry>, Tier)>,
}

impl Tiers {
    pub fn new(settings: TierSettings) -> Result<Self, redis::RedisError> {
        let memory = settings
            .memory_bytes
            .map(|bytes| MemoryTier::new(bytes, settings.stale_grace));
        let redis = match &settings.redis {
            Some(r) => Some(RedisTier::new(r)?),
            None => None,
        };
        Ok(Tiers {
            memory,
            redis,
            grace: settings.stale_grace,
        })
    }

    /// Looks `key` up in each tier. `max_age` rejects older entries outright;
    /// so does `valid` (purge watermarks: a purged L1 entry is dropped).
    /// `sealing` opens Redis values (L1 holds entries in clear).
    pub async fn lookup(
        &self,
        key: &CacheKey,
        namespace: &str,
        sealing: &Sealing,
        max_age: Option<Duration>,
        valid: impl Fn(&Entry) -> bool,
    ) -> Lookup {
        let acceptable = |e: &Entry| max_age.is_none_or(|max| e.age() <= max) && valid(e);
        let mut found = Lookup::default();
        if let Some(memory) = &self.memory {
            let entry = match memory.get(key).await {
                Some(e) if !valid(&e) => {
                    memory.remove(key).await;
                    None
                }
                other => other,
            };
            if let Some(entry) = entry.filter(|e| acceptable(e)) {
                if entry.is_fresh() {
                    found.fresh = Some((entry, Tier::Memory));
                    return found;
                }
                found.stale = Some((entry, Tier::Memory));
            }
        }
        if let Some(redis) = &self.redis {
            let redis_key = redis.entry_key(namespace, key);
            if let Some(entry) = redis
                .get(&redis_key, key, sealing)
                .await
                .filter(|e| acceptable(e))
            {
                let entry = Arc::new(entry);
                if entry.is_fresh() {
                    if let Some(memory) = &self.memory {
                        memory.insert(*key, namespace, entry.clone()).await;
                    }
                    found.fresh = Some((entry, Tier::Redis));
                } else if entry.is_servable_stale(self.grace) && found.stale.is_none() {
                    found.stale = Some((entry, Tier::Redis));
                }
            }
        }
        found
    }

    /// Writes to the shared tier only (the caller filled memory already).
    pub async fn store_shared(
        &self,
        key: CacheKey,
        namespace: &str,
        sealing: &Sealing,
        entry: &Entry,
    ) {
        if let Some(redis) = &self.redis {
            let expire = entry.keep_for(self.grace);
            redis
                .set(
                    &redis.entry_key(namespace, &key),
                    &key,
                    entry,
                    sealing,
                    expire,
                )
                .await;
        }
    }

    /// Stores an already-encoded value (an imported dump line) under `key`:
    /// into Redis as it is (sealed values stay sealed), and into memory when
    /// `sealing` opens it. False when it went nowhere (memory only, and the
    /// value does not open for this caller).
    pub async fn store_encoded(
        &self,
        key: CacheKey,
        namespace: &str,
        value: &[u8],
        meta: &Meta,
        sealing: Option<&Sealing>,
    ) -> bool {
        let mut stored = false;
        if let Some(redis) = &self.redis {
            let expire = meta.remaining().map(|r| super::ttl::add(r, self.grace));
            redis
                .set_raw(&redis.entry_key(namespace, &key), value, expire)
                .await;
            stored = true;
        }
        if let (Some(memory), Some(sealing)) = (&self.memory, sealing) {
            if let Ok(entry) = codec::decode_for(value, &key, sealing) {
                memory.insert(key, namespace, Arc::new(entry)).await;
                stored = true;
            }
        }
        stored
    }

    /// Writes to the memory tier only: cheap, so a miss does it before its
    /// response goes out, and the caller's next identical request is a hit.
    pub async fn store_memory(&self, key: CacheKey, namespace: &str, entry: Arc<Entry>) {
        if let Some(memory) = &self.memory {
            memory.insert(key, namespace, entry).await;
        }
    }

    /// Writes to every tier (called off the response path).
    pub async fn store(
        &self,
        key: CacheKey,
        namespace: &str,
        sealing: &Sealing,
        entry: Arc<Entry>,
    ) {
        if let Some(redis) = &self.redis {
            let expire = entry.keep_for(self.grace);
            redis
                .set(
                    &redis.entry_key(namespace, &key),
                    &key,
                    &entry,
                    sealing,
                    expire,
                )
                .await;
        }
        if let Some(memory) = &self.memory {
            memory.insert(key, namespace, entry).await;
        }
    }
}
