//! Watching an upstream answer as it passes through: the final result for the
//! request's id (what may be stored), anything that makes it uncacheable (an
//! error, a request from the server to the client such as sampling or
//! elicitation, a truncated or oversized body) and `tools/list_changed`
//! notifications (which bump the server's generation).
//!
//! `text/event-stream` bodies are parsed with `stream::sse::SseParser` as
//! they arrive; `application/json` bodies are kept (capped) and read at the
//! end. The bytes themselves are forwarded untouched by the caller.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::message::{same_id, Envelope};
use crate::stream::SseParser;

pub const LIST_CHANGED: &str = "notifications/tools/list_changed";

/// What one message told us that the caller must act on at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Nothing,
    ToolListChanged,
}

/// The messages of one answer, judged for caching.
#[derive(Debug)]
pub struct Capture {
    /// The request whose result is captured (None: only scanning).
    id: Option<Box<RawValue>>,
    result: Option<Bytes>,
    /// Anything that forbids storing: an error for our id, a server request,
    /// a second answer, an oversized body.
    spoiled: bool,
    cap: usize,
}

impl Capture {
    pub fn new(id: Option<Box<RawValue>>, cap: usize) -> Self {
        Capture {
            id,
            result: None,
            spoiled: false,
            cap,
        }
    }

    /// One JSON-RPC message (or batch) from the server.
    pub fn observe(&mut self, message: &[u8]) -> Seen {
        let Some(env) = Envelope::parse(message) else {
            // A batch or something unexpected: never store around it, but
            // still look for notifications inside a batch.
            if message.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                self.spoiled = true;
                return scan_batch(message);
            }
            return Seen::Nothing;
        };
        if env.is_request() {
            // Sampling, elicitation, roots…: the answer depends on the client.
            self.spoiled = true;
            return Seen::Nothing;
        }
        if env.is_notification() {
            return match env.method.as_deref() {
                Some(LIST_CHANGED) => Seen::ToolListChanged,
                _ => Seen::Nothing,
            };
        }
        let ours = match (&self.id, env.id) {
            (Some(want), Some(got)) => same_id(want, got),
            _ => false,
        };
        if ours {
            match (env.result, env.error) {
                (Some(result), None) if self.result.is_none() => {
                    if result.get().len() > self.cap {
                        self.spoiled = true;
                    } else {
                        self.result = Some(Bytes::copy_from_slice(result.get().as_bytes()));
                    }
                }
                _ => self.spoiled = true,
            }
        }
        Seen::Nothing
    }

    /// The result, as soon as it is complete and nothing forbids storing it
    /// (taken once: the caller stores it before releasing the bytes).
    pub fn take_ready(&mut self) -> Option<Bytes> {
        if self.spoiled {
            return None;
        }
        self.result.take()
    }

    pub fn spoil(&mut self) {
        self.spoiled = true;
    }

    /// The captured result, when the answer may be stored as far as the
    /// protocol goes (the result's own flags are judged by `policy`).
    pub fn into_result(self) -> Option<Bytes> {
        if self.spoiled {
            return None;
        }
        self.result
    }
}

fn scan_batch(message: &[u8]) -> Seen {
    let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(message) else {
        return Seen::Nothing;
    };
    let changed = items.iter().any(|item| {
        Envelope::parse(item.get().as_bytes())
            .is_some_and(|e| e.is_notification() && e.method.as_deref() == Some(LIST_CHANGED))
    });
    if changed {
        Seen::ToolListChanged
    } else {
        Seen::Nothing
    }
}

/// Reads a body in the framing its `Content-Type` says.
#[derive(Debug)]
pub enum BodyScanner {
    Sse(Option<SseParser>),
    /// A JSON body, kept up to the cap (None once over it).
    Json(Option<Vec<u8>>),
    /// Anything else: forwarded, never stored.
    Opaque,
}

impl BodyScanner {
    pub fn for_content_type(content_type: &str) -> Self {
        let ct = content_type.trim().to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            BodyScanner::Sse(Some(SseParser::new()))
        } else if ct.starts_with("application/json") {
            BodyScanner::Json(Some(Vec::new()))
        } else {
            BodyScanner::Opaque
        }
    }

    /// Feeds one chunk; returns whether a `tools/list_changed` went by.
    pub fn push(&mut self, chunk: &[u8], capture: &mut Capture) -> Seen {
        let mut seen = Seen::Nothing;
        match self {
            BodyScanner::Sse(slot) => {
                let Some(parser) = slot else {
                    return seen;
                };
                for event in parser.push(chunk) {
                    if event.has_data
                        && capture.observe(event.data.as_bytes()) == Seen::ToolListChanged
                    {
                        seen = Seen::ToolListChanged;
                    }
                }
                // One event larger than the cap: stop parsing (and storing).
                if parser.buffered() > capture.cap {
                    *slot = None;
                    capture.spoil();
                }
            }
            BodyScanner::Json(slot) => {
                if let Some(buf) = slot {
                    if buf.len() + chunk.len() > capture.cap {
                        *slot = None;
                        capture.spoil();
                    } else {
                        buf.extend_from_slice(chunk);
                    }
                }
            }
            BodyScanner::Opaque => capture.spoil(),
        }
        seen
    }

    /// The body ended cleanly (`complete`) or was cut.
    pub fn finish(self, complete: bool, capture: &mut Capture) -> Seen {
        if !complete {
            capture.spoil();
        }
        match self {
            BodyScanner::Sse(Some(parser)) => {
                if parser.finish().unterminated {
                    capture.spoil();
                }
                Seen::Nothing
            }
            BodyScanner::Json(Some(buf)) if complete => capture.observe(&buf),
            BodyScanner::Sse(None) | BodyScanner::Json(_) | BodyScanner::Opaque => {
                capture.spoil();
                Seen::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Option<Box<RawValue>> {
        Some(RawValue::from_string(s.to_owned()).unwrap())
    }

    /// Feeds `body` in chunks of `step` bytes.
    fn scan(content_type: &str, want: &str, body: &[u8], step: usize) -> (Option<Bytes>, bool) {
        let mut capture = Capture::new(id(want), 1 << 20);
        let mut scanner = BodyScanner::for_content_type(content_type);
        let mut changed = false;
        for chunk in body.chunks(step) {
            changed |= scanner.push(chunk, &mut capture) == Seen::ToolListChanged;
        }
        changed |= scanner.finish(true, &mut capture) == Seen::ToolListChanged;
        (capture.into_result(), changed)
    }

    const PROGRESS: &str = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":50}}\r\n\r\n";

    #[test]
    fn sse_result_after_notifications_is_captured_in_any_chunking() {
        let body = format!(
            ": keep-alive\n\nid: e1\ndata: \n\n{PROGRESS}event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":\"r-1\",\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"3\"}}],\"isError\":false}}}}\n\n"
        );
        for step in [1, 7, body.len()] {
            let (result, changed) = scan("text/event-stream", "\"r-1\"", body.as_bytes(), step);
            assert_eq!(
                result.as_deref(),
                Some(&br#"{"content":[{"type":"text","text":"3"}],"isError":false}"#[..]),
                "step {step}"
            );
            assert!(!changed);
        }
    }

    #[test]
    fn other_ids_errors_and_server_requests_are_not_captured() {
        let other = "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n";
        assert_eq!(scan("text/event-stream", "1", other.as_bytes(), 5).0, None);
        let error =
            "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"x\"}}\n\n";
        assert_eq!(scan("text/event-stream", "1", error.as_bytes(), 5).0, None);
        let sampling = "data: {\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"sampling/createMessage\",\"params\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        assert_eq!(
            scan("text/event-stream", "1", sampling.as_bytes(), 5).0,
            None
        );
        // A string id "1" is not the number 1.
        let stringly = "data: {\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{}}\n\n";
        assert_eq!(
            scan("text/event-stream", "1", stringly.as_bytes(), 5).0,
            None
        );
    }

    #[test]
    fn truncated_streams_are_not_captured() {
        let body = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\ndata: {\"jsonrpc\"";
        assert_eq!(scan("text/event-stream", "1", body, 4).0, None);
        let mut capture = Capture::new(id("1"), 1 << 20);
        let mut scanner = BodyScanner::for_content_type("text/event-stream");
        scanner.push(
            b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
            &mut capture,
        );
        scanner.finish(false, &mut capture);
        assert_eq!(capture.into_result(), None);
    }

    #[test]
    fn list_changed_is_seen_in_streams_and_json() {
        let note =
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
        let body = format!("{note}data: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{}}}}\n\n");
        let (result, changed) = scan("text/event-stream", "1", body.as_bytes(), 3);
        assert!(changed);
        assert_eq!(result.as_deref(), Some(&b"{}"[..]));
        let (_, changed) = scan(
            "application/json",
            "1",
            br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            8,
        );
        assert!(changed);
    }

    #[test]
    fn json_bodies_are_captured_and_capped() {
        let body = br#"{"jsonrpc":"2.0","id":5,"result":{"tools":[]}}"#;
        let (result, _) = scan("application/json; charset=utf-8", "5", body, 4);
        assert_eq!(result.as_deref(), Some(&br#"{"tools":[]}"#[..]));
        let mut capture = Capture::new(id("5"), 10);
        let mut scanner = BodyScanner::for_content_type("application/json");
        scanner.push(body, &mut capture);
        scanner.finish(true, &mut capture);
        assert_eq!(capture.into_result(), None);
    }
}
