//! Limits in one place, configured from `[limits]` (and
//! `server.body_limit_bytes`):
//!
//! - [`connections`]: the accept loop — at most `max_connections` open
//!   connections (one more is answered 503 and closed at once), and a
//!   `header_read_timeout` for each HTTP/1 request head;
//! - [`requests`]: tower layers around the routes — load shedding at
//!   `max_in_flight` (503 + `Retry-After`), and the body read, bounded in
//!   time (`body_read_timeout` → 408) and size (`body_limit_bytes` → 413).
//!
//! Every refusal is an OpenAI-shaped error (Anthropic-shaped on
//! `/v1/messages`) and is counted in `reprise_limit_refusals_total{limit}`.

pub mod connections;
pub mod requests;

use axum::response::{IntoResponse, Response};

use crate::error::ProxyError;

/// The error in the dialect of the route `path` belongs to.
pub fn render(path: &str, error: ProxyError) -> Response {
    if path.starts_with("/v1/messages") {
        error.anthropic_response()
    } else {
        error.into_response()
    }
}

/// Counts one refusal by the limit that caused it.
pub fn count_refusal(limit: &'static str) {
    metrics::counter!("reprise_limit_refusals_total", "limit" => limit).increment(1);
}
