//! Providers: routing a model to a configured provider, and the upstream
//! request (URL, credentials, forwarded headers).

pub mod affinity;
pub mod aliases;
pub mod anthropic_stream;
pub mod economics;
pub mod health;
pub mod inject;
pub mod replicas;
pub mod routing;
pub mod translate;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use wildmatch::WildMatch;

use crate::config::{Config, PromptCacheField, ProviderKind};
use crate::error::ProxyError;

/// One configured provider, ready to use.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`
    /// (the first replica's, when there are several).
    pub base_url: String,
    /// Every upstream of this provider, their health and load.
    pub replicas: replicas::Replicas,
    /// The configured key, if any, kept out of logs.
    api_key: Option<HeaderValue>,
    patterns: Vec<WildMatch>,
    pub inject_prompt_cache: bool,
    pub prompt_cache_field: PromptCacheField,
    pub prompt_cache_retention: Option<String>,
    anthropic_version: HeaderValue,
    pub default_max_tokens: u64,
}

/// Caller headers passed upstream besides credentials. Every one of them is
/// part of the cache key (see [`Provider::answer_headers`]).
const FORWARDED_HEADERS: &[&str] = &["openai-organization", "openai-project", "openai-beta"];
const FORWARDED_ANTHROPIC_HEADERS: &[&str] = &["anthropic-beta"];

impl Provider {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The URL of `path` on replica `index` (the first one if out of range).
    pub fn url_at(&self, index: usize, path: &str) -> String {
        match self.replicas.get(index) {
            Some(r) => format!("{}{}", r.base_url, path),
            None => self.url(path),
        }
    }

    /// Calls `f` with every header of the upstream request that the caller
    /// influences and that can change the answer (all but credentials, which
    /// are part of the namespace), in a fixed order. The one list both
    /// forwarding and the cache key are built from, so a header that starts
    /// being forwarded cannot be left out of the key.
    pub fn answer_headers<'h>(
        &'h self,
        caller: &'h HeaderMap,
        mut f: impl FnMut(&'static str, &'h HeaderValue),
    ) {
        let forwarded = match self.kind {
            ProviderKind::Openai => FORWARDED_HEADERS,
            ProviderKind::Anthropic => {
                let version = caller
                    .get("anthropic-version")
                    .unwrap_or(&self.anthropic_version);
                f("anthropic-version", version);
                FORWARDED_ANTHROPIC_HEADERS
            }
        };
        for name in forwarded {
            if let Some(v) = caller.get(*name) {
                f(name, v);
            }
        }
    }

    /// Headers for the upstream request. With a configured key, reprise sends
    /// it; otherwise the caller's own credential goes through (BYOK).
    pub fn upstream_headers(&self, caller: &HeaderMap) -> HeaderMap {
        use axum::http::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE};
        let mut out = HeaderMap::new();
        out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Bodies are spliced and cached as bytes: never let them arrive compressed.
        out.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        match self.kind {
            ProviderKind::Openai => {
                let key = self
                    .api_key
                    .as_ref()
                    .map(bearer)
                    .or_else(|| caller.get(AUTHORIZATION).cloned());
                if let Some(v) = key {
                    out.insert(AUTHORIZATION, v);
                }
            }
            ProviderKind::Anthropic => {
                let key = self
                    .api_key
                    .clone()
                    .or_else(|| caller_anthropic_key(caller));
                if let Some(mut v) = key {
                    v.set_sensitive(true);
                    out.insert(HeaderName::from_static("x-api-key"), v);
                }
            }
        }
        self.answer_headers(caller, |name, value| {
            out.insert(HeaderName::from_static(name), value.clone());
        });
        out
    }

    /// `prompt_cache_retention` for this model, when configured and the model
    /// is known to accept it.
    pub fn retention_for(&self, model: &str) -> Option<&str> {
        let accepts = model.starts_with("gpt-5") || model.starts_with("gpt-4.1");
        self.prompt_cache_retention.as_deref().filter(|_| accepts)
    }
}

fn bearer(key: &HeaderValue) -> HeaderValue {
    let mut v = HeaderValue::from_bytes(&[b"Bearer ", key.as_bytes()].concat())
        .unwrap_or_else(|_| key.clone());
    v.set_sensitive(true);
    v
}

/// The caller's Anthropic key: `x-api-key`, or a bearer token.
fn caller_anthropic_key(caller: &HeaderMap) -> Option<HeaderValue> {
    if let Some(v) = caller.get("x-api-key") {
        return Some(v.clone());
    }
    let auth = caller
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))?;
    HeaderValue::from_str(token.trim()).ok()
}

/// A resolved route: the provider and the model name it should receive.
#[derive(Debug, Clone)]
pub struct Route {
    pub provider: Arc<Provider>,
    /// Set when a `provider/` prefix was stripped: the model to send upstream.
    pub stripped_model: Option<String>,
}

/// All providers, in config order, plus the default.
#[derive(Debug)]
pub struct Providers {
    list: Vec<Arc<Provider>>,
    default: Option<Arc<Provider>>,
    /// `[[routing.models]]`.
    pub aliases: aliases::Aliases,
    /// Cached-share estimates of `cache_economics` aliases.
    pub economics: economics::Economics,
}

impl Providers {
    pub fn from_config(config: &Config) -> Self {
        let list: Vec<Arc<Provider>> = config
            .providers
            .iter()
            .map(|p| {
                let api_key = p
                    .api_key_env
                    .as_deref()
                    .and_then(|var| std::env::var(var).ok())
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .and_then(|k| HeaderValue::from_str(&k).ok())
                    .map(|mut v| {
                        v.set_sensitive(true);
                        v
                    });
                let upstreams = p.upstreams();
                let routing = &config.routing;
                let replicas = replicas::Replicas::new(
                    &upstreams,
                    routing.strategy,
                    routing.max_load_factor,
                    health::HealthPolicy {
                        eject_after: routing.health.eject_after,
                        backoff: routing.health.backoff,
                        max_backoff: routing.health.max_backoff,
                    },
                );
                Arc::new(Provider {
                    name: p.name.clone(),
                    kind: p.kind,
                    base_url: upstreams
                        .first()
                        .map_or("", |u| u.trim_end_matches('/'))
                        .to_owned(),
                    replicas,
                    api_key,
                    patterns: p.models.iter().map(|m| WildMatch::new(m)).collect(),
                    inject_prompt_cache: p.injects_prompt_cache(),
                    prompt_cache_field: p.prompt_cache_field,
                    prompt_cache_retention: p.prompt_cache_retention.clone(),
                    anthropic_version: HeaderValue::from_str(&p.anthropic_version)
                        .unwrap_or_else(|_| HeaderValue::from_static("2023-06-01")),
                    default_max_tokens: p.default_max_tokens,
                })
            })
            .collect();
        let default = config
            .routing
            .default_provider
            .as_ref()
            .and_then(|name| list.iter().find(|p| &p.name == name).cloned());
        Providers {
            aliases: aliases::Aliases::new(&config.routing.models, &list),
            economics: economics::Economics::new(config.routing.cache_half_life),
            list,
            default,
        }
    }

    /// Whether anything reads a request's conversation opening: replica
    /// affinity (a provider with several replicas) or an alias choosing
    /// among targets.
    pub fn needs_opening(&self) -> bool {
        !self.aliases.is_empty() || self.list.iter().any(|p| p.replicas.len() > 1)
    }

    /// Learns from an answer's usage at `provider`/`model` for a conversation
    /// opening (only when a `cache_economics` alias will ask).
    pub fn observe_usage(
        &self,
        provider: &str,
        model: &str,
        opening: Option<u64>,
        usage: &serde_json::Value,
    ) {
        if !self.aliases.learns() {
            return;
        }
        if let (Some(opening), Some(n)) = (opening, crate::cost::normalize(usage)) {
            let target = economics::target_id(provider, model);
            self.economics
                .observe(target, opening, n.prompt_tokens, n.cache_read);
        }
    }

    /// `provider/model` selects explicitly (prefix stripped upstream); else the
    /// first provider whose patterns match; else the default; else 404.
    pub fn route(&self, model: &str) -> Result<Route, ProxyError> {
        if let Some((prefix, rest)) = model.split_once('/') {
            if let Some(p) = self.list.iter().find(|p| p.name == prefix) {
                if rest.is_empty() {
                    return Err(ProxyError::bad_request(
                        format!("model `{model}` names a provider but no model"),
                        Some("model"),
                    ));
                }
                return Ok(Route {
                    provider: p.clone(),
                    stripped_model: Some(rest.to_owned()),
                });
            }
        }
        let matched = self
            .list
            .iter()
            .find(|p| p.patterns.iter().any(|w| w.matches(model)))
            .or(self.default.as_ref());
        match matched {
            Some(p) => Ok(Route {
                provider: p.clone(),
                stripped_model: None,
            }),
            None => Err(ProxyError::ModelNotFound(format!(
                "The model `{model}` does not exist or no provider is configured for it"
            ))),
        }
    }

    /// The provider answering `GET /v1/models`: the default, else the first.
    pub fn default_or_first(&self) -> Option<&Arc<Provider>> {
        self.default.as_ref().or_else(|| self.list.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;

    fn providers(default: Option<&str>) -> Providers {
        let mut c = Config {
            providers: vec![
                ProviderConfig::new("openai", ProviderKind::Openai, "http://a/v1/", &["gpt-*"]),
                ProviderConfig::new("local", ProviderKind::Openai, "http://b/v1", &["llama-?b"]),
                ProviderConfig::new(
                    "claude",
                    ProviderKind::Anthropic,
                    "http://c/v1",
                    &["claude-*"],
                ),
            ],
            ..Config::default()
        };
        c.routing.default_provider = default.map(String::from);
        Providers::from_config(&c)
    }

    #[test]
    fn routes_by_pattern_prefix_and_default() {
        let p = providers(None);
        assert_eq!(p.route("gpt-4o").unwrap().provider.name, "openai");
        assert_eq!(p.route("llama-8b").unwrap().provider.name, "local");
        let r = p.route("local/gpt-4o").unwrap();
        assert_eq!(r.provider.name, "local");
        assert_eq!(r.stripped_model.as_deref(), Some("gpt-4o"));
        assert_eq!(p.route("mistral-3").unwrap_err().status(), 404);
        assert_eq!(p.route("meta/llama").unwrap_err().status(), 404);
        let d = providers(Some("local"));
        assert_eq!(d.route("mistral-3").unwrap().provider.name, "local");
        assert_eq!(
            d.route("openai/x").unwrap().provider.url("/models"),
            "http://a/v1/models"
        );
    }

    #[test]
    fn byok_forwards_the_caller_authorization() {
        let p = providers(None);
        let provider = p.route("gpt-4o").unwrap().provider;
        let mut caller = HeaderMap::new();
        caller.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-caller"),
        );
        caller.insert("x-cache-ttl", HeaderValue::from_static("5"));
        let out = provider.upstream_headers(&caller);
        assert_eq!(out["authorization"], "Bearer sk-caller");
        assert!(out.get("x-cache-ttl").is_none());
    }

    #[test]
    fn anthropic_gets_x_api_key_and_version() {
        let p = providers(None);
        let claude = p.route("claude-sonnet-4").unwrap().provider;
        assert!(claude.inject_prompt_cache);
        let mut caller = HeaderMap::new();
        caller.insert("authorization", HeaderValue::from_static("Bearer sk-ant"));
        let out = claude.upstream_headers(&caller);
        assert_eq!(out["x-api-key"], "sk-ant");
        assert_eq!(out["anthropic-version"], "2023-06-01");
        assert!(out.get("authorization").is_none());
        assert!(
            !p.route("gpt-4o").unwrap().provider.inject_prompt_cache,
            "not api.openai.com"
        );
    }
}
