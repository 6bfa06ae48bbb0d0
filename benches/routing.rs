//! The routing cost of one request: picking a replica (prefix affinity with
//! bounded load, round robin, least busy) over 3 and 16 replicas, a
//! `cache_economics` alias choosing between two targets, and the opening
//! digest the affinity hashes (computed once per body, in the same parse as
//! the cache key) for a small, a ~4 KiB and a ~100 KiB chat request.
//!
//! `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use reprise::cache::key::EndpointKind;
use reprise::config::{
    AliasStrategy, Config, ModelAlias, ProviderConfig, ProviderKind, ReplicaStrategy,
};
use reprise::cost::ModelPriceOverride;
use reprise::json::Json;
use reprise::providers::affinity::opening_digest;
use reprise::providers::health::HealthPolicy;
use reprise::providers::replicas::Replicas;
use reprise::providers::Providers;

const POLICY: HealthPolicy = HealthPolicy {
    eject_after: 3,
    backoff: Duration::from_secs(10),
    max_backoff: Duration::from_secs(300),
};

fn replicas(strategy: ReplicaStrategy, n: usize) -> Replicas {
    let urls: Vec<String> = (0..n).map(|i| format!("http://vllm-{i}:8000/v1")).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    Replicas::new(&urls, strategy, 1.25, POLICY)
}

fn bench_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for n in [3usize, 16] {
        for (label, strategy) in [
            ("prefix_affinity", ReplicaStrategy::PrefixAffinity),
            ("round_robin", ReplicaStrategy::RoundRobin),
            ("least_busy", ReplicaStrategy::LeastBusy),
        ] {
            let set = replicas(strategy, n);
            let mut key = 0x9e37_79b9_7f4a_7c15u64;
            group.bench_function(BenchmarkId::new(label, n), |b| {
                b.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    black_box(set.pick(black_box(Some(key)), None))
                })
            });
        }
    }
    group.finish();
}

fn bench_alias(c: &mut Criterion) {
    let mut config = Config {
        providers: vec![
            ProviderConfig::new("a", ProviderKind::Openai, "http://a/v1", &[]),
            ProviderConfig::new("b", ProviderKind::Openai, "http://b/v1", &[]),
        ],
        ..Config::default()
    };
    config.routing.default_provider = Some("a".into());
    config.routing.models = vec![ModelAlias {
        name: "llama".into(),
        targets: vec!["a/m".into(), "b/m".into()],
        strategy: AliasStrategy::CacheEconomics,
    }];
    for (model, input) in [("a/m", 1.0), ("b/m", 1.05)] {
        config.pricing.models.push(ModelPriceOverride {
            model: model.into(),
            input: Some(input),
            output: Some(1.0),
            cache_read: Some(input / 10.0),
            ..ModelPriceOverride::default()
        });
    }
    let pricing = config.pricing.build().unwrap();
    let providers = Providers::from_config(&config);
    let alias = providers.aliases.get("llama").unwrap();
    // Half the openings have an estimate at `b`.
    for opening in 0..1000u64 {
        if opening % 2 == 0 {
            providers.economics.observe(
                reprise::providers::economics::target_id("b", "m"),
                opening,
                1000,
                0,
            );
        }
    }
    let mut opening = 0u64;
    c.bench_function("alias/cache_economics_2_targets", |b| {
        b.iter(|| {
            opening = (opening + 1) % 1000;
            let (target, choice) = alias.choose(
                &pricing,
                &providers.economics,
                black_box(Some(opening)),
                black_box(2000),
            );
            black_box((target.id, choice.reason))
        })
    });
}

fn bench_opening(c: &mut Criterion) {
    let mut group = c.benchmark_group("opening_digest");
    for (label, bytes) in common::request_bodies() {
        let json = Json::parse(&bytes).unwrap();
        group.bench_function(label, |b| {
            b.iter(|| black_box(opening_digest(EndpointKind::Chat, black_box(&json))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pick, bench_alias, bench_opening);
criterion_main!(benches);
