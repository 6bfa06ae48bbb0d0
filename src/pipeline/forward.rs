//! The upstream leg: send the request to the provider and collect (JSON) or
//! pass through (streams) its answer.

use axum::http::{header, HeaderMap, Method, StatusCode};
use bytes::Bytes;

use super::Request;
use crate::error::ProxyError;
use crate::upstream::{self, Deadline};

/// A complete buffered upstream answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub is_json: bool,
    /// Time spent waiting on the provider.
    pub elapsed: std::time::Duration,
}

pub async fn send(request: &Request, deadline: Deadline) -> Result<reqwest::Response, ProxyError> {
    upstream::send(
        &request.state.client,
        &request.provider,
        Method::POST,
        super::adapt::path(request.kind, request.wire),
        request.provider.upstream_headers(&request.headers),
        Some(request.payload()?),
        deadline,
    )
    .await
}

/// Sends the request and reads the whole answer within the upstream timeout.
pub async fn json(request: &Request) -> Result<Reply, ProxyError> {
    let started = tokio::time::Instant::now();
    let deadline = Deadline::after(request.state.config.server.upstream_timeout);
    let response = send(request, deadline).await?;
    let status = response.status();
    let headers = upstream::passthrough_headers(response.headers());
    let mut body = upstream::read_body(
        &request.provider,
        response,
        deadline,
        request.state.config.limits.max_response_bytes,
    )
    .await?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if request.wire == super::adapt::Wire::ChatToAnthropic && status.is_success() && is_json {
        body = translate_back(&body, &request.model).ok_or_else(|| ProxyError::UpstreamBroken {
            provider: request.provider.name.clone(),
            detail: "the Anthropic response could not be translated".into(),
        })?;
    }
    Ok(Reply {
        status,
        headers,
        body,
        is_json,
        elapsed: started.elapsed(),
    })
}

/// An Anthropic message as the `chat.completion` the caller asked for.
fn translate_back(body: &[u8], model: &str) -> Option<Bytes> {
    let message: serde_json::Value = serde_json::from_slice(body).ok()?;
    let created = crate::cache::entry::unix_ms_now() / 1000;
    let completion = crate::providers::translate::messages_to_chat(&message, model, created);
    serde_json::to_vec(&completion).ok().map(Bytes::from)
}
