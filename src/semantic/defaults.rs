//! Defaults of the semantic tier, chosen from the evaluation in BENCHMARKS.md
//! ("Semantic tier evaluation": `bench/semantic_eval.sh`, tuned on one half of
//! fow-cache's pairs, reported on the other). The config layer uses these.

/// Cosine similarity at or above which a guarded candidate is served.
pub const DEFAULT_THRESHOLD: f32 = 0.95;
/// Lower edge of the band `[judge_floor, threshold)` sent to the judge model (opt-in).
pub const DEFAULT_JUDGE_FLOOR: f32 = 0.55;
/// Requests with a higher `temperature` are not eligible (sampling makes answers vary
/// anyway; 1.0 is the providers' default, so an absent temperature stays eligible).
pub const DEFAULT_MAX_TEMPERATURE: f64 = 1.0;
/// δ of verified mode: the bound on the probability that a served answer is wrong.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;
