//! `GET /v1/cache/profile`: the `reprise profile` report over the live
//! window of recent requests (`trace.live_events`), typically gathered in
//! observe mode before caching is turned on. `?format=json` (default),
//! `toml` (a `[[cache.rules]]` block) or `text`. A caller sees its own
//! namespace (and its segments); an admin key sees every namespace.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ProxyError;
use crate::state::AppState;
use crate::trace::input::Reader;
use crate::trace::report::Report;
use crate::trace::simulate;

#[derive(Deserialize)]
pub struct ProfileQuery {
    #[serde(default)]
    format: Option<String>,
}

pub async fn live(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<ProfileQuery>,
) -> Response {
    let credential = match state.authenticate(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let format = query.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "toml" | "text") {
        return ProxyError::bad_request("`format` must be json, toml or text", Some("format"))
            .into_response();
    }
    if state.tracer.live.is_none() {
        return ProxyError::bad_request("the live window is off (trace.live_events = 0)", None)
            .into_response();
    }
    let admin = state.is_admin(credential.as_deref());
    let own = state.namespace(credential.as_deref(), None);
    let task_state = state.clone();
    let report = tokio::task::spawn_blocking(move || {
        let prefix = format!("{own}.");
        let mut reader = Reader::new(&task_state.pricing);
        if let Some(live) = &task_state.tracer.live {
            live.feed(&mut reader, |ns| {
                admin || ns == own || ns.starts_with(&prefix)
            });
        }
        let outcome = simulate::run(&mut reader.events);
        Report::new(&reader.events, &outcome, reader.stats)
    })
    .await;
    let Ok(report) = report else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "profile failed").into_response();
    };
    let (body, content_type) = match format.as_str() {
        "toml" => (report.toml(), "application/toml"),
        "text" => (report.text(), "text/plain; charset=utf-8"),
        _ => (report.json(), "application/json"),
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
