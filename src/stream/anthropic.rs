//! Anthropic Messages streams: a capped recording that is complete only when
//! `message_stop` arrived and no `error` event did, the usage merged from
//! `message_start` and `message_delta`, and a byte-faithful replay with
//! `routing_metadata` added to the `message_stop` event.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use super::sse::{SseEvent, SseParser};

pub struct AnthropicRecorder {
    cap: usize,
    raw: BytesMut,
    over_cap: bool,
    stopped: bool,
    errored: bool,
    usage: Map<String, Value>,
}

impl AnthropicRecorder {
    pub fn new(cap: usize) -> Self {
        AnthropicRecorder {
            cap,
            raw: BytesMut::new(),
            over_cap: false,
            stopped: false,
            errored: false,
            usage: Map::new(),
        }
    }

    pub fn observe(&mut self, event: &SseEvent) {
        if !self.over_cap {
            if self.raw.len() + event.raw.len() > self.cap {
                self.over_cap = true;
                self.raw = BytesMut::new();
            } else {
                self.raw.extend_from_slice(&event.raw);
            }
        }
        match event_name(event) {
            Some("message_stop") => self.stopped = true,
            Some("error") => self.errored = true,
            Some("message_start") => {
                if let Some(Value::Object(u)) =
                    data(event).and_then(|d| d.get("message")?.get("usage").cloned())
                {
                    self.usage.extend(u);
                }
            }
            Some("message_delta") => {
                if let Some(Value::Object(u)) = data(event).and_then(|d| d.get("usage").cloned()) {
                    for (k, v) in u.into_iter().filter(|(_, v)| !v.is_null()) {
                        self.usage.insert(k, v);
                    }
                }
            }
            _ => {}
        }
    }

    /// The merged usage (input and cache counts from the start, output from the delta).
    pub fn usage(&self) -> Option<Value> {
        (!self.usage.is_empty()).then(|| Value::Object(self.usage.clone()))
    }

    pub fn is_complete(&self) -> bool {
        self.stopped && !self.errored
    }

    /// The recorded bytes of a complete stream under the cap.
    pub fn into_stored(self) -> Option<Bytes> {
        (self.is_complete() && !self.over_cap).then(|| self.raw.freeze())
    }
}

/// The event's name: the `event:` field, else the JSON `type`.
pub fn event_name(event: &SseEvent) -> Option<&str> {
    event.event.as_deref().or_else(|| {
        let at = event.data.find("\"type\"")?;
        let rest = event.data[at + 6..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start()
            .strip_prefix('"')?;
        rest.split('"').next()
    })
}

fn data(event: &SseEvent) -> Option<Value> {
    serde_json::from_str(&event.data).ok()
}

/// `event: message_stop` with `routing_metadata` added to its data.
pub fn message_stop_with(event: &SseEvent, meta: &Value) -> Bytes {
    let mut value = match data(event) {
        Some(Value::Object(m)) => m,
        _ => return event.raw.clone(),
    };
    value.insert("routing_metadata".into(), meta.clone());
    let mut out = BytesMut::with_capacity(event.raw.len() + 256);
    out.extend_from_slice(b"event: message_stop\ndata: ");
    match serde_json::to_vec(&value) {
        Ok(json) => out.extend_from_slice(&json),
        Err(_) => return event.raw.clone(),
    }
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// A recorded stream replayed byte for byte, `routing_metadata` on `message_stop`.
pub fn replay(raw: &[u8], meta: Option<&Value>) -> Bytes {
    let mut parser = SseParser::new();
    let mut out = BytesMut::with_capacity(raw.len() + 256);
    for event in parser.push(raw) {
        match (event_name(&event), meta) {
            (Some("message_stop"), Some(meta)) => {
                out.extend_from_slice(&message_stop_with(&event, meta))
            }
            _ => out.extend_from_slice(&event.raw),
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    fn record(text: &str, cap: usize) -> AnthropicRecorder {
        let mut r = AnthropicRecorder::new(cap);
        for e in SseParser::new().push(text.as_bytes()) {
            r.observe(&e);
        }
        r
    }

    #[test]
    fn complete_streams_are_kept_with_merged_usage() {
        let r = record(STREAM, 1 << 20);
        assert!(r.is_complete());
        assert_eq!(
            r.usage().unwrap(),
            json!({"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7})
        );
        assert_eq!(&r.into_stored().unwrap()[..], STREAM.as_bytes());
    }

    #[test]
    fn cut_errored_and_oversized_streams_are_not() {
        let cut = &STREAM[..STREAM.find("event: message_stop").unwrap()];
        assert!(record(cut, 1 << 20).into_stored().is_none());
        let errored = format!("{cut}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\"}}}}\n\nevent: message_stop\ndata: {{}}\n\n");
        assert!(record(&errored, 1 << 20).into_stored().is_none());
        assert!(record(STREAM, 100).into_stored().is_none());
    }

    #[test]
    fn replay_is_faithful_and_carries_metadata_on_message_stop() {
        assert_eq!(&replay(STREAM.as_bytes(), None)[..], STREAM.as_bytes());
        let out = replay(
            STREAM.as_bytes(),
            Some(&json!({"cache": {"status": "hit"}})),
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with(&STREAM[..STREAM.find("event: message_stop").unwrap()]));
        assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\",\"routing_metadata\":{\"cache\":{\"status\":\"hit\"}}}\n\n"));
    }
}
