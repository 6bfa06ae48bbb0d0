//! SSE rendering of an [`Answer`] and paced (optionally cut) response bodies.
//!
//! Per choice: a role chunk, reasoning deltas (reasoning models, ~3 pieces), then one
//! content delta per word (each word keeps its following whitespace, so the deltas
//! concatenate to the non-stream content) or a tool-call header plus 3 argument
//! fragments, then a finish chunk. With `stream_options.include_usage` every chunk
//! carries `"usage": null` and a final `"choices": []` chunk carries the usage.
//! The stream ends with `data: [DONE]`.

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::chat::{Answer, Choice};
use crate::text::word_pieces;

pub const SSE: &str = "text/event-stream";

const DONE: &[u8] = b"data: [DONE]\n\n";

/// Pause before aborting a cut body, so the bytes already written get flushed
/// to the client before the connection drops.
const CUT_FLUSH_PAUSE: Duration = Duration::from_millis(10);

/// Frames `value` as one SSE event: `data: <compact json>\n\n`.
fn sse(value: &Value) -> Bytes {
    let mut buf = b"data: ".to_vec();
    if serde_json::to_writer(&mut buf, value).is_err() {
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// Builds the chunks of one answer.
struct Chunker<'a> {
    answer: &'a Answer,
    include_usage: bool,
}

impl Chunker<'_> {
    fn envelope(&self, choices: Value) -> Map<String, Value> {
        let mut chunk = Map::new();
        chunk.insert("id".into(), self.answer.id.clone().into());
        chunk.insert("object".into(), "chat.completion.chunk".into());
        chunk.insert("created".into(), self.answer.created.into());
        chunk.insert("model".into(), self.answer.model.clone().into());
        chunk.insert("system_fingerprint".into(), "fp_mock".into());
        chunk.insert("choices".into(), choices);
        chunk
    }

    fn choice(&self, index: usize, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let choice = json!({
            "index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason,
        });
        let mut chunk = self.envelope(Value::Array(vec![choice]));
        if self.include_usage {
            chunk.insert("usage".into(), Value::Null);
        }
        sse(&Value::Object(chunk))
    }

    fn usage(&self) -> Bytes {
        let mut chunk = self.envelope(Value::Array(Vec::new()));
        chunk.insert("usage".into(), self.answer.usage.clone());
        sse(&Value::Object(chunk))
    }

    fn role(&self, c: &Choice) -> Bytes {
        self.choice(c.index, json!({"role": "assistant", "content": ""}), None)
    }

    fn content_deltas<'c>(&'c self, c: &'c Choice) -> impl Iterator<Item = Bytes> + 'c {
        word_pieces(c.content.as_deref().unwrap_or_default())
            .into_iter()
            .map(move |w| self.choice(c.index, json!({"content": w}), None))
    }

    fn push_choice(&self, c: &Choice, out: &mut Vec<Bytes>) {
        out.push(self.role(c));
        if let Some(reasoning) = &c.reasoning {
            for piece in split_n(reasoning, 3) {
                out.push(self.choice(c.index, json!({"reasoning_content": piece}), None));
            }
        }
        if let Some(tc) = &c.tool_call {
            let header = json!({"tool_calls": [{
                "index": 0, "id": tc.id, "type": "function",
                "function": {"name": tc.name, "arguments": ""},
            }]});
            out.push(self.choice(c.index, header, None));
            for frag in split_n(&tc.arguments, 3) {
                let delta = json!({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]});
                out.push(self.choice(c.index, delta, None));
            }
        } else {
            out.extend(self.content_deltas(c));
        }
        out.push(self.choice(c.index, json!({}), Some(c.finish_reason)));
    }
}

/// All SSE events of a complete streamed answer, `[DONE]` included.
pub fn events(answer: &Answer, include_usage: bool) -> Vec<Bytes> {
    let chunker = Chunker {
        answer,
        include_usage,
    };
    let mut out = Vec::new();
    for c in &answer.choices {
        chunker.push_choice(c, &mut out);
    }
    if include_usage {
        out.push(chunker.usage());
    }
    out.push(Bytes::from_static(DONE));
    out
}

/// `mock-cut-stream`: the role chunk and the first two content chunks of choice 0.
pub fn cut_events(answer: &Answer, include_usage: bool) -> Vec<Bytes> {
    let chunker = Chunker {
        answer,
        include_usage,
    };
    let Some(first) = answer.choices.first() else {
        return Vec::new();
    };
    let mut out = vec![chunker.role(first)];
    out.extend(chunker.content_deltas(first).take(2));
    out
}

/// Splits `s` into at most `n` non-empty pieces of roughly equal char count.
pub fn split_n(s: &str, n: usize) -> Vec<&str> {
    let total = s.chars().count();
    let n = n.clamp(1, total.max(1));
    let per = total.div_ceil(n).max(1);
    let mut pieces = Vec::with_capacity(n);
    let mut rest = s;
    while !rest.is_empty() {
        let cut = rest.char_indices().nth(per).map_or(rest.len(), |(i, _)| i);
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    pieces
}

/// A 200 response whose body is `chunks`, with `delay` between chunks. With `cut`,
/// the body ends in an error after the chunks, so the connection is aborted
/// without a proper end (no terminating chunk).
pub fn paced_response(
    content_type: &'static str,
    chunks: Vec<Bytes>,
    delay: Duration,
    cut: bool,
) -> Response {
    let body = if delay.is_zero() && !cut {
        // Fast path for benchmarks: one write, still chunked like a real stream.
        let all: Bytes = chunks.concat().into();
        Body::from_stream(futures_util::stream::iter([Ok::<_, io::Error>(all)]))
    } else {
        Body::from_stream(paced(chunks, delay, cut))
    };
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == SSE {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

/// A 200 response that sends `chunks`, then stays open and silent until the
/// client goes away (a provider stalled mid-answer).
pub fn stalled_response(content_type: &'static str, chunks: Vec<Bytes>) -> Response {
    use futures_util::StreamExt;
    let sent = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, io::Error>));
    let mut resp = Response::new(Body::from_stream(
        sent.chain(futures_util::stream::pending()),
    ));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

struct Pacer {
    chunks: std::vec::IntoIter<Bytes>,
    started: bool,
    cut: bool,
}

fn paced(
    chunks: Vec<Bytes>,
    delay: Duration,
    cut: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send {
    let pacer = Pacer {
        chunks: chunks.into_iter(),
        started: false,
        cut,
    };
    futures_util::stream::unfold(pacer, move |mut p| async move {
        match p.chunks.next() {
            Some(chunk) => {
                if p.started && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                p.started = true;
                Some((Ok(chunk), p))
            }
            None if p.cut => {
                tokio::time::sleep(delay.max(CUT_FLUSH_PAUSE)).await;
                p.cut = false;
                let err = io::Error::new(io::ErrorKind::ConnectionAborted, "mock cut stream");
                Some((Err(err), p))
            }
            None => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::build_answer;

    fn parse(events: &[Bytes]) -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap_or_default();
                assert!(s.starts_with("data: ") && s.ends_with("\n\n"), "{s:?}");
                let data = &s[6..s.len() - 2];
                serde_json::from_str(data).unwrap_or(Value::String(data.to_owned()))
            })
            .collect()
    }

    fn answer(v: Value, model: &str) -> Answer {
        let Value::Object(body) = v else {
            unreachable!()
        };
        build_answer(&body, model, 7, 1_700_000_000)
    }

    #[test]
    fn deltas_concatenate_to_content() {
        let a = answer(
            json!({"messages": [{"role": "user", "content": "spaced  out\ttext é"}], "n": 2}),
            "mock-reasoning-x",
        );
        let chunks = parse(&events(&a, true));
        assert_eq!(chunks.last(), Some(&Value::String("[DONE]".into())));
        let usage = &chunks[chunks.len() - 2];
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"], a.usage);
        for (i, choice) in a.choices.iter().enumerate() {
            let mine: Vec<&Value> = chunks[..chunks.len() - 2]
                .iter()
                .filter(|c| c["choices"][0]["index"] == i)
                .collect();
            let text: String = mine
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(Some(text), choice.content);
            let reasoning: String = mine
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
                .collect();
            assert_eq!(Some(reasoning), choice.reasoning);
            assert_eq!(
                mine[0]["choices"][0]["delta"],
                json!({"role": "assistant", "content": ""})
            );
            let last = mine.last().map(|c| &c["choices"][0]);
            assert_eq!(last.map(|c| &c["finish_reason"]), Some(&json!("stop")));
            assert_eq!(last.map(|c| &c["delta"]), Some(&json!({})));
            for c in &mine {
                assert_eq!(c["id"], "chatcmpl-mock-7");
                assert_eq!(c["usage"], Value::Null);
                assert!(c.get("usage").is_some());
                assert_eq!(c["choices"][0]["logprobs"], Value::Null);
            }
        }
    }

    #[test]
    fn tool_call_fragments_concatenate() {
        let a = answer(
            json!({"messages": [{"role": "user", "content": "find rust crates"}],
                   "tools": [{"type": "function", "function": {"name": "search"}}]}),
            "gpt-4o-mini",
        );
        let chunks = parse(&events(&a, false));
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0][0]["function"]["name"], "search");
        assert_eq!(
            calls[0][0]["id"],
            a.choices[0].tool_call.as_ref().map_or("", |t| &t.id)
        );
        let args: String = calls
            .iter()
            .filter_map(|t| t[0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, r#"{"query": "find rust crates"}"#);
        let finish = &chunks[chunks.len() - 2]["choices"][0]["finish_reason"];
        assert_eq!(finish, "tool_calls");
    }

    #[test]
    fn cut_events_are_role_plus_two_words() {
        let a = answer(
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "m",
        );
        let chunks = parse(&cut_events(&a, false));
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Mock ");
        assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "answer ");
    }

    #[test]
    fn split_n_pieces() {
        assert_eq!(split_n("abcdefgh", 3), vec!["abc", "def", "gh"]);
        assert_eq!(split_n("ab", 3), vec!["a", "b"]);
        assert!(split_n("", 3).is_empty());
        assert_eq!(split_n("日本語です", 3).concat(), "日本語です");
    }
}
