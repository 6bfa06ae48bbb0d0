//! The semantic tier end to end: a real reprise, the real embedder
//! (models/all-MiniLM-L6-v2, fetched by scripts/fetch-embedding-model.sh),
//! the mock upstream, and a real redis-server for sharing between instances.
//!
//! Vectors are added off the response path; tests wait for that event by
//! asking a known paraphrase with `Cache-Control: only-if-cached` (a semantic
//! hit answers 200, anything else 504 without calling the provider) before
//! asserting anything else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::redis::RedisServer;
use common::semantic::{cached_only, content, wait_semantic};
use common::{config_for, Mock, Proxy, Reply};
use reprise::config::{Backend, Config};
use serde_json::{json, Value};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2")
}

fn semantic_config(mock: &Mock) -> Config {
    let mut config = config_for(&mock.url);
    config.semantic.enabled = true;
    config.semantic.model_dir = Some(model_dir());
    config
}

const QUESTION: &str = "How do I reset my password in 3 steps?";
const PARAPHRASE: &str = "How can I reset my password in 3 steps?";

fn ask(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "temperature": 0, "messages": [
        {"role": "system", "content": "You are a support bot."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": text}]})
}

/// Stores QUESTION (a miss) and waits until its vector answers PARAPHRASE.
async fn seed(proxy: &Proxy) -> Reply {
    let first = proxy.chat(&ask(QUESTION)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache_status(), "miss");
    wait_semantic(proxy, &ask(PARAPHRASE), &[]).await;
    first
}

#[tokio::test]
async fn paraphrase_is_a_semantic_hit_json_and_stream() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(semantic_config(&mock)).await;
    let first = seed(&proxy).await;
    let key = first.header("x-cache-key").unwrap().to_owned();

    let hit = proxy.chat(&ask(PARAPHRASE)).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.header("x-cache-tier"), Some("semantic"));
    assert_eq!(hit.header("x-cache-key"), Some(key.as_str()));
    let similarity: f64 = hit.header("x-cache-similarity").unwrap().parse().unwrap();
    assert!(similarity >= f64::from(reprise::semantic::defaults::DEFAULT_THRESHOLD));
    assert!(similarity < 1.0);
    assert_eq!(
        hit.header("x-cache-similarity").unwrap().len(),
        6,
        "4 decimals"
    );
    assert_eq!(content(&hit), content(&first));
    let meta = &hit.json()["routing_metadata"]["cache"];
    assert_eq!(meta["tier"], "semantic");
    assert_eq!(meta["status"], "hit");
    assert_eq!(meta["matched_key"], key.as_str());
    assert!((meta["similarity"].as_f64().unwrap() - similarity).abs() < 1e-9);
    assert_eq!(mock.chat_calls().await, 1);

    // A streamed paraphrase replays the same answer as SSE.
    let mut streamed = ask(PARAPHRASE);
    streamed["stream"] = json!(true);
    let sse = proxy.chat(&streamed).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("x-cache-tier"), Some("semantic"));
    assert!(sse
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let text = String::from_utf8_lossy(&sse.bytes);
    assert!(text.contains("\"semantic\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert_eq!(mock.chat_calls().await, 1);

    // The exact repeat is still an exact (memory) hit, without similarity.
    let exact = proxy.chat(&ask(QUESTION)).await;
    assert_eq!(exact.header("x-cache-tier"), Some("memory"));
    assert!(exact.header("x-cache-similarity").is_none());

    let stats = proxy.get_reply("/v1/cache/stats").await.json();
    assert!(stats["hits"]["semantic"].as_u64().unwrap() >= 2, "{stats}");
}

type Headers = Vec<(&'static str, &'static str)>;

/// Requests QUESTION's entry must never answer, with their extra headers:
/// near-duplicates that change the answer, and every other context.
fn must_miss() -> Vec<(&'static str, Value, Headers)> {
    let mut other_system = ask(PARAPHRASE);
    other_system["messages"][0]["content"] = json!("You are a pirate.");
    let mut other_turn = ask(PARAPHRASE);
    other_turn["messages"][1]["content"] = json!("Hello");
    let mut other_model = ask(PARAPHRASE);
    other_model["model"] = json!("gpt-4o");
    let mut hot = ask(PARAPHRASE);
    hot["temperature"] = json!(1.7);
    vec![
        (
            "one number",
            ask("How do I reset my password in 4 steps?"),
            vec![],
        ),
        (
            "negation",
            ask("How do I not reset my password in 3 steps?"),
            vec![],
        ),
        ("system prompt", other_system, vec![]),
        ("earlier turn", other_turn, vec![]),
        ("model", other_model, vec![]),
        ("temperature", hot, vec![]),
        (
            "tenant",
            ask(PARAPHRASE),
            vec![("authorization", "Bearer sk-test-b")],
        ),
        (
            "answer-changing header",
            ask(PARAPHRASE),
            vec![("openai-beta", "assistants=v2")],
        ),
    ]
}

async fn assert_all_miss(proxy: &Proxy) {
    for (what, body, headers) in must_miss() {
        let reply = cached_only(proxy, &body, &headers).await;
        assert_eq!(reply.status, 504, "{what} must not be a semantic hit");
    }
}

#[tokio::test]
async fn traps_and_other_contexts_miss() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(semantic_config(&mock)).await;
    seed(&proxy).await;
    assert_all_miss(&proxy).await;
    // Per-request switches.
    for headers in [
        vec![("x-cache-semantic", "off")],
        vec![("x-cache-semantic-threshold", "0.9999")],
    ] {
        let reply = cached_only(&proxy, &ask(PARAPHRASE), &headers).await;
        assert_eq!(reply.status, 504, "{headers:?}");
    }
    // A looser per-request threshold does not loosen the configured one.
    let loose = cached_only(
        &proxy,
        &ask("What is the weather like today?"),
        &[("x-cache-semantic-threshold", "0.1")],
    )
    .await;
    assert_eq!(loose.status, 504);
    let mut off_in_body = ask(PARAPHRASE);
    off_in_body["cache"] = json!({"semantic": false});
    assert_eq!(cached_only(&proxy, &off_in_body, &[]).await.status, 504);
    // No-cache: no read at all, the provider answers.
    let fresh = proxy
        .chat_with(&ask(PARAPHRASE), &[("cache-control", "no-cache")])
        .await;
    assert_eq!(fresh.cache_status(), "bypass");
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn feedback_false_stops_the_entry_answering_paraphrases() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(semantic_config(&mock)).await;
    let first = seed(&proxy).await;
    let key = first.header("x-cache-key").unwrap().to_owned();
    let feedback = |auth: &'static str, body: Value| {
        let request = proxy
            .post_as("/v1/cache/feedback", auth)
            .body(body.to_string());
        async move { Reply::from(request.send().await.unwrap()).await }
    };
    // Another tenant cannot touch it; malformed feedback is a 400.
    let other = feedback("Bearer sk-test-b", json!({"key": key, "correct": false})).await;
    assert_eq!(other.status, 404);
    assert_eq!(other.json()["error"]["code"], "not_found");
    assert_eq!(
        feedback(
            "Bearer sk-test-a",
            json!({"key": "nothex", "correct": false})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        feedback("Bearer sk-test-a", json!({"key": key}))
            .await
            .status,
        400
    );
    assert_eq!(cached_only(&proxy, &ask(PARAPHRASE), &[]).await.status, 200);

    let done = feedback("Bearer sk-test-a", json!({"key": key, "correct": false})).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.json()["applied"], true);
    assert_eq!(cached_only(&proxy, &ask(PARAPHRASE), &[]).await.status, 504);
    // Its exact hits are unaffected.
    let exact = proxy.chat(&ask(QUESTION)).await;
    assert_eq!(exact.cache_status(), "hit");
    assert_eq!(exact.header("x-cache-tier"), Some("memory"));
}

#[tokio::test]
async fn observe_mode_records_would_be_semantic_hits() {
    let mock = Mock::start().await;
    let mut config = semantic_config(&mock);
    config.cache.mode = reprise::cache::mode::Mode::Observe;
    let proxy = Proxy::start(config).await;
    proxy.chat(&ask(QUESTION)).await;
    // Observe never serves, so wait on the event through the stats instead.
    let mut would = 0;
    for _ in 0..1000 {
        // no-store: the paraphrase itself is never written, so a would-hit
        // can only come from the semantic tier.
        let reply = proxy
            .chat_with(&ask(PARAPHRASE), &[("cache-control", "no-store")])
            .await;
        assert_eq!(reply.cache_status(), "miss");
        if reply.header("x-cache-observe") == Some("would-hit") {
            would += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(would, 1, "a would-be semantic hit is reported");
}

#[tokio::test]
async fn judge_band_asks_the_judge_model() {
    let mock = Mock::start().await;
    let mut config = semantic_config(&mock);
    // Every paraphrase falls in the judge band.
    config.semantic.threshold = 0.9999;
    config.semantic.judge_floor = 0.5;
    config.semantic.judge_model = Some("judge-yes-mini".into());
    let proxy = Proxy::start(config).await;
    let first = proxy.chat(&ask(QUESTION)).await;
    let hit = wait_semantic(&proxy, &ask(PARAPHRASE), &[]).await;
    assert_eq!(hit.header("x-cache-verified"), Some("judge"));
    assert_eq!(hit.header("x-cache-tier"), Some("semantic"));
    assert_eq!(content(&hit), content(&first));
    assert_eq!(hit.json()["routing_metadata"]["cache"]["verified"], "judge");
    // The judgement itself is an exact-cache hit the second time.
    let calls = mock.chat_calls().await;
    let again = cached_only(&proxy, &ask(PARAPHRASE), &[]).await;
    assert_eq!(again.status, 200);
    assert_eq!(mock.chat_calls().await, calls);

    // A judge that says anything but yes: a miss.
    let mock = Mock::start().await;
    let mut config = semantic_config(&mock);
    config.semantic.threshold = 0.9999;
    config.semantic.judge_floor = 0.5;
    config.semantic.judge_model = Some("gpt-4o-mini".into());
    let proxy = Proxy::start(config).await;
    proxy.chat(&ask(QUESTION)).await;
    proxy
        .wait_cached("/v1/chat/completions", &ask(QUESTION), &[])
        .await;
    let reply = proxy.chat(&ask(PARAPHRASE)).await;
    assert_eq!(reply.cache_status(), "miss");
    assert!(reply.header("x-cache-verified").is_none());
}

async fn purge_entry(proxy: &Proxy, key: &str) {
    let reply = Reply::from(
        proxy
            .http
            .delete(format!("{}/v1/cache/entries/{key}", proxy.url))
            .header("authorization", "Bearer sk-test-a")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
}

/// Waits (bounded) until `body` is no longer answered from the cache.
async fn wait_not_cached(proxy: &Proxy, body: &Value) {
    for _ in 0..1000 {
        if cached_only(proxy, body, &[]).await.status == 504 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("still answered from the cache: {body}");
}

#[tokio::test]
async fn purging_the_exact_entry_drops_the_semantic_match() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(semantic_config(&mock)).await;
    let first = seed(&proxy).await;
    purge_entry(&proxy, first.header("x-cache-key").unwrap()).await;
    // Same instance: the purge applies at once.
    assert_eq!(cached_only(&proxy, &ask(PARAPHRASE), &[]).await.status, 504);
    assert_eq!(cached_only(&proxy, &ask(QUESTION), &[]).await.status, 504);
    // The paraphrase now goes to the provider and is stored on its own.
    let fresh = proxy.chat(&ask(PARAPHRASE)).await;
    assert_eq!(fresh.cache_status(), "miss");
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn redis_backed_entries_answer_paraphrases_on_another_instance() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let shared = |mock: &Mock| {
        let mut config = semantic_config(mock);
        config.cache.backend = Backend::Redis;
        config.cache.redis.url = redis.url();
        config.semantic.refresh = Duration::from_millis(50);
        config
    };
    let a = Proxy::start(shared(&mock)).await;
    let b = Proxy::start(shared(&mock)).await;
    let first = a.chat(&ask(QUESTION)).await;
    assert_eq!(first.cache_status(), "miss");
    let hit = wait_semantic(&b, &ask(PARAPHRASE), &[]).await;
    assert_eq!(hit.header("x-cache-tier"), Some("semantic"));
    assert_eq!(hit.header("x-cache-key"), first.header("x-cache-key"));
    let similarity: f64 = hit.header("x-cache-similarity").unwrap().parse().unwrap();
    assert!(similarity >= f64::from(reprise::semantic::defaults::DEFAULT_THRESHOLD));
    assert_eq!(content(&hit), content(&first));
    assert_eq!(mock.chat_calls().await, 1);
    // B holds the shared vector: every trap and other context still misses there.
    assert_all_miss(&b).await;
    assert_eq!(mock.chat_calls().await, 1);

    // Feedback on A stops the entry on B too (within `semantic.refresh`).
    let key = first.header("x-cache-key").unwrap();
    let done = a
        .post("/v1/cache/feedback")
        .body(json!({"key": key, "correct": false}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    wait_not_cached(&b, &ask(PARAPHRASE)).await;
    // Feedback leaves the exact entry: B still serves the exact repeat from Redis.
    let exact = b.chat(&ask(QUESTION)).await;
    assert_eq!(exact.cache_status(), "hit");
    assert_eq!(mock.chat_calls().await, 1);
}

#[tokio::test]
async fn a_purge_on_one_instance_drops_the_semantic_match_on_another() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let shared = |mock: &Mock| {
        let mut config = semantic_config(mock);
        config.cache.backend = Backend::Tiered;
        config.cache.redis.url = redis.url();
        config.semantic.refresh = Duration::from_millis(50);
        config
    };
    let a = Proxy::start(shared(&mock)).await;
    let b = Proxy::start(shared(&mock)).await;
    let first = a.chat(&ask(QUESTION)).await;
    wait_semantic(&b, &ask(PARAPHRASE), &[]).await;
    purge_entry(&a, first.header("x-cache-key").unwrap()).await;
    // B learns the purge through the watermark poll; then the paraphrase misses.
    wait_not_cached(&b, &ask(PARAPHRASE)).await;
    assert_eq!(cached_only(&b, &ask(QUESTION), &[]).await.status, 504);
    assert_eq!(mock.chat_calls().await, 1);
}

#[test]
fn a_missing_model_stops_reprise_naming_the_script() {
    let mut config = Config::default();
    config.semantic.enabled = true;
    config.semantic.model_dir = Some(PathBuf::from("/nonexistent/reprise-model"));
    let err = match reprise::state::AppState::new(config) {
        Ok(_) => panic!("started without a model"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("scripts/fetch-embedding-model.sh"), "{err}");
    assert!(err.contains("/nonexistent/reprise-model"), "{err}");
}
