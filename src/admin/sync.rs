//! Sharing purge watermarks between instances through one small Redis hash,
//! `{prefix}:purge`: field = the rule as JSON, value = `watermark:created`,
//! plus a version field `_v` bumped by every publish. Each instance reads
//! `_v` every `admin.watermark_poll` and the whole hash only when it moved.
//! One key, so it works unchanged on Redis Cluster; fail-open like the rest.

use std::sync::{Arc, Weak};

use super::watermarks::{Rule, Stamp};
use crate::cache::entry::unix_ms_now;
use crate::cache::redis::RedisTier;
use crate::state::AppState;

const VERSION_FIELD: &str = "_v";

/// Sets a rule's watermark unless the stored one is higher, then bumps the
/// version: one round trip, atomic.
const PUBLISH: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local w = tonumber(string.match(cur, '^(%d+)'))
  if w and w >= tonumber(ARGV[2]) then
    return redis.call('HINCRBY', KEYS[1], '_v', 1)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return redis.call('HINCRBY', KEYS[1], '_v', 1)
";

pub fn hash_key(redis: &RedisTier) -> String {
    format!("{}:purge", redis.prefix())
}

/// Publishes rules; false when Redis did not take every one.
pub async fn publish(redis: &RedisTier, rules: &[Rule], stamp: Stamp) -> bool {
    let key = hash_key(redis);
    let mut ok = true;
    for rule in rules {
        let Ok(field) = serde_json::to_string(rule) else {
            ok = false;
            continue;
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(PUBLISH)
            .arg(1)
            .arg(&key)
            .arg(field)
            .arg(stamp.watermark_ms)
            .arg(stamp.created_ms);
        ok &= redis.query::<i64>(&cmd, "EVAL purge").await.is_some();
    }
    ok
}

/// Reads the shared rules if the version moved since `seen`; returns the new
/// version and the rules, dropping (HDEL) those older than `prune_before_ms`.
async fn read(
    redis: &RedisTier,
    seen: Option<&str>,
    prune_before_ms: u64,
) -> Option<(String, Vec<(Rule, Stamp)>)> {
    let key = hash_key(redis);
    let version: Option<String> = redis
        .query(redis::cmd("HGET").arg(&key).arg(VERSION_FIELD), "HGET")
        .await?;
    let version = version?;
    if seen == Some(version.as_str()) {
        return None;
    }
    let fields: Vec<(String, String)> = redis
        .query(redis::cmd("HGETALL").arg(&key), "HGETALL")
        .await?;
    let mut rules = Vec::new();
    let mut expired = Vec::new();
    for (field, value) in fields {
        if field == VERSION_FIELD {
            continue;
        }
        match (serde_json::from_str::<Rule>(&field), Stamp::decode(&value)) {
            (Ok(rule), Some(stamp)) if stamp.created_ms >= prune_before_ms => {
                rules.push((rule, stamp))
            }
            _ => expired.push(field),
        }
    }
    if !expired.is_empty() {
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(&key).arg(&expired);
        let _: Option<i64> = redis.query(&hdel, "HDEL").await;
    }
    Some((version, rules))
}

/// Starts the poll loop; it ends when the state is dropped (server stopped).
pub fn spawn(state: &Arc<AppState>) {
    let weak: Weak<AppState> = Arc::downgrade(state);
    let every = state.config.admin.watermark_poll;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: Option<String> = None;
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else {
                return;
            };
            let retention = u64::try_from(state.config.admin.watermark_retention.as_millis())
                .unwrap_or(u64::MAX);
            let prune_before = unix_ms_now().saturating_sub(retention);
            let incoming = match &state.tiers.redis {
                Some(redis) => match read(redis, seen.as_deref(), prune_before).await {
                    Some((version, rules)) => {
                        seen = Some(version);
                        rules
                    }
                    None => Vec::new(),
                },
                None => Vec::new(),
            };
            let changed = state.watermarks.merge(incoming, prune_before);
            if !changed.is_empty() {
                let swept = super::purge::sweep_memory(&state, &changed).await;
                tracing::debug!(rules = changed.len(), swept, "purge watermarks received");
            }
        }
    });
}
