//! Incremental `text/event-stream` parsing (the WHATWG algorithm), keeping the
//! exact bytes of every event so a stream can be forwarded byte for byte.
//!
//! Deviations from a browser `EventSource`, all deliberate:
//! - a block made only of comments (`: ping`) or of fields without `data:` is
//!   still returned (with `has_data == false`), so keep-alives can be forwarded;
//!   consumers that follow the spec ignore events without data;
//! - blank lines that end no block (e.g. a stray `\n\n\n`) are not events: their
//!   bytes are carried at the front of the next event's `raw`;
//! - a `\r` line ending is acted on at once (no wait for a possible `\n`); when
//!   that `\n` arrives in the next push it is consumed as part of the `\r\n` and
//!   its byte goes to the front of the next event's `raw`. So the concatenation of
//!   every event's `raw` plus [`SseEnd::leftover`] is always the input, exactly.

use bytes::Bytes;

/// The event that ends an OpenAI stream.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` when absent or empty (the default `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n` (empty when there were none).
    pub data: String,
    /// Whether at least one `data` field was present (`data:` alone counts).
    pub has_data: bool,
    /// The `id:` field of this block (values containing NUL are ignored).
    pub id: Option<String>,
    /// The `retry:` field of this block, when it was all ASCII digits.
    pub retry: Option<u64>,
    /// The exact bytes of the event, terminating blank line included.
    pub raw: Bytes,
}

impl SseEvent {
    /// `data: [DONE]`, the OpenAI end-of-stream marker.
    pub fn is_done(&self) -> bool {
        self.has_data && self.data.trim() == "[DONE]"
    }

    /// A block a client acts on in no way: no data, event, id or retry (only
    /// comments such as keep-alives, or unknown fields).
    pub fn is_comment(&self) -> bool {
        !self.has_data && self.event.is_none() && self.id.is_none() && self.retry.is_none()
    }
}

/// How a stream ended, from [`SseParser::finish`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEnd {
    /// Bytes after the last dispatched event (a partial event, stray blank lines).
    pub leftover: Bytes,
    /// The leftover holds the start of an event (a field line, or a partial line
    /// that is not whitespace or a comment) that was never terminated.
    pub unterminated: bool,
}

/// The fields of the block being read.
#[derive(Debug, Default)]
struct Block {
    /// Any line (field or comment) since the last dispatch.
    lines: bool,
    /// Any field line (not a comment) since the last dispatch.
    fields: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
}

/// Incremental parser: feed it the body as it arrives, in chunks of any size.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes since the last dispatched event; the current line is `raw[line_start..]`.
    raw: Vec<u8>,
    line_start: usize,
    /// The last line ended in `\r`, at the very end of the previous push.
    after_cr: bool,
    /// The first line was read (a leading BOM is only skipped there).
    started: bool,
    block: Block,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `bytes`, returning the events they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                self.raw.push(b'\n');
                self.line_start = self.raw.len();
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.raw.extend_from_slice(&rest[..pos]);
            let line_end = self.raw.len();
            let mut consumed = pos + 1;
            self.raw.push(rest[pos]);
            if rest[pos] == b'\r' {
                match rest.get(pos + 1) {
                    Some(b'\n') => {
                        self.raw.push(b'\n');
                        consumed += 1;
                    }
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            rest = &rest[consumed..];
            let mut line = &self.raw[self.line_start..line_end];
            if !self.started {
                self.started = true;
                line = line.strip_prefix(BOM).unwrap_or(line);
            }
            let dispatch = read_line(&mut self.block, line);
            self.line_start = self.raw.len();
            if dispatch {
                out.push(self.dispatch());
            }
        }
        self.raw.extend_from_slice(rest);
        out
    }

    /// Bytes held for an event not yet terminated (to bound memory on a
    /// misbehaving upstream).
    pub fn buffered(&self) -> usize {
        self.raw.len()
    }

    /// Ends the stream: what was left after the last event. Per the spec, an
    /// unterminated event is never dispatched.
    pub fn finish(self) -> SseEnd {
        let mut partial = &self.raw[self.line_start..];
        if !self.started {
            partial = partial.strip_prefix(BOM).unwrap_or(partial);
        }
        let partial_event =
            partial.first() != Some(&b':') && partial.iter().any(|b| !b.is_ascii_whitespace());
        SseEnd {
            unterminated: self.block.fields || partial_event,
            leftover: Bytes::from(self.raw),
        }
    }

    fn dispatch(&mut self) -> SseEvent {
        let mut block = std::mem::take(&mut self.block);
        if block.data.ends_with('\n') {
            block.data.pop();
        }
        self.line_start = 0;
        SseEvent {
            event: block.event,
            data: block.data,
            has_data: block.has_data,
            id: block.id,
            retry: block.retry,
            raw: Bytes::from(std::mem::take(&mut self.raw)),
        }
    }
}

/// Applies one line to the block; `true` when it is the blank line ending it.
fn read_line(block: &mut Block, line: &[u8]) -> bool {
    if line.is_empty() {
        return block.lines;
    }
    block.lines = true;
    if line[0] == b':' {
        return false;
    }
    block.fields = true;
    let (field, value) = match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            let value = &line[colon + 1..];
            (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &b""[..]),
    };
    match field {
        b"data" => {
            block.data.push_str(&String::from_utf8_lossy(value));
            block.data.push('\n');
            block.has_data = true;
        }
        b"event" => {
            block.event = (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned());
        }
        b"id" if !value.contains(&0) => {
            block.id = Some(String::from_utf8_lossy(value).into_owned());
        }
        b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
            block.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        }
        _ => {}
    }
    false
}

/// Frames a JSON document as one SSE event: `data: <json>\n\n`. A document
/// spanning several lines (pretty-printed) becomes one `data:` line per line,
/// which a parser joins back with `\n`.
pub fn data_event(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    for line in json.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (Vec<SseEvent>, SseEnd) {
        let mut p = SseParser::new();
        let events = p.push(input);
        (events, p.finish())
    }

    fn datas(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    /// Every split of `input` into two and three pushes gives the same events
    /// and the raw bytes always concatenate back to the input.
    fn assert_split_invariant(input: &[u8]) {
        let (whole, whole_end) = parse_all(input);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let mut p = SseParser::new();
                let mut events = p.push(&input[..i]);
                events.extend(p.push(&input[i..j]));
                events.extend(p.push(&input[j..]));
                let end = p.finish();
                let strip =
                    |e: &SseEvent| (e.event.clone(), e.data.clone(), e.has_data, e.id.clone());
                assert_eq!(
                    events.iter().map(strip).collect::<Vec<_>>(),
                    whole.iter().map(strip).collect::<Vec<_>>(),
                    "split at {i},{j} of {input:?}"
                );
                assert_eq!(end.unterminated, whole_end.unterminated);
                let mut concat: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
                concat.extend_from_slice(&end.leftover);
                assert_eq!(concat, input, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn basic_events_and_raw() {
        let input = b"data: {\"a\":1}\n\ndata: [DONE]\n\n";
        let (events, end) = parse_all(input);
        assert_eq!(datas(&events), ["{\"a\":1}", "[DONE]"]);
        assert_eq!(&events[0].raw[..], b"data: {\"a\":1}\n\n");
        assert_eq!(&events[1].raw[..], DONE_EVENT);
        assert!(events[1].is_done() && !events[0].is_done());
        assert!(!end.unterminated && end.leftover.is_empty());
    }

    #[test]
    fn line_endings_all_equivalent() {
        for sep in ["\n", "\r\n", "\r"] {
            let input = format!("event: x{sep}data: a{sep}data:b{sep}{sep}data: c{sep}{sep}");
            let (events, end) = parse_all(input.as_bytes());
            assert_eq!(datas(&events), ["a\nb", "c"], "{sep:?}");
            assert_eq!(events[0].event.as_deref(), Some("x"));
            assert_eq!(events[1].event, None);
            assert!(!end.unterminated);
            assert_split_invariant(input.as_bytes());
        }
        // Mixed endings in one stream.
        assert_split_invariant(b"data: a\r\n\rdata: b\n\r\ndata: c\r\r");
    }

    #[test]
    fn crlf_split_between_cr_and_lf() {
        let mut p = SseParser::new();
        let first = p.push(b"data: a\r\n\r");
        assert_eq!(datas(&first), ["a"]);
        assert_eq!(&first[0].raw[..], b"data: a\r\n\r");
        let second = p.push(b"\ndata: b\r\n\r\n");
        assert_eq!(datas(&second), ["b"]);
        // The LF completing the CRLF leads the next event's raw bytes.
        assert_eq!(&second[0].raw[..], b"\ndata: b\r\n\r\n");
        // An empty push does not forget the pending CR.
        let mut p = SseParser::new();
        assert_eq!(p.push(b"data: a\r").len(), 0);
        assert_eq!(p.push(b"").len(), 0);
        let events = p.push(b"\n\r\n");
        assert_eq!(datas(&events), ["a"]);
    }

    #[test]
    fn utf8_split_inside_a_char() {
        let input = "data: {\"t\":\"héllo 日本 🦀\"}\n\n".as_bytes();
        assert_split_invariant(input);
        let (events, _) = parse_all(input);
        assert_eq!(events[0].data, "{\"t\":\"héllo 日本 🦀\"}");
        // Invalid UTF-8 is replaced, not an error.
        let (events, _) = parse_all(b"data: \xFF\n\n");
        assert_eq!(events[0].data, "\u{FFFD}");
    }

    #[test]
    fn fields_comments_and_spaces() {
        let input = b": ping\n\nid: 7\nretry: 1500\nevent: error\ndata:no-space\ndata:  two\n\n";
        let (events, _) = parse_all(input);
        assert_eq!(events.len(), 2);
        assert!(events[0].is_comment() && !events[0].has_data);
        assert_eq!(&events[0].raw[..], b": ping\n\n");
        let e = &events[1];
        assert_eq!(e.id.as_deref(), Some("7"));
        assert_eq!(e.retry, Some(1500));
        assert_eq!(e.event.as_deref(), Some("error"));
        // Only one leading space is stripped.
        assert_eq!(e.data, "no-space\n two");
        assert_split_invariant(input);
    }

    #[test]
    fn odd_fields() {
        let (events, _) = parse_all(b"data\n\nretry: 12a\nid: a\0b\nfoo: bar\ndata: x\n\n");
        assert_eq!(events[0].data, "");
        assert!(events[0].has_data);
        assert_eq!(events[1].retry, None);
        assert_eq!(events[1].id, None);
        assert_eq!(events[1].data, "x");
        // `data:` then blank: an event with empty data.
        let (events, _) = parse_all(b"data:\n\n");
        assert!(events[0].has_data && events[0].data.is_empty());
        // Trailing newline in data: `data:\ndata:` is "\n".
        let (events, _) = parse_all(b"data:\ndata:\n\n");
        assert_eq!(events[0].data, "\n");
    }

    #[test]
    fn stray_blank_lines_lead_the_next_event() {
        let input = b"\n\ndata: a\n\n\n\ndata: b\n\n\n";
        let (events, end) = parse_all(input);
        assert_eq!(datas(&events), ["a", "b"]);
        assert_eq!(&events[0].raw[..], b"\n\ndata: a\n\n");
        assert_eq!(&events[1].raw[..], b"\n\ndata: b\n\n");
        assert_eq!(&end.leftover[..], b"\n");
        assert!(!end.unterminated);
        assert_split_invariant(input);
    }

    #[test]
    fn bom_is_skipped_once() {
        let input = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n";
        let (events, _) = parse_all(input);
        assert_eq!(events[0].data, "a");
        // A second BOM is part of a field name: an unknown field, no data.
        assert_eq!(events.len(), 2);
        assert!(!events[1].has_data && events[1].is_comment());
        assert_split_invariant(input);
    }

    #[test]
    fn finish_reports_unterminated() {
        for (input, unterminated) in [
            (&b"data: a\n\ndata: {\"par"[..], true),
            (b"data: a\n\ndata: b\n", true),
            (b"data: a\n\n", false),
            (b"data: a\n\n  \n\n ", false),
            (b"data: a\n\n: keepalive", false),
            (b"data: a\n\n: keepalive\n", false),
            (b"data: a\n\nevent: x\n", true),
        ] {
            let (_, end) = parse_all(input);
            assert_eq!(end.unterminated, unterminated, "{input:?}");
        }
        let (_, end) = parse_all(b"data: a\n\ndata: b");
        assert_eq!(&end.leftover[..], b"data: b");
    }

    #[test]
    fn buffered_counts_pending_bytes() {
        let mut p = SseParser::new();
        p.push(b"data: a\n\ndata: bc");
        assert_eq!(p.buffered(), 8);
    }

    #[test]
    fn data_event_frames() {
        assert_eq!(&data_event(b"{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        let pretty = data_event(b"{\n  \"a\": 1\r\n}");
        assert_eq!(&pretty[..], b"data: {\ndata:   \"a\": 1\ndata: }\n\n");
        let (events, _) = parse_all(&pretty);
        let v: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1}));
    }
}
