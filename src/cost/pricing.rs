//! The price table: `data/pricing.json` (embedded in the binary) plus config
//! overrides, and the model-name lookup.
//!
//! The file and the overrides are in USD per **million** tokens; [`ModelPrice`]
//! holds USD per **token**. Lookup of a model name, case-insensitive: exact
//! name, then aliases, then the name without a dated suffix (`-2024-08-06`,
//! `-20241022`), then the longest matching glob; if all fail and the name has a
//! `provider/` prefix (`anthropic/claude-sonnet-4`), the same steps on the part
//! after the last `/`. An unknown model has no price: never a guessed one.

use std::cmp::Reverse;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wildmatch::WildMatch;

const BUILTIN_JSON: &str = include_str!("../../data/pricing.json");
const PER_MILLION: f64 = 1_000_000.0;

/// A price table or a price override that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("pricing table: {0}")]
    Json(#[from] serde_json::Error),
    /// `field` names the offending entry, e.g. `pricing.models[2].input`.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PricingError {
    PricingError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// One model's prices, in USD per token. `None` = no separate price (a cache
/// read or write without one is billed at the input price; no output price =
/// the model produces no output tokens, e.g. embeddings).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPrice {
    pub model: String,
    pub provider: String,
    pub input: f64,
    pub output: Option<f64>,
    pub cache_read: Option<f64>,
    pub cache_write_5m: Option<f64>,
    pub cache_write_1h: Option<f64>,
    pub supports_prompt_caching: bool,
    pub min_cacheable_tokens: Option<u64>,
    pub aliases: Vec<String>,
    /// Globs (`*`, `?`) this entry also answers for.
    pub patterns: Vec<String>,
}

impl ModelPrice {
    /// Effective USD per cache-read token.
    pub fn cache_read_price(&self) -> f64 {
        self.cache_read.unwrap_or(self.input)
    }
    /// Effective USD per 5-minute cache-write token.
    pub fn cache_write_5m_price(&self) -> f64 {
        self.cache_write_5m.unwrap_or(self.input)
    }
    /// Effective USD per 1-hour cache-write token.
    pub fn cache_write_1h_price(&self) -> f64 {
        self.cache_write_1h
            .unwrap_or_else(|| self.cache_write_5m_price())
    }
    /// Effective USD per output token.
    pub fn output_price(&self) -> f64 {
        self.output.unwrap_or(0.0)
    }
}

/// One `[[pricing.models]]` entry: replaces fields of a known model or adds a
/// model. Prices in USD per million tokens, like `data/pricing.json`.
///
/// `model` is an exact name or a glob (`*`, `?`). Fields left out keep the
/// value of the model the name resolves to today (so `model = "gpt-4o"
/// input = 2.0` changes one price); a name that resolves to nothing needs at
/// least `input` and `output`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPriceOverride {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// 5-minute cache write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_prompt_caching: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cacheable_tokens: Option<u64>,
}

/// The `[pricing]` config section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// Overrides and additions, applied in order over the built-in table.
    pub models: Vec<ModelPriceOverride>,
}

impl PricingConfig {
    /// The built-in table with these overrides applied.
    pub fn build(&self) -> Result<Pricing, PricingError> {
        Pricing::with_overrides(&self.models)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(rename = "_about", default)]
    _about: Option<String>,
    #[serde(rename = "_as_of", default)]
    as_of: Option<String>,
    #[serde(rename = "_sources", default)]
    _sources: Vec<String>,
    #[serde(rename = "_notes", default)]
    _notes: Vec<String>,
    models: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    provider: String,
    input: f64,
    output: Option<f64>,
    cache_read: Option<f64>,
    cache_write_5m: Option<f64>,
    cache_write_1h: Option<f64>,
    supports_prompt_caching: bool,
    min_cacheable_tokens: Option<u64>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
}

/// The parsed price table with its lookup indexes.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    models: Vec<ModelPrice>,
    as_of: Option<String>,
    exact: HashMap<String, usize>,
    aliases: HashMap<String, usize>,
    /// (pattern length, matcher, model index)
    globs: Vec<(usize, WildMatch, usize)>,
}

impl Pricing {
    /// The table shipped in `data/pricing.json`. It is checked by a unit test;
    /// should it ever fail to parse, the error is logged and the table is
    /// empty (costs are then omitted, never invented).
    pub fn builtin() -> Pricing {
        Pricing::from_json(BUILTIN_JSON).unwrap_or_else(|e| {
            tracing::error!(error = %e, "built-in pricing table is invalid; costs disabled");
            Pricing::default()
        })
    }

    /// Parses a table in the `data/pricing.json` format.
    pub fn from_json(json: &str) -> Result<Pricing, PricingError> {
        let file: TableFile = serde_json::from_str(json)?;
        let mut models = Vec::with_capacity(file.models.len());
        for (name, value) in file.models {
            let field = format!("models.{name}");
            let e: FileEntry = serde_json::from_value(value)
                .map_err(|err| invalid(field.as_str(), err.to_string()))?;
            let prices = [
                ("input", Some(e.input)),
                ("output", e.output),
                ("cache_read", e.cache_read),
                ("cache_write_5m", e.cache_write_5m),
                ("cache_write_1h", e.cache_write_1h),
            ];
            for (key, p) in prices {
                check_price(&format!("{field}.{key}"), p)?;
            }
            models.push(ModelPrice {
                model: name,
                provider: e.provider,
                input: e.input / PER_MILLION,
                output: e.output.map(|p| p / PER_MILLION),
                cache_read: e.cache_read.map(|p| p / PER_MILLION),
                cache_write_5m: e.cache_write_5m.map(|p| p / PER_MILLION),
                cache_write_1h: e.cache_write_1h.map(|p| p / PER_MILLION),
                supports_prompt_caching: e.supports_prompt_caching,
                min_cacheable_tokens: e.min_cacheable_tokens,
                aliases: e.aliases,
                patterns: e.patterns,
            });
        }
        Ok(Pricing::index(models, file.as_of))
    }

    /// [`Pricing::builtin`] with `overrides` applied in order.
    pub fn with_overrides(overrides: &[ModelPriceOverride]) -> Result<Pricing, PricingError> {
        Pricing::builtin().apply(overrides)
    }

    /// This table with `overrides` applied in order; errors name the field as
    /// `pricing.models[i].field`.
    pub fn apply(mut self, overrides: &[ModelPriceOverride]) -> Result<Pricing, PricingError> {
        for (i, o) in overrides.iter().enumerate() {
            let field = |key: &str| format!("pricing.models[{i}].{key}");
            let name = o.model.trim();
            if name.is_empty() {
                return Err(invalid(field("model"), "must not be empty"));
            }
            let prices = [
                ("input", o.input),
                ("output", o.output),
                ("cache_read", o.cache_read),
                ("cache_write", o.cache_write),
                ("cache_write_1h", o.cache_write_1h),
            ];
            for (key, p) in prices {
                check_price(&field(key), p)?;
            }
            let glob = is_glob(name);
            let lower = name.to_ascii_lowercase();
            let in_place = self.exact.get(&lower).copied();
            let base = match in_place {
                Some(idx) => self.models.get(idx).cloned(),
                None if glob => None,
                None => self
                    .lookup(&lower)
                    .and_then(|i| self.models.get(i))
                    .map(|m| ModelPrice {
                        model: name.to_owned(),
                        aliases: Vec::new(),
                        patterns: Vec::new(),
                        ..m.clone()
                    }),
            };
            let per_token = |p: Option<f64>| p.map(|p| p / PER_MILLION);
            let merged = match base {
                Some(b) => ModelPrice {
                    provider: o.provider.clone().unwrap_or(b.provider),
                    input: per_token(o.input).unwrap_or(b.input),
                    output: per_token(o.output).or(b.output),
                    cache_read: per_token(o.cache_read).or(b.cache_read),
                    cache_write_5m: per_token(o.cache_write).or(b.cache_write_5m),
                    cache_write_1h: per_token(o.cache_write_1h).or(b.cache_write_1h),
                    supports_prompt_caching: o
                        .supports_prompt_caching
                        .unwrap_or(b.supports_prompt_caching || o.cache_read.is_some()),
                    min_cacheable_tokens: o.min_cacheable_tokens.or(b.min_cacheable_tokens),
                    ..b
                },
                None => {
                    let (Some(input), Some(_)) = (o.input, o.output) else {
                        let missing = if o.input.is_none() { "input" } else { "output" };
                        return Err(invalid(
                            field(missing),
                            format!("required: `{name}` is not a known model to inherit from"),
                        ));
                    };
                    ModelPrice {
                        model: name.to_owned(),
                        provider: o.provider.clone().unwrap_or_else(|| "custom".into()),
                        input: input / PER_MILLION,
                        output: per_token(o.output),
                        cache_read: per_token(o.cache_read),
                        cache_write_5m: per_token(o.cache_write),
                        cache_write_1h: per_token(o.cache_write_1h),
                        supports_prompt_caching: o
                            .supports_prompt_caching
                            .unwrap_or(o.cache_read.is_some()),
                        min_cacheable_tokens: o.min_cacheable_tokens,
                        aliases: Vec::new(),
                        patterns: if glob {
                            vec![name.to_owned()]
                        } else {
                            Vec::new()
                        },
                    }
                }
            };
            match in_place.and_then(|idx| self.models.get_mut(idx)) {
                Some(slot) => *slot = merged,
                None => self.models.push(merged),
            }
            self = Pricing::index(std::mem::take(&mut self.models), self.as_of.take());
        }
        Ok(self)
    }

    fn index(models: Vec<ModelPrice>, as_of: Option<String>) -> Pricing {
        let mut exact = HashMap::new();
        let mut aliases = HashMap::new();
        let mut globs = Vec::new();
        for (i, m) in models.iter().enumerate() {
            exact.entry(m.model.to_ascii_lowercase()).or_insert(i);
            for a in &m.aliases {
                aliases.entry(a.to_ascii_lowercase()).or_insert(i);
            }
            for p in &m.patterns {
                let p = p.to_ascii_lowercase();
                globs.push((p.chars().count(), WildMatch::new(&p), i));
            }
        }
        Pricing {
            models,
            as_of,
            exact,
            aliases,
            globs,
        }
    }

    /// The price of `model` (see the module doc for the lookup order).
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        let name = model.trim().to_ascii_lowercase();
        self.lookup(&name)
            .or_else(|| self.lookup(name.rsplit_once('/')?.1))
            .and_then(|i| self.models.get(i))
    }

    fn lookup(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return None;
        }
        let named = |n: &str| self.exact.get(n).or_else(|| self.aliases.get(n)).copied();
        named(name)
            .or_else(|| strip_dated_suffix(name).and_then(named))
            .or_else(|| {
                self.globs
                    .iter()
                    .filter(|(_, g, _)| g.matches(name))
                    .min_by_key(|(len, _, _)| Reverse(*len))
                    .map(|(_, _, i)| *i)
            })
    }

    /// Every entry, in table order (built-in file order, then added models).
    pub fn models(&self) -> &[ModelPrice] {
        &self.models
    }

    /// The `_as_of` date of the table.
    pub fn as_of(&self) -> Option<&str> {
        self.as_of.as_deref()
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

fn check_price(field: &str, price: Option<f64>) -> Result<(), PricingError> {
    match price {
        Some(p) if !p.is_finite() || p < 0.0 => Err(invalid(
            field,
            format!("must be a non-negative number of USD per million tokens, got {p}"),
        )),
        _ => Ok(()),
    }
}

fn is_glob(name: &str) -> bool {
    name.contains(['*', '?'])
}

/// `gpt-4o-2024-08-06` → `gpt-4o`, `claude-sonnet-4-20250514` → `claude-sonnet-4`.
fn strip_dated_suffix(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let n = b.len();
    // -YYYY-MM-DD
    if n > 11
        && b[n - 11] == b'-'
        && b[n - 6] == b'-'
        && b[n - 3] == b'-'
        && b[n - 10..n - 8] == *b"20"
        && digits(n - 8..n - 6)
        && digits(n - 5..n - 3)
        && digits(n - 2..n)
    {
        return name.get(..n - 11);
    }
    // -YYYYMMDD
    if n > 9 && b[n - 9] == b'-' && b[n - 8..n - 6] == *b"20" && digits(n - 6..n) {
        return name.get(..n - 9);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_million(p: f64) -> f64 {
        (p * PER_MILLION * 1e10).round() / 1e10
    }

    #[test]
    fn builtin_table_parses_and_prices_are_sane() {
        let t = Pricing::from_json(BUILTIN_JSON).unwrap();
        assert!(t.len() >= 30);
        assert!(t.as_of().is_some());
        for m in t.models() {
            let prices = [
                Some(m.input),
                m.output,
                m.cache_read,
                m.cache_write_5m,
                m.cache_write_1h,
            ];
            for p in prices.into_iter().flatten() {
                assert!(p.is_finite() && p >= 0.0, "{}: {p}", m.model);
            }
            assert!(!m.provider.is_empty(), "{}", m.model);
            if m.supports_prompt_caching {
                assert!(
                    m.cache_read.is_some(),
                    "{} caches without a read price",
                    m.model
                );
            }
        }
        let raw: Value = serde_json::from_str(BUILTIN_JSON).unwrap();
        assert!(!raw["_sources"].as_array().unwrap().is_empty());
    }

    #[test]
    fn exact_and_alias_lookup() {
        let t = Pricing::builtin();
        let m = t.price("gpt-4o").unwrap();
        assert_eq!(m.model, "gpt-4o");
        assert_eq!(per_million(m.input), 2.5);
        assert_eq!(per_million(m.cache_read.unwrap()), 1.25);
        assert_eq!(t.price("GPT-4o").unwrap().model, "gpt-4o");
        assert_eq!(
            t.price("claude-sonnet-4-0").unwrap().model,
            "claude-sonnet-4"
        );
        assert_eq!(
            t.price("claude-3-5-sonnet-latest").unwrap().model,
            "claude-3-5-sonnet"
        );
    }

    #[test]
    fn dated_suffixes_are_stripped() {
        let t = Pricing::builtin();
        let model = |n: &str| t.price(n).map(|m| m.model.as_str());
        assert_eq!(model("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(model("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(model("gpt-4.1-2025-04-14"), Some("gpt-4.1"));
        assert_eq!(
            model("claude-3-5-sonnet-20241022"),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(model("claude-sonnet-4-20250514"), Some("claude-sonnet-4"));
        assert_eq!(model("claude-opus-4-1-20250805"), Some("claude-opus-4-1"));
        assert_eq!(model("claude-haiku-4-5-20251001"), Some("claude-haiku-4-5"));
        // A snapshot with its own price wins over the stripped name.
        assert_eq!(model("gpt-4o-2024-05-13"), Some("gpt-4o-2024-05-13"));
        // Provider prefixes.
        assert_eq!(
            model("anthropic/claude-sonnet-4.5"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(strip_dated_suffix("gpt-4o-2024-8-06"), None);
        assert_eq!(strip_dated_suffix("-20241022"), None);
    }

    #[test]
    fn unknown_models_have_no_price() {
        let t = Pricing::builtin();
        for name in [
            "",
            "my-local-llama",
            "gpt-4o-audio-preview",
            "o1-preview-2024-09-12",
            "ft:gpt-4o-mini-2024-07-18:org::abc",
            "gpt-4o-20241",
        ] {
            assert!(t.price(name).is_none(), "{name}");
        }
    }

    #[test]
    fn overrides_replace_and_add_models() {
        let o = |model: &str| ModelPriceOverride {
            model: model.into(),
            ..Default::default()
        };
        let overrides = [
            ModelPriceOverride {
                input: Some(2.0),
                ..o("gpt-4o")
            },
            ModelPriceOverride {
                provider: Some("vllm".into()),
                input: Some(0.5),
                output: Some(1.5),
                cache_read: Some(0.05),
                ..o("my-model")
            },
            ModelPriceOverride {
                input: Some(0.1),
                output: Some(0.2),
                ..o("local-*")
            },
            ModelPriceOverride {
                input: Some(0.3),
                output: Some(0.4),
                ..o("local-big-*")
            },
            ModelPriceOverride {
                output: Some(20.0),
                ..o("claude-sonnet-4-20250514")
            },
        ];
        let t = Pricing::with_overrides(&overrides).unwrap();
        let gpt4o = t.price("gpt-4o-2024-11-20").unwrap();
        assert_eq!(per_million(gpt4o.input), 2.0);
        assert_eq!(per_million(gpt4o.output.unwrap()), 10.0);
        assert_eq!(per_million(gpt4o.cache_read.unwrap()), 1.25);

        let mine = t.price("my-model").unwrap();
        assert_eq!(mine.provider, "vllm");
        assert_eq!(per_million(mine.cache_read_price()), 0.05);
        assert!(mine.supports_prompt_caching);

        assert_eq!(t.price("local-small").unwrap().model, "local-*");
        assert_eq!(t.price("local-big-1").unwrap().model, "local-big-*");

        let snap = t.price("claude-sonnet-4-20250514").unwrap();
        assert_eq!(snap.model, "claude-sonnet-4-20250514");
        assert_eq!(per_million(snap.output.unwrap()), 20.0);
        assert_eq!(per_million(snap.input), 3.0);
        assert_eq!(
            per_million(t.price("claude-sonnet-4").unwrap().output.unwrap()),
            15.0
        );
        assert_eq!(t.len(), Pricing::builtin().len() + 4);
    }

    #[test]
    fn bad_overrides_name_the_field() {
        let bad = |o: ModelPriceOverride| Pricing::with_overrides(&[o]).unwrap_err().to_string();
        let msg = bad(ModelPriceOverride {
            model: "gpt-4o".into(),
            input: Some(-1.0),
            ..Default::default()
        });
        assert!(msg.starts_with("pricing.models[0].input:"), "{msg}");
        let msg = bad(ModelPriceOverride {
            model: "brand-new".into(),
            input: Some(1.0),
            ..Default::default()
        });
        assert!(msg.starts_with("pricing.models[0].output:"), "{msg}");
        let msg = bad(ModelPriceOverride::default());
        assert!(msg.starts_with("pricing.models[0].model:"), "{msg}");
    }

    #[test]
    fn config_section_deserializes_strictly() {
        let c: PricingConfig = serde_json::from_str(
            r#"{"models":[{"model":"my-model","input":1.0,"output":2.0,"cache_write":1.25}]}"#,
        )
        .unwrap();
        assert_eq!(c.models[0].cache_write, Some(1.25));
        assert!(c.build().unwrap().price("my-model").is_some());
        assert!(
            serde_json::from_str::<PricingConfig>(r#"{"models":[{"model":"m","inptu":1}]}"#)
                .is_err()
        );
    }
}
