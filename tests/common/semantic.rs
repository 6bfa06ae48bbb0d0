//! Helpers shared by the semantic-tier tests: the support-bot question they
//! paraphrase, cache-only lookups, waits for a semantic hit and for verified
//! comparisons to settle, and the mock's fixed answer.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Mock, Proxy, Reply};

/// A chat request asking the support bot `text` (system prompt + one turn).
pub fn support_question(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "temperature": 0, "messages": [
        {"role": "system", "content": "You are a support bot."},
        {"role": "user", "content": text}]})
}

/// The request with `cache-control: only-if-cached` (504 unless cached) and
/// `headers`.
pub async fn cached_only(proxy: &Proxy, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("cache-control", "only-if-cached")];
    all.extend_from_slice(headers);
    proxy.chat_with(body, &all).await
}

/// Waits (bounded) until `body` is answered from the cache; the answer.
pub async fn wait_semantic(proxy: &Proxy, body: &Value, headers: &[(&str, &str)]) -> Reply {
    for _ in 0..1000 {
        let reply = cached_only(proxy, body, headers).await;
        if reply.status == 200 {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no semantic hit for {body}");
}

/// The `semantic_verified` part of `/v1/cache/stats` (caller `sk-test-a`).
pub async fn verified_stats(proxy: &Proxy) -> Value {
    let reply = proxy.get_reply("/v1/cache/stats").await;
    reply.json()["semantic_verified"].clone()
}

/// Waits (bounded) until `proxy` has settled `agreed` + `disagreed` comparisons.
pub async fn wait_settled(proxy: &Proxy, agreed: u64, disagreed: u64) {
    for _ in 0..1000 {
        let stats = verified_stats(proxy).await;
        if stats["agreed"] == agreed && stats["disagreed"] == disagreed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "comparisons never reached {agreed}/{disagreed}: {}",
        verified_stats(proxy).await
    );
}

/// Every later chat answer of the mock is `text`.
pub async fn mock_answers(mock: &Mock, text: &str) {
    let status = reqwest::Client::new()
        .post(format!("{}/_mock/answer", mock.url))
        .header("content-type", "application/json")
        .body(json!({"content": text}).to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// The assistant text of a JSON chat answer.
pub fn content(reply: &Reply) -> String {
    reply.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}
