//! Reporting one MCP request: stats (`/v1/cache/stats` cache types
//! `mcp_list_tools` and `mcp_call`), Prometheus counters and a log line
//! naming the server, method, tool and cache status — never the arguments.

use std::time::Duration;

use super::policy::CacheType;
use crate::render::{CacheStatus, Tier};
use crate::stats::{Record, Stats};

pub fn describe_metrics() {
    metrics::describe_counter!(
        "reprise_mcp_requests_total",
        "Cacheable MCP requests (tools/list, tools/call) by cache type, status and tier"
    );
    metrics::describe_counter!(
        "reprise_mcp_latency_saved_ms_total",
        "Upstream MCP latency (ms) not waited for thanks to cache hits, by cache type"
    );
}

pub struct Outcome<'a> {
    pub namespace: &'a str,
    pub server: &'a str,
    pub kind: CacheType,
    pub tool: Option<&'a str>,
    pub status: CacheStatus,
    pub tier: Option<Tier>,
    /// Hits: what the original upstream call took.
    pub saved: Option<Duration>,
    pub error: bool,
}

pub fn record(stats: &Stats, o: &Outcome<'_>) {
    let saved_ms = o
        .saved
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    stats.record(
        o.namespace,
        o.kind.as_str(),
        &format!("mcp/{}", o.server),
        &Record {
            status: Some(o.status),
            tier: o.tier,
            error: o.error,
            latency_saved_ms: saved_ms,
            ..Record::default()
        },
    );
    let tier = o.tier.map_or("none", Tier::as_str);
    metrics::counter!("reprise_mcp_requests_total",
        "type" => o.kind.as_str(), "cache" => o.status.as_str(), "tier" => tier)
    .increment(1);
    if saved_ms > 0 {
        metrics::counter!("reprise_mcp_latency_saved_ms_total", "type" => o.kind.as_str())
            .increment(saved_ms);
    }
    // Tool names come from callers: bounded in the log line.
    let tool = o.tool.map(|t| t.get(..t.len().min(128)).unwrap_or("?"));
    tracing::info!(
        server = o.server,
        method = match o.kind {
            CacheType::ListTools => "tools/list",
            CacheType::Call => "tools/call",
        },
        tool,
        cache = o.status.as_str(),
        tier,
        "mcp request"
    );
}
