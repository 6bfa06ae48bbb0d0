//! The semantic tier's CPU costs: embedding one short message with the local model on
//! one core (`LocalEmbedder` with a 1-thread pool), and a brute-force cosine lookup
//! (best match over a partition of 1k / 10k normalized 384-d vectors).
//!
//! Needs the model: `./scripts/fetch-embedding-model.sh` (or REPRISE_MODEL_DIR).
//! `cargo bench --bench semantic -- --warm-up-time 1 --measurement-time 5`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use reprise::semantic::{cosine, default_model_dir, LocalEmbedder};

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

fn best_match(query: &[f32], index: &[Vec<f32>]) -> (usize, f32) {
    index
        .iter()
        .enumerate()
        .map(|(i, v)| (i, cosine(query, v)))
        .fold(
            (0, f32::MIN),
            |best, cur| if cur.1 > best.1 { cur } else { best },
        )
}

fn bench_lookup(c: &mut Criterion) {
    let query = unit_vectors(1, 384).remove(0);
    let mut group = c.benchmark_group("lookup/brute_force_cosine");
    for n in [1_000usize, 10_000] {
        let index = unit_vectors(n, 384);
        group.bench_with_input(BenchmarkId::from_parameter(n), &index, |b, index| {
            b.iter(|| black_box(best_match(black_box(&query), index)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_embed, bench_lookup);
criterion_main!(benches);
