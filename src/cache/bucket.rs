//! Answer buckets for sampled traffic (`x-cache-bucket: N`, or a rule's
//! `bucket_size`): one key holds up to N answers in N slots. Slot 0 is the
//! key itself, slot i > 0 a key derived from it (same namespace). A request
//! fills the first empty slot (it goes upstream and is stored there); once
//! all N are filled, it is answered from one of them at random. For
//! `temperature > 0` this keeps variety without paying for every call.

use std::hash::{BuildHasher, Hasher};

use sha2::{Digest, Sha256};

use super::entry::Entry;
use super::key::CacheKey;
use super::seal::Sealing;
use super::tier::Tiers;

/// Largest bucket (a request looks up at most this many slots).
pub const MAX_BUCKET: u32 = 32;

/// The key of `slot` in the bucket of `base`.
pub fn slot_key(base: &CacheKey, slot: u32) -> CacheKey {
    if slot == 0 {
        return *base;
    }
    let digest: [u8; 32] = Sha256::new()
        .chain_update(b"reprise-bucket-v1\0")
        .chain_update(base.0)
        .chain_update(slot.to_le_bytes())
        .finalize()
        .into();
    CacheKey(digest)
}

/// The slot this request uses: the first empty one, or (all full) one at
/// random. `valid` is the caller's test of a stored entry (purges).
pub async fn choose(
    tiers: &Tiers,
    base: &CacheKey,
    namespace: &str,
    sealing: &Sealing,
    size: u32,
    valid: impl Fn(&CacheKey, &Entry) -> bool,
) -> CacheKey {
    let size = size.clamp(1, MAX_BUCKET);
    for slot in 0..size {
        let key = slot_key(base, slot);
        let found = tiers
            .lookup(&key, namespace, sealing, None, |e| valid(&key, e))
            .await;
        if found.fresh.is_none() {
            return key;
        }
    }
    slot_key(base, random_below(size))
}

/// A uniformly drawn number below `n` (SipHash with fresh random keys: no
/// RNG dependency for one draw per request).
fn random_below(n: u32) -> u32 {
    let draw = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (draw % u64::from(n.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_slot_zero_is_the_key() {
        let base = CacheKey([5; 32]);
        assert_eq!(slot_key(&base, 0), base);
        let keys: std::collections::HashSet<_> =
            (0..MAX_BUCKET).map(|s| slot_key(&base, s).0).collect();
        assert_eq!(keys.len(), MAX_BUCKET as usize);
        let draws: std::collections::HashSet<u32> = (0..200).map(|_| random_below(3)).collect();
        assert_eq!(draws, [0, 1, 2].into_iter().collect());
    }
}
