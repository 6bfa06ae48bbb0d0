//! TEMPORARY (semantic-core's file replaces it on merge).
pub const DEFAULT_THRESHOLD: f32 = 0.92;
pub const DEFAULT_JUDGE_FLOOR: f32 = 0.85;
pub const DEFAULT_MAX_TEMPERATURE: f64 = 1.0;
