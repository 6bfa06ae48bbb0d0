//! Cache economics: the expected cost of one request at one target, counting
//! how much of its prompt that target probably holds in its prompt cache.
//!
//! The estimate is learned online, per (target, conversation opening): after
//! a target served a prefix, the prefix is in its cache (a first serve
//! counts as fully warm); every later answer's usage tells the share of the
//! prompt that was actually read from cache, and the estimate moves halfway
//! towards it (a provider that never caches is unlearned in a few requests).
//! Prompt caches expire, so the estimate halves every `cache_half_life`
//! without a request refreshing it. A prompt shorter than the target's
//! minimum cacheable length is expected to be uncached.
//!
//! expected USD = prompt × ((1 − share) × write-or-input price + share ×
//! cache-read price) + expected output × output price, where the uncached
//! part costs the cache-write price when the model charges for writes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::health::Clock;
use crate::cost::ModelPrice;

/// Remembered (target, opening) pairs; past it, the oldest half is dropped.
const CAPACITY: usize = 65_536;
/// Weight of a new observation in the estimate.
const LEARNING_RATE: f64 = 0.5;
/// Output tokens assumed when comparing targets (only relative costs matter;
/// the request's own `max_tokens` caps it).
pub const EXPECTED_OUTPUT_TOKENS: u64 = 256;

#[derive(Debug, Clone, Copy)]
struct Estimate {
    share: f64,
    at_ms: u64,
}

#[derive(Debug)]
pub struct Economics {
    estimates: Mutex<HashMap<(u64, u64), Estimate>>,
    half_life_ms: f64,
    clock: Clock,
}

impl Economics {
    pub fn new(half_life: Duration) -> Self {
        Economics {
            estimates: Mutex::new(HashMap::new()),
            half_life_ms: half_life.as_secs_f64().max(0.001) * 1e3,
            clock: Clock::new(),
        }
    }

    /// The share of this opening's next prompt expected to be read from
    /// `target`'s cache, in [0, 1].
    pub fn expected_share(&self, target: u64, opening: u64) -> f64 {
        let now = self.clock.now_ms();
        let estimates = self.estimates.lock().unwrap_or_else(|p| p.into_inner());
        estimates.get(&(target, opening)).map_or(0.0, |e| {
            let age = now.saturating_sub(e.at_ms) as f64;
            e.share * 0.5f64.powf(age / self.half_life_ms)
        })
    }

    /// Learns from one answer's usage at `target`.
    pub fn observe(&self, target: u64, opening: u64, prompt_tokens: u64, cached_tokens: u64) {
        if prompt_tokens == 0 {
            return;
        }
        let observed = (cached_tokens as f64 / prompt_tokens as f64).clamp(0.0, 1.0);
        let now = self.clock.now_ms();
        let mut estimates = self.estimates.lock().unwrap_or_else(|p| p.into_inner());
        if estimates.len() >= CAPACITY && !estimates.contains_key(&(target, opening)) {
            evict_oldest_half(&mut estimates);
        }
        let next = match estimates.get(&(target, opening)) {
            // Just served: the whole prompt was written to this target's cache.
            None => 1.0,
            Some(e) => e.share + LEARNING_RATE * (observed - e.share),
        };
        estimates.insert(
            (target, opening),
            Estimate {
                share: next.clamp(0.0, 1.0),
                at_ms: now,
            },
        );
    }
}

fn evict_oldest_half(estimates: &mut HashMap<(u64, u64), Estimate>) {
    let mut ages: Vec<u64> = estimates.values().map(|e| e.at_ms).collect();
    let middle = ages.len() / 2;
    let (_, cutoff, _) = ages.select_nth_unstable(middle);
    let cutoff = *cutoff;
    estimates.retain(|_, e| e.at_ms > cutoff);
}

/// Expected USD of a request of `prompt_tokens` with `share` of them cached.
pub fn expected_usd(price: &ModelPrice, prompt_tokens: u64, share: f64, output_tokens: u64) -> f64 {
    let cacheable = price
        .min_cacheable_tokens
        .is_none_or(|min| prompt_tokens >= min);
    let share = if cacheable {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let uncached_price = match price.cache_write_5m {
        Some(write) if price.supports_prompt_caching && cacheable => write,
        _ => price.input,
    };
    let prompt = prompt_tokens as f64;
    let per_million = prompt * ((1.0 - share) * uncached_price + share * price.cache_read_price())
        + output_tokens as f64 * price.output_price();
    per_million / 1e6
}

/// A stable 64-bit id of a `provider/model` target (FNV-1a).
pub fn target_id(provider: &str, model: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in provider.bytes().chain([b'/']).chain(model.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: f64, read: Option<f64>, min: Option<u64>) -> ModelPrice {
        ModelPrice {
            model: "m".into(),
            provider: "p".into(),
            input,
            output: Some(1.0),
            cache_read: read,
            cache_write_5m: None,
            cache_write_1h: None,
            supports_prompt_caching: read.is_some(),
            min_cacheable_tokens: min,
            aliases: Vec::new(),
            patterns: Vec::new(),
        }
    }

    #[test]
    fn learns_warms_and_decays() {
        let e = Economics::new(Duration::from_secs(300));
        assert_eq!(e.expected_share(1, 7), 0.0);
        e.observe(1, 7, 1000, 0);
        assert!(
            e.expected_share(1, 7) > 0.99,
            "a first serve warms the prefix"
        );
        assert_eq!(e.expected_share(2, 7), 0.0, "only at that target");
        e.observe(1, 7, 1000, 0);
        e.observe(1, 7, 1000, 0);
        assert!(
            (e.expected_share(1, 7) - 0.25).abs() < 0.01,
            "a cache that never hits is unlearned"
        );
        e.observe(1, 7, 1000, 900);
        assert!((e.expected_share(1, 7) - 0.575).abs() < 0.01);
    }

    #[tokio::test(start_paused = true)]
    async fn the_estimate_halves_every_half_life() {
        let e = Economics::new(Duration::from_secs(300));
        e.observe(1, 7, 1000, 0);
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!((e.expected_share(1, 7) - 0.5).abs() < 0.01);
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!((e.expected_share(1, 7) - 0.25).abs() < 0.01);
    }

    #[test]
    fn expected_cost_counts_cache_reads_minimum_and_writes() {
        let p = price(1.0, Some(0.1), Some(1024));
        let cold = expected_usd(&p, 2000, 0.0, 0);
        let warm = expected_usd(&p, 2000, 1.0, 0);
        assert!((cold - 0.002).abs() < 1e-12);
        assert!((warm - 0.0002).abs() < 1e-12);
        // Under the minimum cacheable length nothing is read from cache.
        assert_eq!(
            expected_usd(&p, 1000, 1.0, 0),
            expected_usd(&p, 1000, 0.0, 0)
        );
        let mut writes = p.clone();
        writes.cache_write_5m = Some(1.25);
        assert!((expected_usd(&writes, 2000, 0.0, 0) - 0.0025).abs() < 1e-12);
        assert!((expected_usd(&p, 0, 0.0, 256) - 0.000256).abs() < 1e-12);
    }

    #[test]
    fn bounded_memory_and_stable_ids() {
        let e = Economics::new(Duration::from_secs(300));
        for i in 0..(CAPACITY as u64 + 10) {
            e.observe(1, i, 10, 0);
        }
        assert!(e.estimates.lock().unwrap().len() <= CAPACITY);
        assert_eq!(target_id("a", "m"), target_id("a", "m"));
        assert_ne!(target_id("a", "m"), target_id("b", "m"));
        assert_ne!(target_id("a/b", "c"), target_id("a", "bc"));
    }
}
