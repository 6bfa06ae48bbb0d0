//! `--prefix-cache`: an imitation of a self-hosted server's automatic prefix
//! cache (vLLM / SGLang), for every chat model.
//!
//! Each mock process is one replica with its own cache: it remembers every
//! whole-message prefix of the prompts it served (tools and model included)
//! and reports the longest one seen before as
//! `usage.prompt_tokens_details.cached_tokens` (4 characters per token, like
//! the mock's `prompt_tokens`). Two replicas do not share prefixes, which is
//! what makes routing visible in the numbers.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::text::message_text;

/// Remembered prefixes before the cache is emptied (bounds the mock's memory).
const CAPACITY: usize = 200_000;

#[derive(Debug, Default)]
pub struct PrefixCache {
    seen: Mutex<HashSet<[u8; 32]>>,
}

impl PrefixCache {
    fn lock(&self) -> MutexGuard<'_, HashSet<[u8; 32]>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reset(&self) {
        self.lock().clear();
    }

    /// Looks up then remembers the prompt's prefixes; sets `cached_tokens`.
    pub fn account(&self, body: &Map<String, Value>, usage: &mut Value) {
        let messages: &[Value] = body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let mut hasher = Sha256::new();
        hasher.update(b"prefix\0");
        for field in ["model", "tools"] {
            if let Some(v) = body.get(field) {
                let _ = serde_json::to_writer(&mut hasher, v);
            }
        }
        let mut chars = 0usize;
        let mut prefixes: Vec<([u8; 32], usize)> = Vec::with_capacity(messages.len());
        for m in messages {
            let _ = serde_json::to_writer(&mut hasher, m);
            chars += message_text(m).chars().count();
            prefixes.push((hasher.clone().finalize().into(), chars));
        }
        let hit_chars = {
            let mut seen = self.lock();
            let hit = prefixes
                .iter()
                .rev()
                .find(|(h, _)| seen.contains(h))
                .map_or(0, |(_, c)| *c);
            if seen.len() + prefixes.len() > CAPACITY {
                seen.clear();
            }
            seen.extend(prefixes.iter().map(|(h, _)| *h));
            hit
        };
        let prompt = usage
            .get("prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let cached = ((hit_chars / 4) as u64).min(prompt);
        if let Value::Object(u) = usage {
            u.insert(
                "prompt_tokens_details".into(),
                json!({ "cached_tokens": cached }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_later_turn_reads_the_earlier_prompt() {
        let cache = PrefixCache::default();
        let system = json!({"role": "system", "content": "s".repeat(400)});
        let q1 = json!({"role": "user", "content": "q".repeat(40)});
        let turn1 = body(json!({"model": "m", "messages": [system, q1]}));
        let mut usage = json!({"prompt_tokens": 111});
        cache.account(&turn1, &mut usage);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
        let turn2 = body(json!({"model": "m", "messages": [system, q1,
            {"role": "assistant", "content": "a".repeat(40)},
            {"role": "user", "content": "r".repeat(40)}]}));
        let mut usage = json!({"prompt_tokens": 131});
        cache.account(&turn2, &mut usage);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 110);
        // Another model, or another replica (another cache), starts cold.
        let mut usage = json!({"prompt_tokens": 131});
        PrefixCache::default().account(&turn2, &mut usage);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
        let mut other = turn2.clone();
        other.insert("model".into(), json!("n"));
        let mut usage = json!({"prompt_tokens": 131});
        cache.account(&other, &mut usage);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    }
}
