//! Request-level limits, as `axum::middleware::from_fn_with_state` layers:
//! load shedding ([`shed`]) and the bounded body read ([`read_body`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{count_refusal, render};
use crate::error::ProxyError;

/// The in-flight budget shared by every request, and the separate one of
/// long-lived MCP GET streams.
#[derive(Clone)]
pub struct InFlight {
    slots: Arc<Semaphore>,
    limit: usize,
    mcp_streams: Arc<Semaphore>,
    mcp_limit: usize,
    retry_after_secs: u64,
}

impl InFlight {
    pub fn new(limit: usize, mcp_limit: usize, retry_after: Duration) -> Self {
        InFlight {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            mcp_streams: Arc::new(Semaphore::new(mcp_limit)),
            mcp_limit,
            // Retry-After is whole seconds; never advertise 0.
            retry_after_secs: retry_after.as_secs().max(1),
        }
    }
}

/// Operational routes stay answerable under load (probes, scrapes).
fn exempt(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

/// An MCP session's GET stream (server-to-client messages): it stays open,
/// mostly idle, for the whole session, so it is bounded by
/// `max_mcp_streams` instead of taking an in-flight slot from real traffic.
fn is_mcp_stream(request: &Request) -> bool {
    request.method() == axum::http::Method::GET && request.uri().path().starts_with("/mcp/")
}

/// Answers 503 + `Retry-After` when `max_in_flight` requests are being
/// handled (or `max_mcp_streams` MCP GET streams are open). A request holds
/// its slot until its response body ends (a stream until its last byte, or
/// until the client goes away).
pub async fn shed(State(flight): State<InFlight>, request: Request, next: Next) -> Response {
    if exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let (slots, limit) = match is_mcp_stream(&request) {
        true => (&flight.mcp_streams, "max_mcp_streams"),
        false => (&flight.slots, "max_in_flight"),
    };
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        count_refusal(limit);
        let retry_after_secs = flight.retry_after_secs;
        let error = match is_mcp_stream(&request) {
            true => ProxyError::McpStreamsFull {
                limit: flight.mcp_limit,
                retry_after_secs,
            },
            false => ProxyError::Overloaded {
                limit: flight.limit,
                retry_after_secs,
            },
        };
        return render(request.uri().path(), error);
    };
    let (parts, body) = next.run(request).await.into_parts();
    Response::from_parts(
        parts,
        Body::new(Holding {
            inner: body,
            _permit: permit,
        }),
    )
}

/// A response body that keeps an in-flight slot until it is dropped.
struct Holding {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How the body of a request is read.
#[derive(Clone, Copy)]
pub struct BodyRead {
    pub timeout: Duration,
    pub limit: usize,
}

/// Reads the whole body before the route runs: a declared length over
/// `limit` is refused (413) before a byte is read, a body still arriving after
/// `timeout` is cut (408, connection closed), and the route gets the request
/// with the bytes (`Err`: the error response).
pub async fn buffered(read: BodyRead, request: Request) -> Result<Request, Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > read.limit as u64) {
        count_refusal("body_limit_bytes");
        return Err(render(
            request.uri().path(),
            ProxyError::PayloadTooLarge { limit: read.limit },
        ));
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let bytes =
        match tokio::time::timeout(read.timeout, axum::body::to_bytes(body, read.limit)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) if is_length_limit(&e) => {
                count_refusal("body_limit_bytes");
                return Err(render(
                    path,
                    ProxyError::PayloadTooLarge { limit: read.limit },
                ));
            }
            Ok(Err(e)) => {
                return Err(render(
                    path,
                    ProxyError::bad_request(format!("could not read the request body: {e}"), None),
                ))
            }
            Err(_elapsed) => {
                count_refusal("body_read_timeout");
                let millis = u64::try_from(read.timeout.as_millis()).unwrap_or(u64::MAX);
                return Err(render(path, ProxyError::RequestTimeout { millis }));
            }
        };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
