//! The semantic tier's CPU costs: embedding one short message with the local model on
//! one core (`LocalEmbedder` with a 1-thread pool), and a brute-force cosine lookup
//! (`Index::search` over a partition of 1k / 10k normalized 384-d vectors).
//!
//! Needs the model: `./scripts/fetch-embedding-model.sh` (or REPRISE_MODEL_DIR).
//! `cargo bench --bench semantic -- --warm-up-time 1 --measurement-time 5`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use reprise::cache::key::CacheKey;
use reprise::semantic::defaults::DEFAULT_JUDGE_FLOOR;
use reprise::semantic::index::{Index, Item};
use reprise::semantic::partition::PartitionId;
use reprise::semantic::tier::CANDIDATES;
use reprise::semantic::{default_model_dir, LocalEmbedder};

const SHORT_MESSAGES: [&str; 4] = [
    "How do I reset my password?",
    "What time does the leisure centre open on Mondays?",
    "Can I change the name on my flight ticket after booking it online?",
    "Which plans include international calls to Canada and Mexico?",
];

fn bench_embed(c: &mut Criterion) {
    let embedder = LocalEmbedder::load_with_threads(&default_model_dir(), 1)
        .expect("model missing: run scripts/fetch-embedding-model.sh");
    let mut i = 0;
    c.bench_function("embed/short_message/1_thread", |b| {
        b.iter(|| {
            i = (i + 1) % SHORT_MESSAGES.len();
            black_box(embedder.embed(black_box(SHORT_MESSAGES[i])).unwrap())
        })
    });
}

/// Deterministic pseudo-random unit vectors (xorshift), so runs compare.
fn unit_vectors(n: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            let mut v: Vec<f32> = (0..dim)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

fn bench_lookup(c: &mut Criterion) {
    // The tier's own index (`Index::search`: dot products over one partition,
    // unblocked items above the floor, best first), filled with n vectors.
    let query = unit_vectors(1, 384).remove(0);
    let partition = PartitionId([7; 32]);
    let mut group = c.benchmark_group("lookup/partition_search");
    for n in [1_000usize, 10_000] {
        let index = Index::new(n);
        for (i, v) in unit_vectors(n, 384).into_iter().enumerate() {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let item = Item {
                key: CacheKey(key),
                vector: v.into(),
                text: "stored text".into(),
                blocked: false,
                observations: Default::default(),
            };
            index.insert("ns", partition, item);
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &index, |b, index| {
            b.iter(|| {
                black_box(index.search(
                    "ns",
                    &partition,
                    black_box(&query),
                    DEFAULT_JUDGE_FLOOR,
                    CANDIDATES,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_embed, bench_lookup);
criterion_main!(benches);
