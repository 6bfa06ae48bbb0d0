//! The semantic index in Redis, so that an entry stored by one instance
//! answers paraphrases on every instance.
//!
//! Plain keys and hashes only (Redis 7, Redis Cluster; no Redis Stack), one
//! key per command, so every command goes to one cluster node:
//! - `{prefix}:sem:v1:{partition}` — a hash per partition: field = the exact
//!   entry's key (hex), value = the encoded item (vector, text, flags, and
//!   verified mode's observations). It expires with the longest-lived entry
//!   written into it.
//! - `{prefix}:semkey:v1:{namespace}:{key}` — which partition an entry's
//!   item is in (feedback finds it there); same lifetime as the entry.
//!
//! Instances read a partition with `HGETALL` on first use and again when
//! their copy is older than `semantic.refresh`: that is the staleness bound
//! (an item written, blocked or dropped elsewhere is seen within it).
//!
//! With `cache.encryption = "per-tenant"` the item's vector, observations and
//! text are sealed with the caller's key, as entries are (`cache::seal`;
//! the associated data binds them to the entry's key): a Redis dump shows no
//! prompt text, and another tenant's (or another secret's) items do not open
//! and are skipped. Only the blocked flag stays readable.
//!
//! Feedback and verified-mode observations change an item by optimistic
//! read-modify-write: `HGET`, change, then a script that replaces the field
//! only if it still holds the bytes read (compare-and-set); on a conflict the
//! change is re-applied to the new value, up to [`UPDATE_ATTEMPTS`] times. So
//! two instances recording on one item at the same moment both keep their
//! observation; only a change that loses [`UPDATE_ATTEMPTS`] races in a row
//! is dropped (counted in `reprise_semantic_update_conflicts_total`), which
//! delays learning and never serves anything the kept observations do not
//! justify.

use std::sync::Arc;
use std::time::Duration;

use super::index::Item;
use super::partition::PartitionId;
use super::verified::{Observations, MAX_OBSERVATIONS};
use crate::cache::key::CacheKey;
use crate::cache::redis::RedisTier;
use crate::cache::seal::Sealing;

/// Version 2 added the observations; version 1 items read as having none.
const ITEM_VERSION: u8 = 2;
const ITEM_VERSION_NO_OBSERVATIONS: u8 = 1;
/// Version 2's payload (everything after the flags), sealed.
const ITEM_VERSION_SEALED: u8 = 3;
const FLAG_BLOCKED: u8 = 1;

pub fn partition_key(redis: &RedisTier, partition: &PartitionId) -> String {
    format!("{}:sem:v1:{}", redis.prefix(), partition.hex())
}

pub fn pointer_key(redis: &RedisTier, namespace: &str, key: &CacheKey) -> String {
    format!("{}:semkey:v1:{namespace}:{}", redis.prefix(), key.hex())
}

/// `version | flags | payload`, the payload being `dim (u16 LE) | dim × f32
/// LE | n (u8) | n × (f32 LE, u8) observations | text (UTF-8)`, sealed
/// (version 3) when `sealing` is on. None when sealing failed (no write).
pub fn encode(item: &Item, sealing: &Sealing) -> Option<Vec<u8>> {
    let flags = if item.blocked { FLAG_BLOCKED } else { 0 };
    let payload = payload(item);
    if !sealing.is_on() {
        let mut out = Vec::with_capacity(2 + payload.len());
        out.extend_from_slice(&[ITEM_VERSION, flags]);
        out.extend_from_slice(&payload);
        return Some(out);
    }
    let mut out = bytes::BytesMut::with_capacity(2 + payload.len() + 28);
    out.extend_from_slice(&[ITEM_VERSION_SEALED, flags]);
    sealing
        .seal_into(&mut out, &aad(&item.key), &payload)
        .then(|| out.to_vec())
}

/// What a sealed item is bound to: its entry's key, in the semantic domain
/// (an entry's sealed value copied into the hash does not open as an item).
fn aad(key: &CacheKey) -> Vec<u8> {
    let mut aad = b"reprise semantic item\0".to_vec();
    aad.extend_from_slice(&key.0);
    aad
}

fn payload(item: &Item) -> Vec<u8> {
    let dim = u16::try_from(item.vector.len()).unwrap_or(0);
    let samples = item.observations.samples();
    let kept = &samples[samples.len().saturating_sub(MAX_OBSERVATIONS)..];
    let mut out = Vec::with_capacity(3 + 4 * usize::from(dim) + 5 * kept.len() + item.text.len());
    out.extend_from_slice(&dim.to_le_bytes());
    for x in item.vector.iter().take(usize::from(dim)) {
        out.extend_from_slice(&x.to_le_bytes());
    }
    // MAX_OBSERVATIONS (64) fits a byte.
    out.push(u8::try_from(kept.len()).unwrap_or(u8::MAX));
    for (similarity, correct) in kept.iter().take(usize::from(u8::MAX)) {
        out.extend_from_slice(&similarity.to_le_bytes());
        out.push(u8::from(*correct));
    }
    out.extend_from_slice(item.text.as_bytes());
    out
}

/// The item of `key`, or None for anything malformed or not opening with
/// `sealing` (clear items when sealing is on, sealed ones when it is off:
/// switching encryption turns items into misses, as it does entries).
pub fn decode(key: CacheKey, bytes: &[u8], sealing: &Sealing) -> Option<Item> {
    let (&version, rest) = bytes.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    match (version, sealing.is_on()) {
        (ITEM_VERSION_SEALED, true) => {
            let plain = sealing.open(&aad(&key), rest)?;
            parse(key, flags, &plain, true)
        }
        (ITEM_VERSION, false) => parse(key, flags, rest, true),
        (ITEM_VERSION_NO_OBSERVATIONS, false) => parse(key, flags, rest, false),
        _ => None,
    }
}

fn parse(key: CacheKey, flags: u8, rest: &[u8], observed: bool) -> Option<Item> {
    let dim = usize::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?]));
    let rest = rest.get(2..)?;
    let vector: Vec<f32> = rest
        .get(..dim * 4)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if vector.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut rest = rest.get(dim * 4..)?;
    let mut observations = Observations::new();
    if observed {
        let (&n, after) = rest.split_first()?;
        let n = usize::from(n);
        for o in after.get(..n * 5)?.chunks_exact(5) {
            let similarity = f32::from_le_bytes([o[0], o[1], o[2], o[3]]);
            observations.record(similarity, o[4] != 0);
        }
        rest = after.get(n * 5..)?;
    }
    let text = std::str::from_utf8(rest).ok()?;
    Some(Item {
        key,
        vector: Arc::from(vector),
        text: Arc::from(text),
        blocked: flags & FLAG_BLOCKED != 0,
        observations,
    })
}

fn parse_key(hex_key: &[u8]) -> Option<CacheKey> {
    let bytes = hex::decode(hex_key).ok()?;
    Some(CacheKey(bytes.try_into().ok()?))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Writes an item; `expire` = the exact entry's remaining lifetime (None =
/// forever). A partition already holding `max_entries` items takes no more.
pub async fn store(
    redis: &RedisTier,
    namespace: &str,
    partition: &PartitionId,
    item: &Item,
    expire: Option<Duration>,
    max_entries: usize,
    sealing: &Sealing,
) -> bool {
    let Some(value) = encode(item, sealing) else {
        return false;
    };
    let hash = partition_key(redis, partition);
    let len: Option<u64> = redis.query(redis::cmd("HLEN").arg(&hash), "HLEN").await;
    if len.is_none_or(|n| n >= max_entries as u64) {
        return false;
    }
    let field = item.key.hex();
    let written: Option<i64> = redis
        .query(redis::cmd("HSET").arg(&hash).arg(&field).arg(value), "HSET")
        .await;
    if written.is_none() {
        return false;
    }
    match expire {
        // A new hash gets the entry's lifetime (NX); an existing one keeps the
        // longest (GT). Both options need Redis 7.
        Some(ttl) => {
            for option in ["NX", "GT"] {
                let _: Option<i64> = redis
                    .query(
                        redis::cmd("PEXPIRE")
                            .arg(&hash)
                            .arg(millis(ttl))
                            .arg(option),
                        "PEXPIRE",
                    )
                    .await;
            }
        }
        None => {
            let _: Option<i64> = redis
                .query(redis::cmd("PERSIST").arg(&hash), "PERSIST")
                .await;
        }
    }
    let mut set = redis::cmd("SET");
    set.arg(pointer_key(redis, namespace, &item.key))
        .arg(partition.hex());
    if let Some(ttl) = expire {
        set.arg("PX").arg(millis(ttl));
    }
    let _: Option<String> = redis.query(&set, "SET").await;
    true
}

/// Every item of a partition; None when Redis is unavailable.
/// (items that do not open with `sealing` are skipped).
pub async fn load(
    redis: &RedisTier,
    partition: &PartitionId,
    sealing: &Sealing,
) -> Option<Vec<Item>> {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = redis
        .query(
            redis::cmd("HGETALL").arg(partition_key(redis, partition)),
            "HGETALL",
        )
        .await?;
    Some(
        pairs
            .into_iter()
            .filter_map(|(field, value)| decode(parse_key(&field)?, &value, sealing))
            .collect(),
    )
}

/// Drops an item whose exact entry is gone.
pub async fn remove(redis: &RedisTier, partition: &PartitionId, key: &CacheKey) {
    let _: Option<i64> = redis
        .query(
            redis::cmd("HDEL")
                .arg(partition_key(redis, partition))
                .arg(key.hex()),
            "HDEL",
        )
        .await;
}

/// Whether an item for `key` exists in `namespace`.
pub async fn exists(redis: &RedisTier, namespace: &str, key: &CacheKey) -> bool {
    redis
        .exists(&pointer_key(redis, namespace, key))
        .await
        .unwrap_or(false)
}

/// Sets an item's blocked flag; Some(true) when the item exists.
pub async fn set_blocked(
    redis: &RedisTier,
    namespace: &str,
    key: &CacheKey,
    blocked: bool,
    sealing: &Sealing,
) -> Option<bool> {
    update(redis, namespace, key, sealing, |item| {
        item.blocked = blocked
    })
    .await
}

/// Records a verified-mode observation on an item; Some(true) when it exists.
pub async fn record(
    redis: &RedisTier,
    namespace: &str,
    key: &CacheKey,
    similarity: f32,
    correct: bool,
    sealing: &Sealing,
) -> Option<bool> {
    update(redis, namespace, key, sealing, |item| {
        item.observations.record(similarity, correct)
    })
    .await
}

/// Read-modify-write of one item (see the module comment on races);
/// Some(true) when the item exists, None when Redis did not answer.
async fn update(
    redis: &RedisTier,
    namespace: &str,
    key: &CacheKey,
    sealing: &Sealing,
    change: impl Fn(&mut Item),
) -> Option<bool> {
    let pointer: Option<String> = redis
        .query(
            redis::cmd("GET").arg(pointer_key(redis, namespace, key)),
            "GET",
        )
        .await?;
    let Some(partition_hex) = pointer else {
        return Some(false);
    };
    let hash = format!("{}:sem:v1:{partition_hex}", redis.prefix());
    for _ in 0..UPDATE_ATTEMPTS {
        let read: Option<Vec<u8>> = redis
            .query(redis::cmd("HGET").arg(&hash).arg(key.hex()), "HGET")
            .await?;
        let Some(read) = read else {
            return Some(false);
        };
        let Some(mut item) = decode(*key, &read, sealing) else {
            return Some(false);
        };
        change(&mut item);
        let Some(value) = encode(&item, sealing) else {
            return Some(true);
        };
        let swapped: Option<i64> = redis
            .query(
                redis::cmd("EVAL")
                    .arg(REPLACE_IF_UNCHANGED)
                    .arg(1)
                    .arg(&hash)
                    .arg(key.hex())
                    .arg(&read)
                    .arg(value),
                "EVAL",
            )
            .await;
        match swapped {
            // Replaced, or the item is gone (dropped or expired): done either way.
            Some(1 | -1) => return Some(true),
            // Another instance changed it since the read: apply ours to theirs.
            Some(_) => continue,
            None => return None,
        }
    }
    metrics::counter!("reprise_semantic_update_conflicts_total").increment(1);
    Some(true)
}

/// How many times a change is re-applied after losing a race. Every round of
/// a race has one winner, so this many instances can update one item at the
/// same instant without losing a change.
const UPDATE_ATTEMPTS: usize = 16;

/// Compare-and-set of one hash field: HSET only when the field still holds the
/// bytes read (1), else 0; -1 when the field is gone (an item dropped or a
/// hash expired between the read and the write is not brought back, so no
/// hash ever lives without its expiry). One key: Redis Cluster safe.
const REPLACE_IF_UNCHANGED: &str = "local current = redis.call('HGET', KEYS[1], ARGV[1]) \
     if not current then return -1 end \
     if current ~= ARGV[2] then return 0 end \
     redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::seal::Sealer;
    use std::sync::LazyLock;

    static CLEAR: LazyLock<Sealing> = LazyLock::new(|| Sealer::off().shared());

    fn item() -> Item {
        let mut observations = Observations::new();
        observations.record(0.93, true);
        observations.record(0.71, false);
        Item {
            key: CacheKey([7; 32]),
            vector: Arc::from(vec![0.6, -0.8]),
            text: Arc::from("how do I reset my password?"),
            blocked: true,
            observations,
        }
    }

    #[test]
    fn items_round_trip_and_garbage_decodes_to_none() {
        let item = item();
        let back = decode(item.key, &encode(&item, &CLEAR).unwrap(), &CLEAR).unwrap();
        assert_eq!(&*back.vector, &*item.vector);
        assert_eq!(back.text, item.text);
        assert!(back.blocked);
        assert_eq!(back.observations, item.observations);
        let bytes = encode(&item, &CLEAR).unwrap();
        for cut in 0..(4 + 8 + 1 + 10) {
            assert!(decode(item.key, &bytes[..cut], &CLEAR).is_none(), "{cut}");
        }
        assert!(decode(item.key, &[9, 0, 0, 0], &CLEAR).is_none());
        assert!(
            decode(item.key, &[1, 0, 1, 0, 0, 0, 0xc0, 0x7f], &CLEAR).is_none(),
            "NaN"
        );
        assert_eq!(parse_key(item.key.hex().as_bytes()), Some(item.key));
        assert_eq!(parse_key(b"zz"), None);
    }

    #[test]
    fn version_1_items_read_as_unobserved() {
        let item = item();
        // Version 1: no observation block between the vector and the text.
        let mut v1 = vec![1, FLAG_BLOCKED, 2, 0];
        for x in item.vector.iter() {
            v1.extend_from_slice(&x.to_le_bytes());
        }
        v1.extend_from_slice(item.text.as_bytes());
        let back = decode(item.key, &v1, &CLEAR).unwrap();
        assert!(back.observations.is_empty());
        assert_eq!(back.text, item.text);
        assert!(back.blocked);
        // An observation count past the bytes present is malformed, not a panic.
        let mut bytes = encode(&item, &CLEAR).unwrap();
        bytes[4 + 8] = 200;
        bytes.truncate(4 + 8 + 1 + 20);
        assert!(decode(item.key, &bytes, &CLEAR).is_none());
    }

    #[test]
    fn sealed_items_hide_their_text_and_open_only_for_their_tenant() {
        let sealer = Sealer::per_tenant(b"a server secret of 32 bytes or more!");
        let (mine, theirs) = (sealer.tenant("sk-mine"), sealer.tenant("sk-theirs"));
        let item = item();
        let sealed = encode(&item, &mine).unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"password"));
        let back = decode(item.key, &sealed, &mine).unwrap();
        assert_eq!(back.text, item.text);
        assert_eq!(&*back.vector, &*item.vector);
        assert_eq!(back.observations, item.observations);
        assert!(back.blocked, "the flag stays readable");
        assert!(decode(item.key, &sealed, &theirs).is_none());
        assert!(
            decode(CacheKey([8; 32]), &sealed, &mine).is_none(),
            "bound to its key"
        );
        assert!(decode(item.key, &sealed, &CLEAR).is_none());
        let clear = encode(&item, &CLEAR).unwrap();
        assert!(decode(item.key, &clear, &mine).is_none());
        let other_secret = Sealer::per_tenant(b"another server secret, 32 bytes+!!");
        assert!(decode(item.key, &sealed, &other_secret.tenant("sk-mine")).is_none());
    }
}
