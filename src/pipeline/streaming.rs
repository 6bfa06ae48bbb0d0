//! Streaming misses: one background pump reads the provider's SSE into a
//! [`LiveStream`] (recording a capped copy), and every client — the request
//! that started it and any single-flight follower — reads that live stream
//! from its first byte as the bytes arrive. A complete stream (`[DONE]`,
//! every choice finished, no error, under the cap) is stored; anything else
//! never is.
//!
//! When the client of the leading request disconnects, the pump keeps
//! reading to the end and stores the entry (`cache.stream_on_disconnect =
//! "finish"`, the default: the tokens are being paid for and followers may
//! be reading), or stops reading at once when no reader is left (`"cancel"`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::stream_client::{client_body, MetaFn};
use super::stream_source::Source;
use super::{costing, forward, Answer, Request};
use crate::cache::entry::Entry;
use crate::cache::flight::{FailedReply, LeaderGuard, Outcome};
use crate::cache::live::{LiveEnd, LiveStream};
use crate::config::StreamDisconnect;
use crate::error::ProxyError;
use crate::render::{self, CacheStatus};
use crate::stats::Record;
use crate::upstream::{self, Deadline};

/// Leads a streaming miss: sends upstream, starts the pump, answers with a
/// reader of the live stream.
pub async fn lead(
    request: &Request,
    status: CacheStatus,
    stale: Option<(Arc<Entry>, crate::render::Tier)>,
    guard: Option<LeaderGuard>,
    live: Arc<LiveStream>,
) -> Result<Answer, ProxyError> {
    let state = &request.state;
    let deadline = Deadline::after(state.config.server.upstream_timeout);
    let started = tokio::time::Instant::now();
    let forward::Sent {
        response,
        in_flight,
    } = match forward::send(request, deadline).await {
        Ok(sent) => sent,
        Err(e) => {
            live.end(LiveEnd::Broken);
            fail_flight(
                guard,
                e.status().as_u16(),
                Bytes::from(e.body().to_string()),
            );
            if let (Some((entry, tier)), true) = (&stale, super::miss::serves_stale_on(&e)) {
                return Ok(super::miss::stale_answer(request, entry, *tier));
            }
            return Err(e);
        }
    };
    let upstream_status = response.status();
    let mut headers = upstream::passthrough_headers(response.headers());
    render::cache_headers(&mut headers, status, request.key.as_ref());
    let is_sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !upstream_status.is_success() || !is_sse {
        // An error (or a provider that ignored `stream`): passed through, never cached.
        live.end(LiveEnd::Broken);
        let failed =
            upstream_status == StatusCode::TOO_MANY_REQUESTS || upstream_status.is_server_error();
        if let (true, Some((entry, tier))) = (failed, &stale) {
            drop(guard);
            return Ok(super::miss::stale_answer(request, entry, *tier));
        }
        let body = upstream::read_body(
            &request.provider,
            response,
            deadline,
            state.config.limits.max_response_bytes,
        )
        .await?;
        // A provider that ignored `stream` may answer JSON; anything else is a 502.
        if let Err(e) = upstream::require_json(&request.provider, upstream_status, &headers, &body)
        {
            fail_flight(
                guard,
                e.status().as_u16(),
                Bytes::from(e.body().to_string()),
            );
            return Err(e);
        }
        fail_flight(guard, upstream_status.as_u16(), body.clone());
        let record = Record {
            status: Some(status),
            error: !upstream_status.is_success(),
            ..Record::default()
        };
        return Ok(Answer {
            response: render::response(upstream_status, headers, Body::from(body), None),
            record,
            upstream: Some(started.elapsed()),
            stream_end: None,
        });
    }

    // The leader's own reader exists before the pump starts, so "cancel on
    // disconnect" never sees zero readers by accident.
    let reader = live.reader();
    let (end_tx, stream_end) = match state.tracer.enabled() {
        true => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let pump = Pump {
        stream_end: end_tx,
        state: state.clone(),
        live: live.clone(),
        guard,
        key: request.key,
        namespace: request.namespace.clone(),
        sealing: request.sealing.clone(),
        model: request.model.clone(),
        route: request.kind.as_str(),
        ttl: request.directives.write_ttl(request.default_ttl),
        writes: request.writes(),
        idle_timeout: state.config.server.upstream_timeout,
        cancel_on_disconnect: state.config.cache.stream_on_disconnect == StreamDisconnect::Cancel,
        wire: request.wire,
        remember: super::semantic::Remember::from(request),
        _in_flight: in_flight,
        provider: request.provider.name.clone(),
        opening: request.affinity,
        origin: request.origin(),
        started,
        keep_request: super::refresh::request_to_keep(request, 0),
    };
    tokio::spawn(pump.run(response));

    let provider = request.provider.name.clone();
    let model = request.model.clone();
    let meta_state = state.clone();
    let route = request.route.get();
    let meta: MetaFn = Box::new(move |usage| {
        let cost = usage.and_then(|u| costing::miss(&meta_state, &model, u));
        let mut meta =
            serde_json::json!({"provider": provider, "cache": {"status": status}, "cost": cost});
        if let (Some(route), Some(o)) = (&route, meta.as_object_mut()) {
            o.insert("route".into(), serde_json::json!(route));
        }
        meta
    });
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let body = client_body(reader, request.wire, request.wants_usage, meta);
    Ok(Answer {
        response: render::response(StatusCode::OK, headers, body, Some("text/event-stream")),
        record: Record {
            status: Some(status),
            ..Record::default()
        },
        upstream: Some(started.elapsed()),
        stream_end,
    })
}

/// A single-flight follower of a streaming leader: the same bytes, from the
/// first one, as they arrive.
pub fn follow(request: &Request, live: &Arc<LiveStream>) -> Answer {
    let provider = request.provider.name.clone();
    let meta: MetaFn = Box::new(
        move |_| serde_json::json!({"provider": provider, "cache": {"status": "coalesced"}}),
    );
    let mut headers = HeaderMap::new();
    render::cache_headers(&mut headers, CacheStatus::Coalesced, request.key.as_ref());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let body = client_body(live.reader(), request.wire, request.wants_usage, meta);
    Answer::new(
        render::response(StatusCode::OK, headers, body, Some("text/event-stream")),
        Record {
            status: Some(CacheStatus::Coalesced),
            ..Record::default()
        },
    )
}

fn fail_flight(guard: Option<LeaderGuard>, status: u16, body: Bytes) {
    if let Some(guard) = guard {
        guard.complete(Outcome::Failed(Some(Arc::new(FailedReply {
            status,
            content_type: Some("application/json".into()),
            body,
        }))));
    }
}

/// Reads the provider's stream to its end, off the response path.
struct Pump {
    state: Arc<crate::state::AppState>,
    live: Arc<LiveStream>,
    guard: Option<LeaderGuard>,
    key: Option<crate::cache::key::CacheKey>,
    namespace: String,
    sealing: crate::cache::seal::Sealing,
    model: String,
    route: &'static str,
    ttl: crate::cache::ttl::Ttl,
    writes: bool,
    idle_timeout: std::time::Duration,
    cancel_on_disconnect: bool,
    wire: super::adapt::Wire,
    /// Adds the request's vector to the semantic index once stored.
    remember: Option<super::semantic::Remember>,
    /// The replica's in-flight slot, freed when the stream ends.
    _in_flight: crate::providers::replicas::InFlight,
    /// Where the stream came from, for the `cache_economics` estimates.
    provider: String,
    opening: Option<u64>,
    /// What the stored entry records about its request.
    origin: crate::cache::entry::Origin,
    /// When the upstream call started (the stream's duration is what a hit saves).
    started: tokio::time::Instant,
    /// The caller's request, for refresh-ahead rules (dropped at the end if
    /// it and the stream together exceed `cache.max_entry_bytes`).
    keep_request: Option<Bytes>,
    /// The request's trace line waits for this (tracing on only).
    stream_end: Option<tokio::sync::oneshot::Sender<super::traced::StreamEnd>>,
}

impl Pump {
    async fn run(self, response: reqwest::Response) {
        let mut body = response.bytes_stream();
        let storage_cap = self.state.config.cache.max_entry_bytes;
        let limits = &self.state.config.limits;
        let max_event = limits.max_sse_event_bytes;
        let deadline = crate::cache::ttl::instant_after(self.started, limits.stream_deadline);
        let mut source = Source::new(self.wire, &self.model, storage_cap);
        loop {
            let idle = crate::cache::ttl::instant_after(Instant::now(), self.idle_timeout);
            match tokio::time::timeout_at(idle.min(deadline), body.next()).await {
                Ok(Some(Ok(bytes))) => {
                    let (out, terminal) = source.feed(bytes);
                    if source.pending_event_bytes() > max_event {
                        // An event that never ends is an error, not a buffer.
                        tracing::debug!("upstream SSE event over limits.max_sse_event_bytes");
                        metrics::counter!("reprise_upstream_errors_total", "kind" => "sse_event_too_large")
                            .increment(1);
                        self.live.end(LiveEnd::Broken);
                        return;
                    }
                    if terminal {
                        // Store before releasing the last event, so a client
                        // that asks again right after the stream finds the entry.
                        let live = self.live.clone();
                        let finished = self.finish(source).await;
                        live.push(out);
                        live.end(LiveEnd::Complete);
                        finished.await;
                        return;
                    }
                    if !out.is_empty() {
                        self.live.push(out);
                    }
                    // Nobody reads and (cancel, or too big to store): stop
                    // reading, "finish" only finishes what can be stored.
                    let unstorable = source.fed() > storage_cap;
                    if (self.cancel_on_disconnect || unstorable) && self.live.readers() == 0 {
                        tracing::debug!("stream abandoned by every reader; upstream cancelled");
                        self.live.end(LiveEnd::Broken);
                        return;
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "upstream stream broke");
                    metrics::counter!("reprise_upstream_errors_total", "kind" => "stream_cut")
                        .increment(1);
                    self.live.end(LiveEnd::Broken);
                    return;
                }
                Err(_) => {
                    let kind = if Instant::now() >= deadline {
                        "stream_deadline"
                    } else {
                        "stream_idle"
                    };
                    metrics::counter!("reprise_upstream_errors_total", "kind" => kind).increment(1);
                    self.live.end(LiveEnd::Broken);
                    return;
                }
            }
        }
        // The body ended before its terminal event: forwarded as is, never stored.
        let live = self.live.clone();
        let finished = self.finish(source).await;
        live.end(LiveEnd::Complete);
        finished.await;
    }

    /// Prices the stream, hands a complete one to the flight's followers and
    /// the memory tier; returns the (slower) shared-tier write to run after
    /// the client has its last bytes.
    async fn finish(self, source: Source) -> impl std::future::Future<Output = ()> {
        let usage = source.usage();
        if let Some(u) = &usage {
            self.state
                .providers
                .observe_usage(&self.provider, &self.model, self.opening, u);
        }
        let cost = usage
            .as_ref()
            .and_then(|u| costing::miss(&self.state, &self.model, u));
        if let Some(tx) = self.stream_end {
            let _ = tx.send(super::traced::StreamEnd {
                usage: usage.clone(),
                cost,
                elapsed: self.started.elapsed(),
            });
        }
        if let Some(cost) = cost {
            let record = costing::miss_record(CacheStatus::Miss, Some(&cost));
            self.state
                .stats
                .add_cost(&self.namespace, self.route, &self.model, &record);
            if self.state.config.admin.fleet_stats {
                self.state
                    .fleet
                    .add_cost(&self.namespace, self.route, &self.model, &record);
            }
        }
        let entry = match source.finish() {
            Ok((body, format)) => {
                let total = usage
                    .as_ref()
                    .and_then(crate::cost::normalize)
                    .map(|n| n.total_tokens);
                let raw_usage = usage
                    .as_ref()
                    .and_then(|u| serde_json::to_vec(u).ok())
                    .map(Bytes::from);
                let cap = self.state.config.cache.max_entry_bytes;
                let kept = self
                    .keep_request
                    .filter(|r| body.len().saturating_add(r.len()) <= cap);
                let mut entry = Entry::new(body, "text/event-stream".into(), self.ttl, total)
                    .with_usage(raw_usage)
                    .with_origin(self.origin.clone(), Some(self.started.elapsed()))
                    .with_request(kept);
                entry.format = format;
                Some(Arc::new(entry))
            }
            Err(why) => {
                tracing::debug!(outcome = why, "stream not cached");
                None
            }
        };
        if let (Some(guard), Some(entry)) = (self.guard, &entry) {
            guard.complete(Outcome::Shared(entry.clone()));
        }
        let store = match (entry, self.key, self.writes && !self.ttl.is_zero()) {
            (Some(entry), Some(key), true) => {
                if let Some(memory) = &self.state.tiers.memory {
                    memory.insert(key, &self.namespace, entry.clone()).await;
                }
                Some((entry, key))
            }
            _ => None,
        };
        let state = self.state;
        let namespace = self.namespace;
        let remember = self.remember;
        let sealing = self.sealing;
        async move {
            if let Some((entry, key)) = store {
                state
                    .tiers
                    .store_shared(key, &namespace, &sealing, &entry)
                    .await;
                if let Some(remember) = remember {
                    remember.run(key, entry.remaining(), &entry).await;
                }
            }
        }
    }
}
