//! What the operator features add to one cache hit (issue 13): the purge
//! watermark check every lookup makes (with the rules `bench/operator.sh`
//! sets: a custom-key glob in the caller's namespace, a model rule, another
//! tenant's namespace), and the fleet-stats tally every finished request adds
//! to; next to the per-instance stats record every request makes anyway.
//! A memory-tier hit costs ~13 µs of CPU (BENCHMARKS.md), so ≥ 0.95× hit
//! throughput needs these under ~650 ns together.
//!
//! `cargo bench --bench operator -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use reprise::admin::fleet::Fleet;
use reprise::admin::watermarks::{Rule, Scope, Stamp, Watermarks};
use reprise::cache::key::CacheKey;
use reprise::render::{CacheStatus, Tier};
use reprise::stats::{Record, Stats};

const NAMESPACE: &str = "3f9a0c1e5b7d2a4c";

fn rule(namespace: Option<&str>, model: Option<&str>, custom_key: Option<&str>) -> Rule {
    Rule {
        namespace: namespace.map(String::from),
        model: model.map(String::from),
        endpoint: None,
        key: None,
        custom_key: custom_key.map(String::from),
    }
}

fn bench_operator(c: &mut Criterion) {
    let key = CacheKey([7; 32]);
    let scope = Scope {
        namespace: NAMESPACE,
        model: "gpt-4o-mini",
        endpoint: "chat",
        key: &key,
        custom_key: None,
    };
    let stamp = Stamp {
        watermark_ms: 2_000,
        created_ms: 2_000,
    };

    let none = Watermarks::default();
    c.bench_function("watermarks/no_rules", |b| {
        b.iter(|| black_box(none.purged(black_box(&scope), 5_000)))
    });
    let marks = Watermarks::default();
    marks.merge(
        [
            (rule(Some(NAMESPACE), None, Some("nomatch:*")), stamp),
            (rule(Some(NAMESPACE), Some("some-other-model"), None), stamp),
            (rule(Some("another-tenant"), None, None), stamp),
        ],
        0,
    );
    c.bench_function("watermarks/three_rules", |b| {
        b.iter(|| black_box(marks.purged(black_box(&scope), 5_000)))
    });

    let hit = Record {
        status: Some(CacheStatus::Hit),
        tier: Some(Tier::Memory),
        tokens_saved: 1700,
        usd_saved_cache: 0.0062,
        latency_saved_ms: 420,
        ..Record::default()
    };
    let fleet = Fleet::default();
    c.bench_function("fleet/record_hit", |b| {
        b.iter(|| fleet.record(NAMESPACE, "chat", black_box("gpt-4o-mini"), black_box(&hit)))
    });
    let stats = Stats::default();
    c.bench_function("stats/record_hit", |b| {
        b.iter(|| stats.record(NAMESPACE, "chat", black_box("gpt-4o-mini"), black_box(&hit)))
    });
}

criterion_group!(benches, bench_operator);
criterion_main!(benches);
