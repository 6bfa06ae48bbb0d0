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
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::{costing, forward, Answer, Request};
use crate::cache::entry::{BodyFormat, Entry};
use crate::cache::flight::{FailedReply, LeaderGuard, Outcome};
use crate::cache::live::{LiveEnd, LiveReader, LiveStream, Next};
use crate::config::StreamDisconnect;
use crate::error::ProxyError;
use crate::render::{self, CacheStatus};
use crate::stats::Record;
use crate::stream::{chunk_event, client_event, ChatStreamRecorder, SseEvent, SseParser};
use crate::upstream::{self, Deadline};

/// Builds the `routing_metadata` for the end of a stream, given its usage.
pub type MetaFn = Box<dyn Fn(Option<&Value>) -> Value + Send>;

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
    let response = match forward::send(request, deadline).await {
        Ok(r) => r,
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
        let body = upstream::read_body(&request.provider, response, deadline).await?;
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
        });
    }

    // The leader's own reader exists before the pump starts, so "cancel on
    // disconnect" never sees zero readers by accident.
    let reader = live.reader();
    let pump = Pump {
        state: state.clone(),
        live: live.clone(),
        guard,
        key: request.key,
        namespace: request.namespace.clone(),
        model: request.model.clone(),
        route: request.kind.as_str(),
        ttl: request.directives.write_ttl(request.default_ttl),
        writes: request.writes(),
        idle_timeout: state.config.server.upstream_timeout,
        cancel_on_disconnect: state.config.cache.stream_on_disconnect == StreamDisconnect::Cancel,
    };
    tokio::spawn(pump.run(response));

    let provider = request.provider.name.clone();
    let model = request.model.clone();
    let meta_state = state.clone();
    let meta: MetaFn = Box::new(move |usage| {
        let cost = usage.and_then(|u| costing::miss(&meta_state, &model, u));
        serde_json::json!({"provider": provider, "cache": {"status": status}, "cost": cost})
    });
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let body = client_body(reader, request.wants_usage, meta);
    Ok(Answer {
        response: render::response(StatusCode::OK, headers, body, Some("text/event-stream")),
        record: Record {
            status: Some(status),
            ..Record::default()
        },
        upstream: Some(started.elapsed()),
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
    let body = client_body(live.reader(), request.wants_usage, meta);
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
    model: String,
    route: &'static str,
    ttl: crate::cache::ttl::Ttl,
    writes: bool,
    idle_timeout: std::time::Duration,
    cancel_on_disconnect: bool,
}

impl Pump {
    async fn run(self, response: reqwest::Response) {
        let mut body = response.bytes_stream();
        let mut parser = SseParser::new();
        let mut recorder = ChatStreamRecorder::new(self.state.config.cache.max_entry_bytes);
        loop {
            match tokio::time::timeout(self.idle_timeout, body.next()).await {
                Ok(Some(Ok(bytes))) => {
                    let mut done = false;
                    for event in parser.push(&bytes) {
                        done |= event.is_done();
                        recorder.observe(&event);
                    }
                    if done {
                        // Store before releasing `[DONE]`, so a client that
                        // asks again right after the stream finds the entry.
                        recorder.observe_end(&parser.finish());
                        let live = self.live.clone();
                        let finished = self.finish(recorder).await;
                        live.push(bytes);
                        live.end(LiveEnd::Complete);
                        finished.await;
                        return;
                    }
                    self.live.push(bytes);
                    if self.cancel_on_disconnect && self.live.readers() == 0 {
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
                    metrics::counter!("reprise_upstream_errors_total", "kind" => "stream_idle")
                        .increment(1);
                    self.live.end(LiveEnd::Broken);
                    return;
                }
            }
        }
        // The body ended without `[DONE]`: forwarded as is, never stored.
        recorder.observe_end(&parser.finish());
        let live = self.live.clone();
        let finished = self.finish(recorder).await;
        live.end(LiveEnd::Complete);
        finished.await;
    }

    /// Prices the stream, hands a complete one to the flight's followers and
    /// the memory tier; returns the (slower) shared-tier write to run after
    /// the client has its last bytes.
    async fn finish(self, recorder: ChatStreamRecorder) -> impl std::future::Future<Output = ()> {
        let outcome = recorder.outcome();
        let usage = recorder.usage().cloned();
        if let Some(cost) = usage
            .as_ref()
            .and_then(|u| costing::miss(&self.state, &self.model, u))
        {
            let record = costing::miss_record(CacheStatus::Miss, Some(&cost));
            self.state
                .stats
                .add_cost(&self.namespace, self.route, &self.model, &record);
        }
        let entry = recorder.into_stored().and_then(|stored| {
            let body = serde_json::to_vec(&stored).ok()?;
            let total = usage
                .as_ref()
                .and_then(|u| u.get("total_tokens"))
                .and_then(Value::as_u64);
            let raw_usage = usage
                .as_ref()
                .and_then(|u| serde_json::to_vec(u).ok())
                .map(Bytes::from);
            let mut entry = Entry::new(
                Bytes::from(body),
                "text/event-stream".into(),
                self.ttl,
                total,
            )
            .with_usage(raw_usage);
            entry.format = BodyFormat::Stream;
            Some(Arc::new(entry))
        });
        if entry.is_none() {
            tracing::debug!(outcome = outcome.as_str(), "stream not cached");
        }
        if let (Some(guard), Some(entry)) = (self.guard, &entry) {
            guard.complete(Outcome::Shared(entry.clone()));
        }
        let store = match (entry, self.key, self.writes && !self.ttl.is_zero()) {
            (Some(entry), Some(key), true) => {
                if let Some(memory) = &self.state.tiers.memory {
                    memory.insert(key, entry.clone()).await;
                }
                Some((entry, key))
            }
            _ => None,
        };
        let state = self.state;
        let namespace = self.namespace;
        async move {
            if let Some((entry, key)) = store {
                state.tiers.store_shared(key, &namespace, &entry).await;
            }
        }
    }
}

/// One client's view of a live stream: the upstream events as they come,
/// minus what reprise added (usage the client did not ask for), with
/// `routing_metadata` on the final chunk. A broken upstream ends the body
/// with an error, so the client sees a cut stream, never a clean short one.
pub fn client_body(reader: LiveReader, wants_usage: bool, meta: MetaFn) -> Body {
    struct State {
        reader: LiveReader,
        parser: SseParser,
        wants_usage: bool,
        pending: Option<SseEvent>,
        usage: Option<Value>,
        meta: MetaFn,
        done: bool,
    }
    let state = State {
        reader,
        parser: SseParser::new(),
        wants_usage,
        pending: None,
        usage: None,
        meta,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            match s.reader.next().await {
                Next::Chunks(chunks) => {
                    let mut out = BytesMut::new();
                    for chunk in chunks {
                        for event in s.parser.push(&chunk) {
                            forward_event(
                                &mut s.pending,
                                &mut s.usage,
                                s.wants_usage,
                                &s.meta,
                                event,
                                &mut out,
                            );
                        }
                    }
                    if !out.is_empty() {
                        return Some((Ok::<Bytes, std::io::Error>(out.freeze()), s));
                    }
                }
                Next::End(end) => {
                    s.done = true;
                    let flushed = s
                        .pending
                        .take()
                        .and_then(|p| client_event(&p, s.wants_usage));
                    return match (end, flushed) {
                        (LiveEnd::Complete, Some(bytes)) => Some((Ok(bytes), s)),
                        (LiveEnd::Complete, None) => None,
                        (LiveEnd::Broken, _) => Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "upstream stream cut",
                            )),
                            s,
                        )),
                    };
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// Forwards one event, holding back the final-looking chunk (a finish or
/// usage chunk) until the next event shows whether it was the last.
fn forward_event(
    pending: &mut Option<SseEvent>,
    usage: &mut Option<Value>,
    wants_usage: bool,
    meta: &MetaFn,
    event: SseEvent,
    out: &mut BytesMut,
) {
    if event.is_done() {
        if let Some(last) = pending.take() {
            let with_meta = parse_chunk(&last)
                .and_then(|chunk| chunk_event(&chunk, wants_usage, Some(&meta(usage.as_ref()))));
            if let Some(bytes) = with_meta.or_else(|| client_event(&last, wants_usage)) {
                out.extend_from_slice(&bytes);
            }
        }
        out.extend_from_slice(&event.raw);
        return;
    }
    let usage_chunk = has_member(&event.data, "usage", b'{');
    if usage_chunk {
        if let Some(u) = parse_chunk(&event)
            .and_then(|c| c.get("usage").cloned())
            .filter(|u| !u.is_null())
        {
            *usage = Some(u);
        }
    }
    let Some(forwarded) = client_event(&event, wants_usage) else {
        return;
    };
    let holdable = usage_chunk || has_member(&event.data, "finish_reason", b'"');
    if let Some(previous) = pending.take() {
        if let Some(bytes) = client_event(&previous, wants_usage) {
            out.extend_from_slice(&bytes);
        }
    }
    if holdable {
        *pending = Some(event);
    } else {
        out.extend_from_slice(&forwarded);
    }
}

fn parse_chunk(event: &SseEvent) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(&event.data) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Whether JSON text has `"name":` followed by a value starting with `first`
/// (quotes inside JSON strings are escaped, so this cannot match content).
fn has_member(data: &str, name: &str, first: u8) -> bool {
    let pattern = format!("\"{name}\":");
    data.match_indices(&pattern).any(|(at, p)| {
        data.as_bytes()[at + p.len()..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == first)
    })
}

#[cfg(test)]
mod tests {
    use super::has_member;

    #[test]
    fn member_detection_ignores_string_content() {
        assert!(has_member(
            r#"{"choices":[{"finish_reason":"stop"}]}"#,
            "finish_reason",
            b'"'
        ));
        assert!(has_member(
            r#"{"finish_reason": "stop"}"#,
            "finish_reason",
            b'"'
        ));
        assert!(!has_member(
            r#"{"finish_reason":null}"#,
            "finish_reason",
            b'"'
        ));
        assert!(!has_member(
            r#"{"content":"say \"finish_reason\":\"x\""}"#,
            "finish_reason",
            b'"'
        ));
        assert!(has_member(
            r#"{"choices":[],"usage":{"total_tokens":3}}"#,
            "usage",
            b'{'
        ));
        assert!(!has_member(r#"{"usage":null}"#, "usage", b'{'));
    }
}
