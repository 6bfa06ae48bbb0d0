//! The upstream leg: send the request to the provider and collect (JSON) or
//! pass through (streams) its answer.

use axum::http::{header, HeaderMap, Method, StatusCode};
use bytes::Bytes;

use super::Request;
use crate::error::ProxyError;
use crate::providers::replicas::{InFlight, Pick, PickReason};
use crate::providers::routing;
use crate::upstream::{self, Deadline};

/// A complete buffered upstream answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub is_json: bool,
    /// A 2xx body parsed as a JSON object: its raw `usage` (inner None: the
    /// object has none). None: not a 2xx, or not a JSON object. One
    /// validating parse serves the JSON check and the usage.
    pub usage: Option<Option<Box<serde_json::value::RawValue>>>,
    /// Time spent waiting on the provider.
    pub elapsed: std::time::Duration,
}

/// The provider's response head, and the replica's in-flight slot (held
/// until the body has been read: for streams, by the pump).
pub struct Sent {
    pub response: reqwest::Response,
    pub in_flight: InFlight,
}

/// Sends the request to a replica picked by `routing.strategy`. An attempt
/// that fails before any response byte (connect error, broken connection,
/// 502/503/504, a 429 with a long `Retry-After`) is retried once on another
/// replica; nothing is retried once a response is accepted, so a stream is
/// never retried after its first byte.
pub async fn send(request: &Request, deadline: Deadline) -> Result<Sent, ProxyError> {
    let state = &request.state;
    let provider = &request.provider;
    let routing = &state.config.routing;
    routing::spawn_probes(
        &state.client,
        provider,
        &routing.health.probe_path,
        state.config.server.connect_timeout,
    );
    let body = request.payload()?;
    let headers = provider.upstream_headers(&request.headers);
    let path = super::adapt::path(request.kind, request.wire);
    let target = request.target_label();
    let first = provider
        .replicas
        .pick(request.affinity, None)
        .unwrap_or(Pick {
            index: 0,
            reason: PickReason::Only,
        });
    let attempt = |pick: Pick| {
        let (headers, body) = (headers.clone(), body.clone());
        async move {
            let in_flight = InFlight::begin(provider, pick.index);
            let parsed = provider
                .replicas
                .get(pick.index)
                .and_then(|r| r.api_url(path));
            let sent = match parsed {
                Some(url) => {
                    upstream::send_to(
                        &state.client,
                        provider,
                        url,
                        Method::POST,
                        headers,
                        Some(body),
                        deadline,
                    )
                    .await
                }
                None => {
                    upstream::send_to(
                        &state.client,
                        provider,
                        provider.url_at(pick.index, path),
                        Method::POST,
                        headers,
                        Some(body),
                        deadline,
                    )
                    .await
                }
            };
            let verdict = match &sent {
                Ok(r) => routing::judge_status(r.status(), r.headers(), routing.retry_after_bound),
                Err(e) => routing::judge_error(e),
            };
            provider.replicas.record(pick.index, verdict.healthy);
            (
                sent.map(|response| Sent {
                    response,
                    in_flight,
                }),
                verdict,
            )
        }
    };
    request.route.set(routing::route_info(
        &target,
        first,
        1,
        request.alias.as_ref(),
    ));
    let (sent, verdict) = attempt(first).await;
    if !verdict.retry || !routing.failover {
        return sent;
    }
    let Some(second) = provider.replicas.pick(request.affinity, Some(first.index)) else {
        return sent;
    };
    drop(sent);
    metrics::counter!("reprise_upstream_failovers_total").increment(1);
    tracing::debug!(provider = %provider.name, from = first.index, to = second.index, "failover");
    let retry = Pick {
        index: second.index,
        reason: PickReason::Failover,
    };
    request.route.set(routing::route_info(
        &target,
        retry,
        2,
        request.alias.as_ref(),
    ));
    attempt(retry).await.0
}

/// Sends the request and reads the whole answer within the upstream timeout.
pub async fn json(request: &Request) -> Result<Reply, ProxyError> {
    let started = tokio::time::Instant::now();
    let deadline = Deadline::after(request.state.config.server.upstream_timeout);
    let Sent {
        response,
        in_flight,
    } = send(request, deadline).await?;
    let status = response.status();
    let headers = upstream::passthrough_headers(response.headers());
    let mut body = upstream::read_body(
        &request.provider,
        response,
        deadline,
        request.state.config.limits.max_response_bytes,
    )
    .await?;
    drop(in_flight);
    let mut usage = if status.is_success() {
        super::costing::raw_usage(&body)
    } else {
        None
    };
    if usage.is_none() {
        // Not an object: still fine if it is JSON at all (else a 502).
        upstream::require_json(&request.provider, status, &headers, &body)?;
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if request.wire == super::adapt::Wire::ChatToAnthropic && status.is_success() && is_json {
        body = translate_back(&body, &request.model).ok_or_else(|| ProxyError::UpstreamBroken {
            provider: request.provider.name.clone(),
            detail: "the Anthropic response could not be translated".into(),
        })?;
        usage = super::costing::raw_usage(&body);
    }
    Ok(Reply {
        status,
        headers,
        body,
        is_json,
        usage,
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
