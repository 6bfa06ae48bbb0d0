//! Streams: parsing an upstream `text/event-stream` body (`stream::SseParser`),
//! recording it for the cache (`ChatStreamRecorder` → `StoredStream`), and the
//! stream-hit path: decoding a stored stream from its entry body (JSON of
//! `StoredStream`) and `stream::replay` turning it back into SSE events
//! (eagerly, as hits did before commit e1c016e), or `stream::LazyReplay` (one
//! event at a time, as they do now: first event = time to first byte).
//!
//! The stream is OpenAI-shaped: a role chunk, N content chunks of a few words,
//! a finish chunk, a usage-only chunk and `data: [DONE]`. It is pushed to the
//! parser in 1460-byte pieces (one TCP segment each), as it would arrive.
//!
//! Also the two format conversions a hit may need: a non-stream request
//! answered from a stored stream (`assemble`) and a stream request answered
//! from a stored `chat.completion` (`synthesize` + `replay`).
//!
//! `cargo bench --bench sse -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reprise::stream::{
    assemble, chunk_event, replay, synthesize, ChatStreamRecorder, LazyReplay, SseParser,
    StoredStream, StreamLayout,
};
use serde_json::{json, Value};

const SEGMENT: usize = 1460;

/// An upstream SSE body with `content_chunks` content deltas.
fn upstream_stream(content_chunks: usize) -> Vec<u8> {
    let envelope = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": "chatcmpl-9x8y7z6w5v4u3t2s1r",
            "object": "chat.completion.chunk",
            "created": 1_717_000_000u64,
            "model": "gpt-4o-mini-2024-07-18",
            "service_tier": "default",
            "system_fingerprint": "fp_0123456789",
            "choices": choices,
        });
        chunk["usage"] = usage.unwrap_or(Value::Null);
        chunk
    };
    let mut out = Vec::new();
    let mut push = |v: Value| {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&serde_json::to_vec(&v).unwrap());
        out.extend_from_slice(b"\n\n");
    };
    push(envelope(
        json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null},
                "logprobs": null, "finish_reason": null}]),
        None,
    ));
    for i in 0..content_chunks {
        let words = common::prose(3, i);
        push(envelope(
            json!([{"index": 0, "delta": {"content": format!(" {words}")},
                    "logprobs": null, "finish_reason": null}]),
            None,
        ));
    }
    push(envelope(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
        None,
    ));
    push(envelope(
        json!([]),
        Some(
            json!({"prompt_tokens": 1500, "completion_tokens": content_chunks * 3,
            "total_tokens": 1500 + content_chunks * 3,
            "prompt_tokens_details": {"cached_tokens": 1200}}),
        ),
    ));
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn parse_all(body: &[u8]) -> usize {
    let mut parser = SseParser::new();
    let mut n = 0;
    for segment in body.chunks(SEGMENT) {
        n += parser.push(segment).len();
    }
    let _ = parser.finish();
    n
}

fn record(body: &[u8]) -> StoredStream {
    let mut parser = SseParser::new();
    let mut recorder = ChatStreamRecorder::new(4 << 20);
    for segment in body.chunks(SEGMENT) {
        for event in parser.push(segment) {
            recorder.observe(&event);
        }
    }
    recorder.observe_end(&parser.finish());
    recorder.into_stored().expect("a complete stream")
}

/// Where each stored chunk sits in a serialized `StoredStream`.
fn chunk_ranges(entry_body: &[u8]) -> Vec<std::ops::Range<usize>> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        chunks: Vec<&'a serde_json::value::RawValue>,
    }
    let raw: Raw<'_> = serde_json::from_slice(entry_body).unwrap();
    let base = entry_body.as_ptr() as usize;
    raw.chunks
        .iter()
        .map(|r| {
            let start = r.get().as_ptr() as usize - base;
            start..start + r.get().len()
        })
        .collect()
}

/// A stream hit before issue 15: each chunk parsed into a `Value` and
/// re-serialized (`routing_metadata` on the last one).
fn reserialize_each_chunk(
    entry_body: &[u8],
    ranges: &[std::ops::Range<usize>],
    wants_usage: bool,
    meta: &Value,
) -> usize {
    let mut sent = 0;
    for (i, r) in ranges.iter().enumerate() {
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(&entry_body[r.clone()])
        else {
            continue;
        };
        let meta = (i + 1 == ranges.len()).then_some(meta);
        sent += chunk_event(&chunk, wants_usage, meta).map_or(0, |b| b.len());
    }
    sent
}

fn bench_sse(c: &mut Criterion) {
    let meta = json!({"provider": "openai",
        "cache": {"status": "hit", "tier": "memory", "age_s": 42, "tokens_saved": 1800}});
    let streams: Vec<(String, Vec<u8>)> = [20usize, 100, 500]
        .into_iter()
        .map(|n| (format!("{n}_chunks"), upstream_stream(n)))
        .collect();
    for (label, body) in &streams {
        let stored = serde_json::to_vec(&record(body)).unwrap();
        eprintln!(
            "sse bench {label}: upstream {} bytes, stored entry body {} bytes",
            body.len(),
            stored.len()
        );
    }

    let mut group = c.benchmark_group("sse_parse");
    for (label, body) in &streams {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), body, |b, body| {
            b.iter(|| parse_all(black_box(body)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("sse_parse_and_record");
    for (label, body) in &streams {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), body, |b, body| {
            b.iter(|| record(black_box(body)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("sse_replay");
    for (label, body) in &streams {
        let stored = record(body);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &stored, |b, stored| {
            b.iter(|| replay(black_box(stored), true, Some(&meta)))
        });
    }
    group.finish();

    // A stream hit as the pipeline would do it: the entry body (JSON of
    // StoredStream) decoded, then replayed.
    let mut group = c.benchmark_group("sse_hit_decode_and_replay");
    for (label, body) in &streams {
        let entry_body = serde_json::to_vec(&record(body)).unwrap();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(label),
            &entry_body,
            |b, entry_body| {
                b.iter(|| {
                    let stored: StoredStream =
                        serde_json::from_slice(black_box(entry_body)).unwrap();
                    replay(&stored, true, Some(&meta))
                })
            },
        );
    }
    group.finish();

    // The same with `LazyReplay` (what a stream hit uses since commit e1c016e):
    // the first event alone (time to first byte), and the whole stream.
    let mut group = c.benchmark_group("sse_hit_lazy_first_event");
    for (label, body) in &streams {
        let entry_body = bytes::Bytes::from(serde_json::to_vec(&record(body)).unwrap());
        group.bench_with_input(
            BenchmarkId::from_parameter(label),
            &entry_body,
            |b, entry_body| {
                b.iter(|| {
                    let mut lazy =
                        LazyReplay::new(black_box(entry_body.clone()), true, Some(meta.clone()))
                            .unwrap();
                    lazy.next()
                })
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("sse_hit_lazy_all_events");
    for (label, body) in &streams {
        let entry_body = bytes::Bytes::from(serde_json::to_vec(&record(body)).unwrap());
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(label),
            &entry_body,
            |b, entry_body| {
                b.iter(|| {
                    LazyReplay::new(black_box(entry_body.clone()), true, Some(meta.clone()))
                        .unwrap()
                        .count()
                })
            },
        );
    }
    group.finish();
    // What every later hit on an entry pays (the layout is kept with the
    // entry since `b57277e`): the whole stream from a kept layout, with and
    // without `include_usage` (without: each chunk's `"usage": null` goes).
    // Since issue 15 a hit copies each chunk's stored bytes; the reference
    // is what a hit did before: parse every chunk and re-serialize it.
    for (group_name, wants_usage) in [
        ("sse_hit_reserialize_each_chunk", true),
        ("sse_hit_reserialize_each_chunk_no_usage", false),
    ] {
        let mut group = c.benchmark_group(group_name);
        for (label, body) in &streams {
            let entry_body = serde_json::to_vec(&record(body)).unwrap();
            let ranges = chunk_ranges(&entry_body);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(
                BenchmarkId::from_parameter(label),
                &entry_body,
                |b, entry_body| {
                    b.iter(|| {
                        reserialize_each_chunk(black_box(entry_body), &ranges, wants_usage, &meta)
                    })
                },
            );
        }
        group.finish();
    }
    for (group_name, wants_usage) in [
        ("sse_hit_kept_layout_all_events", true),
        ("sse_hit_kept_layout_all_events_no_usage", false),
    ] {
        let mut group = c.benchmark_group(group_name);
        for (label, body) in &streams {
            let entry_body = bytes::Bytes::from(serde_json::to_vec(&record(body)).unwrap());
            let layout = std::sync::Arc::new(StreamLayout::scan(&entry_body).unwrap());
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(
                BenchmarkId::from_parameter(label),
                &entry_body,
                |b, entry_body| {
                    b.iter(|| {
                        LazyReplay::with_layout(
                            black_box(entry_body.clone()),
                            layout.clone(),
                            wants_usage,
                            Some(meta.clone()),
                        )
                        .count()
                    })
                },
            );
        }
        group.finish();
    }
}

/// The other two conversions a hit may need (see `pipeline::respond`): a JSON
/// request answered from a stored stream (decode, assemble, serialize), and a
/// stream request answered from a stored `chat.completion` (parse, synthesize,
/// replay).
fn bench_conversions(c: &mut Criterion) {
    let meta = json!({"provider": "openai",
        "cache": {"status": "hit", "tier": "memory", "age_s": 42, "tokens_saved": 1800}});
    let mut group = c.benchmark_group("sse_json_hit_from_stream_entry");
    for n in [20usize, 100, 500] {
        let entry_body = serde_json::to_vec(&record(&upstream_stream(n))).unwrap();
        group.throughput(Throughput::Bytes(entry_body.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}_chunks")),
            &entry_body,
            |b, entry_body| {
                b.iter(|| {
                    let stored: StoredStream =
                        serde_json::from_slice(black_box(entry_body)).unwrap();
                    serde_json::to_vec(&assemble(&stored)).unwrap()
                })
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("sse_stream_hit_from_json_entry");
    for n in [20usize, 100, 500] {
        let completion = serde_json::to_vec(&assemble(&record(&upstream_stream(n)))).unwrap();
        group.throughput(Throughput::Bytes(completion.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}_chunks")),
            &completion,
            |b, completion| {
                b.iter(|| {
                    let value: Value = serde_json::from_slice(black_box(completion)).unwrap();
                    replay(&synthesize(&value), true, Some(&meta))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_sse, bench_conversions);
criterion_main!(benches);
