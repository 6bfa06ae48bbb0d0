//! `[limits]`: caps and deadlines (applied by `crate::limits`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::humantime_serde_compat;

/// Caps and deadlines on what callers and providers can make reprise hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest upstream JSON answer read, in bytes; a bigger one is a 502.
    /// (Answers above `cache.max_entry_bytes` are served but not stored.)
    pub max_response_bytes: usize,
    /// Largest single SSE event of an upstream stream; an event growing past
    /// it ends the stream with an error (never buffered without bound).
    pub max_sse_event_bytes: usize,
    /// Total time a stream may take from request to last byte.
    #[serde(with = "humantime_serde_compat")]
    pub stream_deadline: Duration,
    /// Longest `model` name (and other caller-chosen names), in bytes; longer
    /// is a 400.
    pub max_name_bytes: usize,
    /// Time a client has to send a complete request head (HTTP/1); an idle
    /// keep-alive connection is closed after it too.
    #[serde(with = "humantime_serde_compat")]
    pub header_read_timeout: Duration,
    /// Time a client has to send the whole request body; past it: 408.
    #[serde(with = "humantime_serde_compat")]
    pub body_read_timeout: Duration,
    /// Open client connections; one more is answered 503 and closed at once.
    pub max_connections: usize,
    /// Requests being handled (streams until their last byte); one more is
    /// answered 503 with `Retry-After` (load shedding).
    pub max_in_flight: usize,
    /// Open MCP GET streams (`/mcp/{NAME}` server-to-client messages, open
    /// for a whole session); counted here instead of in `max_in_flight`, so
    /// idle MCP listeners cannot shed real traffic. One more: 503.
    pub max_mcp_streams: usize,
    /// The `Retry-After` of a shed request (whole seconds, at least 1).
    #[serde(with = "humantime_serde_compat")]
    pub shed_retry_after: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_response_bytes: 128 * 1024 * 1024,
            max_sse_event_bytes: 1024 * 1024,
            stream_deadline: Duration::from_secs(30 * 60),
            max_name_bytes: 400,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_in_flight: 1024,
            max_mcp_streams: 256,
            shed_retry_after: Duration::from_secs(1),
        }
    }
}
