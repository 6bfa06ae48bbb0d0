//! [`ChatStreamRecorder`]: keeps a capped copy of a chat-completion stream and
//! decides whether it is complete enough to cache.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use super::sse::{SseEnd, SseEvent};
use super::{forward_chunk, is_usage_only, StoredStream};

/// Why a recorded stream may (`Complete`) or may not be cached. When several
/// reasons apply, the first in this order is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// `[DONE]` seen, every choice finished, no error, under the cap.
    Complete,
    /// An error object (`{"error": …}`) or an `event: error` was seen.
    Errored,
    /// The stream ended before `data: [DONE]`.
    Truncated,
    /// A data event was neither JSON object nor `[DONE]`.
    Malformed,
    /// Data (or an unterminated event) followed `[DONE]`.
    DataAfterDone,
    /// A choice never got a `finish_reason`, or no choice was seen at all.
    MissingFinishReason,
    /// The stream was larger than the recorder's cap; the copy was dropped.
    OverCap,
}

impl StreamOutcome {
    /// A label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamOutcome::Complete => "complete",
            StreamOutcome::Errored => "errored",
            StreamOutcome::Truncated => "truncated",
            StreamOutcome::Malformed => "malformed",
            StreamOutcome::DataAfterDone => "data_after_done",
            StreamOutcome::MissingFinishReason => "missing_finish_reason",
            StreamOutcome::OverCap => "over_cap",
        }
    }
}

/// One kept event: its exact bytes, and its JSON when the data was a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub raw: Bytes,
    pub json: Option<Value>,
}

/// Fed every parsed event of an upstream stream, in order.
#[derive(Debug)]
pub struct ChatStreamRecorder {
    cap: usize,
    bytes: usize,
    events: Vec<RecordedEvent>,
    over_cap: bool,
    done: bool,
    after_done: bool,
    errored: bool,
    malformed: bool,
    /// Choice index → whether a non-null `finish_reason` was seen.
    finished: BTreeMap<u64, bool>,
    /// The usage-only chunk's `usage`.
    usage: Option<Value>,
    /// The last non-null `usage` of any other chunk (providers such as DeepSeek
    /// put it on the finish chunk instead of a usage-only chunk).
    chunk_usage: Option<Value>,
}

impl ChatStreamRecorder {
    /// A recorder keeping at most `cap` bytes of raw events.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            bytes: 0,
            events: Vec::new(),
            over_cap: false,
            done: false,
            after_done: false,
            errored: false,
            malformed: false,
            finished: BTreeMap::new(),
            usage: None,
            chunk_usage: None,
        }
    }

    /// Records the next event. Parses its data once (JSON); the checks keep
    /// running after the cap is exceeded, only the copy is dropped.
    pub fn observe(&mut self, event: &SseEvent) {
        self.record(event, None);
    }

    /// [`ChatStreamRecorder::observe`] and [`super::client_event`] in one, parsing
    /// the chunk once: the bytes to forward to the client (`None`: skip the event).
    pub fn observe_and_forward(
        &mut self,
        event: &SseEvent,
        client_wants_usage: bool,
    ) -> Option<Bytes> {
        self.record(event, Some(client_wants_usage))
    }

    fn record(&mut self, event: &SseEvent, forward: Option<bool>) -> Option<Bytes> {
        self.bytes = self.bytes.saturating_add(event.raw.len());
        if event.event.as_deref() == Some("error") {
            self.errored = true;
        }
        let mut json = None;
        if event.has_data || event.event.is_some() {
            if self.done {
                self.after_done = true;
            } else if event.is_done() {
                self.done = true;
            } else if event.has_data {
                json = self.check_chunk(&event.data);
            }
        }
        let out = match (forward, json.as_ref().and_then(Value::as_object)) {
            (None, _) => None,
            (Some(false), Some(chunk)) => forward_chunk(event, chunk),
            (Some(_), _) => Some(event.raw.clone()),
        };
        if self.bytes > self.cap {
            if !self.over_cap {
                self.over_cap = true;
                self.events = Vec::new();
            }
            return out;
        }
        self.events.push(RecordedEvent {
            raw: event.raw.clone(),
            json,
        });
        out
    }

    /// Records how the body ended: an unterminated event after `[DONE]` makes
    /// the stream [`StreamOutcome::DataAfterDone`] (before it, the stream is
    /// already [`StreamOutcome::Truncated`]).
    pub fn observe_end(&mut self, end: &SseEnd) {
        if end.unterminated && self.done {
            self.after_done = true;
        }
    }

    fn check_chunk(&mut self, data: &str) -> Option<Value> {
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            self.malformed = true;
            return None;
        };
        let Some(chunk) = value.as_object() else {
            self.malformed = true;
            return None;
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            self.errored = true;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            if is_usage_only(chunk) {
                self.usage = Some(usage.clone());
            } else {
                self.chunk_usage = Some(usage.clone());
            }
        }
        if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
            for (pos, choice) in choices.iter().enumerate() {
                let index = choice
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(pos as u64);
                let done = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                *self.finished.entry(index).or_insert(false) |= done;
            }
        }
        Some(value)
    }

    /// Whether the stream may be cached, or why not.
    pub fn outcome(&self) -> StreamOutcome {
        if self.errored {
            StreamOutcome::Errored
        } else if !self.done {
            StreamOutcome::Truncated
        } else if self.malformed {
            StreamOutcome::Malformed
        } else if self.after_done {
            StreamOutcome::DataAfterDone
        } else if self.finished.is_empty() || self.finished.values().any(|f| !f) {
            StreamOutcome::MissingFinishReason
        } else if self.over_cap {
            StreamOutcome::OverCap
        } else {
            StreamOutcome::Complete
        }
    }

    /// The stream's usage, for cost accounting: the usage-only chunk's
    /// (`"choices": []`), else the last non-null `usage` another chunk carried.
    pub fn usage(&self) -> Option<&Value> {
        self.usage.as_ref().or(self.chunk_usage.as_ref())
    }

    /// The kept events (empty once over the cap).
    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    /// Raw bytes observed so far (counted past the cap too).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_over_cap(&self) -> bool {
        self.over_cap
    }

    /// What to cache: every chunk in order except the usage-only one, and the
    /// usage. `None` unless the outcome is [`StreamOutcome::Complete`].
    pub fn into_stored(self) -> Option<StoredStream> {
        if self.outcome() != StreamOutcome::Complete {
            return None;
        }
        let chunks = self
            .events
            .into_iter()
            .filter_map(|e| e.json)
            .filter(|c| !c.as_object().is_some_and(is_usage_only))
            .collect();
        Some(StoredStream {
            chunks,
            usage: self.usage,
        })
    }
}

/// [`ChatStreamRecorder::into_stored`] as a function.
pub fn into_stored(recorder: ChatStreamRecorder) -> Option<StoredStream> {
    recorder.into_stored()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::stream::sse::SseParser;

    const CHUNK: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}"#;
    const FINISH: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#;
    const USAGE: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

    fn record(body: &str, cap: usize) -> ChatStreamRecorder {
        let mut parser = SseParser::new();
        let mut rec = ChatStreamRecorder::new(cap);
        for e in parser.push(body.as_bytes()) {
            rec.observe(&e);
        }
        rec.observe_end(&parser.finish());
        rec
    }

    fn sse(datas: &[&str]) -> String {
        datas.iter().map(|d| format!("data: {d}\n\n")).collect()
    }

    #[test]
    fn complete_stream_is_stored_without_usage_chunk() {
        let rec = record(&sse(&[CHUNK, FINISH, USAGE, "[DONE]"]), 1 << 20);
        assert_eq!(rec.outcome(), StreamOutcome::Complete);
        assert_eq!(rec.events().len(), 4);
        assert_eq!(rec.events()[3].json, None);
        assert_eq!(rec.usage().map(|u| &u["total_tokens"]), Some(&json!(4)));
        let stored = into_stored(rec).unwrap();
        assert_eq!(stored.chunks.len(), 2);
        assert_eq!(stored.chunks[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(stored.usage.unwrap()["prompt_tokens"], 3);
    }

    #[test]
    fn without_usage_chunk() {
        let rec = record(&sse(&[CHUNK, FINISH, "[DONE]"]), 1 << 20);
        let stored = rec.into_stored().unwrap();
        assert_eq!(stored.usage, None);
        assert_eq!(stored.chunks.len(), 2);
    }

    #[test]
    fn usage_on_the_finish_chunk() {
        let finish = FINISH.replace("\"usage\":null", "\"usage\":{\"total_tokens\":9}");
        let rec = record(&sse(&[CHUNK, &finish, "[DONE]"]), 1 << 20);
        assert_eq!(rec.usage(), Some(&json!({"total_tokens": 9})));
        let stored = rec.into_stored().unwrap();
        // Not a usage-only chunk: kept as a chunk, not as the stored usage.
        assert_eq!(stored.usage, None);
        assert_eq!(stored.chunks[1]["usage"]["total_tokens"], 9);
    }

    #[test]
    fn empty_choices_without_usage_is_kept() {
        // Azure sends a first chunk with `"choices": []` and filter results.
        let azure = r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}"#;
        let rec = record(&sse(&[azure, CHUNK, FINISH, "[DONE]"]), 1 << 20);
        assert_eq!(rec.usage(), None);
        assert_eq!(rec.into_stored().unwrap().chunks.len(), 3);
    }

    #[test]
    fn incomplete_outcomes() {
        let cases: Vec<(String, StreamOutcome)> = vec![
            (sse(&[CHUNK, FINISH]), StreamOutcome::Truncated),
            (sse(&[CHUNK, FINISH, USAGE]), StreamOutcome::Truncated),
            (sse(&[CHUNK, "[DONE]"]), StreamOutcome::MissingFinishReason),
            (sse(&[USAGE, "[DONE]"]), StreamOutcome::MissingFinishReason),
            (sse(&["[DONE]"]), StreamOutcome::MissingFinishReason),
            (
                sse(&[
                    CHUNK,
                    r#"{"error":{"message":"boom","type":"server_error"}}"#,
                    "[DONE]",
                ]),
                StreamOutcome::Errored,
            ),
            (
                format!(
                    "{}event: error\ndata: {{\"x\":1}}\n\n{}",
                    sse(&[CHUNK, FINISH]),
                    sse(&["[DONE]"])
                ),
                StreamOutcome::Errored,
            ),
            (
                sse(&[CHUNK, "not json", FINISH, "[DONE]"]),
                StreamOutcome::Malformed,
            ),
            (
                sse(&[CHUNK, "[1,2]", FINISH, "[DONE]"]),
                StreamOutcome::Malformed,
            ),
            (
                sse(&[CHUNK, FINISH, "[DONE]", FINISH]),
                StreamOutcome::DataAfterDone,
            ),
            (
                sse(&[CHUNK, FINISH, "[DONE]", "[DONE]"]),
                StreamOutcome::DataAfterDone,
            ),
            (
                format!("{}data: {{", sse(&[CHUNK, FINISH, "[DONE]"])),
                StreamOutcome::DataAfterDone,
            ),
        ];
        for (body, want) in cases {
            let rec = record(&body, 1 << 20);
            assert_eq!(rec.outcome(), want, "{body}");
            assert!(rec.into_stored().is_none());
        }
    }

    #[test]
    fn whitespace_and_comments_after_done_are_fine() {
        let body = format!("{}\n\n: ping\n\n\n", sse(&[CHUNK, FINISH, "[DONE]"]));
        assert_eq!(record(&body, 1 << 20).outcome(), StreamOutcome::Complete);
    }

    #[test]
    fn null_error_key_is_not_an_error() {
        let chunk = CHUNK.replace("\"usage\":null", "\"usage\":null,\"error\":null");
        let rec = record(&sse(&[&chunk, FINISH, "[DONE]"]), 1 << 20);
        assert_eq!(rec.outcome(), StreamOutcome::Complete);
    }

    #[test]
    fn every_choice_must_finish() {
        let c1 = CHUNK.replace("\"index\":0", "\"index\":1");
        let f1 = FINISH.replace("\"index\":0", "\"index\":1");
        let body = sse(&[CHUNK, &c1, FINISH, "[DONE]"]);
        assert_eq!(
            record(&body, 1 << 20).outcome(),
            StreamOutcome::MissingFinishReason
        );
        let body = sse(&[CHUNK, &c1, &f1, FINISH, "[DONE]"]);
        assert_eq!(record(&body, 1 << 20).outcome(), StreamOutcome::Complete);
    }

    #[test]
    fn over_cap_drops_the_copy_but_keeps_checking() {
        let body = sse(&[CHUNK, FINISH, USAGE, "[DONE]"]);
        let exact = record(&body, body.len());
        assert_eq!(exact.outcome(), StreamOutcome::Complete);
        let rec = record(&body, body.len() - 1);
        assert!(rec.is_over_cap());
        assert!(rec.events().is_empty());
        assert_eq!(rec.bytes(), body.len());
        assert_eq!(rec.outcome(), StreamOutcome::OverCap);
        assert!(rec.into_stored().is_none());
        // A truncated stream over the cap reports the truncation.
        let rec = record(&sse(&[CHUNK, FINISH]), 10);
        assert_eq!(rec.outcome(), StreamOutcome::Truncated);
    }

    #[test]
    fn outcome_labels() {
        assert_eq!(StreamOutcome::OverCap.as_str(), "over_cap");
        assert_eq!(StreamOutcome::Complete.as_str(), "complete");
    }
}
