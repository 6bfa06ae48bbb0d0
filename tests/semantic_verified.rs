//! Verified semantic mode end to end (`semantic.mode = "verified"`): a real
//! reprise, the real embedder, the mock upstream (its `/_mock/answer` knob
//! makes the provider's answers to paraphrases agree, or stop agreeing) and a
//! real redis-server for observations shared between instances.
//!
//! Comparisons run off the response path; tests wait for them through the
//! caller's `/v1/cache/stats` (`semantic_verified.agreed` / `disagreed`), and
//! for a stored item through feedback `correct: true` (200 once it exists).
//!
//! `max_error_rate` is 0.5 here: with a loose bound, six agreeing
//! observations make the decision "serve" with probability 1 (τ clamps to
//! 0), so the tests are deterministic. Tighter bounds serve less often by
//! design (see `semantic::verified`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::redis::RedisServer;
use common::semantic::{
    content, mock_answers, support_question as ask, verified_stats, wait_settled,
};
use common::{config_for, Mock, Proxy, Reply};
use reprise::config::{Backend, Config};
use reprise::semantic::settings::SemanticMode;
use reprise::semantic::verified::MIN_OBSERVATIONS;
use serde_json::{json, Value};

const QUESTION: &str = "How do I reset my password?";
/// Paraphrases of QUESTION (no numbers or negations: the guard lets them through).
const PARAPHRASES: [&str; 9] = [
    "How can I reset my password?",
    "How do I reset my account password?",
    "What are the steps to reset my password?",
    "How should I go about resetting my password?",
    "How do I go about resetting my password?",
    "Can you tell me how to reset my password?",
    "How can I reset the password of my account?",
    "Tell me how I can reset my password.",
    "Explain how to reset my password.",
];
const ANSWER: &str = "Open Settings, choose Security, then Reset password.";
const OTHER_ANSWER: &str = "Bananas are an excellent source of potassium.";

fn verified_config(mock: &Mock) -> Config {
    let mut config = config_for(&mock.url);
    config.semantic.enabled = true;
    config.semantic.model_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"));
    config.semantic.mode = SemanticMode::Verified;
    config.semantic.max_error_rate = 0.5;
    config
}

async fn feedback(proxy: &Proxy, body: Value) -> u16 {
    proxy
        .post("/v1/cache/feedback")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits (bounded) until `key` has a semantic item on `proxy`.
async fn wait_item(proxy: &Proxy, key: &str) {
    for _ in 0..1000 {
        if feedback(proxy, json!({"key": key, "correct": true})).await == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no semantic item for {key}");
}

/// Asks `text` on `proxy`: it must be explored against `key` (forwarded, a
/// miss saying so) and answered by the provider.
async fn explore(proxy: &Proxy, text: &str, key: &str, stream: bool) -> Reply {
    let mut body = ask(text);
    if stream {
        body["stream"] = json!(true);
    }
    let reply = proxy.chat(&body).await;
    assert_eq!(reply.status, 200, "{text}");
    assert_eq!(reply.cache_status(), "miss", "{text}");
    assert_eq!(reply.header("x-cache-verified"), Some("explored"), "{text}");
    assert_eq!(reply.header("x-cache-matched-key"), Some(key), "{text}");
    let similarity: f64 = reply.header("x-cache-similarity").unwrap().parse().unwrap();
    eprintln!("explored {text:?} at {similarity}");
    reply
}

/// Seeds QUESTION (answered ANSWER) and teaches its entry MIN_OBSERVATIONS
/// agreeing paraphrases (one of them streamed); returns its key.
async fn teach(proxy: &Proxy, mock: &Mock, observer: &Proxy) -> String {
    mock_answers(mock, ANSWER).await;
    let first = proxy.chat(&ask(QUESTION)).await;
    assert_eq!(first.cache_status(), "miss");
    let key = first.header("x-cache-key").unwrap().to_owned();
    wait_item(proxy, &key).await;
    for (n, text) in PARAPHRASES.iter().take(MIN_OBSERVATIONS).enumerate() {
        let reply = explore(proxy, text, &key, n == 2).await;
        if n != 2 {
            assert_eq!(content(&reply), ANSWER);
        }
        wait_settled(observer, n as u64 + 1, 0).await;
    }
    key
}

#[tokio::test]
async fn paraphrases_are_explored_until_agreeing_answers_let_the_entry_serve_them() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(verified_config(&mock)).await;
    let key = teach(&proxy, &mock, &proxy).await;
    assert_eq!(mock.chat_calls().await, 1 + MIN_OBSERVATIONS as u64);
    // An agreeing answer adds no entry of its own (its exact entry only).
    let agreed = proxy.chat(&ask(PARAPHRASES[0])).await;
    assert_eq!(agreed.header("x-cache-tier"), Some("memory"));
    let agreed_key = agreed.header("x-cache-key").unwrap().to_owned();
    assert_eq!(
        feedback(&proxy, json!({"key": agreed_key, "correct": true})).await,
        404
    );

    // Enough agreeing history: the next paraphrase is served from the cache.
    let hit = proxy.chat(&ask(PARAPHRASES[6])).await;
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.header("x-cache-tier"), Some("semantic"));
    assert_eq!(hit.header("x-cache-verified"), Some("learned"));
    assert_eq!(hit.header("x-cache-key"), Some(key.as_str()));
    assert_eq!(content(&hit), ANSWER);
    assert_eq!(
        hit.json()["routing_metadata"]["cache"]["verified"],
        "learned"
    );
    assert_eq!(mock.chat_calls().await, 1 + MIN_OBSERVATIONS as u64);
    let stats = verified_stats(&proxy).await;
    assert_eq!(stats["explorations"], MIN_OBSERVATIONS as u64, "{stats}");
    assert_eq!(stats["learned_hits"], 1, "{stats}");

    // Feedback false (with the hit's similarity) stops the entry for good.
    let similarity: f64 = hit.header("x-cache-similarity").unwrap().parse().unwrap();
    let body = json!({"key": key, "correct": false, "similarity": similarity});
    assert_eq!(feedback(&proxy, body).await, 200);
    let bad = json!({"key": key, "correct": false, "similarity": 1.5});
    assert_eq!(feedback(&proxy, bad).await, 400);
    let after = proxy.chat(&ask(PARAPHRASES[7])).await;
    assert_eq!(after.cache_status(), "miss");
    assert_eq!(after.header("x-cache-verified"), None, "not even explored");
    assert_eq!(mock.chat_calls().await, 2 + MIN_OBSERVATIONS as u64);
}

#[tokio::test]
async fn a_disagreeing_answer_becomes_a_new_entry() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(verified_config(&mock)).await;
    mock_answers(&mock, ANSWER).await;
    let first = proxy.chat(&ask(QUESTION)).await;
    let key = first.header("x-cache-key").unwrap().to_owned();
    wait_item(&proxy, &key).await;

    // The provider now answers the paraphrase differently: the cached answer
    // was wrong for it.
    mock_answers(&mock, OTHER_ANSWER).await;
    let explored = explore(&proxy, PARAPHRASES[2], &key, false).await;
    assert_eq!(content(&explored), OTHER_ANSWER);
    wait_settled(&proxy, 0, 1).await;
    // The fresh answer is an entry of its own: exact repeats get it, and it
    // answers (explores for) its own paraphrases from now on.
    let own_key = explored.header("x-cache-key").unwrap().to_owned();
    wait_item(&proxy, &own_key).await;
    let repeat = proxy.chat(&ask(PARAPHRASES[2])).await;
    assert_eq!(repeat.header("x-cache-tier"), Some("memory"));
    assert_eq!(content(&repeat), OTHER_ANSWER);
    let near = explore(
        &proxy,
        "What are the steps to reset my password, please?",
        &own_key,
        false,
    )
    .await;
    assert_eq!(content(&near), OTHER_ANSWER);
    wait_settled(&proxy, 1, 1).await;
    // The entry the comparison proved wrong keeps its exact hits.
    let exact = proxy.chat(&ask(QUESTION)).await;
    assert_eq!(exact.header("x-cache-tier"), Some("memory"));
    assert_eq!(content(&exact), ANSWER);
}

#[tokio::test]
async fn observations_written_by_one_instance_serve_on_another() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let shared = |mock: &Mock| {
        let mut config = verified_config(mock);
        config.cache.backend = Backend::Redis;
        config.cache.redis.url = redis.url();
        config.semantic.refresh = Duration::from_millis(50);
        config
    };
    let a = Proxy::start(shared(&mock)).await;
    let b = Proxy::start(shared(&mock)).await;
    let key = teach(&a, &mock, &a).await;
    // B never saw any of it: the item and its observations come from Redis.
    let hit = b.chat(&ask(PARAPHRASES[6])).await;
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.header("x-cache-verified"), Some("learned"));
    assert_eq!(hit.header("x-cache-key"), Some(key.as_str()));
    assert_eq!(content(&hit), ANSWER);
    assert_eq!(mock.chat_calls().await, 1 + MIN_OBSERVATIONS as u64);
}
