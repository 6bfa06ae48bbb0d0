//! Providers: routing a model to a configured provider, and the upstream
//! request (URL, credentials, forwarded headers).

pub mod anthropic_stream;
pub mod inject;
pub mod translate;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use wildmatch::WildMatch;

use crate::config::{Config, ProviderKind};
use crate::error::ProxyError;

/// One configured provider, ready to use.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// `Authorization: Bearer …` built from the configured key, if any.
    api_key: Option<HeaderValue>,
    patterns: Vec<WildMatch>,
}

impl Provider {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Headers for the upstream request. With a configured key, reprise sends
    /// it; otherwise the caller's own `Authorization` goes through (BYOK).
    pub fn upstream_headers(&self, caller: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        out.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Bodies are spliced and cached as bytes: never let them arrive compressed.
        out.insert(
            axum::http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        match &self.api_key {
            Some(key) => {
                out.insert(axum::http::header::AUTHORIZATION, key.clone());
            }
            None => {
                if let Some(auth) = caller.get(axum::http::header::AUTHORIZATION) {
                    out.insert(axum::http::header::AUTHORIZATION, auth.clone());
                }
            }
        }
        for name in FORWARDED_HEADERS {
            if let Some(v) = caller.get(*name) {
                out.insert(HeaderName::from_static(name), v.clone());
            }
        }
        out
    }
}

/// Caller headers passed upstream besides credentials.
const FORWARDED_HEADERS: &[&str] = &["openai-organization", "openai-project", "openai-beta"];

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
                    .filter(|k| !k.trim().is_empty())
                    .and_then(|k| HeaderValue::from_str(&format!("Bearer {}", k.trim())).ok())
                    .map(|mut v| {
                        v.set_sensitive(true);
                        v
                    });
                Arc::new(Provider {
                    name: p.name.clone(),
                    kind: p.kind,
                    base_url: p.base_url.trim_end_matches('/').to_owned(),
                    api_key,
                    patterns: p.models.iter().map(|m| WildMatch::new(m)).collect(),
                })
            })
            .collect();
        let default = config
            .routing
            .default_provider
            .as_ref()
            .and_then(|name| list.iter().find(|p| &p.name == name).cloned());
        Providers { list, default }
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
                ProviderConfig {
                    name: "openai".into(),
                    kind: ProviderKind::Openai,
                    base_url: "http://a/v1/".into(),
                    api_key_env: None,
                    models: vec!["gpt-*".into()],
                },
                ProviderConfig {
                    name: "local".into(),
                    kind: ProviderKind::Openai,
                    base_url: "http://b/v1".into(),
                    api_key_env: None,
                    models: vec!["llama-?b".into()],
                },
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
        assert_eq!(p.route("claude-3").unwrap_err().status(), 404);
        assert_eq!(p.route("meta/llama").unwrap_err().status(), 404);
        let d = providers(Some("local"));
        assert_eq!(d.route("claude-3").unwrap().provider.name, "local");
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
}
