//! Prometheus metrics: one process-wide recorder (installed once), rendered
//! by `GET /metrics`. Labels stay low-cardinality: route, status class, cache
//! status, tier, provider — never keys, namespaces or models from callers.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::percpu::PerThread;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder on first call; later calls reuse it. None if another
/// recorder was installed first (metrics then go there).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// Drains histogram samples into their buckets every few seconds: the
/// exporter buffers raw samples until then, so without this (and without
/// scrapes) memory would grow with traffic. Call once per runtime.
pub fn spawn_upkeep() {
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if STARTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    if let Some(handle) = handle() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                flush();
                handle.run_upkeep();
            }
        });
    }
}

fn describe() {
    metrics::describe_counter!(
        "reprise_requests_total",
        "Requests by route, HTTP status class, cache status and tier"
    );
    metrics::describe_histogram!("reprise_request_duration_seconds", "Total request latency");
    metrics::describe_histogram!(
        "reprise_overhead_seconds",
        "Latency added by reprise: total minus time waiting on the provider"
    );
    metrics::describe_histogram!(
        "reprise_upstream_duration_seconds",
        "Time waiting on the provider"
    );
    metrics::describe_counter!(
        "reprise_upstream_errors_total",
        "Provider failures by provider and kind"
    );
    metrics::describe_counter!(
        "reprise_tokens_saved_total",
        "Tokens not sent to providers thanks to the cache"
    );
    metrics::describe_counter!(
        "reprise_saved_microusd_total",
        "Micro-USD saved, by source (cache = reprise's cache, provider_cache = prompt caching)"
    );
    metrics::describe_counter!(
        "reprise_spent_microusd_total",
        "Micro-USD spent on provider calls"
    );
    metrics::describe_counter!(
        "reprise_unpriced_model_total",
        "Responses for models missing from the price table"
    );
    metrics::describe_counter!(
        "reprise_redis_errors_total",
        "Failed or timed-out Redis operations"
    );
    metrics::describe_gauge!(
        "reprise_redis_breaker_open",
        "1 while the Redis circuit breaker is open"
    );
    metrics::describe_counter!(
        "reprise_redis_corrupt_entries_total",
        "Undecodable Redis values (treated as misses)"
    );
    metrics::describe_counter!(
        "reprise_cache_oversized_total",
        "Responses served but too large to store"
    );
    metrics::describe_counter!(
        "reprise_refresh_total",
        "Refresh-ahead attempts by outcome (refreshed, failed, over_budget, skipped)"
    );
    metrics::describe_gauge!("reprise_cache_entries", "Entries in the memory tier");
    metrics::describe_gauge!("reprise_cache_bytes", "Bytes held by the memory tier");
}

const ROUTES: [&str; 4] = ["chat", "embeddings", "messages", "other"];
const CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "other"];
const CACHE: [&str; 6] = ["hit", "miss", "bypass", "coalesced", "stale", "none"];
const TIERS: [&str; 3] = ["memory", "redis", "none"];

fn index(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or(names.len() - 1)
}

/// Metric handles resolved once per label set: the registry lookup (hashing
/// the name and labels) then happens once, not on every request.
static REQUESTS: [OnceLock<metrics::Counter>; 4 * 4 * 6 * 3] =
    [const { OnceLock::new() }; 4 * 4 * 6 * 3];
static DURATION: [OnceLock<metrics::Histogram>; 4] = [const { OnceLock::new() }; 4];
static OVERHEAD: [OnceLock<metrics::Histogram>; 4] = [const { OnceLock::new() }; 4];
static UPSTREAM: [OnceLock<metrics::Histogram>; 4] = [const { OnceLock::new() }; 4];

/// Records one finished request. The counter and the three histograms are
/// first written to the calling thread's buffer (`percpu`): the recorder's
/// handles are atomics shared by every core, so writing them per request
/// would make every request on every core write the same cache lines. A
/// thread's buffer goes to the recorder every [`FLUSH_EVERY`] requests, and
/// every thread's buffer before `/metrics` renders ([`flush`]) and on upkeep.
pub fn request(
    route: &'static str,
    http_status: u16,
    cache_status: &'static str,
    tier: &'static str,
    total: Duration,
    upstream: Option<Duration>,
) {
    let class = match http_status {
        200..=299 => 0,
        400..=499 => 1,
        500..=599 => 2,
        _ => 3,
    };
    let (r, c, t) = (
        index(&ROUTES, route),
        index(&CACHE, cache_status),
        index(&TIERS, tier),
    );
    let slot = ((r * 4 + class) * 6 + c) * 3 + t;
    let overhead = total.saturating_sub(upstream.unwrap_or_default());
    PENDING.with(|p| {
        if p.requests.is_empty() {
            p.requests = vec![0; REQUESTS.len()];
        }
        if let Some(n) = p.requests.get_mut(slot) {
            *n += 1;
        }
        p.samples.push(Sample {
            route: r,
            total: total.as_secs_f64(),
            overhead: overhead.as_secs_f64(),
            upstream: upstream.map(|d| d.as_secs_f64()),
        });
        if p.samples.len() >= FLUSH_EVERY {
            p.flush();
        }
    });
}

/// Counters added on the request path besides `reprise_requests_total`,
/// buffered per thread like it.
#[derive(Debug, Clone, Copy)]
pub enum Tally {
    TokensSaved,
    /// Micro-USD saved by reprise's cache.
    SavedCache,
    /// Micro-USD spent on provider calls.
    Spent,
    /// Micro-USD saved by the provider's prompt cache.
    SavedProvider,
}

/// Adds `n` to a request-path counter (see [`request`] for the buffering).
pub fn add(what: Tally, n: u64) {
    if n == 0 {
        return;
    }
    PENDING.with(|p| p.tallies[what as usize] += n);
}

/// Requests a thread buffers before writing them to the recorder.
pub const FLUSH_EVERY: usize = 256;

struct Sample {
    route: usize,
    total: f64,
    overhead: f64,
    upstream: Option<f64>,
}

/// One thread's metrics not yet in the recorder.
#[derive(Default)]
struct Pending {
    /// Per `REQUESTS` slot (allocated on first use).
    requests: Vec<u64>,
    samples: Vec<Sample>,
    /// Indexed by [`Tally`].
    tallies: [u64; 4],
}

static PENDING: std::sync::LazyLock<PerThread<Pending>> =
    std::sync::LazyLock::new(PerThread::default);

impl Pending {
    fn flush(&mut self) {
        for (slot, n) in self.requests.iter_mut().enumerate() {
            if *n == 0 {
                continue;
            }
            let (rest, t) = (slot / 3, slot % 3);
            let (rest, c) = (rest / 6, rest % 6);
            let (r, class) = (rest / 4, rest % 4);
            if let Some(cell) = REQUESTS.get(slot) {
                cell.get_or_init(|| {
                    metrics::counter!("reprise_requests_total",
                        "route" => ROUTES[r], "status" => CLASSES[class], "cache" => CACHE[c], "tier" => TIERS[t])
                })
                .increment(*n);
            }
            *n = 0;
        }
        let [tokens, saved_cache, spent, saved_provider] = std::mem::take(&mut self.tallies);
        if tokens > 0 {
            metrics::counter!("reprise_tokens_saved_total").increment(tokens);
        }
        if saved_cache > 0 {
            metrics::counter!("reprise_saved_microusd_total", "source" => "cache")
                .increment(saved_cache);
        }
        if spent > 0 {
            metrics::counter!("reprise_spent_microusd_total").increment(spent);
        }
        if saved_provider > 0 {
            metrics::counter!("reprise_saved_microusd_total", "source" => "provider_cache")
                .increment(saved_provider);
        }
        for s in self.samples.drain(..) {
            let route = ROUTES[s.route];
            DURATION[s.route]
                .get_or_init(
                    || metrics::histogram!("reprise_request_duration_seconds", "route" => route),
                )
                .record(s.total);
            OVERHEAD[s.route]
                .get_or_init(|| metrics::histogram!("reprise_overhead_seconds", "route" => route))
                .record(s.overhead);
            if let Some(up) = s.upstream {
                UPSTREAM[s.route]
                    .get_or_init(|| {
                        metrics::histogram!("reprise_upstream_duration_seconds", "route" => route)
                    })
                    .record(up);
            }
        }
    }
}

/// Writes every thread's buffered request metrics to the recorder (before a
/// render, so `/metrics` counts every finished request).
pub fn flush() {
    PENDING.drain(|mut p| p.flush());
}

/// Longest caller-supplied text written into one log field, in bytes.
pub const MAX_LOG_FIELD: usize = 200;

/// `text` cut to [`MAX_LOG_FIELD`] bytes (on a char boundary) with a `…`
/// marker, so no caller input can make a log line large.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_LOG_FIELD {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = MAX_LOG_FIELD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &text[..end]))
}

#[cfg(test)]
mod clip_tests {
    use super::*;

    #[test]
    fn clips_long_fields_on_char_boundaries() {
        assert_eq!(clip("gpt-4o"), "gpt-4o");
        let long = "é".repeat(500);
        let c = clip(&long);
        assert!(c.len() <= MAX_LOG_FIELD + "…".len());
        assert!(c.ends_with('…'));
    }
}
