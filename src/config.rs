//! Configuration: serde structs with documented defaults, loading (file, then
//! `REPRISE__SECTION__KEY` environment overrides) and `validate()`.
//!
//! Every struct refuses unknown fields, so a typo in `reprise.toml` stops the
//! process at start with a message naming the field instead of being ignored.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::cache::ttl::Ttl;

/// The whole configuration. `Config::default()` is what runs with no file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    pub routing: RoutingConfig,
    pub providers: Vec<ProviderConfig>,
    /// Price overrides and additions (`[[pricing.models]]`).
    pub pricing: crate::cost::PricingConfig,
    /// The semantic tier (`[semantic]`), off by default.
    pub semantic: crate::semantic::settings::SemanticConfig,
    /// Metadata-only request traces (`[trace]`).
    pub trace: crate::trace::TraceConfig,
    /// MCP tool servers proxied at `/mcp/{NAME}` (`[mcp.servers.NAME]`).
    pub mcp: crate::mcp::config::McpConfig,
    /// Operator surface: purge watermarks, fleet stats.
    pub admin: AdminConfig,
    /// `POST /v1/batch/chat/completions` (`[batch]`).
    pub batch: crate::server::batch::BatchConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// How often each instance reads the shared purge watermarks from Redis
    /// (a purge on one instance takes effect on the others within this).
    #[serde(with = "humantime_serde_compat")]
    pub watermark_poll: Duration,
    /// How long a purge watermark is kept; longer than any write can be in
    /// flight (every instance also drops the matching entries from memory).
    #[serde(with = "humantime_serde_compat")]
    pub watermark_retention: Duration,
    /// How often each instance adds its counters to the fleet totals and
    /// time series in Redis (batched, off the request path).
    #[serde(with = "humantime_serde_compat")]
    pub stats_flush: Duration,
    /// Record the per-minute series and the fleet counters (false saves a
    /// mutex per request; the per-instance stats stay).
    pub fleet_stats: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            watermark_poll: Duration::from_millis(500),
            watermark_retention: Duration::from_secs(24 * 3600),
            stats_flush: Duration::from_secs(1),
            fleet_stats: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Whole-request timeout towards the provider (humantime: "300s", "5m").
    #[serde(with = "humantime_serde_compat")]
    pub upstream_timeout: Duration,
    /// TCP connect timeout towards the provider.
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Keys callers must present (`Authorization: Bearer K` or `x-api-key: K`).
    /// Empty (and `api_keys_env` unset) = no authentication.
    pub api_keys: Vec<String>,
    /// Name of an environment variable holding comma-separated caller keys,
    /// added to `api_keys` (keeps secrets out of the file).
    pub api_keys_env: Option<String>,
    /// Name of an environment variable holding comma-separated admin keys:
    /// they see every namespace in `/v1/cache/stats`.
    pub admin_keys_env: Option<String>,
    /// Name of an environment variable holding comma-separated keys that may
    /// read `/metrics` (admin keys may too). Unset: `/metrics` answers only
    /// loopback peers.
    pub metrics_keys_env: Option<String>,
    /// Start even when listening on a non-loopback address with server-held
    /// provider keys and no caller keys (anyone reaching the port spends
    /// those keys). Off: reprise refuses to start in that case.
    pub allow_open_proxy: bool,
    /// Thread layout: `per-core` (one single-threaded runtime per worker,
    /// each with its own listener and upstream client) or `multi` (one
    /// work-stealing runtime). See `runtime.rs`.
    pub runtime: RuntimeLayout,
    /// Worker threads; 0 = one per available core.
    pub workers: usize,
}

/// Largest `server.workers`.
pub const MAX_WORKERS: usize = 1024;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeLayout {
    Multi,
    PerCore,
}

/// Caps and deadlines on what callers and providers can make reprise hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest upstream JSON answer read, in bytes; a bigger one is a 502.
    /// (Answers above `cache.max_entry_bytes` are served but not stored.)
    pub max_response_bytes: usize,
    /// Largest single SSE event of an upstream stream; an event growing past
    /// it ends the stream with an error (never buffered without bound).
    pub max_sse_event_bytes: usize,
    /// Total time a stream may take from request to last byte.
    #[serde(with = "humantime_serde_compat")]
    pub stream_deadline: Duration,
    /// Longest `model` name (and other caller-chosen names), in bytes; longer
    /// is a 400.
    pub max_name_bytes: usize,
    /// Time a client has to send a complete request head (HTTP/1); an idle
    /// keep-alive connection is closed after it too.
    #[serde(with = "humantime_serde_compat")]
    pub header_read_timeout: Duration,
    /// Time a client has to send the whole request body; past it: 408.
    #[serde(with = "humantime_serde_compat")]
    pub body_read_timeout: Duration,
    /// Open client connections; one more is answered 503 and closed at once.
    pub max_connections: usize,
    /// Requests being handled (streams until their last byte); one more is
    /// answered 503 with `Retry-After` (load shedding).
    pub max_in_flight: usize,
    /// The `Retry-After` of a shed request (whole seconds, at least 1).
    #[serde(with = "humantime_serde_compat")]
    pub shed_retry_after: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_response_bytes: 128 * 1024 * 1024,
            max_sse_event_bytes: 1024 * 1024,
            stream_deadline: Duration::from_secs(30 * 60),
            max_name_bytes: 400,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_in_flight: 1024,
            shed_retry_after: Duration::from_secs(1),
        }
    }
}

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Provider used when no provider's model patterns match. None = 404.
    pub default_provider: Option<String>,
    /// How a provider with several `base_urls` picks one (see `providers::replicas`).
    pub strategy: ReplicaStrategy,
    /// Bounded load of `prefix_affinity`: a replica with more than this many
    /// times the mean in-flight requests takes no new ones (they go to the
    /// next replica in the conversation's rendezvous order).
    pub max_load_factor: f64,
    /// Retry a request that failed before any response byte once, on another
    /// replica (connect error, 502/503/504, 429 with a long `Retry-After`).
    pub failover: bool,
    /// A 429 whose `Retry-After` exceeds this is retried on another replica
    /// (a shorter one is passed to the caller, whose SDK waits and retries).
    #[serde(with = "humantime_serde_compat")]
    pub retry_after_bound: Duration,
    pub health: HealthConfig,
    /// How long a target keeps a prefix in its prompt cache, for the
    /// `cache_economics` estimate (the estimate halves every half-life).
    #[serde(with = "humantime_serde_compat")]
    pub cache_half_life: Duration,
    /// Model aliases naming several targets (`[[routing.models]]`).
    pub models: Vec<ModelAlias>,
}

/// How requests spread over a provider's replicas.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaStrategy {
    /// Rendezvous hashing of the conversation's opening, with bounded load.
    PrefixAffinity,
    RoundRobin,
    /// The replica with the fewest requests in flight.
    LeastBusy,
}

/// Passive health of replicas: ejection after consecutive failures, then a probe.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Consecutive failures (connect errors, broken connections, 5xx) that
    /// eject a replica.
    pub eject_after: u32,
    /// First ejection length; doubled for each failed probe, up to `max_backoff`.
    #[serde(with = "humantime_serde_compat")]
    pub backoff: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub max_backoff: Duration,
    /// Path (after the base URL) probed with a GET when an ejection ends; any
    /// answer below 500 brings the replica back.
    pub probe_path: String,
}

/// One `[[routing.models]]` entry: a model name answered by several targets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelAlias {
    /// The model name callers use.
    pub name: String,
    /// `provider/model` targets, in preference order.
    pub targets: Vec<String>,
    #[serde(default)]
    pub strategy: AliasStrategy,
}

/// How an alias picks its target.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AliasStrategy {
    /// The first target whose provider has a healthy replica.
    #[default]
    Failover,
    /// The lowest price for this request, ignoring prompt caches.
    Cheapest,
    /// The lowest expected cost, counting where this prefix is cached.
    CacheEconomics,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible API.
    Openai,
    /// Anthropic's Messages API (`x-api-key`, `anthropic-version`).
    Anthropic,
}

/// Which request field carries the derived prompt-cache key on
/// OpenAI-compatible providers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromptCacheField {
    /// OpenAI's `prompt_cache_key`.
    #[default]
    PromptCacheKey,
    /// `user` (Fireworks-style providers route cache affinity by user).
    User,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL including the version segment, e.g. `https://api.openai.com/v1`.
    /// Set this or `base_urls`.
    #[serde(default)]
    pub base_url: String,
    /// Several replicas of the same upstream (e.g. vLLM servers), spread by
    /// `routing.strategy`. Set this or `base_url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_urls: Vec<String>,
    /// Environment variable holding this provider's API key. Unset, or the
    /// variable empty: the caller's own `Authorization` is forwarded.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Glob patterns (`*`, `?`) of model names routed here.
    #[serde(default)]
    pub models: Vec<String>,
    /// Turn on the provider's prompt caching for callers who did not:
    /// Anthropic `cache_control` breakpoints, OpenAI `prompt_cache_key`.
    /// Default: on for `anthropic` providers and for OpenAI's own API
    /// (api.openai.com), off for other OpenAI-compatible servers (which may
    /// reject unknown fields).
    #[serde(default)]
    pub inject_prompt_cache: Option<bool>,
    /// OpenAI-compatible providers: the field carrying the derived key.
    #[serde(default)]
    pub prompt_cache_field: PromptCacheField,
    /// OpenAI: `prompt_cache_retention` to request (e.g. "24h"), sent only to
    /// models known to accept it (gpt-5*, gpt-4.1*).
    #[serde(default)]
    pub prompt_cache_retention: Option<String>,
    /// Anthropic: the `anthropic-version` header.
    #[serde(default = "default_anthropic_version")]
    pub anthropic_version: String,
    /// Anthropic: `max_tokens` for translated OpenAI requests that set none.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
}

fn default_anthropic_version() -> String {
    "2023-06-01".into()
}

fn default_max_tokens() -> u64 {
    4096
}

impl ProviderConfig {
    /// A provider with every optional setting at its default.
    pub fn new(name: &str, kind: ProviderKind, base_url: &str, models: &[&str]) -> Self {
        ProviderConfig {
            name: name.into(),
            kind,
            base_url: base_url.into(),
            base_urls: Vec::new(),
            api_key_env: None,
            models: models.iter().map(|m| m.to_string()).collect(),
            inject_prompt_cache: None,
            prompt_cache_field: PromptCacheField::PromptCacheKey,
            prompt_cache_retention: None,
            anthropic_version: default_anthropic_version(),
            default_max_tokens: default_max_tokens(),
        }
    }

    /// Whether reprise injects prompt-cache fields for this provider.
    pub fn injects_prompt_cache(&self) -> bool {
        self.inject_prompt_cache.unwrap_or(match self.kind {
            ProviderKind::Anthropic => true,
            ProviderKind::Openai => self
                .upstreams()
                .first()
                .is_some_and(|u| u.starts_with("https://api.openai.com")),
        })
    }

    /// The upstream base URLs: `base_urls`, or the single `base_url`.
    pub fn upstreams(&self) -> Vec<&str> {
        if self.base_urls.is_empty() {
            vec![self.base_url.as_str()]
        } else {
            self.base_urls.iter().map(String::as_str).collect()
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 10 * 1024 * 1024,
            upstream_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            api_keys: Vec::new(),
            api_keys_env: None,
            admin_keys_env: None,
            metrics_keys_env: None,
            allow_open_proxy: false,
            runtime: RuntimeLayout::PerCore,
            workers: 0,
        }
    }
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

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            default_provider: Some("openai".into()),
            strategy: ReplicaStrategy::PrefixAffinity,
            max_load_factor: 1.25,
            failover: true,
            retry_after_bound: Duration::from_secs(1),
            health: HealthConfig::default(),
            cache_half_life: Duration::from_secs(300),
            models: Vec::new(),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            eject_after: 3,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            probe_path: "/models".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            limits: LimitsConfig::default(),
            cache: CacheConfig::default(),
            routing: RoutingConfig::default(),
            pricing: crate::cost::PricingConfig::default(),
            semantic: crate::semantic::settings::SemanticConfig::default(),
            admin: AdminConfig::default(),
            trace: crate::trace::TraceConfig::default(),
            mcp: crate::mcp::config::McpConfig::default(),
            batch: crate::server::batch::BatchConfig::default(),
            providers: vec![ProviderConfig {
                name: "openai".into(),
                kind: ProviderKind::Openai,
                base_url: "https://api.openai.com/v1".into(),
                base_urls: Vec::new(),
                api_key_env: Some("OPENAI_API_KEY".into()),
                models: [
                    "gpt-*",
                    "chatgpt-*",
                    "o1*",
                    "o3*",
                    "o4*",
                    "text-embedding-*",
                ]
                .map(String::from)
                .to_vec(),
                inject_prompt_cache: None,
                prompt_cache_field: PromptCacheField::PromptCacheKey,
                prompt_cache_retention: None,
                anthropic_version: default_anthropic_version(),
                default_max_tokens: default_max_tokens(),
            }],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration: `{field}`: {message}")]
    Invalid { field: String, message: String },
}

/// A rule's refresh-ahead settings that cannot work: (field, message).
fn refresh_problem(rule: &crate::cache::mode::CacheRule) -> Option<(&'static str, String)> {
    if !rule.refresh_ahead {
        if rule.refresh_min_hits.is_some() {
            return Some(("refresh_min_hits", "needs refresh_ahead = true".into()));
        }
        if rule.refresh_window.is_some() {
            return Some(("refresh_window", "needs refresh_ahead = true".into()));
        }
        return None;
    }
    if rule.refresh_min_hits == Some(0) {
        return Some(("refresh_min_hits", "must be at least 1".into()));
    }
    if let Some(problem) = rule.refresh_window.and_then(|w| w.problem()) {
        return Some(("refresh_window", problem.into()));
    }
    if rule
        .mode
        .is_some_and(|m| m != crate::cache::mode::Mode::Cache)
    {
        return Some((
            "refresh_ahead",
            "needs mode = \"cache\" (a refresh writes what hits serve)".into(),
        ));
    }
    None
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// Defaults, then the file (if any), then `REPRISE__SECTION__KEY` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("{} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("REPRISE__").split("__"));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot; messages name the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| invalid("server.listen", e.to_string()))?;
        if self.server.body_limit_bytes == 0 {
            return Err(invalid("server.body_limit_bytes", "must be greater than 0"));
        }
        if self.server.upstream_timeout.is_zero() {
            return Err(invalid("server.upstream_timeout", "must be greater than 0"));
        }
        if self.server.connect_timeout.is_zero() {
            return Err(invalid("server.connect_timeout", "must be greater than 0"));
        }
        if self.server.workers > MAX_WORKERS {
            return Err(invalid(
                "server.workers",
                format!("must be at most {MAX_WORKERS} (0 = one per available core)"),
            ));
        }
        if self.admin.watermark_poll.is_zero() || self.admin.watermark_poll > Duration::from_secs(1)
        {
            return Err(invalid(
                "admin.watermark_poll",
                "must be between 1ms and 1s (purges must reach every instance within a second)",
            ));
        }
        if self.admin.stats_flush.is_zero() || self.admin.stats_flush > Duration::from_secs(60) {
            return Err(invalid("admin.stats_flush", "must be between 1ms and 60s"));
        }
        if self.admin.watermark_retention < self.server.upstream_timeout {
            return Err(invalid(
                "admin.watermark_retention",
                "must be at least server.upstream_timeout (a write in flight must not outlive its watermark)",
            ));
        }
        let limits = &self.limits;
        for (field, value) in [
            ("limits.max_response_bytes", limits.max_response_bytes),
            ("limits.max_sse_event_bytes", limits.max_sse_event_bytes),
            ("limits.max_name_bytes", limits.max_name_bytes),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if limits.stream_deadline.is_zero() {
            return Err(invalid("limits.stream_deadline", "must be greater than 0"));
        }
        for (field, value) in [
            ("cache.stale_grace", self.cache.stale_grace),
            (
                "cache.single_flight.lock_ttl",
                self.cache.single_flight.lock_ttl,
            ),
        ] {
            if value > crate::cache::ttl::MAX_TTL {
                return Err(invalid(field, "must be at most 365 days"));
            }
        }
        for (field, d) in [
            ("limits.header_read_timeout", limits.header_read_timeout),
            ("limits.body_read_timeout", limits.body_read_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        // Tokio semaphores hold at most usize::MAX >> 3 permits; far beyond sane.
        for (field, n) in [
            ("limits.max_connections", limits.max_connections),
            ("limits.max_in_flight", limits.max_in_flight),
        ] {
            if n == 0 || n > 1_000_000 {
                return Err(invalid(field, "must be between 1 and 1000000"));
            }
        }
        self.cache.sealer()?;
        if self.cache.memory.max_bytes == 0 {
            return Err(invalid("cache.memory.max_bytes", "must be greater than 0"));
        }
        if self.cache.backend.uses_redis() {
            let r = &self.cache.redis;
            let urls: Vec<&String> = if r.cluster_nodes.is_empty() {
                vec![&r.url]
            } else {
                r.cluster_nodes.iter().collect()
            };
            for url in urls {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| invalid("cache.redis.url", format!("`{url}`: {e}")))?;
                if !matches!(parsed.scheme(), "redis" | "rediss" | "unix" | "redis+unix") {
                    return Err(invalid(
                        "cache.redis.url",
                        format!("`{url}`: scheme must be redis://"),
                    ));
                }
            }
            if r.op_timeout.is_zero() {
                return Err(invalid("cache.redis.op_timeout", "must be greater than 0"));
            }
            if r.breaker_failures == 0 {
                return Err(invalid(
                    "cache.redis.breaker_failures",
                    "must be at least 1",
                ));
            }
            if r.key_prefix.is_empty() || r.key_prefix.contains(char::is_whitespace) {
                return Err(invalid(
                    "cache.redis.key_prefix",
                    "must be non-empty without spaces",
                ));
            }
        }
        if self.cache.single_flight.distributed && !self.cache.backend.uses_redis() {
            return Err(invalid(
                "cache.single_flight.distributed",
                "needs cache.backend = \"redis\" or \"tiered\"",
            ));
        }
        for (i, rule) in self.cache.rules.iter().enumerate() {
            if rule.models.is_empty() || rule.models.iter().any(String::is_empty) {
                return Err(invalid(
                    format!("cache.rules[{i}].models"),
                    "needs non-empty patterns",
                ));
            }
            if let Some((field, message)) = refresh_problem(rule) {
                return Err(invalid(format!("cache.rules[{i}].{field}"), message));
            }
        }
        if self.cache.refresh_max_per_minute > crate::cache::refresh::MAX_PER_MINUTE {
            return Err(invalid(
                "cache.refresh_max_per_minute",
                format!("must be at most {}", crate::cache::refresh::MAX_PER_MINUTE),
            ));
        }
        if let Some((field, message)) = self.trace.problem() {
            return Err(invalid(field, message));
        }
        if let Some((field, message)) = self.batch.problem() {
            return Err(invalid(field, message));
        }
        self.pricing
            .build()
            .map_err(|e| invalid("pricing", e.to_string()))?;
        self.semantic
            .check()
            .map_err(|(field, message)| invalid(field, message))?;
        if self.providers.is_empty() {
            return Err(invalid("providers", "at least one provider is required"));
        }
        for (i, p) in self.providers.iter().enumerate() {
            let field = |f: &str| format!("providers[{i}].{f}");
            if p.name.is_empty() || p.name.contains('/') {
                return Err(invalid(
                    field("name"),
                    "must be non-empty and contain no '/'",
                ));
            }
            if self.providers[..i].iter().any(|q| q.name == p.name) {
                return Err(invalid(
                    field("name"),
                    format!("duplicate provider `{}`", p.name),
                ));
            }
            if !p.base_url.is_empty() && !p.base_urls.is_empty() {
                return Err(invalid(
                    field("base_urls"),
                    "set `base_url` or `base_urls`, not both",
                ));
            }
            let url_field = if p.base_urls.is_empty() {
                "base_url"
            } else {
                "base_urls"
            };
            if p.base_urls.len() > crate::providers::replicas::MAX_REPLICAS {
                return Err(invalid(
                    field(url_field),
                    format!(
                        "at most {} replicas",
                        crate::providers::replicas::MAX_REPLICAS
                    ),
                ));
            }
            for (j, u) in p.upstreams().iter().enumerate() {
                if p.upstreams()[..j].contains(u) {
                    return Err(invalid(field(url_field), format!("`{u}` is listed twice")));
                }
                let url = reqwest::Url::parse(u)
                    .map_err(|e| invalid(field(url_field), format!("`{u}`: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(invalid(field(url_field), "scheme must be http or https"));
                }
            }
            if p.models.iter().any(|m| m.is_empty()) {
                return Err(invalid(field("models"), "patterns must be non-empty"));
            }
        }
        self.mcp.validate()?;
        self.validate_routing()?;
        if let Some(default) = &self.routing.default_provider {
            if !self.providers.iter().any(|p| &p.name == default) {
                return Err(invalid(
                    "routing.default_provider",
                    format!("no provider named `{default}`"),
                ));
            }
        }
        Ok(())
    }

    /// `[routing]` beyond the default provider: load factor, health, aliases.
    fn validate_routing(&self) -> Result<(), ConfigError> {
        let r = &self.routing;
        if !(r.max_load_factor.is_finite() && r.max_load_factor >= 1.0) {
            return Err(invalid(
                "routing.max_load_factor",
                "must be a number >= 1.0",
            ));
        }
        if r.health.eject_after == 0 {
            return Err(invalid("routing.health.eject_after", "must be at least 1"));
        }
        if r.health.backoff.is_zero() || r.health.max_backoff < r.health.backoff {
            return Err(invalid(
                "routing.health.backoff",
                "must be > 0 and <= routing.health.max_backoff",
            ));
        }
        if !r.health.probe_path.starts_with('/') {
            return Err(invalid("routing.health.probe_path", "must start with '/'"));
        }
        if r.cache_half_life.is_zero() {
            return Err(invalid("routing.cache_half_life", "must be greater than 0"));
        }
        for (i, alias) in r.models.iter().enumerate() {
            let field = |f: &str| format!("routing.models[{i}].{f}");
            if alias.name.is_empty() || r.models[..i].iter().any(|a| a.name == alias.name) {
                return Err(invalid(field("name"), "must be non-empty and unique"));
            }
            if self
                .providers
                .iter()
                .any(|p| alias.name.starts_with(&format!("{}/", p.name)))
            {
                return Err(invalid(
                    field("name"),
                    "must not start with a provider prefix",
                ));
            }
            if alias.targets.is_empty() || alias.targets.len() > 16 {
                return Err(invalid(field("targets"), "needs 1 to 16 targets"));
            }
            for t in &alias.targets {
                let known = t.split_once('/').is_some_and(|(provider, model)| {
                    !model.is_empty() && self.providers.iter().any(|p| p.name == provider)
                });
                if !known {
                    return Err(invalid(
                        field("targets"),
                        format!("`{t}` must be `provider/model` with a configured provider"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Caller keys from `server.api_keys` plus the `api_keys_env` variable.
    pub fn caller_keys(&self) -> Vec<String> {
        let mut keys = self.server.api_keys.clone();
        keys.extend(keys_from_env(self.server.api_keys_env.as_deref()));
        keys
    }

    /// Admin keys from the `admin_keys_env` variable.
    pub fn admin_keys(&self) -> Vec<String> {
        keys_from_env(self.server.admin_keys_env.as_deref())
    }

    /// Keys that may read `/metrics`, from the `metrics_keys_env` variable.
    pub fn metrics_keys(&self) -> Vec<String> {
        keys_from_env(self.server.metrics_keys_env.as_deref())
    }

    /// Refuses an open proxy: listening on `addr` (not loopback) while the
    /// server holds provider keys and callers need none, unless
    /// `server.allow_open_proxy` says so.
    pub fn check_exposure(&self, addr: std::net::SocketAddr) -> Result<(), ConfigError> {
        if addr.ip().is_loopback() || self.server.allow_open_proxy {
            return Ok(());
        }
        if !self.caller_keys().is_empty() {
            return Ok(());
        }
        let held: Vec<&str> = self
            .providers
            .iter()
            .filter(|p| {
                p.api_key_env
                    .as_deref()
                    .and_then(|v| std::env::var(v).ok())
                    .is_some_and(|k| !k.trim().is_empty())
            })
            .map(|p| p.name.as_str())
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        Err(invalid(
            "server.allow_open_proxy",
            format!(
                "reprise listens on {addr} (not loopback) with server-held keys for {} and \
                 no caller keys: anyone who reaches the port would spend them. Set caller \
                 keys (server.api_keys_env, e.g. REPRISE_API_KEYS), listen on 127.0.0.1, \
                 or set server.allow_open_proxy = true to accept an open proxy",
                held.join(", ")
            ),
        ))
    }
}

fn keys_from_env(var: Option<&str>) -> Vec<String> {
    var.and_then(|v| std::env::var(v).ok())
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Durations as humantime strings ("300s", "5m") or integer seconds.
pub(crate) mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration `{t}` ({e}); use e.g. \"30s\", \"5m\""
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[cache]\nttll = \"1h\"\n"))
            .extract::<Config>()
            .unwrap_err();
        assert!(err.to_string().contains("ttll"), "{err}");
    }

    #[test]
    fn bad_default_provider_is_named() {
        let mut c = Config::default();
        c.routing.default_provider = Some("nope".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("routing.default_provider"), "{err}");
    }

    #[test]
    fn durations_accept_text_and_seconds() {
        let c: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(
                "[server]\nupstream_timeout = \"2m\"\nconnect_timeout = 3\n[cache]\nttl = \"forever\"\n",
            ))
            .extract()
            .unwrap();
        assert_eq!(c.server.upstream_timeout, Duration::from_secs(120));
        assert_eq!(c.server.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.cache.ttl, Ttl::Forever);
    }

    #[test]
    fn per_tenant_encryption_needs_a_long_enough_secret() {
        use crate::cache::seal::Encryption;
        let mut c = Config::default();
        c.cache.encryption = Encryption::PerTenant;
        let field = |c: &Config| match c.validate() {
            Err(ConfigError::Invalid { field, message }) => format!("{field}: {message}"),
            other => format!("{other:?}"),
        };
        assert!(field(&c).starts_with("cache.encryption_key_env: is required"));
        c.cache.encryption_key_env = Some("REPRISE_TEST_SEAL_SHORT".into());
        std::env::set_var("REPRISE_TEST_SEAL_SHORT", "too short");
        let said = field(&c);
        assert!(said.starts_with("cache.encryption_key_env:"), "{said}");
        assert!(
            said.contains("REPRISE_TEST_SEAL_SHORT") && said.contains("holds 9"),
            "{said}"
        );
        c.cache.encryption_key_env = Some("REPRISE_TEST_SEAL_UNSET".into());
        assert!(field(&c).contains("holds 0"));
        std::env::set_var("REPRISE_TEST_SEAL_LONG", "x".repeat(32));
        c.cache.encryption_key_env = Some("REPRISE_TEST_SEAL_LONG".into());
        c.validate().unwrap();
        assert!(c.cache.sealer().unwrap().is_on());
        let toml = "[cache]\nencryption = \"per-tenant\"\nencryption_key_env = \"X\"\n";
        let parsed: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .unwrap();
        assert_eq!(parsed.cache.encryption, Encryption::PerTenant);
    }
}

#[cfg(test)]
mod shipped_files {
    use super::*;

    /// The documented defaults file must equal the built-in defaults.
    #[test]
    fn reprise_toml_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/reprise.toml");
        let from_file: Config = Figment::from(Toml::file(path)).extract().unwrap();
        assert_eq!(from_file, Config::default());
    }

    #[test]
    fn every_shipped_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
}
