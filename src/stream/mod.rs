//! Caching OpenAI chat-completion streams: pure building blocks, no I/O.
//!
//! | piece | what it does |
//! |---|---|
//! | [`SseParser`] (`sse.rs`) | incremental `text/event-stream` parser; each [`SseEvent`] keeps its exact `raw` bytes |
//! | [`ChatStreamRecorder`] (`check.rs`) | capped copy of the events + the completeness verdict ([`StreamOutcome`]) + usage |
//! | [`StoredStream`] | what is cached: every chunk JSON in order (usage-only chunk excluded) + the usage |
//! | [`client_event`] | what to forward to the client for one live upstream event |
//! | [`replay`] | a cached [`StoredStream`] as SSE events, `[DONE]` included |
//! | [`assemble`] (`assemble.rs`) | a [`StoredStream`] as the non-stream `chat.completion` object |
//! | [`synthesize`] (`synthesize.rs`) | a `chat.completion` object as the chunks OpenAI would stream |
//!
//! # Wiring (for the pipeline)
//!
//! reprise always asks the upstream for `stream_options.include_usage = true`;
//! `client_wants_usage` is whether *the client* asked for it.
//!
//! - **Stream miss**: for each upstream body chunk, `parser.push(bytes)`; for each
//!   event, `recorder.observe(&event)` and forward `client_event(&event, wants)`
//!   (skip `None`) — or both at once, parsing the chunk once:
//!   `recorder.observe_and_forward(&event, wants)`. At the end of the body,
//!   `recorder.observe_end(&parser.finish())` (an aborted body is simply never
//!   `Complete`: no `[DONE]`). Then, off the response path, `recorder.into_stored()`:
//!   `Some(stored)` is what to cache; `None` means do not cache (`recorder.outcome()`
//!   says why; [`StreamOutcome::as_str`] is a log/metric label). Bound memory with
//!   [`SseParser::buffered`] if an upstream could send an endless line.
//!   `routing_metadata` on a live stream: hold back each chunk that has a
//!   `finish_reason` or is the usage chunk until the next event arrives; the chunk
//!   held when `[DONE]` arrives is the last one (the usage chunk when the client
//!   wants usage, else the last finish chunk): send it as
//!   `chunk_event(&chunk, wants, Some(&meta))`, the others as they were.
//! - **Stream hit** on a stored stream: `replay(&stored, wants, Some(&meta))`.
//! - **Non-stream hit** on a stored stream: `assemble(&stored)` (then the usual JSON
//!   rendering with `routing_metadata`).
//! - **Stream hit on a non-stream entry** (a cached `chat.completion`):
//!   `replay(&synthesize(&completion), wants, Some(&meta))`.
//!
//! Numbers in stored chunks go through `serde_json::Value`: without serde_json's
//! `float_roundtrip` feature a float (a logprob) may be re-printed one ULP off.

pub mod anthropic;
mod assemble;
mod check;
#[cfg(test)]
mod fixtures;
mod lazy;
mod sse;
mod synthesize;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

pub use assemble::assemble;
pub use check::{into_stored, ChatStreamRecorder, RecordedEvent, StreamOutcome};
pub use lazy::{LazyReplay, StreamLayout};
pub use sse::{data_event, SseEnd, SseEvent, SseParser, DONE_EVENT};
pub use synthesize::synthesize;

/// A complete chat-completion stream, as cached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredStream {
    /// Every chunk in order, as the upstream sent it, except the usage-only one.
    pub chunks: Vec<Value>,
    /// The usage-only chunk's `usage`, when the upstream sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

/// The chunk sent for `include_usage`: `"choices": []` and a non-null `usage`.
pub(crate) fn is_usage_only(chunk: &Map<String, Value>) -> bool {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && chunk.get("usage").is_some_and(|u| !u.is_null())
}

/// The chunk whose `id`/`model`/… describe the stream: the first with a
/// non-empty `choices` (Azure leads with an empty filter-results chunk).
pub(crate) fn envelope_source(chunks: &[Value]) -> Option<&Map<String, Value>> {
    let mut objects = chunks.iter().filter_map(Value::as_object);
    let first = objects.clone().next();
    objects
        .find(|c| {
            c.get("choices")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        })
        .or(first)
}

/// The bytes to forward to the client for one upstream event.
///
/// When the client asked for usage, or for anything that is not a JSON chunk
/// mentioning `usage`, the raw bytes unchanged. Otherwise the usage-only chunk is
/// dropped (`None`) and a `"usage": null` (present only because reprise asked for
/// `include_usage`) is removed, the chunk re-serialized compactly.
pub fn client_event(event: &SseEvent, client_wants_usage: bool) -> Option<Bytes> {
    if client_wants_usage || !event.has_data || !event.data.contains("\"usage\"") {
        return Some(event.raw.clone());
    }
    match serde_json::from_str::<Value>(&event.data) {
        Ok(Value::Object(chunk)) => forward_chunk(event, &chunk),
        _ => Some(event.raw.clone()),
    }
}

/// [`client_event`] for a client that did not ask for usage, given the event's
/// parsed chunk.
pub(crate) fn forward_chunk(event: &SseEvent, chunk: &Map<String, Value>) -> Option<Bytes> {
    if is_usage_only(chunk) {
        return None;
    }
    if !chunk.get("usage").is_some_and(Value::is_null) {
        return Some(event.raw.clone());
    }
    let view = ChunkView {
        chunk,
        keep_null_usage: false,
        routing_metadata: None,
    };
    let mut buf = Vec::with_capacity(event.raw.len());
    if let Some(name) = &event.event {
        buf.extend_from_slice(format!("event: {name}\n").as_bytes());
    }
    if let Some(id) = &event.id {
        buf.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    if let Some(retry) = event.retry {
        buf.extend_from_slice(format!("retry: {retry}\n").as_bytes());
    }
    match write_data(buf, &view) {
        Some(bytes) => Some(bytes),
        None => Some(event.raw.clone()),
    }
}

/// One chunk as `data: <compact json>\n\n`: without a null `usage` unless
/// `keep_null_usage`, and with `"routing_metadata"` as its last member when given.
pub fn chunk_event(
    chunk: &Map<String, Value>,
    keep_null_usage: bool,
    routing_metadata: Option<&Value>,
) -> Option<Bytes> {
    let view = ChunkView {
        chunk,
        keep_null_usage,
        routing_metadata,
    };
    write_data(Vec::with_capacity(512), &view)
}

/// A cached stream as SSE events, ready to send: every chunk (with `"usage": null`
/// only when the client asked for usage), then the usage chunk when the client
/// asked for usage and one was stored, then `data: [DONE]`. `routing_metadata`
/// goes on the usage chunk, or on the last chunk when there is none.
pub fn replay(
    stored: &StoredStream,
    client_wants_usage: bool,
    routing_metadata: Option<&Value>,
) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(stored.chunks.len() + 2);
    let usage = stored.usage.as_ref().filter(|_| client_wants_usage);
    let last = stored.chunks.len().saturating_sub(1);
    for (i, chunk) in stored.chunks.iter().enumerate() {
        let meta = routing_metadata.filter(|_| usage.is_none() && i == last);
        let event = match chunk.as_object() {
            Some(map) => chunk_event(map, client_wants_usage, meta),
            None => write_data(Vec::with_capacity(64), chunk),
        };
        out.extend(event);
    }
    if let Some(usage) = usage {
        let chunk = usage_chunk(&stored.chunks, usage);
        out.extend(chunk_event(&chunk, true, routing_metadata));
    }
    out.push(Bytes::from_static(DONE_EVENT));
    out
}

/// The usage-only chunk OpenAI sends last with `include_usage`.
fn usage_chunk(chunks: &[Value], usage: &Value) -> Map<String, Value> {
    let mut chunk = Map::new();
    let source = envelope_source(chunks);
    for key in [
        "id",
        "object",
        "created",
        "model",
        "service_tier",
        "system_fingerprint",
    ] {
        if key == "object" {
            chunk.insert(key.into(), "chat.completion.chunk".into());
        } else if let Some(v) = source.and_then(|s| s.get(key)) {
            chunk.insert(key.into(), v.clone());
        }
    }
    chunk.insert("choices".into(), Value::Array(Vec::new()));
    chunk.insert("usage".into(), usage.clone());
    chunk
}

/// Appends `data: <compact json>\n\n` to `buf`.
fn write_data(mut buf: Vec<u8>, value: &impl Serialize) -> Option<Bytes> {
    buf.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut buf, value).ok()?;
    buf.extend_from_slice(b"\n\n");
    Some(Bytes::from(buf))
}

/// Serializes a chunk without cloning it, minus a null `usage`, plus metadata.
struct ChunkView<'a> {
    chunk: &'a Map<String, Value>,
    keep_null_usage: bool,
    routing_metadata: Option<&'a Value>,
}

impl Serialize for ChunkView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.chunk {
            let null_usage = k == "usage" && v.is_null() && !self.keep_null_usage;
            let replaced = k == "routing_metadata" && self.routing_metadata.is_some();
            if !null_usage && !replaced {
                map.serialize_entry(k, v)?;
            }
        }
        if let Some(meta) = self.routing_metadata {
            map.serialize_entry("routing_metadata", meta)?;
        }
        map.end()
    }
}
