//! What the cache did for a request and which tier answered: plain values the
//! cache reports and the response layer renders (`x-cache-status`,
//! `x-cache-tier`, `routing_metadata.cache`, stats).

use serde::Serialize;

/// What the cache did for this request (`x-cache-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Looked up, not found: forwarded (and stored if it succeeded).
    Miss,
    /// The cache was not read (`no-cache`, caching disabled).
    Bypass,
    /// Answered by an identical request's upstream call that was in flight.
    Coalesced,
    /// An expired entry, served because the provider failed (stale-if-error).
    Stale,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Stale => "stale",
        }
    }
}

/// The tier that answered a hit (`x-cache-tier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Memory,
    Redis,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Redis => "redis",
        }
    }
}
