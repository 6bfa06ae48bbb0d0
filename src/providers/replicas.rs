//! A provider's replicas (`base_urls`) and how one is picked per request.
//!
//! - `prefix_affinity`: rendezvous (highest-random-weight) hashing of the
//!   conversation's opening (`affinity`), so every turn of a conversation
//!   reaches the replica that holds its prefix, different conversations
//!   spread, and losing a replica moves only its own conversations. Bounded
//!   load: a replica whose in-flight count would exceed `max_load_factor` ×
//!   the mean takes no new request; it goes to the next replica in that
//!   conversation's rendezvous order (consistent, so a spilled conversation
//!   keeps spilling to the same place). Requests without an opening
//!   (embeddings) go to the least busy replica.
//! - `round_robin`, `least_busy`: what they say.
//!
//! Only healthy replicas are candidates; when none is, every replica is (a
//! request that may fail beats a refusal that surely does).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::health::{Clock, Health, HealthPolicy};
use super::Provider;
use crate::config::ReplicaStrategy;

/// Upper bound of `base_urls` (validated in config).
pub const MAX_REPLICAS: usize = 64;

#[derive(Debug)]
pub struct Replica {
    /// Without a trailing slash.
    pub base_url: String,
    /// Rendezvous seed, from the URL: stable across restarts and instances,
    /// and independent of list order.
    seed: u64,
    pub health: Health,
    in_flight: AtomicU32,
    /// [`API_PATHS`] on this replica, parsed once (a URL parse with its
    /// IDNA host check was ≈ 3 % of a miss's CPU when done per request).
    api_urls: Vec<(&'static str, reqwest::Url)>,
}

/// The paths requests are forwarded to (`pipeline::adapt::path`).
pub const API_PATHS: [&str; 3] = ["/chat/completions", "/messages", "/embeddings"];

impl Replica {
    /// The parsed URL of `path` on this replica, when it is one of
    /// [`API_PATHS`] and the base URL parses.
    pub fn api_url(&self, path: &str) -> Option<reqwest::Url> {
        self.api_urls
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, url)| url.clone())
    }
}

/// Why this replica was picked (`routing_metadata.route.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PickReason {
    /// The provider has one upstream.
    Only,
    /// First in the conversation's rendezvous order.
    Affinity,
    /// Its first choice was over the load bound.
    Spilled,
    RoundRobin,
    LeastBusy,
    /// No replica was healthy: tried anyway.
    AllEjected,
    /// The first attempt failed before any response byte; this is the retry.
    Failover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub index: usize,
    pub reason: PickReason,
}

#[derive(Debug)]
pub struct Replicas {
    list: Vec<Replica>,
    strategy: ReplicaStrategy,
    max_load_factor: f64,
    pub policy: HealthPolicy,
    clock: Clock,
    next: AtomicUsize,
}

impl Replicas {
    pub fn new(
        urls: &[&str],
        strategy: ReplicaStrategy,
        max_load_factor: f64,
        policy: HealthPolicy,
    ) -> Self {
        let list = urls
            .iter()
            .map(|u| {
                let base_url = u.trim_end_matches('/').to_owned();
                let digest = Sha256::digest(base_url.as_bytes());
                let mut seed = [0u8; 8];
                seed.copy_from_slice(&digest[..8]);
                let api_urls = API_PATHS
                    .iter()
                    .filter_map(|p| {
                        Some((*p, reqwest::Url::parse(&format!("{base_url}{p}")).ok()?))
                    })
                    .collect();
                Replica {
                    base_url,
                    seed: u64::from_le_bytes(seed),
                    health: Health::default(),
                    in_flight: AtomicU32::new(0),
                    api_urls,
                }
            })
            .collect();
        Replicas {
            list,
            strategy,
            max_load_factor,
            policy,
            clock: Clock::new(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Replica> {
        self.list.get(index)
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Whether any replica takes traffic.
    pub fn any_healthy(&self) -> bool {
        let now = self.now_ms();
        self.list.iter().any(|r| r.health.is_healthy(now))
    }

    pub fn in_flight(&self, index: usize) -> u32 {
        self.list
            .get(index)
            .map_or(0, |r| r.in_flight.load(Ordering::Relaxed))
    }

    /// Picks a replica for a request with this opening digest; `exclude`
    /// (the replica that just failed) is never picked. None only when the
    /// exclusion leaves nothing.
    pub fn pick(&self, affinity: Option<u64>, exclude: Option<usize>) -> Option<Pick> {
        if self.list.len() == 1 {
            return (exclude != Some(0)).then_some(Pick {
                index: 0,
                reason: PickReason::Only,
            });
        }
        let now = self.now_ms();
        let healthy = |i: usize| Some(i) != exclude && self.list[i].health.is_healthy(now);
        if let Some(pick) = self.pick_among(affinity, healthy) {
            return Some(pick);
        }
        self.pick_among(affinity, |i| Some(i) != exclude)
            .map(|p| Pick {
                index: p.index,
                reason: PickReason::AllEjected,
            })
    }

    fn pick_among(&self, affinity: Option<u64>, candidate: impl Fn(usize) -> bool) -> Option<Pick> {
        match (self.strategy, affinity) {
            (ReplicaStrategy::PrefixAffinity, Some(key)) => self.rendezvous(key, candidate),
            (ReplicaStrategy::RoundRobin, _) => self.round_robin(candidate),
            _ => self.least_busy(candidate),
        }
    }

    fn rendezvous(&self, key: u64, candidate: impl Fn(usize) -> bool) -> Option<Pick> {
        let (mut count, mut total) = (0u64, 0u64);
        for (i, r) in self.list.iter().enumerate() {
            if candidate(i) {
                count += 1;
                total += u64::from(r.in_flight.load(Ordering::Relaxed));
            }
        }
        if count == 0 {
            return None;
        }
        // Capacity counts this request; ceil(c × mean) never drops below the
        // least loaded replica's count + 1, so someone always fits.
        let capacity = (self.max_load_factor * (total + 1) as f64 / count as f64).ceil() as u64;
        let mut best: Option<(u64, usize)> = None;
        let mut fitting: Option<(u64, usize)> = None;
        for (i, r) in self.list.iter().enumerate() {
            if !candidate(i) {
                continue;
            }
            let score = mix(key ^ r.seed);
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
            let load = u64::from(r.in_flight.load(Ordering::Relaxed));
            if load < capacity && fitting.is_none_or(|(s, _)| score > s) {
                fitting = Some((score, i));
            }
        }
        let (_, first) = best?;
        Some(match fitting {
            Some((_, i)) if i != first => Pick {
                index: i,
                reason: PickReason::Spilled,
            },
            _ => Pick {
                index: first,
                reason: PickReason::Affinity,
            },
        })
    }

    fn round_robin(&self, candidate: impl Fn(usize) -> bool) -> Option<Pick> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| candidate(i))
            .map(|index| Pick {
                index,
                reason: PickReason::RoundRobin,
            })
    }

    /// Fewest in flight; ties rotate, so an idle set still spreads.
    fn least_busy(&self, candidate: impl Fn(usize) -> bool) -> Option<Pick> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| candidate(i))
            .min_by_key(|&i| self.list[i].in_flight.load(Ordering::Relaxed))
            .map(|index| Pick {
                index,
                reason: PickReason::LeastBusy,
            })
    }

    /// The outcome of one attempt: `ok` = an answer the caller can use.
    pub fn record(&self, index: usize, ok: bool) {
        let Some(r) = self.list.get(index) else {
            return;
        };
        if ok {
            r.health.record_success();
        } else if r.health.record_failure(self.now_ms(), &self.policy) {
            tracing::warn!(replica = %r.base_url, "replica ejected after consecutive failures");
        }
    }

    /// Replicas whose ejection ended and whose probe the caller now owns.
    pub fn claim_probes(&self) -> Vec<usize> {
        if self.list.len() == 1 {
            return Vec::new();
        }
        let now = self.now_ms();
        (0..self.list.len())
            .filter(|&i| self.list[i].health.claim_probe(now))
            .collect()
    }

    pub fn probe_done(&self, index: usize, ok: bool) {
        if let Some(r) = self.list.get(index) {
            r.health.probe_done(ok, self.now_ms(), &self.policy);
        }
    }
}

/// A request in flight on one replica; the count drops when this does (for
/// streams, when the provider's stream ends).
#[derive(Debug)]
pub struct InFlight {
    provider: Arc<Provider>,
    index: usize,
}

impl InFlight {
    pub fn begin(provider: &Arc<Provider>, index: usize) -> Self {
        if let Some(r) = provider.replicas.get(index) {
            r.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            provider: provider.clone(),
            index,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(r) = self.provider.replicas.get(self.index) {
            r.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// SplitMix64's finalizer: a cheap, well-mixing 64-bit permutation.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[path = "replicas_tests.rs"]
mod tests;
