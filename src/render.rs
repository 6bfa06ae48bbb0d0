//! Building client responses: reprise's `routing_metadata` added to a JSON
//! body without re-parsing it, and the `x-cache-*` / `age` headers.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;

use crate::cache::key::CacheKey;

pub use crate::cache::outcome::{CacheStatus, Tier};

/// `routing_metadata` as it appears in response bodies.
#[derive(Debug, Serialize)]
pub struct RoutingMetadata<'a> {
    pub provider: &'a str,
    pub cache: CacheMetadata,
    /// Absent when the model has no price (never a made-up price).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<&'a crate::cost::Cost>,
    /// Where an upstream call went and why (misses only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a crate::providers::routing::RouteInfo>,
}

#[derive(Debug, Serialize)]
pub struct CacheMetadata {
    pub status: CacheStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_saved: Option<u64>,
}

/// Inserts `"routing_metadata": meta` as the last member of a JSON object
/// body. The body was validated as a JSON object before (at store time or on
/// the miss path); anything else is returned unchanged.
pub fn with_routing_metadata(body: &[u8], meta: &RoutingMetadata<'_>) -> Bytes {
    let Some(close) = body.iter().rposition(|b| !b.is_ascii_whitespace()) else {
        return Bytes::copy_from_slice(body);
    };
    if body[close] != b'}' {
        return Bytes::copy_from_slice(body);
    }
    let empty_object = body[..close]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .is_some_and(|i| body[i] == b'{');
    let mut out = Vec::with_capacity(body.len() + 160);
    out.extend_from_slice(&body[..close]);
    if !empty_object {
        out.push(b',');
    }
    out.extend_from_slice(b"\"routing_metadata\":");
    if serde_json::to_writer(&mut out, meta).is_err() {
        return Bytes::copy_from_slice(body);
    }
    out.extend_from_slice(&body[close..]);
    Bytes::from(out)
}

/// Adds `x-cache-status`, and `x-cache-key` when a key was computed.
pub fn cache_headers(headers: &mut HeaderMap, status: CacheStatus, key: Option<&CacheKey>) {
    headers.insert(
        HeaderName::from_static("x-cache-status"),
        HeaderValue::from_static(status.as_str()),
    );
    if let Some(key) = key {
        if let Ok(v) = HeaderValue::from_bytes(&key.hex_bytes()) {
            headers.insert(HeaderName::from_static("x-cache-key"), v);
        }
    }
}

/// `x-reprise-cost-usd` / `x-reprise-savings-usd`, for clients that cannot
/// read the body (streams, SDKs that drop unknown fields).
pub fn cost_headers(headers: &mut HeaderMap, cost: Option<&crate::cost::Cost>) {
    if let Some(cost) = cost {
        if let Ok(v) = HeaderValue::from_str(&format!("{}", cost.usd)) {
            headers.insert(HeaderName::from_static("x-reprise-cost-usd"), v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{}", cost.cache_savings_usd)) {
            headers.insert(HeaderName::from_static("x-reprise-savings-usd"), v);
        }
    }
}

/// A response from parts.
pub fn response(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Body,
    content_type: Option<&str>,
) -> Response {
    if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(ct).ok()) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn meta() -> RoutingMetadata<'static> {
        RoutingMetadata {
            provider: "openai",
            cache: CacheMetadata {
                status: CacheStatus::Hit,
                tier: Some(Tier::Memory),
                age_s: Some(3),
                tokens_saved: Some(12),
            },
            cost: None,
            route: None,
        }
    }

    #[test]
    fn splices_into_objects() {
        let out =
            with_routing_metadata(b"{\"id\":\"x\",\"usage\":{\"total_tokens\":12}}\n", &meta());
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["routing_metadata"]["cache"]["status"], "hit");
        assert_eq!(v["routing_metadata"]["cache"]["tier"], "memory");
        assert_eq!(v["routing_metadata"]["cache"]["age_s"], 3);
        assert_eq!(v["routing_metadata"]["cache"]["tokens_saved"], 12);
        let empty: Value =
            serde_json::from_slice(&with_routing_metadata(b" { } ", &meta())).unwrap();
        assert_eq!(empty["routing_metadata"]["provider"], "openai");
    }

    #[test]
    fn leaves_non_objects_alone() {
        assert_eq!(&with_routing_metadata(b"[1,2]", &meta())[..], b"[1,2]");
        assert_eq!(&with_routing_metadata(b"", &meta())[..], b"");
    }
}
