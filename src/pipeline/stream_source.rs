//! The upstream side of a streaming miss, per dialect: turns the provider's
//! bytes into the bytes clients read (OpenAI chunks; Anthropic events are
//! translated when an OpenAI client asked a Claude model) and records them,
//! deciding whether the stream is complete enough to store.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::adapt::Wire;
use crate::cache::entry::BodyFormat;
use crate::providers::anthropic_stream::AnthropicToOpenAiStream;
use crate::stream::anthropic::{event_name, AnthropicRecorder};
use crate::stream::{data_event, ChatStreamRecorder, SseEvent, SseParser, DONE_EVENT};

enum Recorder {
    Chat(ChatStreamRecorder),
    Anthropic(AnthropicRecorder),
}

pub struct Source {
    parser: SseParser,
    /// Anthropic → OpenAI translation, with a parser over its output.
    translator: Option<(AnthropicToOpenAiStream, SseParser)>,
    recorder: Recorder,
    /// Upstream bytes fed so far.
    fed: usize,
}

impl Source {
    pub fn new(wire: Wire, model: &str, cap: usize) -> Self {
        let created = crate::cache::entry::unix_ms_now() / 1000;
        Source {
            parser: SseParser::new(),
            translator: (wire == Wire::ChatToAnthropic).then(|| {
                (
                    AnthropicToOpenAiStream::new(model, created, true),
                    SseParser::new(),
                )
            }),
            fed: 0,
            recorder: match wire {
                Wire::Anthropic => Recorder::Anthropic(AnthropicRecorder::new(cap)),
                Wire::OpenAi | Wire::ChatToAnthropic => {
                    Recorder::Chat(ChatStreamRecorder::new(cap))
                }
            },
        }
    }

    /// Feeds upstream bytes: the bytes to publish to readers, and whether the
    /// stream's terminal event (`[DONE]`, `message_stop`) went by.
    pub fn feed(&mut self, bytes: Bytes) -> (Bytes, bool) {
        self.fed = self.fed.saturating_add(bytes.len());
        let events = self.parser.push(&bytes);
        let (out, events) = match &mut self.translator {
            None => (bytes, events),
            Some((translator, out_parser)) => {
                let mut out = BytesMut::new();
                for event in events.iter().filter(|e| e.has_data) {
                    let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                        continue;
                    };
                    let name = event_name(event).unwrap_or_default().to_owned();
                    match translator.on_event(&name, &data) {
                        Ok(chunks) => {
                            for chunk in chunks {
                                if let Ok(json) = serde_json::to_vec(&chunk) {
                                    out.extend_from_slice(&data_event(&json));
                                }
                            }
                            if name == "message_stop" && translator.finished() {
                                out.extend_from_slice(DONE_EVENT);
                            }
                        }
                        Err(e) => {
                            if let Ok(json) = serde_json::to_vec(&e.to_openai()) {
                                out.extend_from_slice(&data_event(&json));
                            }
                        }
                    }
                }
                let out = out.freeze();
                let translated = out_parser.push(&out);
                (out, translated)
            }
        };
        let mut terminal = false;
        for event in &events {
            terminal |= self.observe(event);
        }
        (out, terminal)
    }

    fn observe(&mut self, event: &SseEvent) -> bool {
        match &mut self.recorder {
            Recorder::Chat(r) => {
                r.observe(event);
                event.is_done()
            }
            Recorder::Anthropic(r) => {
                r.observe(event);
                event_name(event) == Some("message_stop")
            }
        }
    }

    /// Bytes of an event not yet terminated (bounded by the caller with
    /// `limits.max_sse_event_bytes`).
    pub fn pending_event_bytes(&self) -> usize {
        self.parser.buffered()
    }

    /// Upstream bytes fed so far.
    pub fn fed(&self) -> usize {
        self.fed
    }

    /// The usage as the provider reported it.
    pub fn usage(&self) -> Option<Value> {
        match &self.recorder {
            Recorder::Chat(r) => r.usage().cloned(),
            Recorder::Anthropic(r) => r.usage(),
        }
    }

    /// What to store for a complete stream, or why not (a log label).
    pub fn finish(self) -> Result<(Bytes, BodyFormat), &'static str> {
        let Source {
            parser,
            translator,
            recorder,
            fed: _,
        } = self;
        match recorder {
            Recorder::Chat(mut r) => {
                match translator {
                    Some((_, out_parser)) => r.observe_end(&out_parser.finish()),
                    None => r.observe_end(&parser.finish()),
                }
                let outcome = r.outcome().as_str();
                let mut stored = r.into_stored().ok_or(outcome)?;
                // Clients see normalized usage (cached_tokens, cache_creation_tokens).
                if let Some(usage) = stored.usage.take() {
                    let normalized = crate::cost::normalize(&usage)
                        .map(|n| crate::cost::openai_usage_fields(&n, &usage))
                        .unwrap_or(usage);
                    stored.usage = Some(normalized);
                }
                let body = serde_json::to_vec(&stored).map_err(|_| "unserializable")?;
                Ok((Bytes::from(body), BodyFormat::Stream))
            }
            Recorder::Anthropic(r) => {
                let complete = r.is_complete();
                let raw =
                    r.into_stored()
                        .ok_or(if complete { "over_cap" } else { "incomplete" })?;
                Ok((raw, BodyFormat::AnthropicSse))
            }
        }
    }
}
