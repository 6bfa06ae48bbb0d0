//! Generations: invalidation without scanning keys. Every key carries the
//! server's generation (and, for `tools/list`, the caller's); a bump replaces
//! the generation with a fresh unique token, so every older entry simply
//! stops matching and ages out.
//!
//! Tokens are unique rather than counters so a generation that expires or is
//! forgotten can never come back to an older value: an absent generation
//! reads as `0`, and a caller's generation key in Redis lives at least as long
//! as the `tools/list` entries written under the value it replaced.
//!
//! With Redis configured, generations live there (every instance sees a bump)
//! and are read in one `MGET` per cacheable request; when Redis is
//! unavailable, the process-local copy is used (fail-open: a different key
//! space, so at worst misses) and a bump that could not be written is retried
//! before the next read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cache::redis::RedisTier;

/// Local generations kept before the map is reset (with a new epoch, so the
/// reset invalidates rather than resurrects).
const LOCAL_CAP: usize = 100_000;
/// Failed Redis bumps remembered for a retry.
const PENDING_CAP: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub server: String,
    pub caller: Option<String>,
}

pub struct Generations {
    nonce: u64,
    counter: AtomicU64,
    local: Mutex<Local>,
    /// Redis key → (token, expiry) of bumps Redis did not take.
    pending: Mutex<HashMap<String, (String, Option<Duration>)>>,
}

#[derive(Default)]
struct Local {
    epoch: u64,
    tokens: HashMap<String, String>,
}

impl Default for Generations {
    fn default() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Generations {
            nonce: nanos ^ (u64::from(std::process::id()) << 32),
            counter: AtomicU64::new(0),
            local: Mutex::new(Local::default()),
            pending: Mutex::new(HashMap::new()),
        }
    }
}

fn server_slot(server: &str) -> String {
    format!("s:{server}")
}

fn caller_slot(server: &str, namespace: &str) -> String {
    format!("c:{server}:{namespace}")
}

/// `{prefix}:mcpgen:{server}…`: the server name is a cluster hash tag so both
/// generations of a request are read by one `MGET` on one node.
fn redis_key(prefix: &str, slot: &str) -> String {
    match slot.split_once(':') {
        Some(("s", server)) => format!("{prefix}:mcpgen:{{{server}}}"),
        Some(("c", rest)) => match rest.split_once(':') {
            Some((server, namespace)) => format!("{prefix}:mcpgen:{{{server}}}:{namespace}"),
            None => format!("{prefix}:mcpgen:{slot}"),
        },
        _ => format!("{prefix}:mcpgen:{slot}"),
    }
}

impl Generations {
    /// The generations a request's key uses.
    pub async fn current(
        &self,
        redis: Option<&RedisTier>,
        server: &str,
        caller: Option<&str>,
    ) -> Current {
        let mut slots = vec![server_slot(server)];
        if let Some(namespace) = caller {
            slots.push(caller_slot(server, namespace));
        }
        if let Some(redis) = redis {
            self.retry_pending(redis).await;
            let keys: Vec<String> = slots.iter().map(|s| redis_key(redis.prefix(), s)).collect();
            let mut mget = redis::cmd("MGET");
            for key in &keys {
                mget.arg(key);
            }
            let values: Option<Vec<Option<String>>> = redis.query(&mget, "MGET").await;
            if let Some(values) = values {
                let read = |i: usize| {
                    let value = values.get(i).cloned().flatten();
                    format!("r:{}", value.as_deref().unwrap_or("0"))
                };
                return Current {
                    server: read(0),
                    caller: caller.map(|_| read(1)),
                };
            }
        }
        let Ok(local) = self.local.lock() else {
            return Current {
                server: "l:poisoned".into(),
                caller: caller.map(|_| "l:poisoned".into()),
            };
        };
        let read = |slot: &str| {
            let token = local.tokens.get(slot).map_or("0", String::as_str);
            format!("l:{}:{token}", local.epoch)
        };
        Current {
            server: read(&slots[0]),
            caller: slots.get(1).map(|s| read(s)),
        }
    }

    /// Invalidates everything keyed with the server's generation.
    pub async fn bump_server(&self, redis: Option<&RedisTier>, server: &str) {
        self.bump(redis, server_slot(server), None).await;
    }

    /// Invalidates the caller's cached `tools/list` of this server. `expire`:
    /// at least the longest `tools/list` TTL (None = keep forever).
    pub async fn bump_caller(
        &self,
        redis: Option<&RedisTier>,
        server: &str,
        namespace: &str,
        expire: Option<Duration>,
    ) {
        self.bump(redis, caller_slot(server, namespace), expire)
            .await;
    }

    async fn bump(&self, redis: Option<&RedisTier>, slot: String, expire: Option<Duration>) {
        let token = format!(
            "{:x}.{:x}",
            self.nonce,
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        if let Some(redis) = redis {
            let key = redis_key(redis.prefix(), &slot);
            if !set(redis, &key, &token, expire).await {
                if let Ok(mut pending) = self.pending.lock() {
                    if pending.len() < PENDING_CAP {
                        pending.insert(key, (token.clone(), expire));
                    } else {
                        tracing::warn!(
                            "mcp: too many generation bumps waiting for redis; dropped one"
                        );
                    }
                }
            }
        }
        if let Ok(mut local) = self.local.lock() {
            if local.tokens.len() >= LOCAL_CAP && !local.tokens.contains_key(&slot) {
                local.tokens.clear();
                local.epoch += 1;
            }
            local.tokens.insert(slot, token);
        }
    }

    /// Writes the bumps Redis missed (it was down): until then, its
    /// generations are older than this instance knows them to be.
    async fn retry_pending(&self, redis: &RedisTier) {
        let waiting: Vec<(String, (String, Option<Duration>))> = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => pending.drain().collect(),
            _ => return,
        };
        for (key, (token, expire)) in waiting {
            if !set(redis, &key, &token, expire).await {
                if let Ok(mut pending) = self.pending.lock() {
                    pending.entry(key).or_insert((token, expire));
                }
            }
        }
    }
}

/// `SET key token [PX expire]`; false when Redis did not take it.
async fn set(redis: &RedisTier, key: &str, token: &str, expire: Option<Duration>) -> bool {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(token);
    if let Some(ttl) = expire {
        cmd.arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
    }
    redis.query::<()>(&cmd, "SET").await.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bumps_change_only_their_generation() {
        let g = Generations::default();
        let before = g.current(None, "calc", Some("t1")).await;
        assert_eq!(before, g.current(None, "calc", Some("t1")).await);
        g.bump_caller(None, "calc", "t1", None).await;
        let after = g.current(None, "calc", Some("t1")).await;
        assert_eq!(before.server, after.server);
        assert_ne!(before.caller, after.caller);
        let other = g.current(None, "calc", Some("t2")).await;
        assert_eq!(other.caller, before.caller);
        g.bump_server(None, "calc").await;
        let bumped = g.current(None, "calc", Some("t1")).await;
        assert_ne!(bumped.server, after.server);
        assert_eq!(bumped.caller, after.caller);
        assert_eq!(g.current(None, "other", None).await.server, before.server);
    }

    #[test]
    fn redis_keys_share_a_slot_per_server() {
        assert_eq!(redis_key("p", &server_slot("calc")), "p:mcpgen:{calc}");
        assert_eq!(
            redis_key("p", &caller_slot("calc", "ab12")),
            "p:mcpgen:{calc}:ab12"
        );
    }
}
