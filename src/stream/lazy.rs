//! Replaying a stored stream straight from its serialized bytes, one event at
//! a time. Produces exactly what [`super::replay`] does.
//!
//! The entry's layout (scanned once per entry and kept with it) records where
//! each chunk's JSON sits in the stored body. The first replay of a chunk
//! checks, once per entry, that its bytes are what re-serializing it prints
//! (and where its top-level `"usage":null` is); every later hit then sends it
//! as a copy of stored bytes (`data: ` + the chunk + a blank line, minus that
//! null usage for clients that did not ask for usage). Only the event that
//! carries `routing_metadata` (and the usage chunk) is parsed and
//! re-serialized on every hit.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{chunk_event, DONE_EVENT};

/// One stored chunk: where it is, and (once checked) how it may be sent.
#[derive(Debug)]
struct ChunkBytes {
    range: Range<usize>,
    check: OnceLock<Check>,
}

/// Whether a chunk's stored bytes can be sent as they are.
#[derive(Debug)]
struct Check {
    /// The bytes equal the chunk re-serialized (with a null usage kept): a
    /// client that asked for usage gets them as they are.
    verbatim: bool,
    /// For a client that did not ask for usage.
    without_usage: WithoutUsage,
}

/// How a chunk is sent to a client that did not ask for usage.
#[derive(Debug)]
enum WithoutUsage {
    /// As stored (no null `usage` to drop).
    Same,
    /// Stored bytes minus this range within the chunk (`,"usage":null`),
    /// checked to equal the chunk re-serialized without it.
    Cut(Range<usize>),
    /// Parsed and re-serialized.
    Reserialize,
}

/// Where a stored stream's chunks and usage sit inside its serialized form.
/// Found by one scan of the entry (the whole body); an entry keeps it, so
/// later hits on the same entry skip the scan (`entry::Derived::stream_layout`).
#[derive(Debug)]
pub struct StreamLayout {
    chunks: Vec<ChunkBytes>,
    usage: Option<Range<usize>>,
    /// The chunk whose `id`, `model`, … the usage chunk repeats (found once).
    envelope: OnceLock<Option<usize>>,
}

impl StreamLayout {
    /// None when `body` is not a serialized `StoredStream`.
    pub fn scan(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Raw<'a> {
            #[serde(borrow)]
            chunks: Vec<&'a RawValue>,
            #[serde(default, borrow)]
            usage: Option<&'a RawValue>,
        }
        let raw: Raw<'_> = serde_json::from_slice(body).ok()?;
        let base = body.as_ptr() as usize;
        let range = |r: &RawValue| {
            let text = r.get();
            let start = text.as_ptr() as usize - base;
            start..start + text.len()
        };
        Some(StreamLayout {
            chunks: raw
                .chunks
                .iter()
                .map(|r| ChunkBytes {
                    range: range(r),
                    check: OnceLock::new(),
                })
                .collect(),
            usage: raw.usage.map(range),
            envelope: OnceLock::new(),
        })
    }
}

/// What a hit may send of one chunk without parsing it.
fn check_chunk(text: &[u8]) -> Check {
    let mut out = Check {
        verbatim: false,
        without_usage: WithoutUsage::Reserialize,
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(text) else {
        return out;
    };
    let map = &map;
    // A chunk naming `routing_metadata` itself takes the slow path (the
    // metadata replaces it there).
    if map.contains_key("routing_metadata") {
        return out;
    }
    let event = |keep_null_usage| chunk_event(map, keep_null_usage, None);
    let framed = |b: &Bytes| b.get(6..b.len().saturating_sub(2)).map(<[u8]>::to_vec);
    out.verbatim = event(true).as_ref().and_then(framed).as_deref() == Some(text);
    if !out.verbatim {
        return out;
    }
    if !map.get("usage").is_some_and(Value::is_null) {
        out.without_usage = WithoutUsage::Same;
    } else {
        if let Some(without) = event(false).as_ref().and_then(framed) {
            // The dropped bytes are where the two first differ.
            let start = text
                .iter()
                .zip(&without)
                .take_while(|(a, b)| a == b)
                .count();
            let cut = start..start + text.len().saturating_sub(without.len());
            let spliced = [&text[..start], &text[cut.end..]].concat();
            if spliced == without {
                out.without_usage = WithoutUsage::Cut(cut);
            }
        }
    }
    out
}

/// Replays a stored stream one event at a time.
pub struct LazyReplay {
    body: Bytes,
    layout: Arc<StreamLayout>,
    usage: Option<Value>,
    meta: Option<Value>,
    wants_usage: bool,
    next: usize,
}

impl LazyReplay {
    /// None when `body` is not a serialized `StoredStream`.
    pub fn new(body: Bytes, wants_usage: bool, meta: Option<Value>) -> Option<Self> {
        let layout = Arc::new(StreamLayout::scan(&body)?);
        Some(Self::with_layout(body, layout, wants_usage, meta))
    }

    /// Replays `body`, whose layout is known (it must come from this body).
    pub fn with_layout(
        body: Bytes,
        layout: Arc<StreamLayout>,
        wants_usage: bool,
        meta: Option<Value>,
    ) -> Self {
        let usage = layout
            .usage
            .clone()
            .filter(|_| wants_usage)
            .and_then(|r| body.get(r))
            .and_then(|u| serde_json::from_slice::<Value>(u).ok())
            .filter(|u| !u.is_null());
        LazyReplay {
            layout,
            usage,
            meta,
            wants_usage,
            next: 0,
            body,
        }
    }

    fn chunk(&self, i: usize) -> Option<Map<String, Value>> {
        let range = self.layout.chunks.get(i)?.range.clone();
        match serde_json::from_slice::<Value>(self.body.get(range)?) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    /// Chunk `i` as an event from its stored bytes, if the layout allows.
    fn stored_event(&self, i: usize) -> Option<Bytes> {
        let c = self.layout.chunks.get(i)?;
        let text = self.body.get(c.range.clone())?;
        let check = c.check.get_or_init(|| check_chunk(text));
        if !check.verbatim {
            return None;
        }
        let keep: [&[u8]; 2] = match (&check.without_usage, self.wants_usage) {
            (_, true) | (WithoutUsage::Same, false) => [text, &[]],
            (WithoutUsage::Cut(cut), false) => [text.get(..cut.start)?, text.get(cut.end..)?],
            (WithoutUsage::Reserialize, false) => return None,
        };
        let mut out = Vec::with_capacity(text.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(keep[0]);
        out.extend_from_slice(keep[1]);
        out.extend_from_slice(b"\n\n");
        Some(Bytes::from(out))
    }

    /// The first chunk with choices, else the first object (as
    /// [`super::envelope_source`] picks it), found once per entry.
    fn envelope_index(&self) -> Option<usize> {
        *self.layout.envelope.get_or_init(|| {
            let mut first = None;
            for i in 0..self.layout.chunks.len() {
                let Some(chunk) = self.chunk(i) else { continue };
                first.get_or_insert(i);
                let has_choices = chunk
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(|c| !c.is_empty());
                if has_choices {
                    return Some(i);
                }
            }
            first
        })
    }

    /// The usage chunk: `id`, `model`, … of the envelope chunk, no choices.
    fn usage_chunk(&self, usage: Value) -> Map<String, Value> {
        let source = self.envelope_index().and_then(|e| self.chunk(e));
        let mut chunk = Map::new();
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
            } else if let Some(v) = source.as_ref().and_then(|s| s.get(key)) {
                chunk.insert(key.into(), v.clone());
            }
        }
        chunk.insert("choices".into(), Value::Array(Vec::new()));
        chunk.insert("usage".into(), usage);
        chunk
    }
}

impl Iterator for LazyReplay {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let n = self.layout.chunks.len();
        loop {
            let i = self.next;
            self.next += 1;
            if i < n {
                let last_with_meta = i + 1 == n && self.usage.is_none();
                let meta = self.meta.as_ref().filter(|_| last_with_meta);
                if meta.is_none() {
                    if let Some(bytes) = self.stored_event(i) {
                        return Some(bytes);
                    }
                }
                let Some(chunk) = self.chunk(i) else { continue };
                match chunk_event(&chunk, self.wants_usage, meta) {
                    Some(bytes) => return Some(bytes),
                    None => continue,
                }
            }
            if i == n {
                let Some(usage) = self.usage.take() else {
                    continue;
                };
                let chunk = self.usage_chunk(usage);
                match chunk_event(&chunk, true, self.meta.as_ref()) {
                    Some(bytes) => return Some(bytes),
                    None => continue,
                }
            }
            if i == n + 1 {
                return Some(Bytes::from_static(DONE_EVENT));
            }
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{replay, StoredStream};
    use super::*;

    fn stored() -> StoredStream {
        let chunk = |id: &str, choices: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": 7, "model": "m",
                   "system_fingerprint": "fp", "choices": choices, "usage": null})
        };
        StoredStream {
            chunks: vec![
                chunk("", json!([])),
                chunk(
                    "c1",
                    json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
                ),
                chunk(
                    "c1",
                    json!([{"index": 0, "delta": {"content": "Hi there"}, "logprobs": {"content": [{"token": "Hi", "logprob": -0.1234567891234}]}, "finish_reason": null}]),
                ),
                chunk(
                    "c1",
                    json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
                ),
            ],
            usage: Some(json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})),
        }
    }

    #[test]
    fn lazy_replay_equals_replay() {
        let s = stored();
        let body = Bytes::from(serde_json::to_vec(&s).unwrap());
        let meta = json!({"cache": {"status": "hit"}});
        for wants in [false, true] {
            for m in [None, Some(meta.clone())] {
                let eager: Vec<Bytes> = replay(&s, wants, m.as_ref());
                let lazy: Vec<Bytes> = LazyReplay::new(body.clone(), wants, m.clone())
                    .unwrap()
                    .collect();
                assert_eq!(lazy, eager, "wants_usage={wants} meta={m:?}");
            }
        }
        let no_usage = StoredStream { usage: None, ..s };
        let body = Bytes::from(serde_json::to_vec(&no_usage).unwrap());
        let lazy: Vec<Bytes> = LazyReplay::new(body, true, Some(meta.clone()))
            .unwrap()
            .collect();
        assert_eq!(lazy, replay(&no_usage, true, Some(&meta)));
    }

    /// A layout scanned once serves every later replay of the same entry.
    #[test]
    fn a_kept_layout_replays_like_a_fresh_scan() {
        let s = stored();
        let body = Bytes::from(serde_json::to_vec(&s).unwrap());
        let layout = Arc::new(StreamLayout::scan(&body).unwrap());
        for wants in [false, true] {
            let kept: Vec<Bytes> =
                LazyReplay::with_layout(body.clone(), layout.clone(), wants, None).collect();
            let fresh: Vec<Bytes> = LazyReplay::new(body.clone(), wants, None)
                .unwrap()
                .collect();
            assert_eq!(kept, fresh);
            assert_eq!(kept, replay(&s, wants, None));
        }
    }

    /// Hits copy stored bytes: every chunk of a stored body is sendable as it
    /// is, and a null usage has a checked range to drop.
    #[test]
    fn stored_chunks_are_sent_as_copies() {
        let body = Bytes::from(serde_json::to_vec(&stored()).unwrap());
        let layout = Arc::new(StreamLayout::scan(&body).unwrap());
        let replayed = LazyReplay::with_layout(body.clone(), layout.clone(), true, None).count();
        assert_eq!(replayed, 6, "four chunks, the usage chunk, [DONE]");
        let checks: Vec<&Check> = layout.chunks.iter().filter_map(|c| c.check.get()).collect();
        assert_eq!(checks.len(), 4);
        assert!(checks.iter().all(|c| c.verbatim));
        assert!(checks
            .iter()
            .all(|c| matches!(c.without_usage, WithoutUsage::Cut(_))));
        assert_eq!(layout.envelope.get(), Some(&Some(1)));
    }

    /// Bytes that are not what re-serializing prints (an imported,
    /// pretty-printed entry) take the parse path: same events, no raw
    /// newlines inside an event.
    #[test]
    fn non_canonical_bytes_are_reserialized() {
        let s = stored();
        let body = Bytes::from(serde_json::to_vec_pretty(&s).unwrap());
        let layout = Arc::new(StreamLayout::scan(&body).unwrap());
        for wants in [false, true] {
            let lazy: Vec<Bytes> =
                LazyReplay::with_layout(body.clone(), layout.clone(), wants, None).collect();
            assert_eq!(lazy, replay(&s, wants, None));
        }
        assert!(layout
            .chunks
            .iter()
            .all(|c| c.check.get().is_some_and(|c| !c.verbatim)));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(LazyReplay::new(Bytes::from_static(b"not json"), false, None).is_none());
    }
}
