//! The semantic tier as the pipeline sees it: an embedder behind a bounded
//! blocking pool, the in-process index, and (with a Redis backend) the
//! shared copy of it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wildmatch::WildMatch;

use super::index::{Candidate, Index, Item};
use super::partition::PartitionId;
use super::settings::SemanticConfig;
use super::shared;
use super::verified::Observations;
use crate::cache::key::CacheKey;
use crate::cache::redis::RedisTier;
use crate::cache::seal::Sealing;

/// A text to a vector (384 floats, L2-normalized), synchronously on the
/// calling thread (the tier runs it on the blocking pool).
pub trait Vectorize: Send + Sync {
    fn vector(&self, text: &str) -> Result<Vec<f32>, String>;

    /// Whether the whole text fits the model's input (not truncated).
    fn fits(&self, _text: &str) -> bool {
        true
    }
}

/// What asking for a vector gave.
pub enum Embedded {
    Vector(Arc<[f32]>),
    /// Every pool slot was busy: the lookup is skipped, never queued.
    Busy,
    /// The text is longer than the model's input: not eligible.
    TooLong,
    Failed,
}

pub struct SemanticTier {
    pub config: SemanticConfig,
    models: Vec<WildMatch>,
    /// The local model; None with `embedder = "provider"` (the pipeline
    /// asks the provider then, through `try_permit`'s bound).
    embedder: Option<Arc<dyn Vectorize>>,
    pool: Arc<Semaphore>,
    pub index: Index,
}

/// Candidates compared per lookup (best first).
pub const CANDIDATES: usize = 4;

impl SemanticTier {
    pub fn new(config: SemanticConfig, embedder: Option<Arc<dyn Vectorize>>) -> Self {
        SemanticTier {
            models: config.models.iter().map(|m| WildMatch::new(m)).collect(),
            pool: Arc::new(Semaphore::new(config.pool_size)),
            index: Index::new(config.max_entries),
            embedder,
            config,
        }
    }

    /// Whether the tier applies to this (upstream) model: a rule's
    /// `semantic = true|false` wins over `semantic.models`.
    pub fn applies(&self, model: &str, rule: Option<bool>) -> bool {
        rule.unwrap_or_else(|| {
            self.models.is_empty() || self.models.iter().any(|w| w.matches(model))
        })
    }

    /// The text's vector, computed on the blocking pool.
    pub async fn embed(&self, text: &str) -> Embedded {
        self.embed_with(text, false).await
    }

    /// The vector of (the opening of) an answer: verified mode compares two
    /// answers by their first `MAX_TOKENS` tokens when they are longer.
    pub async fn embed_answer(&self, text: &str) -> Embedded {
        self.embed_with(text, true).await
    }

    /// One slot of the embedding pool, if one is free (never waits).
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.pool.clone().try_acquire_owned().ok()
    }

    async fn embed_with(&self, text: &str, truncate: bool) -> Embedded {
        let Some(embedder) = self.embedder.clone() else {
            return Embedded::Failed;
        };
        let Some(permit) = self.try_permit() else {
            metrics::counter!("reprise_semantic_embed_total", "outcome" => "busy").increment(1);
            return Embedded::Busy;
        };
        let text = text.to_owned();
        let started = tokio::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if !truncate && !embedder.fits(&text) {
                return Ok(None);
            }
            embedder.vector(&text).map(Some)
        })
        .await;
        metrics::histogram!("reprise_semantic_embed_seconds").record(started.elapsed());
        match result {
            Ok(Ok(Some(v))) if !v.is_empty() && v.iter().all(|x| x.is_finite()) => {
                metrics::counter!("reprise_semantic_embed_total", "outcome" => "ok").increment(1);
                Embedded::Vector(Arc::from(v))
            }
            Ok(Ok(None)) => {
                metrics::counter!("reprise_semantic_embed_total", "outcome" => "too_long")
                    .increment(1);
                Embedded::TooLong
            }
            Ok(Ok(Some(_))) => Embedded::Failed,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "embedding failed");
                metrics::counter!("reprise_semantic_embed_total", "outcome" => "error")
                    .increment(1);
                Embedded::Failed
            }
            Err(e) => {
                tracing::warn!(error = %e, "embedding task failed");
                metrics::counter!("reprise_semantic_embed_total", "outcome" => "error")
                    .increment(1);
                Embedded::Failed
            }
        }
    }

    /// The most similar items (≥ `floor`), reading the partition from Redis
    /// first when this instance's copy is missing or older than `refresh`.
    pub async fn candidates(
        &self,
        redis: Option<&RedisTier>,
        sealing: &Sealing,
        namespace: &str,
        partition: &PartitionId,
        vector: &[f32],
        floor: f32,
    ) -> Vec<Candidate> {
        if let Some(redis) = redis {
            let stale = self
                .index
                .loaded_at(namespace, partition)
                .is_none_or(|at| at.elapsed() >= self.config.refresh);
            if stale {
                if let Some(items) = shared::load(redis, partition, sealing).await {
                    self.index.replace(namespace, *partition, items);
                }
            }
        }
        self.index
            .search(namespace, partition, vector, floor, CANDIDATES)
    }

    /// Adds a stored entry's vector (locally, and to Redis when shared).
    /// `expire` is the exact entry's remaining lifetime (None = forever).
    #[allow(clippy::too_many_arguments)]
    pub async fn remember(
        &self,
        redis: Option<&RedisTier>,
        sealing: &Sealing,
        namespace: &str,
        partition: PartitionId,
        text: &str,
        vector: Arc<[f32]>,
        key: CacheKey,
        expire: Option<Duration>,
    ) {
        let item = Item {
            key,
            vector,
            text: Arc::from(text),
            blocked: false,
            observations: Observations::new(),
        };
        if let Some(redis) = redis {
            let stored = shared::store(
                redis,
                namespace,
                &partition,
                &item,
                expire,
                self.config.max_entries,
                sealing,
            )
            .await;
            if !stored {
                metrics::counter!("reprise_semantic_store_skipped_total").increment(1);
            }
        }
        self.index.insert(namespace, partition, item);
    }

    /// Drops an item whose exact entry is gone (here and in Redis).
    pub async fn forget(
        &self,
        redis: Option<&RedisTier>,
        namespace: &str,
        partition: &PartitionId,
        key: &CacheKey,
    ) {
        self.index.remove(namespace, partition, key);
        if let Some(redis) = redis {
            shared::remove(redis, partition, key).await;
        }
    }

    /// Verified mode: whether the answer of `key`'s entry was right for a
    /// query at `similarity` (here and in Redis). Returns whether the item
    /// was found.
    pub async fn record(
        &self,
        redis: Option<&RedisTier>,
        sealing: &Sealing,
        namespace: &str,
        key: &CacheKey,
        similarity: f32,
        correct: bool,
    ) -> bool {
        let local = self
            .index
            .record(namespace, key, similarity, correct)
            .is_some();
        let shared = match redis {
            Some(redis) => shared::record(redis, namespace, key, similarity, correct, sealing)
                .await
                .unwrap_or(false),
            None => false,
        };
        local || shared
    }

    /// Explicit feedback on an entry of `namespace`: `correct = false`
    /// stops it from answering paraphrases (for good: a later `true` does
    /// not undo it). With the `similarity` of the hit it judges (its
    /// `x-cache-similarity`), the label is also a verified-mode observation.
    /// Returns whether the entry was found.
    pub async fn feedback(
        &self,
        redis: Option<&RedisTier>,
        sealing: &Sealing,
        namespace: &str,
        key: &CacheKey,
        correct: bool,
        similarity: Option<f32>,
    ) -> bool {
        metrics::counter!("reprise_semantic_feedback_total", "correct" => if correct { "true" } else { "false" })
            .increment(1);
        let recorded = match similarity {
            Some(s) => {
                self.record(redis, sealing, namespace, key, s, correct)
                    .await
            }
            None => false,
        };
        if correct {
            let local = self.index.contains(namespace, key);
            let shared = match redis {
                Some(redis) => shared::exists(redis, namespace, key).await,
                None => false,
            };
            return recorded || local || shared;
        }
        let local = self.index.set_blocked(namespace, key, true).is_some();
        let shared = match redis {
            Some(redis) => shared::set_blocked(redis, namespace, key, true, sealing)
                .await
                .unwrap_or(false),
            None => false,
        };
        recorded || local || shared
    }
}
