//! The semantic tier with `semantic.embedder = "provider"`: vectors come from
//! the mock upstream's `/v1/embeddings` (model `mock-embed-bow`: hashed bags
//! of words, so paraphrases sharing their words are close) through reprise's
//! own flow, as the caller: routed, exact-cached and counted. No local model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::semantic::{mock_answers, support_question as ask, wait_semantic, wait_settled};
use common::{config_for, Mock, Proxy};
use reprise::config::Config;
use reprise::semantic::settings::EmbedderKind;
use serde_json::{json, Value};

const QUESTION: &str = "How do I reset my password?";
/// Shares six of its seven words with QUESTION: cosine 6/√42 ≈ 0.926.
const PARAPHRASE: &str = "How do I reset my password please?";

fn provider_config(mock: &Mock) -> Config {
    let mut config = config_for(&mock.url);
    config.semantic.enabled = true;
    config.semantic.embedder = EmbedderKind::Provider;
    config.semantic.embedding_model = "mock-embed-bow".into();
    config.semantic.threshold = 0.9;
    // Nothing local is needed: a directory that does not exist proves it.
    config.semantic.model_dir = Some("/nonexistent/model".into());
    config
}

async fn stats(proxy: &Proxy) -> Value {
    proxy.get_reply("/v1/cache/stats").await.json()
}

#[tokio::test]
async fn provider_vectors_answer_paraphrases_and_embeddings_are_exact_cached() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(provider_config(&mock)).await;
    let first = proxy.chat(&ask(QUESTION)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache_status(), "miss");
    let hit = wait_semantic(&proxy, &ask(PARAPHRASE), &[]).await;
    assert_eq!(hit.header("x-cache-tier"), Some("semantic"));
    assert_eq!(hit.header("x-cache-key"), first.header("x-cache-key"));
    let similarity: f64 = hit.header("x-cache-similarity").unwrap().parse().unwrap();
    assert!(
        (similarity - 6.0 / 42f64.sqrt()).abs() < 1e-3,
        "{similarity}"
    );
    assert_eq!(
        hit.json()["choices"][0]["message"]["content"],
        first.json()["choices"][0]["message"]["content"]
    );
    // Asked again, the paraphrase's embedding is an exact hit of reprise's
    // own cache: one provider embedding per distinct text.
    let again = proxy.chat(&ask(PARAPHRASE)).await;
    assert_eq!(again.header("x-cache-tier"), Some("semantic"));
    let calls = mock.calls().await;
    assert_eq!(calls["chat"], 1, "{calls}");
    assert_eq!(calls["embeddings"], 2, "{calls}");
    let stats = stats(&proxy).await;
    let embeddings = &stats["by_type"]["embeddings"];
    assert_eq!(embeddings["misses"], 2, "{stats}");
    assert!(
        embeddings["hits"]["total"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    // A text with different words is not a paraphrase.
    let other = proxy
        .chat_with(
            &ask("What is the capital of France?"),
            &[("cache-control", "only-if-cached")],
        )
        .await;
    assert_eq!(other.status, 504);
}

#[tokio::test]
async fn a_failing_embedding_provider_fails_open() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(provider_config(&mock)).await;
    // The next upstream request (the lookup's embedding) fails.
    mock.fault(json!({"status": 500, "times": 1})).await;
    let first = proxy.chat(&ask(QUESTION)).await;
    assert_eq!(first.status, 200, "the chat request itself is unaffected");
    assert_eq!(first.cache_status(), "miss");
    // Storing the answer embeds again (the provider is back): paraphrases hit.
    let hit = wait_semantic(&proxy, &ask(PARAPHRASE), &[]).await;
    assert_eq!(hit.header("x-cache-key"), first.header("x-cache-key"));
    assert_eq!(mock.calls().await["chat"], 1);
    // The failed embedding was a real (counted) error, not a retry that worked.
    let stats = stats(&proxy).await;
    assert_eq!(stats["by_type"]["embeddings"]["errors"], 1, "{stats}");
}

#[tokio::test]
async fn a_slow_embedding_provider_is_given_up_after_embed_timeout() {
    let mock = Mock::start().await;
    let mut config = provider_config(&mock);
    // `mock-slow` answers after 30 s (the mock's --slow-ms default).
    config.semantic.embedding_model = "mock-slow".into();
    config.semantic.embed_timeout = Duration::from_millis(200);
    let proxy = Proxy::start(config).await;
    let started = std::time::Instant::now();
    let reply = proxy.chat(&ask(QUESTION)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.cache_status(), "miss");
    // Well under the 10 s upstream timeout: the lookup gave up at 200 ms.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mock.calls().await["chat"], 1);
}

#[tokio::test]
async fn verified_mode_compares_answers_with_provider_vectors() {
    let mock = Mock::start().await;
    let mut config = provider_config(&mock);
    config.semantic.mode = reprise::semantic::settings::SemanticMode::Verified;
    let proxy = Proxy::start(config).await;
    mock_answers(&mock, "Open Settings, then Security, then Reset password.").await;
    let first = proxy.chat(&ask(QUESTION)).await;
    let key = first.header("x-cache-key").unwrap().to_owned();
    // The item exists once feedback `correct: true` finds it.
    for _ in 0..1000 {
        let found = proxy
            .post("/v1/cache/feedback")
            .body(json!({"key": key, "correct": true}).to_string())
            .send()
            .await
            .unwrap()
            .status();
        if found == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let embeddings_before = mock.calls().await["embeddings"].as_u64().unwrap();

    // Another text with the same words: not equal, but the provider's
    // vectors of the two answers agree (cosine 1 ≥ answer_agreement).
    mock_answers(&mock, "open settings then security then reset password").await;
    let explored = proxy.chat(&ask(PARAPHRASE)).await;
    assert_eq!(explored.header("x-cache-verified"), Some("explored"));
    assert_eq!(explored.header("x-cache-matched-key"), Some(key.as_str()));
    wait_settled(&proxy, 1, 0).await;
    let embeddings = mock.calls().await["embeddings"].as_u64().unwrap();
    assert_eq!(
        embeddings,
        embeddings_before + 3,
        "the query and both answers"
    );

    // Different words: the answers disagree.
    mock_answers(&mock, "Bananas are an excellent source of potassium.").await;
    let explored = proxy
        .chat(&ask("How do I reset my password now please?"))
        .await;
    assert_eq!(explored.header("x-cache-verified"), Some("explored"));
    wait_settled(&proxy, 1, 1).await;
}
