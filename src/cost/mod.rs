//! What a call cost and what caching saved: the price table ([`pricing`]),
//! usage normalization ([`usage`]) and the `routing_metadata.cost` numbers.
//!
//! - A miss costs what the provider bills: uncached input, cache reads and
//!   writes at their own prices, output. Its savings are measured against the
//!   same call with no prompt caching; they are negative when a cache write
//!   cost more than it saved, and reported as such.
//! - A hit costs nothing; it saved what the original call cost.
//!
//! A model without a price gets no cost at all (never a guessed one).

pub mod pricing;
pub mod usage;

use serde::Serialize;

pub use pricing::{ModelPrice, ModelPriceOverride, Pricing, PricingConfig, PricingError};
pub use usage::{normalize, openai_usage_fields, NormalizedUsage, TokenCounts};

/// `routing_metadata.cost`. `cache_savings_percent` (0–100) is present only
/// when the savings are positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    pub usd: f64,
    pub cache_savings_usd: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_savings_percent: Option<u8>,
}

/// USD rounded to 10 decimal places, so JSON shows no float noise.
fn round_usd(usd: f64) -> f64 {
    let r = (usd * 1e10).round() / 1e10;
    if r == 0.0 {
        0.0 // no "-0.0"
    } else {
        r
    }
}

/// The cost of a call the provider answered, and its savings against the
/// same call without prompt caching.
pub fn miss_cost(price: &ModelPrice, usage: &NormalizedUsage) -> Cost {
    let at = |tokens: u64, per_token: f64| tokens as f64 * per_token;
    let output = at(usage.output, price.output_price());
    let raw = at(usage.input_uncached, price.input)
        + at(usage.cache_read, price.cache_read_price())
        + at(usage.cache_write_5m, price.cache_write_5m_price())
        + at(usage.cache_write_1h, price.cache_write_1h_price())
        + output;
    let all_prompt = usage
        .input_uncached
        .saturating_add(usage.cache_read)
        .saturating_add(usage.cache_write_5m)
        .saturating_add(usage.cache_write_1h);
    let baseline = at(all_prompt, price.input) + output;
    let savings = round_usd(baseline - raw);
    let percent = (savings > 0.0 && baseline > 0.0).then(|| {
        (100.0 * (baseline - raw) / baseline)
            .round()
            .clamp(0.0, 100.0) as u8
    });
    Cost {
        usd: round_usd(raw),
        cache_savings_usd: savings,
        cache_savings_percent: percent,
    }
}

/// The cost of a cache hit: nothing, having saved what the original call cost.
pub fn hit_cost(price: &ModelPrice, usage: &NormalizedUsage) -> Cost {
    let original = miss_cost(price, usage).usd;
    Cost {
        usd: 0.0,
        cache_savings_usd: original,
        cache_savings_percent: (original > 0.0).then_some(100),
    }
}

/// One row of `GET /v1/directory/models`; prices in USD per million tokens.
/// `cache_write_price` is the 5-minute write price of a model that supports
/// prompt caching (the input price where writes cost nothing extra);
/// `cache_write_1h_price` only where the provider sells 1-hour writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectoryEntry {
    pub model: String,
    pub provider: String,
    pub input_price: f64,
    pub output_price: Option<f64>,
    pub cache_read_price: Option<f64>,
    pub cache_write_price: Option<f64>,
    pub cache_write_1h_price: Option<f64>,
    pub supports_prompt_caching: bool,
    pub min_cacheable_tokens: Option<u64>,
}

/// The directory of priced models, in table order.
pub fn directory(pricing: &Pricing) -> Vec<DirectoryEntry> {
    let per_million = |p: f64| round_usd(p * 1_000_000.0);
    pricing
        .models()
        .iter()
        .map(|m| DirectoryEntry {
            model: m.model.clone(),
            provider: m.provider.clone(),
            input_price: per_million(m.input),
            output_price: m.output.map(per_million),
            cache_read_price: m.cache_read.map(per_million),
            cache_write_price: m
                .supports_prompt_caching
                .then(|| per_million(m.cache_write_5m_price())),
            cache_write_1h_price: m.cache_write_1h.map(per_million),
            supports_prompt_caching: m.supports_prompt_caching,
            min_cacheable_tokens: m.min_cacheable_tokens,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn priced(model: &str, usage: serde_json::Value) -> (ModelPrice, NormalizedUsage) {
        let price = Pricing::builtin().price(model).unwrap().clone();
        (price, normalize(&usage).unwrap())
    }

    #[test]
    fn gpt_4o_miss_and_hit() {
        // 300 uncached × $2.50/M + 1200 cached × $1.25/M + 200 out × $10/M
        // = 0.00075 + 0.0015 + 0.002; without caching 1500 × $2.50/M + 0.002.
        let (p, u) = priced(
            "gpt-4o-2024-08-06",
            json!({"prompt_tokens": 1500, "completion_tokens": 200, "total_tokens": 1700,
                   "prompt_tokens_details": {"cached_tokens": 1200}}),
        );
        let miss = miss_cost(&p, &u);
        assert_eq!(
            miss,
            Cost {
                usd: 0.00425,
                cache_savings_usd: 0.0015,
                cache_savings_percent: Some(26), // 0.0015 / 0.00575
            }
        );
        assert_eq!(
            serde_json::to_value(miss).unwrap(),
            json!({"usd": 0.00425, "cache_savings_usd": 0.0015, "cache_savings_percent": 26})
        );
        let hit = hit_cost(&p, &u);
        assert_eq!(
            serde_json::to_value(hit).unwrap(),
            json!({"usd": 0.0, "cache_savings_usd": 0.00425, "cache_savings_percent": 100})
        );
    }

    #[test]
    fn claude_sonnet_4_miss_and_hit() {
        // 300 × $3/M + 1200 reads × $0.30/M + 300 writes × $3.75/M + 200 × $15/M
        // = 0.0009 + 0.00036 + 0.001125 + 0.003 = 0.005385;
        // without caching 1800 × $3/M + 0.003 = 0.0084.
        let (p, u) = priced(
            "claude-sonnet-4-20250514",
            json!({"input_tokens": 300, "cache_read_input_tokens": 1200,
                   "cache_creation_input_tokens": 300, "output_tokens": 200}),
        );
        assert_eq!(
            miss_cost(&p, &u),
            Cost {
                usd: 0.005385,
                cache_savings_usd: 0.003015,
                cache_savings_percent: Some(36), // 0.003015 / 0.0084 = 35.9 %
            }
        );
        assert_eq!(
            hit_cost(&p, &u),
            Cost {
                usd: 0.0,
                cache_savings_usd: 0.005385,
                cache_savings_percent: Some(100),
            }
        );
    }

    #[test]
    fn first_cache_write_costs_more_and_says_so() {
        // 300 × $3/M + 1200 writes × $3.75/M + 200 × $15/M = 0.0084;
        // without caching 1500 × $3/M + 0.003 = 0.0075: savings −0.0009.
        let (p, u) = priced(
            "claude-sonnet-4",
            json!({"input_tokens": 300, "cache_read_input_tokens": 0,
                   "cache_creation_input_tokens": 1200, "output_tokens": 200}),
        );
        let miss = miss_cost(&p, &u);
        assert_eq!(
            miss,
            Cost {
                usd: 0.0084,
                cache_savings_usd: -0.0009,
                cache_savings_percent: None,
            }
        );
        assert_eq!(
            serde_json::to_value(miss).unwrap(),
            json!({"usd": 0.0084, "cache_savings_usd": -0.0009})
        );

        // 1-hour writes at 2× input: 1200 × $6/M = 0.0072 (+0.0009 +0.003).
        let (p, u) = priced(
            "claude-sonnet-4",
            json!({"input_tokens": 300, "cache_creation_input_tokens": 1200, "output_tokens": 200,
                   "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1200}}),
        );
        assert_eq!(miss_cost(&p, &u).usd, 0.0111);
    }

    #[test]
    fn deepseek_and_embeddings_and_zero_cost() {
        // 232 × $0.28/M + 768 × $0.028/M + 50 × $0.42/M.
        let (p, u) = priced(
            "deepseek-chat",
            json!({"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050,
                   "prompt_cache_hit_tokens": 768, "prompt_cache_miss_tokens": 232}),
        );
        let miss = miss_cost(&p, &u);
        assert_eq!(miss.usd, 0.000107464);
        assert_eq!(miss.cache_savings_usd, 0.000193536);
        assert_eq!(miss.cache_savings_percent, Some(64));

        let (p, u) = priced(
            "text-embedding-3-small",
            json!({"prompt_tokens": 1000, "total_tokens": 1000}),
        );
        assert_eq!(
            miss_cost(&p, &u),
            Cost {
                usd: 0.00002,
                cache_savings_usd: 0.0,
                cache_savings_percent: None,
            }
        );
        let zero = hit_cost(&p, &NormalizedUsage::default());
        assert_eq!(zero.cache_savings_percent, None);
        assert_eq!(
            serde_json::to_value(zero).unwrap(),
            json!({"usd": 0.0, "cache_savings_usd": 0.0})
        );
    }

    #[test]
    fn directory_lists_every_model_per_million() {
        let t = Pricing::builtin();
        let d = directory(&t);
        assert_eq!(d.len(), t.len());
        let sonnet = d.iter().find(|e| e.model == "claude-sonnet-4").unwrap();
        assert_eq!(
            serde_json::to_value(sonnet).unwrap(),
            json!({"model": "claude-sonnet-4", "provider": "anthropic", "input_price": 3.0,
                   "output_price": 15.0, "cache_read_price": 0.3, "cache_write_price": 3.75,
                   "cache_write_1h_price": 6.0, "supports_prompt_caching": true,
                   "min_cacheable_tokens": 1024})
        );
        let mini = d.iter().find(|e| e.model == "gpt-4o-mini").unwrap();
        assert_eq!(
            (
                mini.input_price,
                mini.cache_read_price,
                mini.cache_write_price
            ),
            (0.15, Some(0.075), Some(0.15))
        );
        let emb = d
            .iter()
            .find(|e| e.model == "text-embedding-3-large")
            .unwrap();
        assert_eq!((emb.output_price, emb.cache_write_price), (None, None));
    }
}
