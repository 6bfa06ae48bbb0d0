//! `GET /v1/cache/stats/series?window=15m|1h|24h[&scope=fleet]`: requests,
//! hits and dollars saved by cache type, spend, provider prompt-cache
//! savings, tokens and latency saved, per minute (per 10 minutes for 24h).
//! Scoped to the caller's namespaces like `/v1/cache/stats`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::admin::fleet::{self, Window};
use crate::error::ProxyError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    window: Option<String>,
    scope: Option<String>,
}

/// Whether the fleet view is asked for (`scope=fleet`); `instance` or
/// nothing = this instance.
pub fn wants_fleet(scope: Option<&str>) -> Result<bool, ProxyError> {
    match scope {
        None | Some("instance") => Ok(false),
        Some("fleet") => Ok(true),
        Some(_) => Err(ProxyError::bad_request(
            "`scope` must be \"instance\" or \"fleet\"",
            Some("scope"),
        )),
    }
}

pub async fn series(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let credential = state.authenticate(&headers)?;
        let Query(q) = query.map_err(|e| ProxyError::bad_request(e.body_text(), None))?;
        let window = Window::parse(q.window.as_deref().unwrap_or("1h")).ok_or_else(|| {
            ProxyError::bad_request("`window` must be 15m, 1h or 24h", Some("window"))
        })?;
        let fleet_wanted = wants_fleet(q.scope.as_deref())?;
        let admin = state.is_admin(credential.as_deref());
        let own = state.namespace(credential.as_deref(), None);
        let prefix = format!("{own}.");
        let visible = |ns: &str| admin || ns == own || ns.starts_with(&prefix);
        let from_fleet = match (&state.tiers.redis, fleet_wanted) {
            (Some(redis), true) => fleet::fleet_series(redis, window, &visible).await,
            _ => None,
        };
        let view = if from_fleet.is_some() {
            "fleet"
        } else {
            "instance"
        };
        let points = from_fleet.unwrap_or_else(|| state.fleet.local_series(window, &visible));
        let step_ms = points
            .get(1)
            .zip(points.first())
            .map_or(60_000, |(b, a)| b.0 - a.0);
        let points: Vec<_> = points
            .into_iter()
            .map(|(t, tally)| {
                let mut p = tally.point();
                if let Some(o) = p.as_object_mut() {
                    o.insert("t".into(), json!(t / 1000));
                }
                p
            })
            .collect();
        Ok::<_, ProxyError>(json!({
            "object": "cache.series",
            "view": view,
            "scope": if admin { "all" } else { "namespace" },
            "window": window.as_str(),
            "step_s": step_ms / 1000,
            "points": points,
        }))
    }
    .await;
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}
