//! Building the semantic tier at start: a missing model stops reprise with
//! a message saying which script fetches it.

use std::sync::Arc;

use super::embedder::{default_model_dir, LocalEmbedder, MAX_TOKENS};
use super::settings::{EmbedderKind, SemanticConfig};
use super::tier::{SemanticTier, Vectorize};

impl Vectorize for LocalEmbedder {
    fn vector(&self, text: &str) -> Result<Vec<f32>, String> {
        self.embed(text).map_err(|e| e.to_string())
    }

    fn fits(&self, text: &str) -> bool {
        // The embedder truncates at MAX_TOKENS; a text cut there would match
        // any text sharing its start.
        self.token_ids(text).is_ok_and(|ids| ids.len() < MAX_TOKENS)
    }
}

/// The tier for this configuration (None when disabled).
pub fn tier(config: &SemanticConfig) -> Result<Option<Arc<SemanticTier>>, String> {
    if !config.enabled {
        return Ok(None);
    }
    if config.embedder == EmbedderKind::Provider {
        tracing::info!(model = %config.embedding_model, mode = ?config.mode,
            "semantic tier on (provider embedder)");
        return Ok(Some(Arc::new(SemanticTier::new(config.clone(), None))));
    }
    let dir = config.model_dir.clone().unwrap_or_else(default_model_dir);
    if !dir.join("model.safetensors").is_file() {
        return Err(format!(
            "semantic.enabled = true but the embedding model is missing from {}: \
             run scripts/fetch-embedding-model.sh (or set semantic.model_dir / REPRISE_MODEL_DIR)",
            dir.display()
        ));
    }
    let embedder = LocalEmbedder::load(&dir).map_err(|e| {
        format!(
            "semantic: could not load the embedding model from {}: {e} \
             (scripts/fetch-embedding-model.sh fetches a checked copy)",
            dir.display()
        )
    })?;
    tracing::info!(dir = %dir.display(), mode = ?config.mode, "semantic tier on (local embedder)");
    Ok(Some(Arc::new(SemanticTier::new(
        config.clone(),
        Some(Arc::new(embedder)),
    ))))
}
