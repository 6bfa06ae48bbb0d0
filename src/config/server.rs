//! `[server]` (listener, timeouts, caller/admin/metrics keys) and `[admin]`,
//! and the open-proxy check at start.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{humantime_serde_compat, invalid, Config, ConfigError};

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

impl Config {
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
