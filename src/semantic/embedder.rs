//! The local embedder: all-MiniLM-L6-v2 run in-process on the CPU (candle), with the
//! model's own WordPiece tokenizer (`tokenizers`, pure-Rust features).
//!
//! `embed` is synchronous CPU work (a few milliseconds for a short message): callers run
//! it on a bounded blocking pool, never on the async workers. Candle's matrix products
//! run inside this embedder's own small rayon pool, so embedding never fans out over
//! every core of the machine.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use tokenizers::{Tokenizer, TruncationParams};

use super::bert::{mean_pool, Bert, BertConfig};

/// Where the model lives unless `REPRISE_MODEL_DIR` says otherwise (relative to the
/// working directory, as `scripts/fetch-embedding-model.sh` writes it).
pub const MODEL_DIR_DEFAULT: &str = "models/all-MiniLM-L6-v2";
/// Environment variable overriding [`MODEL_DIR_DEFAULT`].
pub const MODEL_DIR_ENV: &str = "REPRISE_MODEL_DIR";
/// Tokens per text (the model was trained with 256; its tokenizer.json says 128).
pub const MAX_TOKENS: usize = 256;
/// Texts are cut at this many bytes (on a char boundary) before tokenizing: 256 tokens
/// never need more in practice, and it bounds the tokenizer's work on huge inputs.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Threads of the embedder's own rayon pool when the caller does not choose.
pub const DEFAULT_THREADS: usize = 1;

const FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "embedding model not found: {} has no {file}; run scripts/fetch-embedding-model.sh \
         (or point {MODEL_DIR_ENV} at a directory holding model.safetensors, tokenizer.json \
         and config.json)",
        .dir.display()
    )]
    MissingModel { dir: PathBuf, file: &'static str },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid model config {}: {reason}", .path.display())]
    Config { path: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model: {0}")]
    Model(String),
    #[error("embedder thread pool: {0}")]
    ThreadPool(String),
}

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        EmbedError::Model(e.to_string())
    }
}

/// all-MiniLM-L6-v2 loaded in memory (~90 MB of f32 weights). `Send + Sync`: share one
/// behind an `Arc` and call `embed` from several blocking threads.
pub struct LocalEmbedder {
    tokenizer: Tokenizer,
    model: Bert,
    dim: usize,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dim", &self.dim)
            .field("threads", &self.pool.current_num_threads())
            .finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Load from `dir` (model.safetensors, tokenizer.json, config.json) with
    /// [`DEFAULT_THREADS`] compute threads.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        Self::load_with_threads(dir, DEFAULT_THREADS)
    }

    /// Load with a rayon pool of `threads` (clamped to 1..=available cores) for the
    /// matrix products. Concurrent `embed` calls share that pool.
    pub fn load_with_threads(dir: &Path, threads: usize) -> Result<Self, EmbedError> {
        for file in FILES {
            if !dir.join(file).is_file() {
                return Err(EmbedError::MissingModel {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        let config_path = dir.join("config.json");
        let config_text = read(&config_path)?;
        let config: BertConfig =
            serde_json::from_slice(&config_text).map_err(|e| EmbedError::Config {
                path: config_path.clone(),
                reason: e.to_string(),
            })?;
        config.check().map_err(|reason| EmbedError::Config {
            path: config_path,
            reason,
        })?;

        let weights = read(&dir.join("model.safetensors"))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)?;
        let model = Bert::load(vb, &config)?;

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        // The shipped tokenizer.json pads and truncates to 128; we embed one text at a
        // time (no padding needed) and keep the model's trained length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS.min(model.max_positions()),
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;

        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.clamp(1, cores))
            .thread_name(|i| format!("reprise-embed-{i}"))
            .build()
            .map_err(|e| EmbedError::ThreadPool(e.to_string()))?;

        Ok(Self {
            tokenizer,
            model,
            dim: config.hidden_size,
            pool,
        })
    }

    /// Token ids the model sees for `text` ([CLS] … [SEP], at most [`MAX_TOKENS`]).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let encoding = self
            .tokenizer
            .encode(clip(text, MAX_TEXT_BYTES), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The L2-normalized mean-pooled sentence embedding of `text` ([`Self::dim`] floats).
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let ids = self.token_ids(text)?;
        let hidden = self.pool.install(|| self.model.forward(&ids))?;
        let mut v = mean_pool(&hidden)?;
        normalize(&mut v);
        Ok(v)
    }

    /// Embedding width (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// `REPRISE_MODEL_DIR` if set and non-empty, else `models/all-MiniLM-L6-v2`.
pub fn default_model_dir() -> PathBuf {
    match std::env::var_os(MODEL_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(MODEL_DIR_DEFAULT),
    }
}

/// Cosine similarity of two L2-normalized vectors (their dot product). Vectors of
/// different lengths compare over the shorter one (never happens with one model).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| EmbedError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedder() -> LocalEmbedder {
        LocalEmbedder::load(&default_model_dir())
            .unwrap_or_else(|e| panic!("{e} (scripts/test.sh fetches the model first)"))
    }

    #[test]
    fn embedder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LocalEmbedder>();
    }

    #[test]
    fn missing_dir_names_the_fetch_script() {
        let err = LocalEmbedder::load(Path::new("/nonexistent/reprise-model")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("scripts/fetch-embedding-model.sh"), "{msg}");
        assert!(msg.contains("/nonexistent/reprise-model"), "{msg}");
    }

    #[test]
    fn embeddings_are_unit_length_and_deterministic() {
        let e = embedder();
        assert_eq!(e.dim(), 384);
        let a = e.embed("How do I reset my password?").unwrap();
        assert_eq!(a.len(), 384);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        assert_eq!(a, e.embed("How do I reset my password?").unwrap());
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn paraphrases_are_closer_than_unrelated_texts() {
        let e = embedder();
        let a = e.embed("How do I reset my password?").unwrap();
        let b = e.embed("What are the steps to reset my password?").unwrap();
        let c = e.embed("What is the capital of France?").unwrap();
        let (ab, ac) = (cosine(&a, &b), cosine(&a, &c));
        assert!(ab > 0.8, "paraphrase similarity {ab}");
        assert!(ac < 0.3, "unrelated similarity {ac}");
    }

    #[test]
    fn no_padding_and_truncation_at_256_tokens() {
        let e = embedder();
        let short = e.token_ids("hello world").unwrap();
        assert_eq!(
            short,
            vec![101, 7592, 2088, 102],
            "[CLS] hello world [SEP], unpadded"
        );
        let long = "word ".repeat(1000);
        assert_eq!(e.token_ids(&long).unwrap().len(), MAX_TOKENS);
        assert_eq!(e.embed(&long).unwrap().len(), 384);
        assert_eq!(e.embed("").unwrap().len(), 384);
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("abc", 10), "abc");
    }

    #[test]
    fn default_dir_is_relative_models_path() {
        // Only checks the fallback shape; the env override is read at call time.
        if std::env::var_os(MODEL_DIR_ENV).is_none() {
            assert_eq!(default_model_dir(), PathBuf::from(MODEL_DIR_DEFAULT));
        }
    }
}
