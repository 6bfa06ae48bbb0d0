//! `[cache]`: mode, TTLs, tiers (memory, Redis), single-flight, encryption;
//! and the plain settings the `cache` module is built from.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{humantime_serde_compat, invalid, ConfigError};
use crate::cache::ttl::Ttl;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Master switch: false = every request is forwarded, nothing stored.
    pub enabled: bool,
    /// Default mode: cache | observe | read_only | write_only | off.
    pub mode: crate::cache::mode::Mode,
    /// Glob patterns of the models that are cached at all (empty = all).
    pub models: Vec<String>,
    /// Per-model mode and TTL, first match wins (`[[cache.rules]]`).
    pub rules: Vec<crate::cache::mode::CacheRule>,
    /// Default TTL of a written entry ("1h", "30m", "forever").
    pub ttl: Ttl,
    /// Share entries between callers with different credentials.
    pub shared_namespace: bool,
    /// What a custom key (`x-cache-key`) is scoped by besides the namespace:
    /// `model` (default; the same custom key under another model is another
    /// entry) or `namespace` (shared by every model of the namespace).
    pub custom_key_scope: crate::cache::key::CustomKeyScope,
    /// Encryption at rest of Redis values and export dumps: `off` or
    /// `per-tenant` (ChaCha20-Poly1305 under a key derived from the server
    /// secret and the caller's credential; see `cache::seal`).
    pub encryption: crate::cache::seal::Encryption,
    /// The environment variable holding the server secret (at least 32
    /// bytes); required when `encryption = "per-tenant"`.
    pub encryption_key_env: Option<String>,
    /// Responses larger than this are served but not stored.
    pub max_entry_bytes: usize,
    /// Where entries live: `memory` (L1 only), `redis` (L2 only) or `tiered`
    /// (memory L1 in front of a shared Redis L2; recommended in production).
    pub backend: Backend,
    /// How long an expired entry is kept to be served when the provider fails
    /// (429, 5xx, timeout, unreachable). 0 = off.
    #[serde(with = "humantime_serde_compat")]
    pub stale_grace: Duration,
    /// When the client of a streaming miss disconnects: `finish` reading the
    /// provider's stream and store it, or `cancel` it to save tokens.
    pub stream_on_disconnect: StreamDisconnect,
    /// Refresh-ahead budget (rules with `refresh_ahead`): at most this many
    /// background re-fetches in any 60 seconds, per instance. 0 = none.
    pub refresh_max_per_minute: u32,
    pub memory: MemoryConfig,
    pub redis: RedisConfig,
    pub single_flight: SingleFlightConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StreamDisconnect {
    Finish,
    Cancel,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Memory,
    Redis,
    Tiered,
}

impl CacheConfig {
    /// The tiers to build, as the plain values `cache::tier` takes.
    pub fn tier_settings(&self) -> crate::cache::tier::TierSettings {
        let r = &self.redis;
        crate::cache::tier::TierSettings {
            memory_bytes: self.backend.uses_memory().then_some(self.memory.max_bytes),
            redis: self
                .backend
                .uses_redis()
                .then(|| crate::cache::redis::RedisSettings {
                    url: r.url.clone(),
                    cluster_nodes: r.cluster_nodes.clone(),
                    key_prefix: r.key_prefix.clone(),
                    op_timeout: r.op_timeout,
                    connect_timeout: r.connect_timeout,
                    breaker_failures: r.breaker_failures,
                    breaker_backoff: r.breaker_backoff,
                    compress_min_bytes: r.compress_min_bytes,
                }),
            stale_grace: crate::cache::ttl::clamp(self.stale_grace),
        }
    }
}

impl CacheConfig {
    /// The sealer `cache.encryption` asks for, its secret read from the
    /// variable `cache.encryption_key_env` names.
    pub fn sealer(&self) -> Result<crate::cache::seal::Sealer, ConfigError> {
        use crate::cache::seal::{Encryption, Sealer, MIN_SECRET_BYTES};
        const FIELD: &str = "cache.encryption_key_env";
        if self.encryption == Encryption::Off {
            return Ok(Sealer::off());
        }
        let var = self.encryption_key_env.as_deref().ok_or_else(|| {
            invalid(
                FIELD,
                "is required with cache.encryption = \"per-tenant\" (the name of the \
                 environment variable holding the server secret)",
            )
        })?;
        let secret = std::env::var(var).unwrap_or_default();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(invalid(
                FIELD,
                format!(
                    "the variable `{var}` must hold a secret of at least {MIN_SECRET_BYTES} \
                     bytes (it holds {}), e.g. `openssl rand -base64 32`",
                    secret.len()
                ),
            ));
        }
        Ok(Sealer::per_tenant(secret.as_bytes()))
    }
}

impl Backend {
    pub fn uses_memory(self) -> bool {
        matches!(self, Backend::Memory | Backend::Tiered)
    }

    pub fn uses_redis(self) -> bool {
        matches!(self, Backend::Redis | Backend::Tiered)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// A single Redis (or a proxy in front of several).
    pub url: String,
    /// Redis Cluster seed nodes; when non-empty, used instead of `url`.
    pub cluster_nodes: Vec<String>,
    /// Prefix of every key: `{prefix}:v1:{namespace}:{hash}`.
    pub key_prefix: String,
    /// Budget of one Redis operation; past it the read is a miss / the write dropped.
    #[serde(with = "humantime_serde_compat")]
    pub op_timeout: Duration,
    /// Budget of one connection attempt.
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the open breaker skips Redis before probing it again.
    #[serde(with = "humantime_serde_compat")]
    pub breaker_backoff: Duration,
    /// Bodies at least this large are LZ4-compressed in Redis (0 = never).
    pub compress_min_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SingleFlightConfig {
    /// Coalesce concurrent identical misses into one upstream call.
    pub enabled: bool,
    /// How long a follower waits for the leader before calling upstream itself.
    #[serde(with = "humantime_serde_compat")]
    pub wait_timeout: Duration,
    /// Also coalesce across instances through a Redis `SET NX` lock (needs a
    /// Redis backend). Off by default: it costs a Redis round trip per miss.
    pub distributed: bool,
    /// Lifetime of the distributed lock (a crashed leader frees it after this).
    #[serde(with = "humantime_serde_compat")]
    pub lock_ttl: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Upper bound of the in-process tier, in bytes of stored bodies + keys.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: crate::cache::mode::Mode::Cache,
            models: Vec::new(),
            rules: Vec::new(),
            ttl: Ttl::After(Duration::from_secs(3600)),
            shared_namespace: false,
            custom_key_scope: crate::cache::key::CustomKeyScope::Model,
            encryption: crate::cache::seal::Encryption::Off,
            encryption_key_env: None,
            max_entry_bytes: 4 * 1024 * 1024,
            backend: Backend::Memory,
            stale_grace: Duration::ZERO,
            stream_on_disconnect: StreamDisconnect::Finish,
            refresh_max_per_minute: 60,
            memory: MemoryConfig::default(),
            redis: RedisConfig::default(),
            single_flight: SingleFlightConfig::default(),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            cluster_nodes: Vec::new(),
            key_prefix: "reprise".into(),
            op_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            breaker_failures: 3,
            breaker_backoff: Duration::from_secs(2),
            compress_min_bytes: 4096,
        }
    }
}

impl Default for SingleFlightConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            wait_timeout: Duration::from_secs(120),
            distributed: false,
            lock_ttl: Duration::from_secs(30),
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
        }
    }
}
