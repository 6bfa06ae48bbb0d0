//! Configuration: serde structs with documented defaults, loading (file, then
//! `REPRISE__SECTION__KEY` environment overrides) and `validate()`.
//!
//! Every struct refuses unknown fields, so a typo in `reprise.toml` stops the
//! process at start with a message naming the field instead of being ignored.
//!
//! One file per concern, all re-exported here (`crate::config::X`):
//! [`server`] (listener, keys, exposure check, admin), [`limits`], [`cache`]
//! (tiers, Redis, single-flight, memory), [`providers`] (providers and
//! routing), [`validation`] (`Config::validate`), [`load`] (file, environment
//! overrides, keys read from environment variables).

mod cache;
mod limits;
mod load;
mod providers;
mod server;
mod validation;

#[cfg(test)]
mod tests;

pub use cache::{
    Backend, CacheConfig, MemoryConfig, RedisConfig, SingleFlightConfig, StreamDisconnect,
};
pub use limits::LimitsConfig;
pub use providers::{
    AliasStrategy, HealthConfig, ModelAlias, PromptCacheField, ProviderConfig, ProviderKind,
    ReplicaStrategy, RoutingConfig,
};
pub use server::{AdminConfig, RuntimeLayout, ServerConfig, MAX_WORKERS};

use providers::{default_anthropic_version, default_max_tokens};

use serde::{Deserialize, Serialize};

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

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
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
