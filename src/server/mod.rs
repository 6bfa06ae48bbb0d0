//! HTTP routes. Each file parses and validates one route family; the cached
//! flow itself lives once, in `pipeline.rs`.

pub mod admin;
pub mod chat;
pub mod embeddings;
pub mod messages;
pub mod models;
pub mod ops;

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::ProxyError;
use crate::pipeline::ParsedRequest;

/// Turns the buffered body (or its rejection) into a JSON object.
pub fn parse_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<ParsedRequest, ProxyError> {
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
    let value: Value = serde_json::from_slice(&raw).map_err(|e| {
        ProxyError::bad_request(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        )
    })?;
    let Value::Object(body) = value else {
        return Err(ProxyError::bad_request(
            "the request body must be a JSON object",
            None,
        ));
    };
    Ok(ParsedRequest { raw, body })
}

/// `model`: required, a non-empty string.
pub fn require_model(body: &Map<String, Value>) -> Result<(), ProxyError> {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(()),
        None | Some(Value::Null) => Err(ProxyError::bad_request(
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
pub fn check_stream(body: &Map<String, Value>) -> Result<(), ProxyError> {
    match body.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(ProxyError::bad_request(
            "`stream` must be a boolean",
            Some("stream"),
        )),
    }
}
