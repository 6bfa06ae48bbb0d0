//! Operator routes: `/v1/cache/stats` (instance or fleet), `/v1/directory/models`, `/metrics`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::error::ProxyError;

use crate::state::AppState;

/// `?scope=fleet` (with Redis): the whole deployment's counters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    scope: Option<String>,
}

/// Cache statistics of this instance, or of the fleet (`?scope=fleet`, when
/// Redis is configured and reachable; `view` says which). A caller sees its
/// own namespace (and its `x-cache-namespace` segments); an admin key sees
/// every namespace.
pub async fn stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Response {
    let credential = match state.authenticate(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let fleet_wanted = match query
        .map_err(|e| ProxyError::bad_request(e.body_text(), None))
        .and_then(|Query(q)| super::series::wants_fleet(q.scope.as_deref()))
    {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let admin = state.is_admin(credential.as_deref());
    let own = state.namespace(credential.as_deref(), None);
    let prefix = format!("{own}.");
    let visible = |ns: &str| admin || ns == own || ns.starts_with(&prefix);
    let fleet = match (&state.tiers.redis, fleet_wanted) {
        (Some(redis), true) => crate::admin::fleet::fleet_report(redis, &visible).await,
        _ => None,
    };
    let view = if fleet.is_some() { "fleet" } else { "instance" };
    let mut report = match fleet {
        Some(report) => report,
        None => state.stats.report(visible),
    };
    if let Some(o) = report.as_object_mut() {
        o.insert(
            "scope".into(),
            json!(if admin { "all" } else { "namespace" }),
        );
        o.insert("view".into(), json!(view));
        let redis_state = match &state.tiers.redis {
            None => "off",
            Some(r) if r.breaker_open() => "breaker_open",
            Some(_) => "ok",
        };
        o.insert(
            "server".into(),
            json!({"mode": state.config.cache.mode, "redis": redis_state}),
        );
        if admin {
            let mut tiers = serde_json::Map::new();
            if let Some(memory) = &state.tiers.memory {
                let (entries, bytes) = memory.usage().await;
                tiers.insert("memory".into(), json!({"entries": entries, "bytes": bytes}));
            }
            if let Some(redis) = &state.tiers.redis {
                tiers.insert(
                    "redis".into(),
                    json!({"breaker_open": redis.breaker_open()}),
                );
            }
            o.insert("tiers".into(), tiers.into());
        }
    }
    Json(report).into_response()
}

/// Every model reprise can price, with prices per million tokens.
pub async fn directory(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = state.authenticate(&headers) {
        return e.into_response();
    }
    let models: Vec<_> = crate::cost::directory(&state.pricing)
        .into_iter()
        .map(|entry| {
            let mut v = serde_json::to_value(&entry).unwrap_or_default();
            if let (Some(o), Ok(route)) = (v.as_object_mut(), state.providers.route(&entry.model)) {
                o.insert("routed_to".into(), json!(route.provider.name));
            }
            v
        })
        .collect();
    Json(json!({"object": "list", "as_of": state.pricing.as_of(), "data": models})).into_response()
}

/// Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let Some(handle) = crate::telemetry::handle() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response();
    };
    if let Some(memory) = &state.tiers.memory {
        let (entries, bytes) = memory.usage().await;
        metrics::gauge!("reprise_cache_entries", "tier" => "memory").set(entries as f64);
        metrics::gauge!("reprise_cache_bytes", "tier" => "memory").set(bytes as f64);
    }
    crate::telemetry::flush();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
