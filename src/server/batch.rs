//! `POST /v1/batch/chat/completions`: many chat requests in one call.
//!
//! `{"requests": [chat body, …]}` (at most `batch.max_items`) is answered
//! `{"object": "batch.result", "results": [...]}` in request order. Each item
//! runs the normal cached flow (`pipeline::run`: hits from the cache, misses
//! upstream, stored, counted, traced); identical items run once and the
//! copies are answered as `coalesced`; misses go upstream at most
//! `batch.concurrency` at a time; a failing item fails only its own slot.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::cache::key::EndpointKind;
use crate::error::ProxyError;
use crate::json::Json;
use crate::pipeline::{self, facts::BodyFacts};
use crate::state::AppState;

/// Largest item answer read back from the flow (answers are capped far
/// below this by `cache.max_entry_bytes` and the provider).
const MAX_ITEM_ANSWER: usize = 64 * 1024 * 1024;

/// `[batch]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most requests in one batch call.
    pub max_items: usize,
    /// Items of one batch in flight at once.
    pub concurrency: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_items: 100,
            concurrency: 8,
        }
    }
}

impl BatchConfig {
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.max_items == 0 || self.max_items > 10_000 {
            return Some(("batch.max_items", "must be between 1 and 10000"));
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return Some(("batch.concurrency", "must be between 1 and 256"));
        }
        None
    }
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    requests: Vec<&'a RawValue>,
}

/// One item's outcome before it is placed in the results.
#[derive(Clone)]
struct ItemResult {
    status: u16,
    cache: Option<String>,
    body: Value,
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run(state, headers, body).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn run(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ProxyError> {
    state.authenticate(&headers)?;
    let body = body.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ProxyError::PayloadTooLarge {
                limit: state.config.server.body_limit_bytes,
            }
        } else {
            ProxyError::bad_request(r.to_string(), None)
        }
    })?;
    let batch: BatchBody<'_> = serde_json::from_slice(&body).map_err(|e| {
        ProxyError::bad_request(
            format!("the body must be {{\"requests\": [chat request, …]}}: {e}"),
            Some("requests"),
        )
    })?;
    let max = state.config.batch.max_items;
    if batch.requests.is_empty() || batch.requests.len() > max {
        return Err(ProxyError::bad_request(
            format!("`requests` must hold 1 to {max} chat requests"),
            Some("requests"),
        ));
    }

    // Validate each item; identical ones (same model and canonical body,
    // no per-item `cache` directives) share one run.
    let mut slots: Vec<Result<usize, ItemResult>> = Vec::with_capacity(batch.requests.len());
    let mut unique: Vec<(Bytes, Arc<BodyFacts>)> = Vec::new();
    let mut seen: HashMap<(String, [u8; 32]), usize> = HashMap::new();
    for item in &batch.requests {
        let raw = Bytes::copy_from_slice(item.get().as_bytes());
        match item_facts(&raw) {
            Err(e) => slots.push(Err(error_result(&e))),
            Ok(facts) => {
                let id = (facts.model.clone(), facts.digest.0);
                let shared = (!facts.has_extension)
                    .then(|| seen.get(&id).copied())
                    .flatten();
                match shared {
                    Some(u) => slots.push(Ok(u)),
                    None => {
                        seen.insert(id, unique.len());
                        slots.push(Ok(unique.len()));
                        unique.push((raw, Arc::new(facts)));
                    }
                }
            }
        }
    }

    let concurrency = state.config.batch.concurrency;
    let mut outcomes: Vec<Option<ItemResult>> = vec![None; unique.len()];
    let runs = stream::iter(unique.into_iter().enumerate())
        .map(|(u, (raw, facts))| {
            let (state, headers) = (state.clone(), headers.clone());
            async move {
                let response = pipeline::run(state, EndpointKind::Chat, headers, raw, &facts).await;
                (u, read_result(response).await)
            }
        })
        .buffer_unordered(concurrency);
    futures_util::pin_mut!(runs);
    while let Some((u, result)) = runs.next().await {
        outcomes[u] = Some(result);
    }

    let mut first_use = vec![true; outcomes.len()];
    let (mut usd, mut saved) = (0.0f64, 0.0f64);
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut results = Vec::with_capacity(slots.len());
    for (index, slot) in slots.into_iter().enumerate() {
        let mut result = match slot {
            Err(r) => r,
            Ok(u) => {
                let Some(r) = outcomes[u].clone() else {
                    continue;
                };
                if std::mem::replace(&mut first_use[u], false) {
                    r
                } else {
                    duplicate(r)
                }
            }
        };
        let cost = &result.body["routing_metadata"]["cost"];
        usd += cost["usd"].as_f64().unwrap_or(0.0);
        saved += cost["cache_savings_usd"].as_f64().unwrap_or(0.0);
        let label = match (&result.cache, result.status) {
            (_, s) if !(200..300).contains(&s) => "error".to_owned(),
            (Some(c), _) => c.clone(),
            (None, _) => "none".to_owned(),
        };
        *counts.entry(label).or_default() += 1;
        results.push(render(index, &mut result));
    }
    Ok(json!({
        "object": "batch.result",
        "results": results,
        "counts": counts,
        "routing_metadata": {"cost": {
            "usd": round_usd(usd),
            "cache_savings_usd": round_usd(saved),
        }},
    }))
}

/// What the chat route would check, plus: no streams in a batch.
fn item_facts(raw: &[u8]) -> Result<BodyFacts, ProxyError> {
    let json = super::parse_object(raw)?;
    super::chat::validate(&json)?;
    if json.get("stream").and_then(Json::as_bool) == Some(true) {
        return Err(ProxyError::bad_request(
            "streaming is not available inside a batch; omit `stream`",
            Some("stream"),
        ));
    }
    BodyFacts::derive(EndpointKind::Chat, &json)
}

fn error_result(e: &ProxyError) -> ItemResult {
    ItemResult {
        status: e.status().as_u16(),
        cache: None,
        body: e.body(),
    }
}

async fn read_result(response: Response) -> ItemResult {
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = match axum::body::to_bytes(response.into_body(), MAX_ITEM_ANSWER).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            json!({"error": {"message": String::from_utf8_lossy(&bytes), "type": "upstream_error"}})
        }),
        Err(e) => json!({"error": {"message": format!("could not read the answer: {e}"),
            "type": "server_error"}}),
    };
    ItemResult {
        status,
        cache,
        body,
    }
}

/// A copy of an identical item's answer: nothing more was spent for it.
fn duplicate(mut r: ItemResult) -> ItemResult {
    if !(200..300).contains(&r.status) {
        return r;
    }
    r.cache = Some("coalesced".into());
    let meta = &mut r.body["routing_metadata"];
    if meta.is_object() {
        let original = meta["cost"]["usd"].as_f64().unwrap_or(0.0)
            + meta["cost"]["cache_savings_usd"].as_f64().unwrap_or(0.0);
        meta["cache"]["status"] = json!("coalesced");
        let mut cost = json!({"usd": 0.0, "cache_savings_usd": round_usd(original)});
        if original > 0.0 {
            cost["cache_savings_percent"] = json!(100);
        }
        meta["cost"] = cost;
    }
    r
}

fn render(index: usize, r: &mut ItemResult) -> Value {
    if (200..300).contains(&r.status) {
        json!({"index": index, "status": r.status,
            "cache": r.cache.as_deref().unwrap_or("none"), "response": r.body.take()})
    } else {
        let error = match r.body.get_mut("error") {
            Some(e) => e.take(),
            None => r.body.take(),
        };
        json!({"index": index, "status": r.status, "error": error})
    }
}

fn round_usd(x: f64) -> f64 {
    (x * 1e10).round() / 1e10
}
