//! A stored response and what reprise needs to know about it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::Instant;

use super::ttl::Ttl;

/// What `Entry::body` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A complete JSON response body, exactly as the provider sent it.
    Json,
    /// A recorded OpenAI chat stream (JSON of `stream::StoredStream`).
    Stream,
    /// A recorded Anthropic Messages stream: the SSE bytes as received.
    AnthropicSse,
}

/// One cached upstream response (always a complete 2xx response).
#[derive(Debug, Clone)]
pub struct Entry {
    pub format: BodyFormat,
    /// The stored body (without reprise's metadata).
    pub body: Bytes,
    pub content_type: String,
    /// Wall-clock write time, milliseconds since the Unix epoch (shared tiers).
    pub written_at_ms: u64,
    /// Monotonic write time on this instance; drives expiry, so TTL logic is
    /// testable with paused tokio time. For entries read from Redis it is
    /// reconstructed from `written_at_ms`.
    pub stored_at: Instant,
    pub ttl: Ttl,
    /// `usage.total_tokens` of the original call, when the provider sent it.
    pub total_tokens: Option<u64>,
    /// The original call's `usage` object (raw JSON), for the hit's cost.
    pub usage: Option<Bytes>,
    /// Where the entry came from (stored in Redis): what purges match on.
    pub origin: Origin,
    /// The caller's request body, kept (inside the stored value) only for
    /// rules with `refresh_ahead`: what a refresh replays.
    pub request: Option<Bytes>,
    /// What hits derive from the stored fields, computed on first use.
    pub derived: Derived,
}

/// What an entry was an answer to, kept with it so purges can match it
/// (`admin::purge`) and hits can report the latency they saved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// When the request that produced the entry started (ms since the Unix
    /// epoch). Purge watermarks compare this, not the write time, so an
    /// answer in flight during a purge cannot bring purged content back.
    pub requested_at_ms: u64,
    /// How long the provider took to answer (what a hit saves), if known.
    pub upstream_ms: Option<u64>,
    pub namespace: String,
    pub model: String,
    /// `EndpointKind::as_str` of the route.
    pub endpoint: String,
    /// The caller's custom key (`x-cache-key`), for custom-key purge globs.
    pub custom_key: Option<String>,
}

/// Values derived from an entry's stored fields on the first hit that needs
/// them, then reused by every later hit (never stored in Redis).
#[derive(Debug, Default, Clone)]
pub struct Derived {
    /// The hit's cost (prices are fixed for the process), for the model it
    /// was computed for (custom keys can mix models).
    pub hit_cost: OnceLock<(String, Option<crate::cost::Cost>)>,
    /// Where a stored stream's chunks are in `body` (None: not a stored stream).
    pub stream_layout: OnceLock<Option<Arc<crate::stream::StreamLayout>>>,
    /// A stored stream assembled into a `chat.completion`, for non-stream
    /// requests (not weighed: it only exists for streams also read as JSON).
    pub assembled: OnceLock<Bytes>,
    /// The stored usage, normalized (hit prices and trace token counts).
    pub usage: OnceLock<Option<crate::cost::NormalizedUsage>>,
}

impl Entry {
    /// `body` is copied into an allocation of exactly its size: a `Bytes`
    /// from the HTTP client is often a slice of a much larger read buffer, and
    /// keeping the slice would keep (and hide from the byte bound) the whole
    /// buffer for the entry's lifetime.
    pub fn new(body: Bytes, content_type: String, ttl: Ttl, total_tokens: Option<u64>) -> Self {
        let now_ms = unix_ms_now();
        Entry {
            format: BodyFormat::Json,
            body: Bytes::copy_from_slice(&body),
            content_type,
            written_at_ms: now_ms,
            stored_at: Instant::now(),
            ttl,
            total_tokens,
            usage: None,
            origin: Origin {
                requested_at_ms: now_ms,
                ..Origin::default()
            },
            request: None,
            derived: Derived::default(),
        }
    }

    /// Keeps the request the entry answers (refresh-ahead), in an
    /// allocation of its own size.
    pub fn with_request(mut self, request: Option<Bytes>) -> Self {
        self.request = request.map(|r| Bytes::copy_from_slice(&r));
        self
    }

    pub fn with_usage(mut self, usage: Option<Bytes>) -> Self {
        self.usage = usage.map(|u| Bytes::copy_from_slice(&u));
        self
    }

    /// Records the request the entry answers; `upstream` is how long the
    /// provider took.
    pub fn with_origin(mut self, origin: Origin, upstream: Option<Duration>) -> Self {
        self.origin = Origin {
            upstream_ms: upstream.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ..origin
        };
        self
    }

    pub fn age(&self) -> Duration {
        self.stored_at.elapsed()
    }

    /// False once the TTL has passed.
    pub fn is_fresh(&self) -> bool {
        match self.ttl.duration() {
            Some(ttl) => self.age() < ttl,
            None => true,
        }
    }

    /// True while the entry may still be served as `stale` (TTL + grace).
    pub fn is_servable_stale(&self, grace: Duration) -> bool {
        match self.ttl.duration() {
            Some(ttl) => self.age() < super::ttl::add(ttl, grace),
            None => true,
        }
    }

    /// Time left before expiry (None = forever).
    pub fn remaining(&self) -> Option<Duration> {
        self.ttl
            .duration()
            .map(|ttl| ttl.saturating_sub(self.age()))
    }

    /// Time left before the entry must be dropped: remaining TTL plus the
    /// stale grace (None = forever). Never overflows (both are clamped).
    pub fn keep_for(&self, grace: Duration) -> Option<Duration> {
        self.remaining().map(|r| super::ttl::add(r, grace))
    }

    /// Bytes this entry costs in memory, for the byte-bounded tier: its
    /// buffers plus a fixed overhead per entry (the struct, the cache's own
    /// bookkeeping — hash table, LRU and timer-wheel nodes — and allocator
    /// slack), measured with the load bench's L1-fill scenario.
    pub fn weight(&self) -> u32 {
        let usage =
            self.usage.as_ref().map_or(0, Bytes::len) + self.request.as_ref().map_or(0, Bytes::len);
        let o = &self.origin;
        let origin = o.namespace.len()
            + o.model.len()
            + o.endpoint.len()
            + o.custom_key.as_ref().map_or(0, String::len);
        let bytes = self.body.len() + usage + self.content_type.len() + origin + ENTRY_OVERHEAD;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// Per-entry memory beyond the buffers, in bytes (see `Entry::weight`).
pub const ENTRY_OVERHEAD: usize = 800;

pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
