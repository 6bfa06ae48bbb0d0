//! L2: the shared Redis tier (single node or Redis Cluster), fail-open.
//!
//! Every operation runs behind the circuit breaker and within `op_timeout`;
//! any error, timeout or undecodable value is a miss (reads) or a dropped
//! write, counted in metrics and logged once per breaker state change. The
//! connection is made lazily, so reprise starts (and serves) with Redis down.

use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue};

use super::breaker::Breaker;
use super::codec;
use super::entry::Entry;
use super::key::CacheKey;

/// What the Redis tier needs to know (plain values; the caller maps its
/// configuration onto them).
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// A single Redis (used when `cluster_nodes` is empty).
    pub url: String,
    /// Redis Cluster seed nodes.
    pub cluster_nodes: Vec<String>,
    pub key_prefix: String,
    pub op_timeout: Duration,
    pub connect_timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_backoff: Duration,
    pub compress_min_bytes: usize,
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

enum Target {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

pub struct RedisTier {
    target: Target,
    conn: RwLock<Option<Conn>>,
    connecting: tokio::sync::Mutex<()>,
    breaker: Breaker,
    op_timeout: Duration,
    connect_timeout: Duration,
    prefix: String,
    compress_min: usize,
}

impl RedisTier {
    /// Parses the target; does not connect (that happens on first use).
    pub fn new(cfg: &RedisSettings) -> Result<Self, redis::RedisError> {
        let target = if cfg.cluster_nodes.is_empty() {
            Target::Single(redis::Client::open(cfg.url.as_str())?)
        } else {
            Target::Cluster(
                redis::cluster::ClusterClient::builder(cfg.cluster_nodes.clone())
                    .connection_timeout(cfg.connect_timeout)
                    .response_timeout(cfg.op_timeout)
                    .retries(1)
                    .build()?,
            )
        };
        Ok(RedisTier {
            target,
            conn: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            breaker: Breaker::new(cfg.breaker_failures, cfg.breaker_backoff),
            op_timeout: cfg.op_timeout,
            connect_timeout: cfg.connect_timeout,
            prefix: cfg.key_prefix.clone(),
            compress_min: cfg.compress_min_bytes,
        })
    }

    /// `{prefix}:v1:{namespace}:{hash}`. No `{…}` hash tags: they would pin a
    /// whole namespace (often: every request) onto one cluster node.
    pub fn entry_key(&self, namespace: &str, key: &CacheKey) -> String {
        format!("{}:v1:{namespace}:{}", self.prefix, key.hex())
    }

    /// The distributed single-flight lock for an entry key.
    pub fn lock_key(entry_key: &str) -> String {
        format!("{entry_key}:lock")
    }

    /// A decoded entry, or None (absent, corrupt, unknown version, Redis down).
    pub async fn get(&self, key: &str) -> Option<Entry> {
        let bytes: Vec<u8> = self
            .run::<Option<Vec<u8>>>(redis::cmd("GET").arg(key), "GET")
            .await??;
        let entry = codec::decode(&bytes);
        if entry.is_none() {
            metrics::counter!("reprise_redis_corrupt_entries_total").increment(1);
            tracing::debug!("undecodable redis entry treated as a miss");
        }
        entry
    }

    /// Writes with `EX` = `expire_after` (None = no expiry). Errors are dropped.
    pub async fn set(&self, key: &str, entry: &Entry, expire_after: Option<Duration>) {
        let value: Bytes = codec::encode(entry, self.compress_min);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value.as_ref());
        if let Some(ttl) = expire_after {
            cmd.arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        let _: Option<()> = self.run(&cmd, "SET").await;
    }

    /// `SET key 1 NX PX ttl`: Some(true) when this caller took the lock,
    /// Some(false) when someone holds it, None when Redis is unavailable.
    pub async fn try_lock(&self, key: &str, ttl: Duration) -> Option<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        let reply: Option<String> = self.run(&cmd, "SET NX").await?;
        Some(reply.is_some())
    }

    /// Whether `key` exists; None when Redis is unavailable.
    pub async fn exists(&self, key: &str) -> Option<bool> {
        self.run::<i64>(redis::cmd("EXISTS").arg(key), "EXISTS")
            .await
            .map(|n| n > 0)
    }

    pub async fn unlock(&self, key: &str) {
        let _: Option<i64> = self.run(redis::cmd("DEL").arg(key), "DEL").await;
    }

    /// The prefix of every key reprise writes.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// `MGET` of plain string values (one round trip; in a cluster the keys
    /// must share a hash slot). None when Redis is unavailable.
    pub async fn get_strings(&self, keys: &[String]) -> Option<Vec<Option<String>>> {
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(key);
        }
        self.run(&cmd, "MGET").await
    }

    /// `SET key value [PX ttl]`; false when Redis is unavailable.
    pub async fn set_string(&self, key: &str, value: &str, expire_after: Option<Duration>) -> bool {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = expire_after {
            cmd.arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        self.run::<()>(&cmd, "SET").await.is_some()
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Runs one command within the breaker and the op timeout.
    async fn run<T: FromRedisValue>(&self, cmd: &Cmd, what: &str) -> Option<T> {
        if !self.breaker.allow() {
            return None;
        }
        let Some(conn) = self.connection().await else {
            self.breaker.failure("connect");
            return None;
        };
        let result = tokio::time::timeout(self.op_timeout, async {
            match conn {
                Conn::Single(mut c) => cmd.query_async::<T>(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async::<T>(&mut c).await,
            }
        })
        .await;
        match result {
            Ok(Ok(value)) => {
                self.breaker.success();
                Some(value)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis {what} failed");
                self.breaker.failure(what);
                None
            }
            Err(_) => {
                tracing::debug!("redis {what} timed out");
                self.breaker.failure(what);
                None
            }
        }
    }

    /// The live connection, connecting (once, within the budget) if needed.
    async fn connection(&self) -> Option<Conn> {
        if let Some(c) = self.conn.read().ok().and_then(|g| g.clone()) {
            return Some(c);
        }
        let _guard = self.connecting.lock().await;
        if let Some(c) = self.conn.read().ok().and_then(|g| g.clone()) {
            return Some(c);
        }
        let connected = tokio::time::timeout(self.connect_timeout, self.connect()).await;
        match connected {
            Ok(Ok(conn)) => {
                if let Ok(mut slot) = self.conn.write() {
                    *slot = Some(conn.clone());
                }
                Some(conn)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis connect failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.connect_timeout)
                    .set_response_timeout(self.op_timeout)
                    .set_number_of_retries(1)
                    .set_max_delay(1000);
                Ok(Conn::Single(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            Target::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }
}
