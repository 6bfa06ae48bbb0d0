//! The semantic tier (issue 17): paraphrased questions answered from the
//! cache, within one context partition, behind a lexical guard.
//!
//! Building blocks (nothing here knows about HTTP): the local embedder and
//! the BERT forward it runs, the lexical guard, the verified-mode decision;
//! then partitions, the in-process index, its shared copy in Redis, and the
//! tier the pipeline uses (`pipeline::semantic`).

mod bert;
pub mod defaults;
pub mod embedder;
pub mod guard;
pub mod index;
pub mod load;
pub mod partition;
pub mod settings;
pub mod shared;
pub mod tier;
pub mod verified;

pub use embedder::{cosine, default_model_dir, EmbedError, LocalEmbedder};
pub use guard::lexical_guard;
