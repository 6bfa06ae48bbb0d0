//! Token usage from every provider's `usage` shape, normalized into billable
//! buckets, and rendered back as an OpenAI-format usage object.

use serde::Serialize;
use serde_json::{Map, Value};

/// Billable token buckets of one call. The five buckets partition the prompt
/// plus the output: `input_uncached + cache_read + cache_write_5m +
/// cache_write_1h == prompt_tokens` (unless the provider's numbers disagree).
///
/// `cached_tokens` / `cache_creation_tokens` are what the provider reported:
/// `None` when it did not send the field (not the same as `Some(0)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NormalizedUsage {
    pub input_uncached: u64,
    pub cache_read: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub output: u64,
    pub prompt_tokens: u64,
    pub total_tokens: u64,
    pub cached_tokens: Option<u64>,
    pub cache_creation_tokens: Option<u64>,
}

/// The token counts a trace line records (`pipeline::traced`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCounts {
    pub prompt: u64,
    /// Prompt tokens the provider's prompt cache served.
    pub cached: u64,
    pub completion: u64,
}

impl NormalizedUsage {
    pub fn counts(&self) -> TokenCounts {
        TokenCounts {
            prompt: self.prompt_tokens,
            cached: self.cached_tokens.unwrap_or(self.cache_read),
            completion: self.output,
        }
    }
}

fn count(obj: &Map<String, Value>, key: &str) -> Option<u64> {
    let v = obj.get(key)?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
            .map(|f| f as u64)
    })
}

/// Normalizes a provider's `usage` object: OpenAI chat (`prompt_tokens`,
/// `completion_tokens`, `prompt_tokens_details.cached_tokens`, cached tokens
/// included in `prompt_tokens`), OpenAI Responses (`input_tokens` +
/// `input_tokens_details`), Anthropic Messages (`input_tokens` excludes the
/// cache buckets), DeepSeek (`prompt_cache_hit_tokens` /
/// `prompt_cache_miss_tokens`), Gemini's OpenAI-compatible API (top-level
/// `cached_tokens` too) and embeddings (`prompt_tokens`, `total_tokens`).
/// `None` when `usage` is not an object with token counts.
pub fn normalize(usage: &Value) -> Option<NormalizedUsage> {
    let u = usage.as_object()?;
    if u.contains_key("prompt_tokens") || u.contains_key("prompt_cache_hit_tokens") {
        Some(openai_like(
            u,
            "prompt_tokens",
            "completion_tokens",
            "prompt_tokens_details",
        ))
    } else if u.contains_key("input_tokens_details") {
        Some(openai_like(
            u,
            "input_tokens",
            "output_tokens",
            "input_tokens_details",
        ))
    } else if u.contains_key("input_tokens") || u.contains_key("output_tokens") {
        Some(anthropic(u))
    } else {
        None
    }
}

/// Shapes where the cached tokens are part of the prompt count.
fn openai_like(
    u: &Map<String, Value>,
    prompt_key: &str,
    output_key: &str,
    details_key: &str,
) -> NormalizedUsage {
    let details = u.get(details_key).and_then(Value::as_object);
    let hit = count(u, "prompt_cache_hit_tokens");
    let miss = count(u, "prompt_cache_miss_tokens");
    let prompt = count(u, prompt_key)
        .or_else(|| Some(hit? + miss?))
        .unwrap_or(0);
    let cached_tokens = hit
        .or_else(|| details.and_then(|d| count(d, "cached_tokens")))
        .or_else(|| count(u, "cached_tokens"));
    // reprise's own rendering of an Anthropic call carries the write count too.
    let cache_creation_tokens = details.and_then(|d| count(d, "cache_creation_tokens"));
    let cache_read = cached_tokens.unwrap_or(0).min(prompt);
    let cache_write_5m = cache_creation_tokens.unwrap_or(0).min(prompt - cache_read);
    let output = count(u, output_key).unwrap_or(0);
    NormalizedUsage {
        input_uncached: prompt - cache_read - cache_write_5m,
        cache_read,
        cache_write_5m,
        cache_write_1h: 0,
        output,
        prompt_tokens: prompt,
        total_tokens: count(u, "total_tokens").unwrap_or(prompt.saturating_add(output)),
        cached_tokens,
        cache_creation_tokens,
    }
}

/// Anthropic Messages: `input_tokens` counts only the uncached part.
fn anthropic(u: &Map<String, Value>) -> NormalizedUsage {
    let input = count(u, "input_tokens").unwrap_or(0);
    let cached_tokens = count(u, "cache_read_input_tokens");
    let creation = count(u, "cache_creation_input_tokens");
    let split = u.get("cache_creation").and_then(Value::as_object).map(|c| {
        (
            count(c, "ephemeral_5m_input_tokens"),
            count(c, "ephemeral_1h_input_tokens"),
        )
    });
    let (cache_write_5m, cache_write_1h) = match split {
        Some((m5, h1)) if m5.is_some() || h1.is_some() => {
            let h1 = h1.unwrap_or(0);
            let m5 = m5.unwrap_or_else(|| creation.unwrap_or(0).saturating_sub(h1));
            (m5, h1)
        }
        _ => (creation.unwrap_or(0), 0),
    };
    let writes = cache_write_5m.saturating_add(cache_write_1h);
    let cache_read = cached_tokens.unwrap_or(0);
    let prompt = input.saturating_add(cache_read).saturating_add(writes);
    let output = count(u, "output_tokens").unwrap_or(0);
    NormalizedUsage {
        input_uncached: input,
        cache_read,
        cache_write_5m,
        cache_write_1h,
        output,
        prompt_tokens: prompt,
        total_tokens: prompt.saturating_add(output),
        cached_tokens,
        cache_creation_tokens: creation.or(split.map(|_| writes)),
    }
}

/// The usage object for OpenAI-format clients: `original` with
/// `prompt_tokens` / `completion_tokens` / `total_tokens` added when missing
/// and `prompt_tokens_details.cached_tokens` / `.cache_creation_tokens` set
/// when known. Every other original field is kept.
pub fn openai_usage_fields(n: &NormalizedUsage, original: &Value) -> Value {
    let mut out = original.as_object().cloned().unwrap_or_default();
    out.entry("prompt_tokens").or_insert(n.prompt_tokens.into());
    out.entry("completion_tokens").or_insert(n.output.into());
    out.entry("total_tokens").or_insert(n.total_tokens.into());
    if n.cached_tokens.is_some() || n.cache_creation_tokens.is_some() {
        let details = out
            .entry("prompt_tokens_details")
            .or_insert_with(|| Value::Object(Map::new()));
        if !details.is_object() {
            *details = Value::Object(Map::new());
        }
        if let Value::Object(d) = details {
            if let Some(c) = n.cached_tokens {
                d.insert("cached_tokens".into(), c.into());
            }
            if let Some(c) = n.cache_creation_tokens {
                d.insert("cache_creation_tokens".into(), c.into());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_cached_tokens_are_part_of_the_prompt() {
        let n = normalize(&json!({
            "prompt_tokens": 1500, "completion_tokens": 200, "total_tokens": 1700,
            "prompt_tokens_details": {"cached_tokens": 1200, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        }))
        .unwrap();
        assert_eq!(
            n,
            NormalizedUsage {
                input_uncached: 300,
                cache_read: 1200,
                cache_write_5m: 0,
                cache_write_1h: 0,
                output: 200,
                prompt_tokens: 1500,
                total_tokens: 1700,
                cached_tokens: Some(1200),
                cache_creation_tokens: None,
            }
        );
    }

    #[test]
    fn anthropic_cache_buckets_are_outside_input_tokens() {
        let n = normalize(&json!({
            "input_tokens": 300, "cache_read_input_tokens": 1200,
            "cache_creation_input_tokens": 300, "output_tokens": 200
        }))
        .unwrap();
        assert_eq!(
            (
                n.input_uncached,
                n.cache_read,
                n.cache_write_5m,
                n.cache_write_1h
            ),
            (300, 1200, 300, 0)
        );
        assert_eq!(
            (n.prompt_tokens, n.output, n.total_tokens),
            (1800, 200, 2000)
        );
        assert_eq!(
            (n.cached_tokens, n.cache_creation_tokens),
            (Some(1200), Some(300))
        );

        let split = normalize(&json!({
            "input_tokens": 10, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 500, "output_tokens": 5,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 400}
        }))
        .unwrap();
        assert_eq!((split.cache_write_5m, split.cache_write_1h), (100, 400));
        assert_eq!(split.prompt_tokens, 510);

        let bare = normalize(&json!({"input_tokens": 12, "output_tokens": 3})).unwrap();
        assert_eq!(
            (bare.cached_tokens, bare.cache_creation_tokens),
            (None, None)
        );
        assert_eq!(bare.total_tokens, 15);
    }

    #[test]
    fn deepseek_hit_and_miss() {
        let n = normalize(&json!({
            "prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050,
            "prompt_cache_hit_tokens": 768, "prompt_cache_miss_tokens": 232
        }))
        .unwrap();
        assert_eq!((n.input_uncached, n.cache_read, n.output), (232, 768, 50));
        assert_eq!((n.prompt_tokens, n.total_tokens), (1000, 1050));
        assert_eq!(n.cached_tokens, Some(768));
        let no_prompt =
            normalize(&json!({"prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36}))
                .unwrap();
        assert_eq!(
            (no_prompt.prompt_tokens, no_prompt.input_uncached),
            (100, 36)
        );
    }

    #[test]
    fn gemini_embeddings_and_responses_shapes() {
        let g = normalize(&json!({"prompt_tokens": 2000, "completion_tokens": 10,
            "total_tokens": 2010, "cached_tokens": 1024}))
        .unwrap();
        assert_eq!((g.input_uncached, g.cache_read), (976, 1024));
        let e = normalize(&json!({"prompt_tokens": 8, "total_tokens": 8})).unwrap();
        assert_eq!(
            (e.input_uncached, e.output, e.total_tokens, e.cached_tokens),
            (8, 0, 8, None)
        );
        let r = normalize(
            &json!({"input_tokens": 100, "output_tokens": 7, "total_tokens": 107,
            "input_tokens_details": {"cached_tokens": 64}}),
        )
        .unwrap();
        assert_eq!(
            (r.input_uncached, r.cache_read, r.prompt_tokens),
            (36, 64, 100)
        );
        assert!(normalize(&json!({})).is_none());
        assert!(normalize(&json!(null)).is_none());
    }

    #[test]
    fn openai_rendering_keeps_fields_and_round_trips() {
        let original = json!({"input_tokens": 300, "cache_read_input_tokens": 1200,
            "cache_creation_input_tokens": 300, "output_tokens": 200, "service_tier": "standard"});
        let n = normalize(&original).unwrap();
        let shown = openai_usage_fields(&n, &original);
        assert_eq!(shown["service_tier"], "standard");
        assert_eq!(shown["prompt_tokens"], 1800);
        assert_eq!(shown["completion_tokens"], 200);
        assert_eq!(shown["total_tokens"], 2000);
        assert_eq!(
            shown["prompt_tokens_details"],
            json!({"cached_tokens": 1200, "cache_creation_tokens": 300})
        );
        // Normalizing what we show gives the same buckets back.
        let again = normalize(&json!({
            "prompt_tokens": 1800, "completion_tokens": 200, "total_tokens": 2000,
            "prompt_tokens_details": shown["prompt_tokens_details"].clone()
        }))
        .unwrap();
        assert_eq!(again, n);

        let embeddings = json!({"prompt_tokens": 8, "total_tokens": 8});
        let shown = openai_usage_fields(&normalize(&embeddings).unwrap(), &embeddings);
        assert_eq!(
            shown,
            json!({"prompt_tokens": 8, "total_tokens": 8, "completion_tokens": 0})
        );
    }
}
