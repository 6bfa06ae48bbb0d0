//! The semantic tier: paraphrased questions answered from the cache, within
//! one context partition, behind a lexical guard.

pub mod defaults;
pub mod index;
pub mod partition;
pub mod settings;
pub mod shared;
pub mod tier;
