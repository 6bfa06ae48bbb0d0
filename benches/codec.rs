//! Cache entries and response rendering:
//! - `cache::codec::{encode, decode}` (the Redis value format) for 1 KiB,
//!   16 KiB and 256 KiB JSON bodies, with compression off (`compress_min = 0`)
//!   and on (`4096`, the default), next to a plain `serde_json` encoding of the
//!   same entry (JSON vs binary). Encoded sizes are printed once to stderr.
//! - `render::with_routing_metadata` (splicing `routing_metadata` into a
//!   cached body on every hit) for 1 KiB and 16 KiB bodies.
//!
//! `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reprise::cache::codec::{decode, encode};
use reprise::cache::entry::Entry;
use reprise::cache::ttl::Ttl;
use reprise::render::{with_routing_metadata, CacheMetadata, CacheStatus, RoutingMetadata, Tier};
use serde::{Deserialize, Serialize};

/// The same entry as a JSON document: the "obvious" alternative to the binary
/// format (the body embedded as a JSON string, so it is escaped).
#[derive(Serialize, Deserialize)]
struct JsonEntry {
    stream: bool,
    body: String,
    content_type: String,
    written_at_ms: u64,
    ttl_ms: Option<u64>,
    total_tokens: Option<u64>,
}

fn json_entry(entry: &Entry) -> JsonEntry {
    JsonEntry {
        stream: false,
        body: String::from_utf8(entry.body.to_vec()).unwrap(),
        content_type: entry.content_type.clone(),
        written_at_ms: entry.written_at_ms,
        ttl_ms: entry.ttl.duration().map(|d| d.as_millis() as u64),
        total_tokens: entry.total_tokens,
    }
}

const SIZES: [(&str, usize); 3] = [("1KiB", 1024), ("16KiB", 16 * 1024), ("256KiB", 256 * 1024)];

fn entry(size: usize) -> Entry {
    Entry::new(
        Bytes::from(common::completion_body(size)),
        "application/json".into(),
        Ttl::After(Duration::from_secs(3600)),
        Some(1700),
    )
}

fn sizes_report() {
    eprintln!("codec sizes (bytes): body | binary compress_min=0 | binary compress_min=4096 | serde_json entry");
    for (label, size) in SIZES {
        let e = entry(size);
        let off = encode(&e, 0).len();
        let on = encode(&e, 4096).len();
        let json = serde_json::to_vec(&json_entry(&e)).unwrap().len();
        let body = e.body.len();
        eprintln!(
            "codec size {label}: body={body} binary_off={off} ({:.3}x) binary_lz4={on} ({:.3}x) json={json} ({:.3}x)",
            off as f64 / body as f64,
            on as f64 / body as f64,
            json as f64 / body as f64,
        );
    }
}

fn bench_codec(c: &mut Criterion) {
    sizes_report();
    let entries: Vec<(&str, Entry)> = SIZES.iter().map(|(l, s)| (*l, entry(*s))).collect();

    let mut group = c.benchmark_group("codec_encode");
    for (label, e) in &entries {
        group.throughput(Throughput::Bytes(e.body.len() as u64));
        group.bench_with_input(BenchmarkId::new("binary_off", label), e, |b, e| {
            b.iter(|| encode(black_box(e), 0))
        });
        group.bench_with_input(BenchmarkId::new("binary_lz4", label), e, |b, e| {
            b.iter(|| encode(black_box(e), 4096))
        });
        group.bench_with_input(BenchmarkId::new("serde_json", label), e, |b, e| {
            b.iter(|| serde_json::to_vec(&json_entry(black_box(e))).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("codec_decode");
    for (label, e) in &entries {
        group.throughput(Throughput::Bytes(e.body.len() as u64));
        let off = encode(e, 0);
        let on = encode(e, 4096);
        let json = serde_json::to_vec(&json_entry(e)).unwrap();
        group.bench_with_input(BenchmarkId::new("binary_off", label), &off, |b, v| {
            b.iter(|| decode(black_box(v)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("binary_lz4", label), &on, |b, v| {
            b.iter(|| decode(black_box(v)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("serde_json", label), &json, |b, v| {
            b.iter(|| serde_json::from_slice::<JsonEntry>(black_box(v)).unwrap())
        });
    }
    group.finish();

    let meta = RoutingMetadata {
        provider: "openai",
        cache: CacheMetadata {
            status: CacheStatus::Hit,
            tier: Some(Tier::Memory),
            age_s: Some(42),
            tokens_saved: Some(1700),
        },
        cost: None,
        route: None,
    };
    let mut group = c.benchmark_group("with_routing_metadata");
    for (label, size) in [("1KiB", 1024), ("16KiB", 16 * 1024)] {
        let body = common::completion_body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter(|| with_routing_metadata(black_box(body), black_box(&meta)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
