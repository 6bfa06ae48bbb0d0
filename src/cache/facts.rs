//! What the request side derives from a body's bytes alone, and a small
//! in-process memo of it.
//!
//! Everything here (the model, the stream flags, the `cache` extension's
//! directives and the digest of the canonical body) is a pure function of the
//! endpoint and the body bytes. A cache hit is, almost always, the same bytes
//! again (SDKs serialize deterministically), so remembering these facts per
//! body lets a repeated request skip JSON parsing and canonical hashing: the
//! hit path then costs one hash of the bytes and one lookup. Everything that
//! depends on the caller (credential, namespace, headers) is still computed
//! per request from the request itself.
//!
//! The memo is keyed by the full body bytes (compared on lookup, hashed with
//! a keyed SipHash: no collisions, no hash flooding), holds bodies up to
//! [`MAX_BODY`] in exact-size copies, and is bounded by [`MEMO_BYTES`] with
//! quick_cache's S3-FIFO admission (a body must be seen again to stay), so
//! one-off bodies do not evict hot ones.

use std::sync::Arc;

use bytes::Bytes;
use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{OptionsBuilder, Weighter};

use crate::cache::key::{body_digest, BodyDigest, EndpointKind};
use crate::cache::policy::Directives;
use crate::error::ProxyError;
use crate::json::Json;

/// Total weight of the memo (bodies plus a per-entry overhead).
pub const MEMO_BYTES: u64 = 8 * 1024 * 1024;
/// Bigger bodies are not remembered (they would crowd out many small ones).
pub const MAX_BODY: usize = 256 * 1024;
/// Per-entry bookkeeping on top of the body bytes (facts, the cache's slot).
const ENTRY_OVERHEAD: usize = 320;

/// The request-side facts of one validated body.
#[derive(Debug)]
pub struct BodyFacts {
    /// `model` as the caller sent it (maybe `provider/model`).
    pub model: String,
    pub streaming: bool,
    /// `stream_options.include_usage` was requested.
    pub wants_usage: bool,
    /// The body carries reprise's `cache` extension.
    pub has_extension: bool,
    /// The directives of the `cache` extension (headers are applied per request).
    pub directives: Directives,
    /// The canonical body's digest: the body's part of the cache key.
    pub digest: BodyDigest,
    /// Digest of the conversation's opening (replica affinity), if any.
    pub opening: Option<u64>,
}

impl BodyFacts {
    /// Derives the facts of a parsed, validated body.
    pub fn derive(kind: EndpointKind, body: &Json<'_>) -> Result<Self, ProxyError> {
        Self::derive_for(kind, body, true)
    }

    /// [`derive`](Self::derive), with the conversation opening's digest only
    /// when `with_opening` (an instance without replicas or aliases never
    /// reads it, and it is a second hash over most of the body).
    pub fn derive_for(
        kind: EndpointKind,
        body: &Json<'_>,
        with_opening: bool,
    ) -> Result<Self, ProxyError> {
        Ok(BodyFacts {
            model: body
                .get("model")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
            streaming: body.get("stream").and_then(Json::as_bool).unwrap_or(false),
            wants_usage: body
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Json::as_bool)
                .unwrap_or(false),
            has_extension: body.get("cache").is_some(),
            directives: Directives::from_body(body)?,
            digest: body_digest(kind, body),
            opening: if with_opening {
                crate::providers::affinity::opening_digest(kind, body)
            } else {
                None
            },
        })
    }
}

type MemoKey = (EndpointKind, Bytes);

/// Facts of recently seen bodies, by endpoint and exact bytes.
pub struct BodyMemo {
    cache: Cache<MemoKey, Arc<BodyFacts>, MemoWeight, std::hash::RandomState>,
}

/// A memo entry weighs its body, its model name and [`ENTRY_OVERHEAD`].
#[derive(Clone)]
struct MemoWeight;

impl Weighter<MemoKey, Arc<BodyFacts>> for MemoWeight {
    fn weight(&self, (_, body): &MemoKey, facts: &Arc<BodyFacts>) -> u64 {
        (body.len() + facts.model.len() + ENTRY_OVERHEAD) as u64
    }
}

impl Default for BodyMemo {
    fn default() -> Self {
        // Shards of at least 4 × MAX_BODY, so the biggest remembered body fits.
        let shards = crate::cache::memory::shard_count(MEMO_BYTES, 4 * MAX_BODY as u64);
        let options = OptionsBuilder::new()
            .shards(shards)
            .weight_capacity(MEMO_BYTES)
            .estimated_items_capacity((MEMO_BYTES / 2048) as usize)
            .build();
        // The keyed SipHash of std's RandomState: the bytes are the caller's,
        // so no hash flooding.
        let cache = match options {
            Ok(options) => Cache::with_options(
                options,
                MemoWeight,
                std::hash::RandomState::new(),
                DefaultLifecycle::default(),
            ),
            Err(_) => Cache::with(
                1,
                MEMO_BYTES,
                MemoWeight,
                std::hash::RandomState::new(),
                DefaultLifecycle::default(),
            ),
        };
        BodyMemo { cache }
    }
}

impl BodyMemo {
    pub async fn get(&self, kind: EndpointKind, body: &Bytes) -> Option<Arc<BodyFacts>> {
        if body.len() > MAX_BODY {
            return None;
        }
        self.cache.get(&(kind, body.clone()))
    }

    /// Remembers `facts` for these bytes (copied: the request's buffer may be
    /// a slice of a much larger read buffer).
    pub async fn insert(&self, kind: EndpointKind, body: &[u8], facts: Arc<BodyFacts>) {
        if body.len() <= MAX_BODY {
            self.cache
                .insert((kind, Bytes::copy_from_slice(body)), facts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: EndpointKind, text: &str) -> BodyFacts {
        BodyFacts::derive(kind, &Json::parse(text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn derives_what_the_flow_needs() {
        let f = facts(
            EndpointKind::Chat,
            r#"{"model":"openai/gpt-4o","stream":true,"stream_options":{"include_usage":true},
                "messages":[{"role":"user","content":"hi"}],"cache":{"ttl":60,"no_store":true}}"#,
        );
        assert_eq!(f.model, "openai/gpt-4o");
        assert!(f.streaming && f.wants_usage && f.has_extension);
        assert!(f.directives.no_store);
        let plain = facts(
            EndpointKind::Chat,
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert!(!plain.streaming && !plain.wants_usage && !plain.has_extension);
        // `stream` is not part of the chat key.
        let streamed = facts(
            EndpointKind::Chat,
            r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(streamed.digest, plain.digest);
    }

    #[test]
    fn a_bad_extension_is_an_error() {
        let body = Json::parse(br#"{"model":"m","messages":[],"cache":{"tll":1}}"#).unwrap();
        assert!(BodyFacts::derive(EndpointKind::Chat, &body).is_err());
    }

    #[tokio::test]
    async fn memo_answers_only_the_same_bytes_and_endpoint() {
        let memo = BodyMemo::default();
        let text = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let body = Bytes::from(text);
        assert!(memo.get(EndpointKind::Chat, &body).await.is_none());
        memo.insert(
            EndpointKind::Chat,
            &body,
            Arc::new(facts(EndpointKind::Chat, text)),
        )
        .await;
        let hit = memo.get(EndpointKind::Chat, &body).await.unwrap();
        assert_eq!(hit.model, "m");
        // The same bytes as a different endpoint, or other bytes: nothing.
        assert!(memo.get(EndpointKind::Messages, &body).await.is_none());
        let spaced = Bytes::from(text.replace(':', ": "));
        assert!(memo.get(EndpointKind::Chat, &spaced).await.is_none());
        // Oversized bodies are neither stored nor looked up.
        let big = Bytes::from(vec![b' '; MAX_BODY + 1]);
        memo.insert(EndpointKind::Chat, &big, hit.clone()).await;
        assert!(memo.get(EndpointKind::Chat, &big).await.is_none());
    }
}
