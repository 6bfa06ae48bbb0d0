//! Reading profile inputs into simulator events. Three line shapes are
//! accepted, in any mix:
//!
//! - reprise trace lines (`line::TraceLine`: they carry `key`);
//! - request logs `{"timestamp": <unix seconds>, "body": {chat request}}`;
//! - bare chat request bodies (no times: only their order counts).
//!
//! Request bodies are keyed with reprise's own canonical body digest, so two
//! requests that reprise would treat as one entry count as one key here.
//! Their price is an estimate: prompt characters / 4 input tokens plus
//! `max_tokens` (or 256) output tokens at the model's list price.

use std::borrow::Cow;
use std::io::BufRead;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::line::TraceLine;
use super::simulate::{Event, Events};
use crate::cache::entry::ENTRY_OVERHEAD;
use crate::cache::key::{body_digest, EndpointKind};
use crate::cost::Pricing;
use crate::json::Json;

/// Output tokens assumed for a logged request that sets no `max_tokens`.
const DEFAULT_OUTPUT_TOKENS: u64 = 256;
/// Bytes of a stored answer beyond its text (JSON envelope, usage).
const ANSWER_ENVELOPE: u64 = 600;

/// The fields any accepted line shape may carry (others are ignored).
#[derive(Deserialize)]
struct AnyLine<'a> {
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    ts: Option<f64>,
    #[serde(default)]
    timestamp: Option<f64>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
    #[serde(default)]
    messages: Option<&'a RawValue>,
    #[serde(default)]
    http_status: Option<u16>,
    #[serde(default)]
    usd: Option<f64>,
    #[serde(default)]
    saved_usd: Option<f64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// Counts of what was read.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ReadStats {
    pub lines: u64,
    /// Blank lines, failed requests and lines of no known shape.
    pub skipped: u64,
}

/// Turns lines into events, interning models and keys.
pub struct Reader<'p> {
    pricing: &'p Pricing,
    pub events: Events,
    pub stats: ReadStats,
}

impl<'p> Reader<'p> {
    pub fn new(pricing: &'p Pricing) -> Self {
        Reader {
            pricing,
            events: Events::default(),
            stats: ReadStats::default(),
        }
    }

    /// Reads every line of `input`; `progress` gets the bytes consumed.
    pub fn read(
        &mut self,
        input: impl BufRead,
        mut progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        let mut input = input;
        let mut buf = Vec::with_capacity(4096);
        let mut pending = 0u64;
        loop {
            buf.clear();
            let n = input.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            pending += n as u64;
            if pending >= 1 << 20 {
                progress(pending);
                pending = 0;
            }
            self.line(&buf);
        }
        progress(pending);
        Ok(())
    }

    /// One line, of any accepted shape.
    pub fn line(&mut self, bytes: &[u8]) {
        self.stats.lines += 1;
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() || !self.parse(trimmed) {
            self.stats.skipped += 1;
        }
    }

    /// A trace line already in memory (the live window).
    pub fn trace(&mut self, line: &TraceLine) {
        self.stats.lines += 1;
        if !(200..300).contains(&line.http_status) || line.key.len() < 32 {
            self.stats.skipped += 1;
            return;
        }
        self.push_trace(
            line.ts,
            &line.model,
            &line.key,
            line.call_usd(),
            line.completion_tokens,
        );
    }

    fn parse(&mut self, bytes: &[u8]) -> bool {
        let Ok(line) = serde_json::from_slice::<AnyLine<'_>>(bytes) else {
            return false;
        };
        if let (Some(key), Some(model)) = (&line.key, &line.model) {
            if line.http_status.is_some_and(|s| !(200..300).contains(&s)) || key.len() < 32 {
                return false;
            }
            let usd = line.usd.unwrap_or(0.0) + line.saved_usd.unwrap_or(0.0);
            let ts = line.ts.or(line.timestamp).unwrap_or(0.0);
            self.push_trace(ts, model, key, usd, line.completion_tokens.unwrap_or(0));
            return true;
        }
        if let Some(body) = line.body {
            return self.push_request(line.timestamp.or(line.ts), body.get().as_bytes());
        }
        if line.messages.is_some() {
            return self.push_request(None, bytes);
        }
        false
    }

    fn push_trace(&mut self, ts: f64, model: &str, key: &str, usd: f64, completion: u64) {
        let Some(digest) = key.get(..32).and_then(|h| u128::from_str_radix(h, 16).ok()) else {
            self.stats.skipped += 1;
            return;
        };
        let m = self.events.model(model, true);
        let k = self.events.key(m, digest);
        self.events.push(Event {
            ts,
            model: m,
            key: k,
            call_usd: usd.max(0.0),
            bytes: stored_bytes(completion.saturating_mul(4)),
        });
    }

    fn push_request(&mut self, ts: Option<f64>, body: &[u8]) -> bool {
        let Ok(json) = Json::parse(body) else {
            return false;
        };
        let Some(model) = json.get("model").and_then(Json::as_str) else {
            return false;
        };
        let digest = body_digest(EndpointKind::Chat, &json).0;
        let mut head = [0u8; 16];
        head.copy_from_slice(&digest[..16]);
        let output = json
            .get("max_completion_tokens")
            .or_else(|| json.get("max_tokens"))
            .and_then(Json::as_u64)
            .unwrap_or(DEFAULT_OUTPUT_TOKENS);
        let input = body.len() as u64 / 4;
        let usd = self.pricing.price(model).map_or(0.0, |p| {
            input as f64 * p.input + output as f64 * p.output_price()
        });
        let m = self.events.model(model, ts.is_some());
        let k = self.events.key(m, u128::from_be_bytes(head));
        self.events.push(Event {
            ts: ts.unwrap_or(0.0),
            model: m,
            key: k,
            call_usd: usd,
            bytes: stored_bytes(output.saturating_mul(4)),
        });
        true
    }
}

/// Estimated weight of a stored answer of `text` bytes (as the memory tier
/// counts it).
fn stored_bytes(text: u64) -> u32 {
    let total = text + ANSWER_ENVELOPE + ENTRY_OVERHEAD as u64;
    u32::try_from(total).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_shape_and_skips_the_rest() {
        let pricing = crate::cost::PricingConfig::default().build().unwrap();
        let mut r = Reader::new(&pricing);
        let key = "ab".repeat(32);
        let lines = format!(
            "{{\"ts\":1.0,\"model\":\"gpt-4o\",\"key\":\"{key}\",\"http_status\":200,\"usd\":0.5}}\n\
             {{\"timestamp\":2,\"body\":{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}}}\n\
             {{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"stream\":true}}\n\
             \n\
             not json\n\
             {{\"ts\":3.0,\"model\":\"gpt-4o\",\"key\":\"{key}\",\"http_status\":500}}\n"
        );
        r.read(lines.as_bytes(), |_| {}).unwrap();
        assert_eq!(r.stats.lines, 6);
        assert_eq!(r.stats.skipped, 3);
        assert_eq!(r.events.events.len(), 3);
        // The logged body and the bare (streamed) one are the same entry.
        assert_eq!(r.events.keys(), 2);
        assert!(r.events.timed[0]);
        assert!(!r.events.timed[1], "a model seen without times is untimed");
        assert!(r.events.events[1].call_usd > 0.0, "priced from the list");
    }
}
