//! Shared application state: config, providers, HTTP client, cache tiers.

use std::collections::HashSet;

use axum::http::HeaderMap;

use std::sync::Arc;

use crate::admin::fleet::Fleet;
use crate::admin::watermarks::Watermarks;
use crate::cache::facts::BodyMemo;
use crate::cache::flight::Flights;
use crate::cache::mode::Policies;
use crate::cache::namespace::credential_namespace;
use crate::cache::seal::{Sealer, Sealing};
use crate::cache::tier::Tiers;
use crate::config::Config;
use crate::cost::Pricing;
use crate::error::ProxyError;
use crate::providers::Providers;
use crate::stats::Stats;

pub struct AppState {
    pub config: Config,
    pub providers: Providers,
    pub client: reqwest::Client,
    pub tiers: Tiers,
    pub flights: Arc<Flights>,
    pub policies: Policies,
    pub pricing: Pricing,
    pub stats: Stats,
    /// Request-side facts of recently seen bodies (hits skip parsing).
    pub body_memo: BodyMemo,
    /// The semantic tier, when `semantic.enabled`.
    pub semantic: Option<Arc<crate::semantic::tier::SemanticTier>>,
    /// Purge rules in force (shared through Redis by `admin::sync`).
    pub watermarks: Watermarks,
    /// Per-minute history and the fleet counters' pending deltas.
    pub fleet: Fleet,
    /// The entries that saved the most here (dashboard).
    pub top: crate::admin::top::TopEntries,
    /// Trace file and live window (`[trace]`).
    pub tracer: crate::trace::Tracer,
    /// Seals Redis values and dumps (`cache.encryption`).
    pub sealer: Sealer,
    /// Refresh-ahead hit counts and budget (per instance).
    pub refresher: crate::cache::refresh::Refresher,
    /// Keys that see every namespace in `/v1/cache/stats`.
    admin_keys: HashSet<String>,
    /// Keys callers must present; empty = open.
    caller_keys: HashSet<String>,
    /// Keys that may read `/metrics` (besides admin keys).
    metrics_keys: HashSet<String>,
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, crate::RunError> {
        let client = crate::upstream::client(config.server.connect_timeout)?;
        Ok(AppState {
            providers: Providers::from_config(&config),
            tiers: Tiers::new(config.cache.tier_settings())?,
            flights: Flights::new(),
            policies: Policies::new(config.cache.mode, &config.cache.models, &config.cache.rules),
            pricing: config
                .pricing
                .build()
                .map_err(|e| crate::RunError::Pricing(e.to_string()))?,
            stats: Stats::default(),
            body_memo: BodyMemo::default(),
            semantic: semantic_tier(&config)?,
            watermarks: Watermarks::default(),
            fleet: Fleet::default(),
            top: Default::default(),
            tracer: crate::trace::Tracer::new(&config.trace)?,
            sealer: config.cache.sealer()?,
            refresher: crate::cache::refresh::Refresher::new(config.cache.refresh_max_per_minute),
            admin_keys: config.admin_keys().into_iter().collect(),
            caller_keys: config.caller_keys().into_iter().collect(),
            metrics_keys: config.metrics_keys().into_iter().collect(),
            client,
            config,
        })
    }

    /// The caller's credential (`Authorization: Bearer …` or `x-api-key`),
    /// checked against `server.api_keys` when those are configured.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<String>, ProxyError> {
        let credential = caller_credential(headers);
        if !self.caller_keys.is_empty() {
            match &credential {
                Some(c) if self.caller_keys.contains(c) || self.admin_keys.contains(c) => {}
                Some(_) => {
                    return Err(ProxyError::Unauthorized(
                        "Incorrect API key provided to reprise".into(),
                    ))
                }
                None => {
                    return Err(ProxyError::Unauthorized(
                        "reprise requires an API key (Authorization: Bearer <key>)".into(),
                    ))
                }
            }
        }
        Ok(credential)
    }

    /// Whether this request may read `/metrics`: with metrics keys configured
    /// (`server.metrics_keys_env`) it must present one of them or an admin
    /// key; without, only loopback peers may.
    pub fn may_read_metrics(&self, headers: &HeaderMap, loopback: bool) -> Result<(), ProxyError> {
        let credential = caller_credential(headers);
        let known = credential
            .as_ref()
            .is_some_and(|c| self.metrics_keys.contains(c) || self.admin_keys.contains(c));
        if known {
            return Ok(());
        }
        if !self.metrics_keys.is_empty() {
            return Err(ProxyError::Unauthorized(
                "/metrics requires a metrics key (Authorization: Bearer <key>)".into(),
            ));
        }
        if loopback {
            return Ok(());
        }
        Err(ProxyError::Forbidden(
            "/metrics answers only loopback peers; set server.metrics_keys_env to read it \
             from other hosts"
                .into(),
        ))
    }

    /// Whether this credential is an admin key.
    pub fn is_admin(&self, credential: Option<&str>) -> bool {
        credential.is_some_and(|c| self.admin_keys.contains(c))
    }

    /// How entries of `credential`'s namespace are sealed: under its own
    /// key, or (shared namespace, keyless caller) the server secret alone.
    pub fn sealing(&self, credential: Option<&str>) -> Sealing {
        match credential {
            Some(c) if !self.config.cache.shared_namespace => self.sealer.tenant(c),
            _ => self.sealer.shared(),
        }
    }

    /// The sealing that opens entries of `namespace` for this caller: its
    /// own namespaces (and their segments) under its key, shared ones under
    /// the server secret; None for another tenant's namespace. With
    /// encryption off, the plaintext sealing for every namespace.
    pub fn sealing_for_namespace(
        &self,
        credential: Option<&str>,
        namespace: &str,
    ) -> Option<Sealing> {
        if !self.sealer.is_on() {
            return Some(self.sealer.shared());
        }
        let base = namespace.split('.').next().unwrap_or(namespace);
        if base == self.namespace(credential, None) {
            Some(self.sealing(credential))
        } else if base == "shared" || base == "anonymous" || base == "mcp-public" {
            Some(self.sealer.shared())
        } else {
            None
        }
    }

    /// `{credential hash}[.{segment}]`, or `shared[.{segment}]` when
    /// `cache.shared_namespace` is on.
    pub fn namespace(&self, credential: Option<&str>, segment: Option<&str>) -> String {
        let base = if self.config.cache.shared_namespace {
            "shared".to_owned()
        } else {
            credential_namespace(credential)
        };
        match segment {
            Some(s) => format!("{base}.{s}"),
            None => base,
        }
    }
}

fn caller_credential(headers: &HeaderMap) -> Option<String> {
    if let Some(auth) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .unwrap_or(auth)
            .trim();
        if !token.is_empty() {
            return Some(token.to_owned());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
}

/// The semantic tier (None when disabled). Its shared items are sealed like
/// entries under `cache.encryption` (`semantic::shared`).
fn semantic_tier(
    config: &crate::config::Config,
) -> Result<Option<Arc<crate::semantic::tier::SemanticTier>>, crate::RunError> {
    crate::semantic::load::tier(&config.semantic).map_err(crate::RunError::Semantic)
}
