//! `[semantic]`: the semantic tier's configuration (off by default).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults::{
    DEFAULT_JUDGE_FLOOR, DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_TEMPERATURE, DEFAULT_THRESHOLD,
};

/// How a candidate above the threshold is decided.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SemanticMode {
    /// One threshold for every entry (plus the lexical guard).
    #[default]
    Static,
    /// Per-entry learned thresholds with an error bound (`max_error_rate`).
    Verified,
}

/// Where the vectors come from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2 in process (`model_dir`).
    #[default]
    Local,
    /// `embedding_model` through reprise's own provider routing.
    Provider,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticConfig {
    /// Master switch of the semantic tier.
    pub enabled: bool,
    /// Glob patterns of the (upstream) models it applies to; empty = all.
    pub models: Vec<String>,
    /// Cosine similarity a candidate needs (with the lexical guard) to be served.
    pub threshold: f32,
    /// Model asked to confirm candidates in `[judge_floor, threshold)`; none = no judge.
    pub judge_model: Option<String>,
    /// Lower end of the judge band.
    pub judge_floor: f32,
    /// `static` or `verified`.
    pub mode: SemanticMode,
    /// Verified mode: the bound on the rate of wrong answers served (δ).
    pub max_error_rate: f64,
    /// Requests with a higher `temperature` (absent = 1.0) are not eligible.
    pub max_temperature: f64,
    /// Vectors kept per namespace on one instance (least recently used go first).
    pub max_entries: usize,
    /// `local` (in-process model) or `provider` (`embedding_model`).
    pub embedder: EmbedderKind,
    /// The provider's embedding model when `embedder = "provider"`.
    pub embedding_model: String,
    /// Directory of the local model; none = `REPRISE_MODEL_DIR` or
    /// `models/all-MiniLM-L6-v2`.
    pub model_dir: Option<PathBuf>,
    /// Embeddings computed at once (blocking threads); when all are busy a
    /// lookup is skipped (and counted), never queued.
    pub pool_size: usize,
    /// Shared backends: a partition read from Redis is re-read when older
    /// than this (the staleness bound between instances).
    #[serde(with = "crate::config::humantime_serde_compat")]
    pub refresh: Duration,
    /// Verified mode: two answers agree when their texts are equal or their
    /// embeddings' cosine similarity is at least this.
    pub answer_agreement: f32,
    /// `embedder = "provider"`: an embedding taking longer is given up (the
    /// lookup is skipped, the request goes on as a miss).
    #[serde(with = "crate::config::humantime_serde_compat")]
    pub embed_timeout: Duration,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig {
            enabled: false,
            models: Vec::new(),
            threshold: DEFAULT_THRESHOLD,
            judge_model: None,
            judge_floor: DEFAULT_JUDGE_FLOOR,
            mode: SemanticMode::Static,
            max_error_rate: DEFAULT_MAX_ERROR_RATE,
            max_temperature: DEFAULT_MAX_TEMPERATURE,
            max_entries: 10_000,
            embedder: EmbedderKind::Local,
            embedding_model: "text-embedding-3-small".into(),
            model_dir: None,
            pool_size: 2,
            refresh: Duration::from_secs(1),
            answer_agreement: 0.95,
            embed_timeout: Duration::from_secs(2),
        }
    }
}

impl SemanticConfig {
    /// Checks the values serde cannot; `Err((field, message))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        if !unit(self.threshold) {
            return Err(("semantic.threshold", "must be between 0 and 1".into()));
        }
        if !unit(self.judge_floor) || self.judge_floor > self.threshold {
            return Err((
                "semantic.judge_floor",
                "must be between 0 and semantic.threshold".into(),
            ));
        }
        if !unit(self.answer_agreement) {
            return Err((
                "semantic.answer_agreement",
                "must be between 0 and 1".into(),
            ));
        }
        if !(self.max_error_rate > 0.0 && self.max_error_rate < 1.0) {
            return Err(("semantic.max_error_rate", "must be in (0, 1)".into()));
        }
        if !(self.max_temperature.is_finite() && self.max_temperature >= 0.0) {
            return Err(("semantic.max_temperature", "must be 0 or more".into()));
        }
        if self.max_entries == 0 {
            return Err(("semantic.max_entries", "must be at least 1".into()));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(("semantic.pool_size", "must be 1-64".into()));
        }
        if self.embed_timeout.is_zero() {
            return Err(("semantic.embed_timeout", "must be greater than 0".into()));
        }
        if self.refresh.is_zero() {
            return Err(("semantic.refresh", "must be greater than 0".into()));
        }
        if self.judge_model.as_deref().is_some_and(str::is_empty) {
            return Err(("semantic.judge_model", "must be a model name".into()));
        }
        if self.embedder == EmbedderKind::Provider && self.embedding_model.is_empty() {
            return Err((
                "semantic.embedding_model",
                "must name a model when embedder = \"provider\"".into(),
            ));
        }
        if self.models.iter().any(String::is_empty) {
            return Err(("semantic.models", "patterns must be non-empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_bad_values_are_named() {
        SemanticConfig::default().check().unwrap();
        let bad = [
            SemanticConfig {
                threshold: 1.5,
                ..SemanticConfig::default()
            },
            SemanticConfig {
                judge_floor: 0.99,
                threshold: 0.9,
                ..SemanticConfig::default()
            },
            SemanticConfig {
                pool_size: 0,
                ..SemanticConfig::default()
            },
            SemanticConfig {
                max_error_rate: 0.0,
                ..SemanticConfig::default()
            },
        ];
        for c in bad {
            let (field, _) = c.check().unwrap_err();
            assert!(field.starts_with("semantic."), "{field}");
        }
    }
}
