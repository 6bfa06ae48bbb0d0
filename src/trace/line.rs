//! One trace line: what happened to one request, without its text.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A trace line as written (JSONL). Field names are short but spelled out
/// in README.md; `profile` reads them back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TraceLine {
    /// Unix time in seconds (millisecond precision).
    pub ts: f64,
    /// The namespace, hashed again (16 hex digits): groups without naming.
    pub ns: String,
    /// `chat`, `embeddings`, `messages`.
    pub endpoint: Cow<'static, str>,
    pub provider: String,
    pub model: String,
    /// The exact cache key (hex SHA-256), also for uncached modes.
    pub key: String,
    /// The semantic partition's hash, when the semantic tier is involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `hit`, `miss`, `bypass`, `coalesced`, `stale` (or `none` on errors).
    pub status: Cow<'static, str>,
    /// `memory`, `redis`, … for hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Cow<'static, str>>,
    /// Observe mode: the cache held an answer that was not served.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub would_hit: bool,
    pub http_status: u16,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    /// What this request cost (0 for hits).
    #[serde(default)]
    pub usd: f64,
    /// What reprise's cache saved (hits: the original call's cost).
    #[serde(default)]
    pub saved_usd: f64,
    /// Provider latency, for requests that reached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    /// TTL a write of this answer gets, in seconds (None = forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
}

impl TraceLine {
    /// What the request costs when it reaches the provider (a hit's saving
    /// is exactly that cost).
    pub fn call_usd(&self) -> f64 {
        self.usd + self.saved_usd
    }
}

/// The namespace as it appears in traces: a hash, so a trace shared with a
/// vendor names no tenant.
pub fn namespace_hash(namespace: &str) -> String {
    thread_local! {
        /// The last namespace this thread hashed, and its hash: a worker's
        /// requests come from few namespaces, so most lines reuse it.
        static LAST: std::cell::RefCell<Option<(String, String)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((seen, hash)) if seen == namespace => hash.clone(),
            _ => {
                let hash = hash_namespace(namespace);
                *last = Some((namespace.to_owned(), hash.clone()));
                hash
            }
        }
    })
}

fn hash_namespace(namespace: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"reprise-trace-ns-v1\0")
        .chain_update(namespace.as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remembered_namespace_hash_is_the_hash() {
        let a = hash_namespace("tenant-a");
        let b = hash_namespace("tenant-b");
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        // Alternating namespaces: the per-thread memo never answers for the wrong one.
        for _ in 0..3 {
            assert_eq!(namespace_hash("tenant-a"), a);
            assert_eq!(namespace_hash("tenant-a"), a);
            assert_eq!(namespace_hash("tenant-b"), b);
        }
    }
}
