//! The request side of the hit path: parsing the caller's JSON bytes into the
//! borrowed `json::Json` tree (what `server::parse_object` does) and computing
//! the cache key from it (`cache::key::body_key`), for a small, a ~4 KiB and a
//! ~100 KiB chat request (system prompt, several turns, a tool call, tools).
//! `parse_json_map` is the owned `serde_json::Map` parse the request side used
//! before (and the miss path still does, to build the upstream payload).
//!
//! `cargo bench --bench key -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reprise::cache::key::{body_key, EndpointKind, KeyScope};
use reprise::json::Json;
use serde_json::{Map, Value};

fn parse(bytes: &[u8]) -> Json<'_> {
    Json::parse(bytes).unwrap()
}

fn parse_map(bytes: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(bytes).unwrap()
}

fn scope() -> KeyScope<'static> {
    KeyScope {
        namespace: "3f2a9c1b7d4e8f60a1b2c3d4e5f60718",
        kind: EndpointKind::Chat,
        provider: "openai",
        model: "gpt-4o-mini",
    }
}

fn bench_key(c: &mut Criterion) {
    let bodies = common::request_bodies();
    for (label, bytes) in &bodies {
        eprintln!("key bench body {label}: {} bytes", bytes.len());
    }

    let mut group = c.benchmark_group("parse_json");
    for (label, bytes) in &bodies {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), bytes, |b, bytes| {
            b.iter(|| parse(black_box(bytes)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("parse_json_map");
    for (label, bytes) in &bodies {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), bytes, |b, bytes| {
            b.iter(|| parse_map(black_box(bytes)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("body_key");
    for (label, bytes) in &bodies {
        let map = parse(bytes);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &map, |b, map| {
            b.iter(|| body_key(black_box(&scope()), black_box(map)))
        });
    }
    group.finish();

    // What the hit path pays before the tier lookup: both steps together.
    let mut group = c.benchmark_group("parse_and_key");
    for (label, bytes) in &bodies {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), bytes, |b, bytes| {
            b.iter(|| {
                let map = parse(black_box(bytes));
                body_key(&scope(), &map)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_key);
criterion_main!(benches);
