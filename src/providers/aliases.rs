//! Model aliases (`[[routing.models]]`): one model name answered by several
//! `provider/model` targets, chosen per request by the alias's strategy:
//!
//! - `failover`: the first target whose provider has a healthy replica;
//! - `cheapest`: the lowest expected price, prompt caches ignored;
//! - `cache_economics`: the lowest expected cost counting where this
//!   conversation's prefix is probably cached (`economics`), so a prefix stays
//!   where it is cached unless another target is cheaper even uncached.
//!
//! Targets without a healthy replica are passed over while another has one.
//! Targets without a price lose every price comparison.

use std::collections::HashMap;
use std::sync::Arc;

use super::economics::{self, Economics, EXPECTED_OUTPUT_TOKENS};
use super::routing::{AliasChoice, ExpectedCost};
use super::Provider;
use crate::config::{AliasStrategy, ModelAlias};
use crate::cost::Pricing;

#[derive(Debug)]
pub struct Target {
    pub provider: Arc<Provider>,
    /// The model sent upstream.
    pub model: String,
    /// `provider/model`, also the price table name looked up first.
    pub label: String,
    /// Key of the cache-share estimates.
    pub id: u64,
}

#[derive(Debug)]
pub struct Alias {
    pub name: String,
    pub strategy: AliasStrategy,
    pub targets: Vec<Target>,
}

#[derive(Debug, Default)]
pub struct Aliases {
    by_name: HashMap<String, Alias>,
}

impl Aliases {
    /// Aliases whose targets name configured providers (config validation
    /// refuses the others).
    pub fn new(config: &[ModelAlias], providers: &[Arc<Provider>]) -> Self {
        let by_name = config
            .iter()
            .map(|a| {
                let targets = a
                    .targets
                    .iter()
                    .filter_map(|t| {
                        let (name, model) = t.split_once('/')?;
                        let provider = providers.iter().find(|p| p.name == name)?.clone();
                        Some(Target {
                            id: economics::target_id(name, model),
                            label: t.clone(),
                            model: model.to_owned(),
                            provider,
                        })
                    })
                    .collect();
                let alias = Alias {
                    name: a.name.clone(),
                    strategy: a.strategy,
                    targets,
                };
                (a.name.clone(), alias)
            })
            .filter(|(_, a)| !a.targets.is_empty())
            .collect();
        Aliases { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Alias> {
        if self.by_name.is_empty() {
            return None;
        }
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether any alias learns from usage (else nothing is recorded).
    pub fn learns(&self) -> bool {
        self.by_name
            .values()
            .any(|a| a.strategy == AliasStrategy::CacheEconomics)
    }
}

impl Alias {
    /// The target for a request with this opening and estimated prompt size.
    pub fn choose(
        &self,
        pricing: &Pricing,
        estimates: &Economics,
        opening: Option<u64>,
        prompt_tokens: u64,
    ) -> (&Target, AliasChoice) {
        let healthy: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| t.provider.replicas.any_healthy())
            .collect();
        let candidates = if healthy.is_empty() {
            self.targets.iter().collect()
        } else {
            healthy
        };
        let choice = |reason: &'static str, expected_usd: Vec<ExpectedCost>| AliasChoice {
            name: self.name.clone(),
            strategy: self.strategy,
            reason,
            expected_usd,
        };
        let first = candidates[0];
        if self.strategy == AliasStrategy::Failover || candidates.len() == 1 {
            let reason = if candidates.len() < self.targets.len() {
                "only_healthy"
            } else {
                "first_healthy"
            };
            return (first, choice(reason, Vec::new()));
        }

        let learn = self.strategy == AliasStrategy::CacheEconomics;
        let costs: Vec<ExpectedCost> = candidates
            .iter()
            .map(|t| {
                let cached_share = match (learn, opening) {
                    (true, Some(o)) => estimates.expected_share(t.id, o),
                    _ => 0.0,
                };
                let price = pricing.price(&t.label).or_else(|| pricing.price(&t.model));
                let usd = price.map_or(f64::INFINITY, |p| {
                    economics::expected_usd(p, prompt_tokens, cached_share, EXPECTED_OUTPUT_TOKENS)
                });
                let uncached_usd = price.map_or(f64::INFINITY, |p| {
                    economics::expected_usd(p, prompt_tokens, 0.0, EXPECTED_OUTPUT_TOKENS)
                });
                ExpectedCost {
                    target: t.label.clone(),
                    usd,
                    uncached_usd,
                    cached_share,
                }
            })
            .collect();
        let best = argmin(costs.iter().map(|c| c.usd));
        if costs[best].usd.is_infinite() {
            return (first, choice("no_prices", costs));
        }
        let reason = if !learn {
            "cheapest"
        } else if costs[best].cached_share > 0.0
            && best != argmin(costs.iter().map(|c| c.uncached_usd))
        {
            "prefix_cached"
        } else if costs.iter().any(|c| c.cached_share > 0.0) && costs[best].cached_share == 0.0 {
            "cheaper_uncached"
        } else {
            "cheapest"
        };
        (candidates[best], choice(reason, costs))
    }
}

/// Index of the smallest value; the first on ties (preference order).
fn argmin(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, v) in values.enumerate() {
        if v < best.1 {
            best = (i, v);
        }
    }
    best.0
}
