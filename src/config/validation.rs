//! `Config::validate`: what serde cannot check; every message names the field.

use std::net::SocketAddr;
use std::time::Duration;

use super::{invalid, Config, ConfigError, MAX_WORKERS};

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

impl Config {
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
            ("limits.max_mcp_streams", limits.max_mcp_streams),
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
}
