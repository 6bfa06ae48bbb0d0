//! HTTP routes. Each file parses and validates one route family; the cached
//! flow itself lives once, in `pipeline.rs`.

pub mod admin;
pub mod batch;
pub mod chat;
pub mod direct;
pub mod embeddings;
pub mod export;
pub mod feedback;
pub mod guard;
pub mod messages;
pub mod models;
pub mod ops;
pub mod profile;
pub mod purge;
pub mod series;
pub mod top;

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::cache::key::EndpointKind;
use crate::error::ProxyError;
use crate::json::Json;
use crate::pipeline;
use crate::pipeline::facts::BodyFacts;
use crate::state::AppState;

/// What every cached route does: read the body, parse it (borrowing from the
/// bytes), validate it, derive its facts, run the flow. Bytes seen recently
/// skip the middle three (`pipeline::facts`). Errors render in the route's
/// dialect.
pub async fn cached_route(
    state: Arc<AppState>,
    kind: EndpointKind,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    validate: fn(&Json<'_>) -> Result<(), ProxyError>,
) -> Response {
    let render_error = |e: ProxyError| match kind {
        EndpointKind::Messages => e.anthropic_response(),
        _ => e.into_response(),
    };
    let raw = match read_body(body, state.config.server.body_limit_bytes) {
        Ok(raw) => raw,
        Err(e) => return render_error(e),
    };
    let facts = match state.body_memo.get(kind, &raw).await {
        Some(facts) => facts,
        None => {
            let derived = parse_object(&raw).and_then(|json| {
                validate(&json)?;
                BodyFacts::derive_for(kind, &json, state.providers.needs_opening())
            });
            match derived {
                Ok(facts) => {
                    let facts = Arc::new(facts);
                    state.body_memo.insert(kind, &raw, facts.clone()).await;
                    facts
                }
                Err(e) => return render_error(e),
            }
        }
    };
    pipeline::run(state, kind, headers, raw, &facts).await
}

/// The buffered body, or the reason there is none.
fn read_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ProxyError> {
    let raw = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ProxyError::PayloadTooLarge { limit }
        } else {
            ProxyError::bad_request(
                format!("could not read the request body: {rejection}"),
                None,
            )
        }
    })?;
    if raw.is_empty() {
        return Err(ProxyError::bad_request(
            "the request body is empty; send a JSON object",
            None,
        ));
    }
    Ok(raw)
}

/// The body as a JSON object.
pub fn parse_object(raw: &[u8]) -> Result<Json<'_>, ProxyError> {
    let json = Json::parse(raw).map_err(|e| {
        ProxyError::bad_request(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        )
    })?;
    if !json.is_object() {
        return Err(ProxyError::bad_request(
            "the request body must be a JSON object",
            None,
        ));
    }
    Ok(json)
}

/// `model`: required, a non-empty string.
pub fn require_model(body: &Json<'_>) -> Result<(), ProxyError> {
    match body.get("model") {
        Some(Json::String(m)) if !m.is_empty() => Ok(()),
        None | Some(Json::Null) => Err(ProxyError::bad_request(
            "you must provide a model parameter (`model` is missing)",
            Some("model"),
        )),
        Some(_) => Err(ProxyError::bad_request(
            "`model` must be a non-empty string",
            Some("model"),
        )),
    }
}

/// `stream`, when present, must be a boolean.
pub fn check_stream(body: &Json<'_>) -> Result<(), ProxyError> {
    match body.get("stream") {
        None | Some(Json::Null) | Some(Json::Bool(_)) => Ok(()),
        Some(_) => Err(ProxyError::bad_request(
            "`stream` must be a boolean",
            Some("stream"),
        )),
    }
}
