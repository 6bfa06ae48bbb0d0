//! Encryption at rest (`cache::seal`, `cache.encryption = "per-tenant"`):
//! - `seal` / `open`: ChaCha20-Poly1305 of a 400 B and a 64 KiB completion
//!   body with a derived key (what a Redis write / a Redis hit adds);
//! - `derive+open`: the same open with the tenant key derived first (HKDF-
//!   SHA256; once per request that touches Redis);
//! - `decode/plain` vs `decode/sealed`: the whole Redis-value decode of a hit
//!   (`codec::decode_for`), without and with sealing, compression at the
//!   default threshold (4096).
//!
//! Memory (L1) hits hold entries in clear and pay none of this.
//!
//! `cargo bench --bench seal -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reprise::cache::codec::{decode_for, encode_for};
use reprise::cache::entry::Entry;
use reprise::cache::key::CacheKey;
use reprise::cache::seal::Sealer;
use reprise::cache::ttl::Ttl;

const SIZES: [(&str, usize); 2] = [("400B", 400), ("64KiB", 64 * 1024)];
const SECRET: &[u8] = b"a benchmark server secret of 32+ bytes";
const CREDENTIAL: &str = "sk-proj-benchmark-tenant-credential-0123456789";

fn seal_open(c: &mut Criterion) {
    let sealer = Sealer::per_tenant(SECRET);
    let sealing = sealer.tenant(CREDENTIAL);
    let aad = [7u8; 32];
    let mut group = c.benchmark_group("seal");
    for (name, size) in SIZES {
        let body = common::completion_body(size);
        let mut sealed = BytesMut::new();
        assert!(sealing.seal_into(&mut sealed, &aad, &body));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("seal", name), &body, |b, body| {
            b.iter(|| {
                let mut out = BytesMut::with_capacity(body.len() + 28);
                black_box(sealing.seal_into(&mut out, &aad, body));
                out
            })
        });
        group.bench_with_input(BenchmarkId::new("open", name), &sealed, |b, sealed| {
            b.iter(|| black_box(sealing.open(&aad, sealed)))
        });
        group.bench_with_input(
            BenchmarkId::new("derive+open", name),
            &sealed,
            |b, sealed| b.iter(|| black_box(sealer.tenant(CREDENTIAL).open(&aad, sealed))),
        );
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let sealer = Sealer::per_tenant(SECRET);
    let sealing = sealer.tenant(CREDENTIAL);
    let plain = Sealer::off().shared();
    let key = CacheKey([3; 32]);
    let mut group = c.benchmark_group("decode");
    for (name, size) in SIZES {
        let entry = Entry::new(
            Bytes::from(common::completion_body(size)),
            "application/json".into(),
            Ttl::After(Duration::from_secs(3600)),
            Some(1700),
        );
        let as_plain = encode_for(&entry, 4096, &key, &plain).unwrap();
        let as_sealed = encode_for(&entry, 4096, &key, &sealing).unwrap();
        group.throughput(Throughput::Bytes(entry.body.len() as u64));
        group.bench_with_input(BenchmarkId::new("plain", name), &as_plain, |b, v| {
            b.iter(|| black_box(decode_for(v, &key, &plain).unwrap()))
        });
        group.bench_with_input(BenchmarkId::new("sealed", name), &as_sealed, |b, v| {
            b.iter(|| black_box(decode_for(v, &key, &sealing).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, seal_open, decode);
criterion_main!(benches);
