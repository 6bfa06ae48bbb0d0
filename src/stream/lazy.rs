//! Replaying a stored stream straight from its serialized bytes, one event at
//! a time: only the chunk being sent is parsed, so the first event leaves
//! after one chunk's work instead of after the whole stream's (a long answer
//! has hundreds of chunks). Produces exactly what [`super::replay`] does.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{chunk_event, DONE_EVENT};

/// Where a stored stream's chunks and usage sit inside its serialized form.
/// Found by one scan of the entry (the whole body); an entry keeps it, so
/// later hits on the same entry skip the scan (`entry::Derived::stream_layout`).
#[derive(Debug)]
pub struct StreamLayout {
    chunks: Vec<Range<usize>>,
    usage: Option<Range<usize>>,
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
            chunks: raw.chunks.iter().map(|r| range(r)).collect(),
            usage: raw.usage.map(range),
        })
    }
}

/// Replays a stored stream one event at a time.
pub struct LazyReplay {
    body: Bytes,
    layout: Arc<StreamLayout>,
    usage: Option<Value>,
    meta: Option<Value>,
    wants_usage: bool,
    /// `id`, `created`, … for the usage chunk (from the first chunk with choices).
    envelope: Option<Map<String, Value>>,
    /// Whether `envelope` came from a chunk with choices (final once true).
    envelope_has_choices: bool,
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
            envelope: None,
            envelope_has_choices: false,
            next: 0,
            body,
        }
    }

    fn chunk(&self, i: usize) -> Option<Map<String, Value>> {
        let range = self.layout.chunks.get(i)?.clone();
        match serde_json::from_slice::<Value>(self.body.get(range)?) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    fn remember_envelope(&mut self, chunk: &Map<String, Value>) {
        if self.envelope_has_choices {
            return;
        }
        let has_choices = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        if self.envelope.is_none() || has_choices {
            let mut env = Map::new();
            for key in [
                "id",
                "object",
                "created",
                "model",
                "service_tier",
                "system_fingerprint",
            ] {
                if key == "object" {
                    env.insert(key.into(), "chat.completion.chunk".into());
                } else if let Some(v) = chunk.get(key) {
                    env.insert(key.into(), v.clone());
                }
            }
            self.envelope = Some(env);
            self.envelope_has_choices = has_choices;
        }
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
                let Some(chunk) = self.chunk(i) else { continue };
                if self.usage.is_some() {
                    self.remember_envelope(&chunk);
                }
                let last_with_meta = i + 1 == n && self.usage.is_none();
                let meta = self.meta.as_ref().filter(|_| last_with_meta);
                match chunk_event(&chunk, self.wants_usage, meta) {
                    Some(bytes) => return Some(bytes),
                    None => continue,
                }
            }
            if i == n {
                let Some(usage) = self.usage.take() else {
                    continue;
                };
                let mut chunk = self.envelope.take().unwrap_or_default();
                chunk.insert("choices".into(), Value::Array(Vec::new()));
                chunk.insert("usage".into(), usage);
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

    #[test]
    fn garbage_is_refused() {
        assert!(LazyReplay::new(Bytes::from_static(b"not json"), false, None).is_none());
    }
}
