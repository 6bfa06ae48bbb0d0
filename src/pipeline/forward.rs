//! The upstream leg: send the request to the provider and collect (JSON) or
//! pass through (streams) its answer.

use axum::http::{header, HeaderMap, Method, StatusCode};
use bytes::Bytes;

use super::Request;
use crate::cache::key::EndpointKind;
use crate::error::ProxyError;
use crate::upstream::{self, Deadline};

/// Upstream path of each endpoint, relative to the provider's base URL.
fn upstream_path(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::Chat => "/chat/completions",
        EndpointKind::Embeddings => "/embeddings",
    }
}

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
        upstream_path(request.kind),
        request.provider.upstream_headers(&request.headers),
        Some(request.payload.clone()),
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
    let body = upstream::read_body(&request.provider, response, deadline).await?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    Ok(Reply {
        status,
        headers,
        body,
        is_json,
        elapsed: started.elapsed(),
    })
}
