//! What one client reads from a live stream: the events as they come, minus
//! what reprise added for itself, with `routing_metadata` at the end (the
//! final OpenAI chunk, or Anthropic's `message_stop`).

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use super::adapt::Wire;
use crate::cache::live::{LiveEnd, LiveReader, Next};
use crate::stream::anthropic::{event_name, message_stop_with};
use crate::stream::{chunk_event, client_event, SseEvent, SseParser};

/// Builds the `routing_metadata` for the end of a stream, given its usage.
pub type MetaFn = Box<dyn Fn(Option<&Value>) -> Value + Send>;

/// One client's view of a live stream: the upstream events as they come,
/// minus what reprise added (usage the client did not ask for), with
/// `routing_metadata` on the final chunk. A broken upstream ends the body
/// with an error, so the client sees a cut stream, never a clean short one.
pub fn client_body(reader: LiveReader, wire: Wire, wants_usage: bool, meta: MetaFn) -> Body {
    struct State {
        reader: LiveReader,
        parser: SseParser,
        wants_usage: bool,
        pending: Option<SseEvent>,
        usage: Option<Value>,
        meta: MetaFn,
        done: bool,
        anthropic: bool,
    }
    let state = State {
        reader,
        parser: SseParser::new(),
        wants_usage,
        pending: None,
        usage: None,
        meta,
        done: false,
        anthropic: wire == Wire::Anthropic,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            match s.reader.next().await {
                Next::Chunks(chunks) => {
                    let mut out = BytesMut::new();
                    for chunk in chunks {
                        for event in s.parser.push(&chunk) {
                            if s.anthropic {
                                forward_anthropic(&mut s.usage, &s.meta, event, &mut out);
                            } else {
                                forward_event(
                                    &mut s.pending,
                                    &mut s.usage,
                                    s.wants_usage,
                                    &s.meta,
                                    event,
                                    &mut out,
                                );
                            }
                        }
                    }
                    if !out.is_empty() {
                        return Some((Ok::<Bytes, std::io::Error>(out.freeze()), s));
                    }
                }
                Next::End(end) => {
                    s.done = true;
                    let flushed = s
                        .pending
                        .take()
                        .and_then(|p| client_event(&p, s.wants_usage));
                    return match (end, flushed) {
                        (LiveEnd::Complete, Some(bytes)) => Some((Ok(bytes), s)),
                        (LiveEnd::Complete, None) => None,
                        (LiveEnd::Broken, _) => Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "upstream stream cut",
                            )),
                            s,
                        )),
                    };
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// Forwards one event, holding back the final-looking chunk (a finish or
/// usage chunk) until the next event shows whether it was the last.
fn forward_event(
    pending: &mut Option<SseEvent>,
    usage: &mut Option<Value>,
    wants_usage: bool,
    meta: &MetaFn,
    event: SseEvent,
    out: &mut BytesMut,
) {
    if event.is_done() {
        if let Some(last) = pending.take() {
            let with_meta = parse_chunk(&last)
                .and_then(|chunk| chunk_event(&chunk, wants_usage, Some(&meta(usage.as_ref()))));
            if let Some(bytes) = with_meta.or_else(|| client_event(&last, wants_usage)) {
                out.extend_from_slice(&bytes);
            }
        }
        out.extend_from_slice(&event.raw);
        return;
    }
    let usage_chunk = has_member(&event.data, "usage", b'{');
    if usage_chunk {
        if let Some(u) = parse_chunk(&event)
            .and_then(|c| c.get("usage").cloned())
            .filter(|u| !u.is_null())
        {
            *usage = Some(u);
        }
    }
    let Some(forwarded) = client_event(&event, wants_usage) else {
        return;
    };
    let holdable = usage_chunk || has_member(&event.data, "finish_reason", b'"');
    if let Some(previous) = pending.take() {
        if let Some(bytes) = client_event(&previous, wants_usage) {
            out.extend_from_slice(&bytes);
        }
    }
    if holdable {
        *pending = Some(event);
    } else {
        out.extend_from_slice(&forwarded);
    }
}

/// Anthropic events pass through untouched; `message_stop` gains
/// `routing_metadata` (with the cost of the usage seen so far).
fn forward_anthropic(
    usage: &mut Option<Value>,
    meta: &MetaFn,
    event: SseEvent,
    out: &mut BytesMut,
) {
    match event_name(&event) {
        Some("message_start") => {
            if let Some(Value::Object(u)) =
                parse_chunk(&event).and_then(|d| d.get("message")?.get("usage").cloned())
            {
                *usage = Some(Value::Object(u));
            }
        }
        Some("message_delta") => {
            if let Some(Value::Object(delta)) =
                parse_chunk(&event).and_then(|d| d.get("usage").cloned())
            {
                let mut merged = match usage.take() {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                merged.extend(delta.into_iter().filter(|(_, v)| !v.is_null()));
                *usage = Some(Value::Object(merged));
            }
        }
        Some("message_stop") => {
            out.extend_from_slice(&message_stop_with(&event, &meta(usage.as_ref())));
            return;
        }
        _ => {}
    }
    out.extend_from_slice(&event.raw);
}

fn parse_chunk(event: &SseEvent) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(&event.data) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Whether JSON text has `"name":` followed by a value starting with `first`
/// (quotes inside JSON strings are escaped, so this cannot match content).
fn has_member(data: &str, name: &str, first: u8) -> bool {
    let pattern = format!("\"{name}\":");
    data.match_indices(&pattern).any(|(at, p)| {
        data.as_bytes()[at + p.len()..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == first)
    })
}

#[cfg(test)]
mod tests {
    use super::has_member;

    #[test]
    fn member_detection_ignores_string_content() {
        assert!(has_member(
            r#"{"choices":[{"finish_reason":"stop"}]}"#,
            "finish_reason",
            b'"'
        ));
        assert!(has_member(
            r#"{"finish_reason": "stop"}"#,
            "finish_reason",
            b'"'
        ));
        assert!(!has_member(
            r#"{"finish_reason":null}"#,
            "finish_reason",
            b'"'
        ));
        assert!(!has_member(
            r#"{"content":"say \"finish_reason\":\"x\""}"#,
            "finish_reason",
            b'"'
        ));
        assert!(has_member(
            r#"{"choices":[],"usage":{"total_tokens":3}}"#,
            "usage",
            b'{'
        ));
        assert!(!has_member(r#"{"usage":null}"#, "usage", b'{'));
    }
}
