//! Verified mode in the flow (`semantic.mode = "verified"`, after vCache):
//! the nearest guarded candidate is served or explored as its entry's
//! observations decide (`semantic::verified`). An explored request goes to
//! the provider as a normal miss; once its fresh answer is stored, it is
//! compared with the cached one (equal text, or answer embeddings with cosine
//! ≥ `semantic.answer_agreement`) and the comparison is recorded on the
//! entry. A disagreeing answer also becomes a semantic entry of its own.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::embed::{self, Caller};
use super::{Answer, Request};
use crate::cache::entry::{BodyFormat, Entry};
use crate::cache::key::CacheKey;
use crate::render::CacheStatus;
use crate::semantic::index::dot;
use crate::semantic::tier::{Embedded, SemanticTier};
use crate::semantic::verified::VerifiedDecision;
use crate::stream::StoredStream;

/// A candidate verified mode chose to explore rather than serve.
#[derive(Clone)]
pub(crate) struct Exploration {
    /// The matched entry (its item gets the observation).
    pub key: CacheKey,
    pub similarity: f32,
    /// Its answer, compared with the provider's fresh one.
    pub cached: Arc<Entry>,
}

/// The candidate floor in verified mode: the judge band's lower edge (the
/// entries' learned thresholds do the rest), tightened by the request's
/// `x-cache-semantic-threshold`. `bench/semantic_eval.sh` simulates this.
pub(super) fn floor(tier: &SemanticTier, requested_bp: Option<u16>) -> f32 {
    let floor = tier.config.judge_floor;
    requested_bp.map_or(floor, |bp| floor.max(f32::from(bp) / 10_000.0))
}

/// Serve or explore, with a fresh uniform draw.
pub(super) fn decide(
    tier: &SemanticTier,
    observations: &crate::semantic::verified::Observations,
    similarity: f32,
) -> VerifiedDecision {
    observations.decide(similarity, tier.config.max_error_rate, uniform())
}

/// A uniform draw from [0, 1) (SipHash under fresh random keys, as
/// `cache::bucket` draws: no RNG dependency for one draw per lookup).
fn uniform() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// An explored request that reached the provider: say so on the response
/// (`x-cache-verified: explored`, the candidate's similarity and key) and in
/// the stats.
pub(super) fn mark_explored(request: &Request, answer: &mut Answer) {
    let Some(exploration) = request.semantic.exploration.get() else {
        return;
    };
    if answer.record.status != Some(CacheStatus::Miss) {
        return;
    }
    answer.record.semantic_explored = true;
    let headers = answer.response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-cache-verified"),
        HeaderValue::from_static("explored"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{:.4}", exploration.similarity)) {
        headers.insert(HeaderName::from_static("x-cache-similarity"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&exploration.key.hex()) {
        headers.insert(HeaderName::from_static("x-cache-matched-key"), v);
    }
}

/// Compares an explored request's fresh answer with the cached one and
/// records the outcome on the cached entry's item. Returns whether they
/// agreed; None when they could not be compared (no text, embedder busy).
pub(super) async fn settle(
    tier: &SemanticTier,
    caller: &Caller,
    namespace: &str,
    stats: (&'static str, &str),
    exploration: &Exploration,
    fresh: &Entry,
) -> Option<bool> {
    let Some(agreed) = agree(tier, caller, &exploration.cached, fresh).await else {
        metrics::counter!("reprise_semantic_verified_total", "outcome" => "unjudged").increment(1);
        return None;
    };
    let state = &caller.state;
    tier.record(
        state.tiers.redis.as_ref(),
        &caller.sealing,
        namespace,
        &exploration.key,
        exploration.similarity,
        agreed,
    )
    .await;
    let outcome = if agreed { "agree" } else { "disagree" };
    metrics::counter!("reprise_semantic_verified_total", "outcome" => outcome).increment(1);
    state
        .stats
        .record_verification(namespace, stats.0, stats.1, agreed);
    Some(agreed)
}

async fn agree(
    tier: &SemanticTier,
    caller: &Caller,
    cached: &Entry,
    fresh: &Entry,
) -> Option<bool> {
    let (old, new) = (answer_text(cached)?, answer_text(fresh)?);
    if old == new {
        return Some(true);
    }
    let Embedded::Vector(a) = embed::answer(tier, caller, &old).await else {
        return None;
    };
    let Embedded::Vector(b) = embed::answer(tier, caller, &new).await else {
        return None;
    };
    Some(a.len() == b.len() && dot(&a, &b) >= tier.config.answer_agreement)
}

/// The answer's text: the first choice's content (OpenAI), the text blocks
/// (Anthropic), else its tool calls as JSON. Anthropic streams: None.
pub(crate) fn answer_text(entry: &Entry) -> Option<String> {
    let body: Value = match entry.format {
        BodyFormat::Json => serde_json::from_slice(&entry.body).ok()?,
        BodyFormat::Stream => {
            crate::stream::assemble(&serde_json::from_slice::<StoredStream>(&entry.body).ok()?)
        }
        BodyFormat::AnthropicSse => return None,
    };
    let message = &body["choices"][0]["message"];
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        return Some(text.to_owned());
    }
    if let Some(blocks) = body["content"].as_array() {
        let text: String = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
        if !text.is_empty() {
            return Some(text);
        }
    }
    message
        .get("tool_calls")
        .filter(|t| !t.is_null())
        .map(Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::ttl::Ttl;
    use bytes::Bytes;

    fn entry(body: Value) -> Entry {
        Entry::new(
            Bytes::from(body.to_string()),
            "application/json".into(),
            Ttl::Forever,
            None,
        )
    }

    #[test]
    fn answer_text_reads_openai_anthropic_and_tool_calls() {
        let openai = json_entry_content("Open Settings.");
        assert_eq!(answer_text(&openai).as_deref(), Some("Open Settings."));
        let anthropic = entry(serde_json::json!({"content": [
            {"type": "text", "text": "Open "}, {"type": "text", "text": "Settings."}]}));
        assert_eq!(answer_text(&anthropic).as_deref(), Some("Open Settings."));
        let tools = entry(serde_json::json!({"choices": [{"message": {"content": null,
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}}]}));
        assert!(answer_text(&tools).unwrap().contains("\"name\":\"f\""));
        assert_eq!(answer_text(&entry(serde_json::json!({}))), None);
    }

    fn json_entry_content(text: &str) -> Entry {
        entry(serde_json::json!({"choices": [{"message": {"role": "assistant", "content": text}}]}))
    }

    #[test]
    fn uniform_draws_are_in_range_and_vary() {
        let draws: Vec<f64> = (0..64).map(|_| uniform()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.iter().any(|u| *u != draws[0]));
    }
}
