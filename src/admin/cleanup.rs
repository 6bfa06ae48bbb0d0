//! Physical clean-up after a purge: delete the purged Redis entries (the
//! watermarks already make them misses; this gives the memory back).
//!
//! No `KEYS`, no `FLUSHALL`: `SCAN … MATCH {prefix}:v1:{namespace}*` on the
//! server or on every cluster primary, then `UNLINK` (freed off Redis's main
//! thread) each key the rule covers. A rule that needs more than the
//! namespace (model, endpoint, custom-key glob, `older_than`) reads each
//! candidate's stored origin first. A single-entry rule needs no scan.

use std::sync::atomic::{AtomicU64, Ordering};

use super::purge::origin_scope;
use super::watermarks::{Mark, Scope};
use crate::cache::key::CacheKey;
use crate::cache::redis::RedisTier;

const SCAN_COUNT: usize = 500;

/// Escapes a namespace for a `MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `{prefix}:v1:{namespace}:{hex}` → (namespace, key).
fn split_entry_key<'a>(prefix: &str, redis_key: &'a str) -> Option<(&'a str, CacheKey)> {
    let rest = redis_key.strip_prefix(prefix)?.strip_prefix(":v1:")?;
    let (namespace, hex) = rest.rsplit_once(':')?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex, &mut key).ok()?;
    Some((namespace, CacheKey(key)))
}

/// Whether `mark` is decided by the namespace alone (no need to read values):
/// no narrowing field and a watermark at (not before) the purge time.
fn namespace_only(mark: &Mark) -> bool {
    let r = &mark.rule;
    r.model.is_none()
        && r.endpoint.is_none()
        && r.key.is_none()
        && r.custom_key.is_none()
        && mark.stamp.watermark_ms >= mark.stamp.created_ms
}

/// Deletes every Redis entry the marks purge, adding to `deleted`.
pub async fn run(redis: &RedisTier, marks: &[Mark], deleted: &AtomicU64) {
    for mark in marks {
        match (&mark.rule.namespace, &mark.rule.key) {
            (Some(ns), Some(hex)) => {
                let redis_key = format!("{}:v1:{ns}:{hex}", redis.prefix());
                unlink_if_purged(redis, mark, &redis_key, deleted).await;
            }
            _ => scan_and_unlink(redis, mark, deleted).await,
        }
    }
}

async fn scan_and_unlink(redis: &RedisTier, mark: &Mark, deleted: &AtomicU64) {
    let pattern = match &mark.rule.namespace {
        Some(ns) => format!("{}:v1:{}*", redis.prefix(), glob_escape(ns)),
        None => format!("{}:v1:*", redis.prefix()),
    };
    let Some(nodes) = redis.scan_nodes().await else {
        tracing::warn!("purge clean-up skipped: redis unavailable (watermarks still apply)");
        return;
    };
    let cheap = namespace_only(mark);
    for node in nodes {
        let mut cursor = 0u64;
        loop {
            let Some((next, keys)) = redis.scan_step(&node, cursor, &pattern, SCAN_COUNT).await
            else {
                tracing::warn!("purge clean-up interrupted: redis unavailable");
                return;
            };
            for redis_key in keys {
                let Some((namespace, key)) = split_entry_key(redis.prefix(), &redis_key) else {
                    continue; // a lock key, or not an entry
                };
                if cheap {
                    let scope = Scope {
                        namespace,
                        model: "",
                        endpoint: "",
                        key: &key,
                        custom_key: None,
                    };
                    if mark.covers(&scope) {
                        unlink(redis, &redis_key, deleted).await;
                    }
                } else {
                    unlink_if_purged(redis, mark, &redis_key, deleted).await;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

async fn unlink_if_purged(redis: &RedisTier, mark: &Mark, redis_key: &str, deleted: &AtomicU64) {
    let Some((_, key)) = split_entry_key(redis.prefix(), redis_key) else {
        return;
    };
    // The header only: a sealed body needs its tenant's key, the origin not.
    let Some(meta) = redis.get_meta(redis_key).await else {
        return;
    };
    if mark.purges(
        &origin_scope(&key, &meta.origin),
        meta.origin.requested_at_ms,
    ) {
        unlink(redis, redis_key, deleted).await;
    }
}

async fn unlink(redis: &RedisTier, redis_key: &str, deleted: &AtomicU64) {
    let removed: Option<i64> = redis
        .query(redis::cmd("UNLINK").arg(redis_key), "UNLINK")
        .await;
    deleted.fetch_add(removed.unwrap_or(0).max(0) as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_split_and_locks_do_not() {
        let hex = "ab".repeat(32);
        let redis_key = format!("reprise:v1:ns.team:{hex}");
        let (ns, key) = split_entry_key("reprise", &redis_key).unwrap();
        assert_eq!(ns, "ns.team");
        assert_eq!(key.hex(), hex);
        assert!(split_entry_key("reprise", &format!("reprise:v1:ns:{hex}:lock")).is_none());
        assert!(split_entry_key("reprise", "reprise:purge").is_none());
    }

    #[test]
    fn namespaces_are_escaped_for_match() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
