//! L2: the shared Redis tier (single node or Redis Cluster), fail-open.
//!
//! Every operation runs behind the circuit breaker and within `op_timeout`;
//! any error, timeout or undecodable value is a miss (reads) or a dropped
//! write, counted in metrics and logged once per breaker state change. The
//! connection is made lazily, so reprise starts (and serves) with Redis down.

use std::sync::RwLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue};

use super::breaker::Breaker;
use super::codec::{self, Meta, Undecodable};
use super::entry::Entry;
use super::key::CacheKey;
use super::seal::Sealing;

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

    /// One `SCAN` step over this prefix's entry keys: (next cursor, keys);
    /// cursor 0 ends the walk. None when Redis is unavailable. Single-node
    /// Redis only (a cluster scans one node per call).
    pub async fn scan(&self, cursor: u64, count: usize) -> Option<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:v1:*", self.prefix))
            .arg("COUNT")
            .arg(count);
        self.run(&cmd, "SCAN").await
    }

    /// (namespace, key) of an entry key; None for locks and foreign keys.
    pub fn parse_entry_key(&self, redis_key: &str) -> Option<(String, CacheKey)> {
        let rest = redis_key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":v1:")?;
        let (namespace, hex) = rest.rsplit_once(':')?;
        Some((namespace.to_owned(), super::dump::parse_key_hex(hex)?))
    }

    /// The distributed single-flight lock for an entry key.
    pub fn lock_key(entry_key: &str) -> String {
        format!("{entry_key}:lock")
    }

    /// A decoded entry, or None (absent, corrupt, unknown version, not
    /// openable with `sealing`, Redis down). `key` is the cache key the value
    /// is stored under (a sealed value is bound to it).
    pub async fn get(&self, redis_key: &str, key: &CacheKey, sealing: &Sealing) -> Option<Entry> {
        // The reply's buffer becomes the entry's: no second copy of the body.
        let bytes = bytes::Bytes::from(self.get_raw(redis_key).await?);
        match codec::decode_owned(bytes, key, sealing) {
            Ok(entry) => Some(entry),
            Err(Undecodable::Corrupt) => {
                metrics::counter!("reprise_redis_corrupt_entries_total").increment(1);
                tracing::debug!("undecodable redis entry treated as a miss");
                None
            }
            Err(Undecodable::Unopened) => {
                metrics::counter!("reprise_cache_unopened_entries_total").increment(1);
                tracing::debug!("redis entry not openable with this key treated as a miss");
                None
            }
        }
    }

    /// The stored bytes as they are (export copies sealed values unopened).
    pub async fn get_raw(&self, redis_key: &str) -> Option<Vec<u8>> {
        self.run::<Option<Vec<u8>>>(redis::cmd("GET").arg(redis_key), "GET")
            .await?
    }

    /// The header of a stored value (what purges match on), without opening
    /// its body.
    pub async fn get_meta(&self, redis_key: &str) -> Option<Meta> {
        codec::peek(&self.get_raw(redis_key).await?)
    }

    /// Writes with `PX` = `expire_after` (None = no expiry), sealed when
    /// `sealing` is on. Errors are dropped.
    pub async fn set(
        &self,
        redis_key: &str,
        key: &CacheKey,
        entry: &Entry,
        sealing: &Sealing,
        expire_after: Option<Duration>,
    ) {
        let Some(value) = codec::encode_for(entry, self.compress_min, key, sealing) else {
            metrics::counter!("reprise_cache_seal_failures_total").increment(1);
            return;
        };
        self.set_raw(redis_key, &value, expire_after).await;
    }

    /// Writes already-encoded bytes (import of a dump line).
    pub async fn set_raw(&self, redis_key: &str, value: &[u8], expire_after: Option<Duration>) {
        let mut cmd = redis::cmd("SET");
        cmd.arg(redis_key).arg(value);
        if let Some(ttl) = expire_after {
            cmd.arg("PX").arg(px(ttl));
        }
        let _: Option<()> = self.run(&cmd, "SET").await;
    }

    /// `SET key 1 NX PX ttl`: Some(true) when this caller took the lock,
    /// Some(false) when someone holds it, None when Redis is unavailable.
    pub async fn try_lock(&self, key: &str, ttl: Duration) -> Option<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(1).arg("NX").arg("PX").arg(px(ttl));
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

    /// The configured key prefix (`{prefix}:v1:{namespace}:{hash}`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Any command, behind the breaker and the op timeout (None = failed).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd, what: &str) -> Option<T> {
        self.run(cmd, what).await
    }

    /// Where a key-space walk must run: the one server, or every cluster
    /// primary (`SCAN` only sees the node it runs on). None = unavailable.
    pub async fn scan_nodes(&self) -> Option<Vec<ScanNode>> {
        match &self.target {
            Target::Single(_) => Some(vec![ScanNode::Only]),
            Target::Cluster(_) => {
                let nodes: String = self
                    .run(redis::cmd("CLUSTER").arg("NODES"), "CLUSTER NODES")
                    .await?;
                Some(cluster_primaries(&nodes))
            }
        }
    }

    /// One `SCAN cursor MATCH pattern COUNT count` step on `node`: the next
    /// cursor (0 = done) and the keys of this step.
    pub async fn scan_step(
        &self,
        node: &ScanNode,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Option<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        match node {
            ScanNode::Only => self.run(&cmd, "SCAN").await,
            ScanNode::Primary { host, port } => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                if !self.breaker.allow() {
                    return None;
                }
                let Some(Conn::Cluster(mut conn)) = self.connection().await else {
                    return None;
                };
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let reply =
                    tokio::time::timeout(self.op_timeout, conn.route_command(&cmd, routing)).await;
                match reply {
                    Ok(Ok(value)) => {
                        self.breaker.success();
                        redis::from_redis_value(&value).ok()
                    }
                    _ => {
                        self.breaker.failure("SCAN");
                        None
                    }
                }
            }
        }
    }

    /// A pipeline (commands on one key, so one cluster slot), behind the
    /// breaker and the op timeout; false when it failed.
    pub async fn pipeline(&self, pipe: &redis::Pipeline, what: &str) -> bool {
        if !self.breaker.allow() {
            return false;
        }
        let Some(conn) = self.connection().await else {
            self.breaker.failure("connect");
            return false;
        };
        let result = tokio::time::timeout(self.op_timeout, async {
            match conn {
                Conn::Single(mut c) => pipe.query_async::<()>(&mut c).await,
                Conn::Cluster(mut c) => pipe.query_async::<()>(&mut c).await,
            }
        })
        .await;
        match result {
            Ok(Ok(())) => {
                self.breaker.success();
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis {what} failed");
                self.breaker.failure(what);
                false
            }
            Err(_) => {
                self.breaker.failure(what);
                false
            }
        }
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
            Ok(Err(e)) if is_rejection(&e) => {
                // Redis is up and answered: a refused command says nothing
                // about its health, so it never feeds the breaker.
                tracing::debug!(error = %e, "redis {what} rejected");
                metrics::counter!("reprise_redis_rejected_total").increment(1);
                None
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

/// Milliseconds for `PX`: at least 1, and never more than a value Redis
/// accepts (callers pass clamped durations; this is the last guard, so a
/// caller's number can never become a rejected command).
fn px(ttl: Duration) -> u64 {
    let max = 2 * super::ttl::MAX_TTL.as_millis();
    u64::try_from(ttl.as_millis().min(max))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// An error reply from a live server (as opposed to a broken connection,
/// timeout or unreachable cluster), which must not open the breaker.
fn is_rejection(e: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ResponseError
            | ErrorKind::TypeError
            | ErrorKind::ExecAbortError
            | ErrorKind::NoScriptError
            | ErrorKind::ExtensionError
    )
}

/// A node a `SCAN` runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanNode {
    /// The single server.
    Only,
    /// A cluster primary, by address.
    Primary { host: String, port: u16 },
}

/// Primaries from `CLUSTER NODES` text (`id host:port@cport flags …`),
/// failed ones left out.
fn cluster_primaries(nodes: &str) -> Vec<ScanNode> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            let hostport = addr.split('@').next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            Some(ScanNode::Primary {
                host: host.to_owned(),
                port: port.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn px_is_always_acceptable_to_redis() {
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_secs(2)), 2000);
        let cap = u64::try_from(2 * super::super::ttl::MAX_TTL.as_millis()).unwrap();
        assert_eq!(px(Duration::MAX), cap);
        assert!(cap < i64::MAX as u64 / 2);
    }

    #[test]
    fn cluster_primaries_skip_replicas_and_failed_nodes() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001 slave a1 0 0 1 connected\n\
                    c3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected\n\
                    d4 10.0.0.9:7003@17003 master - 0 0 4 connected 5461-16383\n";
        assert_eq!(
            cluster_primaries(text),
            vec![
                ScanNode::Primary {
                    host: "127.0.0.1".into(),
                    port: 7000
                },
                ScanNode::Primary {
                    host: "10.0.0.9".into(),
                    port: 7003
                },
            ]
        );
    }
}
