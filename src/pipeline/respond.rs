//! Rendering answers that come from the cache (hits, coalesced, stale).

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use crate::cache::entry::Entry;
use crate::cache::flight::FailedReply;
use crate::cache::key::CacheKey;
use crate::render::{self, CacheMetadata, CacheStatus, RoutingMetadata, Tier};

/// A stored entry as a response, with `routing_metadata` and cache headers.
pub fn cached(
    entry: &Entry,
    status: CacheStatus,
    tier: Option<Tier>,
    key: &CacheKey,
    provider: &str,
    cost: Option<&crate::cost::Cost>,
) -> Response {
    let age = entry.age().as_secs();
    let meta = RoutingMetadata {
        provider,
        cache: CacheMetadata {
            status,
            tier,
            age_s: Some(age),
            tokens_saved: entry.total_tokens,
        },
        cost,
    };
    let body = render::with_routing_metadata(&entry.body, &meta);
    let mut headers = HeaderMap::new();
    render::cache_headers(&mut headers, status, Some(key));
    if let Some(tier) = tier {
        headers.insert(
            HeaderName::from_static("x-cache-tier"),
            HeaderValue::from_static(tier.as_str()),
        );
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    render::cost_headers(&mut headers, cost);
    render::response(
        StatusCode::OK,
        headers,
        Body::from(body),
        Some(&entry.content_type),
    )
}

/// A single-flight follower answered with the failure its retry confirmed.
pub fn failed(reply: &FailedReply, key: &CacheKey) -> Response {
    let mut headers = HeaderMap::new();
    render::cache_headers(&mut headers, CacheStatus::Coalesced, Some(key));
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    render::response(
        status,
        headers,
        Body::from(reply.body.clone()),
        reply.content_type.as_deref(),
    )
}
