//! Rendering answers that come from the cache (hits, coalesced, stale), in
//! the format the request asked for: an entry recorded from a stream answers
//! a JSON request (assembled into a `chat.completion`), and a JSON entry
//! answers a stream request (synthesized chunks, replayed as SSE).

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use super::Request;
use crate::cache::entry::{BodyFormat, Entry};
use crate::cache::flight::FailedReply;
use crate::cache::key::CacheKey;
use crate::cost::Cost;
use crate::render::{self, CacheMetadata, CacheStatus, RoutingMetadata, Tier};
use crate::stream::{self, StoredStream};

/// A stored entry as a response, with `routing_metadata` and cache headers.
pub fn cached(
    request: &Request,
    entry: &Entry,
    status: CacheStatus,
    tier: Option<Tier>,
    cost: Option<&Cost>,
) -> Response {
    let age = entry.age().as_secs();
    let meta = RoutingMetadata {
        provider: &request.provider.name,
        cache: CacheMetadata {
            status,
            tier,
            age_s: Some(age),
            tokens_saved: entry.total_tokens,
        },
        cost,
        route: None,
    };
    let mut headers = HeaderMap::new();
    render::cache_headers(&mut headers, status, request.key.as_ref());
    if let Some(tier) = tier {
        headers.insert(
            HeaderName::from_static("x-cache-tier"),
            HeaderValue::from_static(tier.as_str()),
        );
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    render::cost_headers(&mut headers, cost);

    if entry.format == BodyFormat::AnthropicSse {
        let meta = serde_json::to_value(&meta).ok();
        let body = stream::anthropic::replay(&entry.body, meta.as_ref());
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return render::response(
            StatusCode::OK,
            headers,
            Body::from(body),
            Some("text/event-stream"),
        );
    }
    if request.streaming && entry.format == BodyFormat::Stream {
        let meta = serde_json::to_value(&meta).ok();
        let layout = entry
            .derived
            .stream_layout
            .get_or_init(|| stream::StreamLayout::scan(&entry.body).map(std::sync::Arc::new));
        if let Some(layout) = layout {
            let replay = stream::LazyReplay::with_layout(
                entry.body.clone(),
                layout.clone(),
                request.wants_usage,
                meta,
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            let body = Body::from_stream(first_event_first(replay));
            return render::response(StatusCode::OK, headers, body, Some("text/event-stream"));
        }
    }
    if request.streaming {
        let stored = match entry.format {
            BodyFormat::Stream => serde_json::from_slice::<StoredStream>(&entry.body).ok(),
            BodyFormat::Json => serde_json::from_slice::<Value>(&entry.body)
                .ok()
                .map(|c| stream::synthesize(&c)),
            BodyFormat::AnthropicSse => None,
        };
        if let Some(stored) = stored {
            let meta = serde_json::to_value(&meta).ok();
            let events = stream::replay(&stored, request.wants_usage, meta.as_ref());
            let mut body = Vec::with_capacity(events.iter().map(Bytes::len).sum());
            for e in &events {
                body.extend_from_slice(e);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return render::response(
                StatusCode::OK,
                headers,
                Body::from(body),
                Some("text/event-stream"),
            );
        }
    }
    let json = match entry.format {
        BodyFormat::Json | BodyFormat::AnthropicSse => entry.body.clone(),
        BodyFormat::Stream => entry
            .derived
            .assembled
            .get_or_init(|| {
                serde_json::from_slice::<StoredStream>(&entry.body)
                    .ok()
                    .and_then(|s| serde_json::to_vec(&stream::assemble(&s)).ok())
                    .map(Bytes::from)
                    .unwrap_or_default()
            })
            .clone(),
    };
    let body = render::with_routing_metadata(&json, &meta);
    render::response(
        StatusCode::OK,
        headers,
        Body::from(body),
        Some("application/json"),
    )
}

/// The replayed events as a body of two writes: the first event alone, then
/// (after yielding once, so the server flushes it) everything else in one
/// buffer. Time to first byte stays one chunk's work whatever the length,
/// and the rest costs one write, not one per event.
fn first_event_first(
    replay: stream::LazyReplay,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    futures_util::stream::unfold(Some((replay, true)), |state| async move {
        let (mut replay, first) = state?;
        if first {
            let event = replay.next()?;
            return Some((Ok(event), Some((replay, false))));
        }
        tokio::task::yield_now().await;
        let mut rest = Vec::new();
        for event in replay {
            rest.extend_from_slice(&event);
        }
        (!rest.is_empty()).then(|| (Ok(Bytes::from(rest)), None))
    })
}

/// Whether `entry` can answer `request`: OpenAI entries convert between
/// stream and JSON; Anthropic streams are only replayed to streams, and
/// Anthropic JSON only answers JSON (a custom key can mix them up).
pub fn compatible(request: &Request, entry: &Entry) -> bool {
    match (request.kind, entry.format) {
        (crate::cache::key::EndpointKind::Messages, BodyFormat::AnthropicSse) => request.streaming,
        (crate::cache::key::EndpointKind::Messages, _) => !request.streaming,
        (_, BodyFormat::AnthropicSse) => false,
        _ => true,
    }
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
