//! `[[providers]]` and `[routing]` (replicas, health, model aliases).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::humantime_serde_compat;

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

pub(super) fn default_anthropic_version() -> String {
    "2023-06-01".into()
}

pub(super) fn default_max_tokens() -> u64 {
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
