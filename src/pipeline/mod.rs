//! The cached-request flow, shared by every cached endpoint:
//! authenticate → directives → route → mode → key → tiers (L1, L2) →
//! single-flight → provider → cost → store (off the response path) → render,
//! then stats, metrics and one log line per request.
//!
//! Route handlers (`server/`) parse and validate the body, then call [`run`].
//! `forward.rs` talks to the provider; `respond.rs` renders cached answers;
//! `miss.rs` is the upstream leg with coalescing, stale-if-error and storing;
//! `costing.rs` prices responses.

mod adapt;
mod costing;
pub mod direct;
mod embed;
mod forward;
mod judge;
mod miss;
mod refresh;
mod remember;
mod respond;
mod semantic;
mod stream_client;
mod stream_source;
mod streaming;
mod traced;
mod verified;

pub use crate::cache::facts;
pub use crate::cache::namespace::credential_namespace;

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::admin::watermarks::Scope;
use crate::cache::entry::{unix_ms_now, Entry, Origin};
use crate::cache::flight::{self, Outcome, Role};
use crate::cache::key::{custom_key, scoped_key_with, CacheKey, EndpointKind, KeyScope};
use crate::cache::live::LiveStream;
use crate::cache::mode::Mode;
use crate::cache::policy::Directives;
use crate::cache::seal::Sealing;
use crate::cache::ttl::Ttl;
use crate::error::ProxyError;
use crate::providers::routing::{AliasChoice, RouteNote};
use crate::providers::Provider;
use crate::render::{CacheStatus, Tier};
use crate::state::AppState;
use crate::stats::Record;
use facts::BodyFacts;

/// Everything the flow decided about one request.
pub(crate) struct Request {
    pub state: Arc<AppState>,
    pub kind: EndpointKind,
    pub headers: HeaderMap,
    pub provider: Arc<Provider>,
    /// The model as sent upstream (prefix stripped): prices and stats use it.
    pub model: String,
    pub directives: Directives,
    pub mode: Mode,
    /// TTL of a write when no directive sets one (rule TTL or `cache.ttl`).
    pub default_ttl: Ttl,
    pub namespace: String,
    /// How this request's entries are sealed in Redis (`cache.encryption`).
    pub sealing: Sealing,
    /// None when the request is not cacheable (mode off, streams).
    pub key: Option<CacheKey>,
    /// The caller's bytes, forwarded as they are when nothing needs editing.
    pub raw: Bytes,
    /// The body carries reprise's `cache` extension (removed upstream).
    pub has_extension: bool,
    /// `model` named a `provider/` prefix (stripped upstream).
    pub model_prefixed: bool,
    pub streaming: bool,
    /// The client asked for `stream_options.include_usage` (reprise always
    /// asks the provider, and drops the usage chunk for clients that did not).
    pub wants_usage: bool,
    /// The provider dialect (and translation) this request uses.
    pub wire: adapt::Wire,
    /// The semantic tier's part (off unless `semantic.enabled`).
    pub semantic: semantic::Plan,
    /// Digest of the conversation's opening: picks the replica.
    pub affinity: Option<u64>,
    /// How a model alias chose this request's target, if one did.
    pub alias: Option<Arc<AliasChoice>>,
    /// Where the forward step sent the request (set on upstream calls).
    pub route: RouteNote,
    /// When the request started (ms since the epoch): entries it writes are
    /// stamped with this, so a purge during the call still covers them.
    pub requested_at_ms: u64,
    /// Answers kept per key (`x-cache-bucket` or the rule's `bucket_size`).
    pub bucket: u32,
    /// The rule's refresh-ahead (mode `cache` only): entries keep the
    /// request, hits may refresh them.
    pub refresh: Option<crate::cache::refresh::RefreshPolicy>,
}

impl Request {
    /// The bytes to send upstream, built only when the provider is called (a
    /// hit never pays for it): the caller's bytes when nothing changed, else
    /// the edited body, parsed from those bytes into a `Map` that keeps the
    /// caller's key order (serde_json `preserve_order`). Removes the `cache`
    /// extension, strips a `provider/` model prefix, adds
    /// `stream_options.include_usage` for OpenAI streams, translates for
    /// Anthropic, injects prompt-cache fields.
    pub fn payload(&self) -> Result<Bytes, ProxyError> {
        let ask_usage = self.streaming && !self.wants_usage && self.wire == adapt::Wire::OpenAi;
        let edited = self.has_extension || self.model_prefixed;
        if !edited && !ask_usage && !adapt::may_change(self.kind, self.wire, &self.provider) {
            return Ok(self.raw.clone());
        }
        // The route handler validated these bytes as a JSON object already.
        let mut body: Map<String, Value> = serde_json::from_slice(&self.raw)
            .map_err(|e| ProxyError::bad_request(e.to_string(), None))?;
        if self.has_extension {
            body.shift_remove("cache");
        }
        if self.model_prefixed {
            body.insert("model".into(), Value::String(self.model.clone()));
        }
        if ask_usage {
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(o) = options.as_object_mut() {
                o.insert("include_usage".into(), Value::Bool(true));
            }
        }
        let adapted = adapt::prepare_body(
            &self.state,
            self.kind,
            self.wire,
            &self.provider,
            &self.namespace,
            &self.model,
            &mut body,
        )?;
        if !edited && !ask_usage && !adapted {
            return Ok(self.raw.clone());
        }
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| ProxyError::bad_request(e.to_string(), None))
    }

    /// The provider, or `provider/model` when an alias chose it.
    pub fn target_label(&self) -> String {
        match &self.alias {
            Some(_) => format!("{}/{}", self.provider.name, self.model),
            None => self.provider.name.clone(),
        }
    }

    /// What an entry written for this request records about it.
    pub fn origin(&self) -> Origin {
        Origin {
            requested_at_ms: self.requested_at_ms,
            upstream_ms: None,
            namespace: self.namespace.clone(),
            model: self.model.clone(),
            endpoint: self.kind.as_str().to_owned(),
            custom_key: self.directives.key.clone(),
        }
    }

    /// Whether `entry` (found under this request's key) survived every purge.
    pub fn not_purged(&self, key: &CacheKey, entry: &Entry) -> bool {
        let scope = Scope {
            namespace: &self.namespace,
            model: &self.model,
            endpoint: self.kind.as_str(),
            key,
            custom_key: self.directives.key.as_deref(),
        };
        !self
            .state
            .watermarks
            .purged(&scope, entry.origin.requested_at_ms)
    }

    /// Feeds the answer's usage to the `cache_economics` estimates.
    pub fn observe_usage(&self, usage: &Value) {
        self.state
            .providers
            .observe_usage(&self.provider.name, &self.model, self.affinity, usage);
    }

    /// Whether a successful answer may be written.
    pub fn writes(&self) -> bool {
        self.key.is_some() && self.mode.writes() && !self.directives.no_store
    }
}

/// A finished flow: the response and what to record about it.
pub(crate) struct Answer {
    pub response: Response,
    pub record: Record,
    pub upstream: Option<Duration>,
    /// A streamed miss: its usage and cost, once the stream ends (traces).
    pub stream_end: Option<tokio::sync::oneshot::Receiver<traced::StreamEnd>>,
}

impl Answer {
    fn new(response: Response, record: Record) -> Self {
        Answer {
            response,
            record,
            upstream: None,
            stream_end: None,
        }
    }
}

/// Runs the flow; every failure becomes an OpenAI-shaped error response.
/// `raw` is the caller's body; `facts` what its validated parse says.
pub async fn run(
    state: Arc<AppState>,
    kind: EndpointKind,
    headers: HeaderMap,
    raw: Bytes,
    facts: &BodyFacts,
) -> Response {
    let started = Instant::now();
    let route = kind.as_str();
    let render_error = |e: ProxyError| match kind {
        EndpointKind::Messages => e.anthropic_response(),
        _ => e.into_response(),
    };
    let mut request = match prepare(state, kind, headers, raw, facts) {
        Ok(r) => r,
        Err(e) => {
            crate::telemetry::request(
                route,
                e.status().as_u16(),
                "none",
                "none",
                started.elapsed(),
                None,
            );
            return render_error(e);
        }
    };
    if let (true, Some(key)) = (request.bucket > 1, request.key) {
        // Sampled traffic: fill the bucket's next slot, or draw a full one.
        let slot = crate::cache::bucket::choose(
            &request.state.tiers,
            &key,
            &request.namespace,
            &request.sealing,
            request.bucket,
            |k, e| request.not_purged(k, e),
        )
        .await;
        request.key = Some(slot);
    }
    let mut answer = match flow(&request).await {
        Ok(answer) => answer,
        Err(e) => {
            let record = Record {
                error: true,
                ..Record::default()
            };
            Answer::new(render_error(e), record)
        }
    };
    verified::mark_explored(&request, &mut answer);
    let Answer {
        response,
        mut record,
        upstream,
        stream_end,
    } = answer;
    record.error |= !response.status().is_success();
    let status = record.status.map_or("none", CacheStatus::as_str);
    let tier = record.tier.map_or("none", Tier::as_str);
    let total = started.elapsed();
    crate::telemetry::request(
        route,
        response.status().as_u16(),
        status,
        tier,
        total,
        upstream,
    );
    request
        .state
        .stats
        .record(&request.namespace, route, &request.model, &record);
    if request.state.config.admin.fleet_stats {
        request
            .state
            .fleet
            .record(&request.namespace, route, &request.model, &record);
    }
    if let (Some(key), Some(CacheStatus::Hit | CacheStatus::Coalesced | CacheStatus::Stale)) =
        (&request.key, record.status)
    {
        request.state.top.record(
            key,
            &request.namespace,
            &request.model,
            record.usd_saved_cache,
        );
    }
    traced::record(
        &request,
        facts,
        &record,
        response.status().as_u16(),
        upstream,
        stream_end,
    );
    // One line per request. Answers from the cache log at debug (they are the
    // bulk of the traffic and cost nothing); everything that reached a
    // provider or failed logs at info.
    let served_from_cache = upstream.is_none() && !record.error;
    let route_label = request.route.get().map(|r| r.label());
    macro_rules! request_line {
        ($level:ident) => {
            tracing::$level!(
                route,
                model = %crate::telemetry::clip(&request.model),
                provider = %request.provider.name,
                route = route_label.as_deref(),
                http_status = response.status().as_u16(),
                cache_status = status,
                tier,
                upstream_ms = upstream.map(|d| d.as_secs_f64() * 1e3),
                overhead_us = total.saturating_sub(upstream.unwrap_or_default()).as_micros() as u64,
                "request"
            )
        };
    }
    if served_from_cache {
        request_line!(debug);
    } else {
        request_line!(info);
    }
    response
}

/// The upstream leg, streaming or not.
async fn upstream(
    request: &Request,
    status: CacheStatus,
    stale: Option<(Arc<Entry>, Tier)>,
    guard: Option<flight::LeaderGuard>,
    live: Option<Arc<LiveStream>>,
    observed: Record,
) -> Result<Answer, ProxyError> {
    if request.streaming {
        let live = live.unwrap_or_else(LiveStream::new);
        return streaming::lead(request, status, stale, guard, live).await;
    }
    miss::forward_and_store(request, status, stale, guard, observed).await
}

async fn flow(request: &Request) -> Result<Answer, ProxyError> {
    let Some(key) = request.key else {
        return upstream(
            request,
            CacheStatus::Bypass,
            None,
            None,
            None,
            Record::default(),
        )
        .await;
    };
    let state = &request.state;

    let mut record = Record::default();
    let mut stale: Option<(Arc<Entry>, Tier)> = None;
    let reads = request.mode.reads() && !request.directives.no_cache;
    if reads {
        let found = state
            .tiers
            .lookup(
                &key,
                &request.namespace,
                &request.sealing,
                request.directives.max_age,
                |e| request.not_purged(&key, e),
            )
            .await;
        if let Some((entry, tier)) = found.fresh.filter(|(e, _)| respond::compatible(request, e)) {
            if request.mode.serves() {
                let cost = costing::hit(state, &request.model, &entry);
                let record =
                    costing::hit_record(CacheStatus::Hit, Some(tier), &entry, cost.as_ref());
                let response =
                    respond::cached(request, &entry, CacheStatus::Hit, Some(tier), cost.as_ref());
                refresh::after_hit(request, key, &entry, tier);
                return Ok(Answer::new(response, record));
            }
            // Observe: record what serving it would have saved, then go upstream.
            record.would_hit = true;
            record.would_save_usd =
                costing::hit(state, &request.model, &entry).map_or(0.0, |c| c.cache_savings_usd);
        }
        stale = found.stale.filter(|(e, _)| respond::compatible(request, e));
        if !record.would_hit {
            match semantic::lookup(request).await {
                semantic::Found::Hit(answer) => return Ok(*answer),
                semantic::Found::WouldHit(saved) => {
                    record.would_hit = true;
                    record.would_save_usd = saved;
                }
                semantic::Found::Nothing => {}
            }
        }
    }
    if request.directives.only_if_cached {
        return Err(ProxyError::NotCached);
    }
    let status = if reads {
        CacheStatus::Miss
    } else {
        CacheStatus::Bypass
    };
    if !state.config.cache.single_flight.enabled || !request.mode.serves() {
        return upstream(request, status, stale, None, None, record).await;
    }

    // Single-flight: lead, or follow an identical miss in progress (a stream
    // follower of a streaming leader reads the live bytes). A failed leader is
    // not copied: followers re-join once, so one of them retries.
    let wait_timeout = state.config.cache.single_flight.wait_timeout;
    let mut rejoined = false;
    loop {
        let live = request.streaming.then(LiveStream::new);
        let slot = match state.flights.join(key, live.clone()) {
            Role::Leader(guard) => {
                return upstream(request, status, stale, Some(guard), live, record).await
            }
            Role::Follower(slot) => slot,
        };
        if let (true, Some(live)) = (request.streaming, &slot.live) {
            return Ok(streaming::follow(request, live));
        }
        match flight::wait(slot, wait_timeout).await {
            Some(Outcome::Shared(entry)) if respond::compatible(request, &entry) => {
                let cost = costing::hit(state, &request.model, &entry);
                let record =
                    costing::hit_record(CacheStatus::Coalesced, None, &entry, cost.as_ref());
                let response =
                    respond::cached(request, &entry, CacheStatus::Coalesced, None, cost.as_ref());
                return Ok(Answer::new(response, record));
            }
            Some(Outcome::Failed(_)) if !rejoined => rejoined = true,
            Some(Outcome::Failed(Some(reply))) => {
                let record = Record {
                    status: Some(CacheStatus::Coalesced),
                    error: true,
                    ..Record::default()
                };
                return Ok(Answer::new(respond::failed(&reply, &key), record));
            }
            _ => return upstream(request, status, stale, None, None, record).await,
        }
    }
}

/// Authentication, directives, routing, mode, namespace, key and payload.
fn prepare(
    state: Arc<AppState>,
    kind: EndpointKind,
    headers: HeaderMap,
    raw: Bytes,
    facts: &BodyFacts,
) -> Result<Request, ProxyError> {
    let requested_at_ms = unix_ms_now();
    let credential = state.authenticate(&headers)?;
    let max_name = state.config.limits.max_name_bytes;
    if facts.model.len() > max_name {
        return Err(ProxyError::bad_request(
            format!("`model` is longer than {max_name} bytes"),
            Some("model"),
        ));
    }
    let directives = facts.directives.clone().with_headers(&headers)?;

    let (route, alias) = match state.providers.aliases.get(&facts.model) {
        Some(alias) => {
            // ~4 bytes per token: only relative costs matter.
            let prompt_tokens = (raw.len() / 4) as u64;
            let (target, choice) = alias.choose(
                &state.pricing,
                &state.providers.economics,
                facts.opening,
                prompt_tokens,
            );
            let route = crate::providers::Route {
                provider: target.provider.clone(),
                stripped_model: Some(target.model.clone()),
            };
            (route, Some(Arc::new(choice)))
        }
        None => (state.providers.route(&facts.model)?, None),
    };
    let model_prefixed = route.stripped_model.is_some();
    let upstream_model = route
        .stripped_model
        .clone()
        .unwrap_or_else(|| facts.model.clone());
    let namespace = state.namespace(credential.as_deref(), directives.namespace.as_deref());
    let sealing = state.sealing(credential.as_deref());
    let policy = state.policies.for_model(&upstream_model);
    let bucket = match bucket_header(&headers)? {
        Some(n) => n,
        None => policy.bucket_size.unwrap_or(1),
    }
    .clamp(1, crate::cache::bucket::MAX_BUCKET);
    let mode = if state.config.cache.enabled {
        policy.mode
    } else {
        Mode::Off
    };

    let cacheable = mode != Mode::Off;
    let key = cacheable.then(|| {
        // An alias's targets answer as one model: their entries are shared,
        // whichever target wrote them.
        let scope = match &alias {
            Some(a) => KeyScope {
                namespace: &namespace,
                kind,
                provider: "alias/",
                model: &a.name,
            },
            None => KeyScope {
                namespace: &namespace,
                kind,
                provider: &route.provider.name,
                model: &upstream_model,
            },
        };
        match &directives.key {
            Some(custom) => custom_key(&scope, custom, state.config.cache.custom_key_scope),
            // The forwarded headers that can change the answer, from the
            // same list that forwards them.
            None => scoped_key_with(&scope, &facts.digest, |sink| {
                route
                    .provider
                    .answer_headers(&headers, |name, value| sink(name, value.as_bytes()))
            }),
        }
    });

    let wire = adapt::wire(kind, &route.provider)?;
    let semantic = if cacheable {
        semantic::Plan::new(
            &state,
            &upstream_model,
            policy.semantic,
            kind,
            &directives,
            bucket,
        )
    } else {
        semantic::Plan::default()
    };
    Ok(Request {
        semantic,
        default_ttl: policy.ttl.unwrap_or(state.config.cache.ttl),
        state,
        kind,
        headers,
        provider: route.provider,
        model: upstream_model,
        directives,
        mode,
        namespace,
        sealing,
        key,
        raw,
        has_extension: facts.has_extension,
        model_prefixed,
        streaming: facts.streaming,
        wants_usage: facts.wants_usage,
        wire,
        affinity: facts.opening,
        alias,
        route: RouteNote::default(),
        requested_at_ms,
        bucket,
        refresh: policy.refresh.filter(|_| mode == Mode::Cache),
    })
}

/// `x-cache-bucket: N` (1 = off; clamped to `bucket::MAX_BUCKET`).
fn bucket_header(headers: &HeaderMap) -> Result<Option<u32>, ProxyError> {
    let Some(value) = headers.get("x-cache-bucket") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX)))
        .ok_or_else(|| {
            ProxyError::bad_request(
                "x-cache-bucket must be a whole number of answers to keep (1-32)",
                None,
            )
        })
}
