//! Talking to the provider: send with a deadline, classify failures into the
//! statuses callers expect (connect → 502, timeout → 504), filter headers.

use std::time::Duration;

use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::providers::Provider;

/// Builds the shared HTTP client (connection pool, keep-alive, timeouts).
pub fn client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
}

thread_local! {
    /// This worker's own client in the per-core layout (`runtime.rs`): its
    /// pooled connections are driven by this thread's runtime, so a call
    /// never wakes another thread. Unset in the multi-thread layout.
    static THREAD_CLIENT: std::cell::OnceCell<reqwest::Client> =
        const { std::cell::OnceCell::new() };
}

/// Gives the calling thread its own upstream client (per-core layout).
pub fn use_thread_client(connect_timeout: Duration) -> Result<(), reqwest::Error> {
    let own = client(connect_timeout)?;
    THREAD_CLIENT.with(|cell| {
        let _ = cell.set(own);
    });
    Ok(())
}

/// A request on this thread's own client if it has one, else on `shared`.
fn request_on(
    shared: &reqwest::Client,
    method: Method,
    url: impl reqwest::IntoUrl,
) -> reqwest::RequestBuilder {
    THREAD_CLIENT.with(|own| own.get().unwrap_or(shared).request(method, url))
}

/// The end of the time allowed for one upstream call.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    pub timeout: Duration,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Self {
        Deadline {
            at: crate::cache::ttl::instant_after(Instant::now(), timeout),
            timeout,
        }
    }
}

/// Sends a request and waits for the response head, before the deadline.
pub async fn send(
    client: &reqwest::Client,
    provider: &Provider,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Option<Bytes>,
    deadline: Deadline,
) -> Result<reqwest::Response, ProxyError> {
    send_to(
        client,
        provider,
        provider.url(path),
        method,
        headers,
        body,
        deadline,
    )
    .await
}

/// [`send`] to a full URL (one replica of `provider`).
pub async fn send_to(
    client: &reqwest::Client,
    provider: &Provider,
    url: impl reqwest::IntoUrl,
    method: Method,
    headers: HeaderMap,
    body: Option<Bytes>,
    deadline: Deadline,
) -> Result<reqwest::Response, ProxyError> {
    let mut request = request_on(client, method, url).headers(headers);
    if let Some(body) = body {
        request = request.body(body);
    }
    match tokio::time::timeout_at(deadline.at, request.send()).await {
        Err(_) => Err(timeout_error(provider, deadline.timeout)),
        Ok(Err(e)) => Err(classify(provider, e, deadline.timeout)),
        Ok(Ok(response)) => Ok(response),
    }
}

/// Reads a whole response body before the deadline, refusing (502) one
/// larger than `max` bytes (`limits.max_response_bytes`) as soon as its
/// `content-length` or the bytes read so far say so: memory held for one
/// answer is bounded whatever the provider sends.
pub async fn read_body(
    provider: &Provider,
    response: reqwest::Response,
    deadline: Deadline,
    max: usize,
) -> Result<Bytes, ProxyError> {
    let too_big = || ProxyError::UpstreamBroken {
        provider: provider.name.clone(),
        detail: format!("the answer is larger than limits.max_response_bytes ({max} bytes)"),
    };
    let declared = response.content_length();
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let read = async {
        let mut response = response;
        // One exact-size buffer when the length is known (the usual case).
        let mut body =
            bytes::BytesMut::with_capacity(declared.map_or(0, |n| usize::try_from(n).unwrap_or(0)));
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > max {
                return Ok(None);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body.freeze()))
    };
    match tokio::time::timeout_at(deadline.at, read).await {
        Err(_) => Err(timeout_error(provider, deadline.timeout)),
        Ok(Err(e)) => Err(classify(provider, e, deadline.timeout)),
        Ok(Ok(None)) => Err(too_big()),
        Ok(Ok(Some(bytes))) => Ok(bytes),
    }
}

/// A 2xx answer on a JSON endpoint must be JSON: anything else (an HTML page
/// from a gateway in front of the provider, plain text) is refused with a 502
/// rather than passed on as a success, and so is never stored. Checked by a
/// validating parse that builds nothing (microseconds for a usual answer).
pub fn require_json(
    provider: &Provider,
    status: axum::http::StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ProxyError> {
    if !status.is_success() || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return Ok(());
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    Err(ProxyError::UpstreamBroken {
        provider: provider.name.clone(),
        detail: format!(
            "upstream returned a non-JSON answer (HTTP {}, content-type {})",
            status.as_u16(),
            crate::telemetry::clip(content_type)
        ),
    })
}

fn timeout_error(provider: &Provider, timeout: Duration) -> ProxyError {
    ProxyError::UpstreamTimeout {
        provider: provider.name.clone(),
        secs: timeout.as_secs().max(1),
    }
}

fn classify(provider: &Provider, e: reqwest::Error, timeout: Duration) -> ProxyError {
    if e.is_timeout() {
        timeout_error(provider, timeout)
    } else if e.is_connect() {
        ProxyError::UpstreamConnect {
            provider: provider.name.clone(),
            detail: root_cause(&e),
        }
    } else {
        ProxyError::UpstreamBroken {
            provider: provider.name.clone(),
            detail: root_cause(&e),
        }
    }
}

/// The innermost error message (reqwest's own is only "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Upstream response headers worth passing to the client: everything but
/// hop-by-hop headers, framing (recomputed here) and cookies.
pub fn passthrough_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        let skip = matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "content-length"
                | "set-cookie"
        );
        if !skip {
            out.append(name.clone(), value.clone());
        }
    }
    out
}
