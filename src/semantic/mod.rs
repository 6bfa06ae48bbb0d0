//! Semantic tier building blocks (issue 17): the local embedder, the BERT forward it
//! runs, and (below) the decision helpers. Higher layers (partitions, index, pipeline
//! integration) build on these; nothing here knows about config structs or HTTP.

mod bert;
pub mod defaults;
pub mod embedder;
pub mod guard;
pub mod verified;

pub use embedder::{cosine, default_model_dir, EmbedError, LocalEmbedder};
pub use guard::lexical_guard;
