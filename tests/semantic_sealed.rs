//! The semantic tier under `cache.encryption = "per-tenant"` with a Redis
//! backend: the shared items (vector, observations, last user text) are
//! sealed with the caller's key like the entries. Read back raw from a real
//! redis-server: the prompt text is absent; a second instance with the same
//! server secret still answers the paraphrase, another tenant does not, and
//! an instance with another secret cannot open the items.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::redis::RedisServer;
use common::semantic::{cached_only, support_question as ask, wait_semantic};
use common::{config_for, Mock, Proxy};
use reprise::cache::seal::Encryption;
use reprise::config::{Backend, Config};
use serde_json::json;

const SECRET_VAR: &str = "REPRISE_TEST_SEMANTIC_SECRET";
const OTHER_SECRET_VAR: &str = "REPRISE_TEST_SEMANTIC_OTHER";
/// A word no other test uses: what a Redis dump must not show.
const MARKER: &str = "zebraquantum";
const QUESTION: &str = "How do I reset my zebraquantum password?";
const PARAPHRASE: &str = "How can I reset my zebraquantum password?";

fn sealed_config(mock: &Mock, redis: &RedisServer, secret_var: &str) -> Config {
    std::env::set_var(SECRET_VAR, "a test server secret, 32 bytes or more");
    std::env::set_var(OTHER_SECRET_VAR, "another server secret, also long enough");
    let mut config = config_for(&mock.url);
    config.cache.backend = Backend::Redis;
    config.cache.redis.url = redis.url();
    config.cache.encryption = Encryption::PerTenant;
    config.cache.encryption_key_env = Some(secret_var.into());
    config.semantic.enabled = true;
    config.semantic.model_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"));
    config.semantic.refresh = Duration::from_millis(50);
    config
}

/// Every field and value of every semantic hash in Redis, raw.
fn semantic_hashes(redis: &RedisServer) -> Vec<Vec<u8>> {
    let keys = redis.cli(&["--scan", "--pattern", "*:sem:*"]).unwrap();
    keys.lines()
        .filter(|k| !k.is_empty())
        .map(|k| {
            std::process::Command::new("redis-cli")
                .args(["-p", &redis.port.to_string(), "HGETALL", k])
                .output()
                .unwrap()
                .stdout
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[tokio::test]
async fn shared_semantic_items_are_sealed_per_tenant() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(sealed_config(&mock, &redis, SECRET_VAR)).await;
    let b = Proxy::start(sealed_config(&mock, &redis, SECRET_VAR)).await;
    let first = a.chat(&ask(QUESTION)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache_status(), "miss");
    let key = first.header("x-cache-key").unwrap().to_owned();

    // B (same secret, never saw the question) answers the paraphrase from
    // the sealed item it read from Redis.
    let hit = wait_semantic(
        &b,
        &ask(PARAPHRASE),
        &[("authorization", "Bearer sk-test-a")],
    )
    .await;
    assert_eq!(hit.header("x-cache-tier"), Some("semantic"));
    assert_eq!(hit.header("x-cache-key"), Some(key.as_str()));
    assert_eq!(mock.chat_calls().await, 1);

    // The dump holds the item, without the prompt text.
    let hashes = semantic_hashes(&redis);
    assert!(!hashes.is_empty(), "no semantic hash in Redis");
    assert!(
        hashes.iter().any(|h| contains(h, &key)),
        "the item is stored under its entry's key"
    );
    for h in &hashes {
        assert!(!contains(h, MARKER), "prompt text in a semantic hash");
        assert!(!contains(h, "reset my"), "prompt text in a semantic hash");
    }

    // Another tenant on B: no semantic hit.
    let other = cached_only(
        &b,
        &ask(PARAPHRASE),
        &[("authorization", "Bearer sk-test-b")],
    )
    .await;
    assert_eq!(other.status, 504);
    // An instance with another server secret cannot open the item.
    let c = Proxy::start(sealed_config(&mock, &redis, OTHER_SECRET_VAR)).await;
    let foreign = cached_only(
        &c,
        &ask(PARAPHRASE),
        &[("authorization", "Bearer sk-test-a")],
    )
    .await;
    assert_eq!(foreign.status, 504);

    // Feedback rewrites the sealed item (read, change, seal again): still
    // no text in the dump, and the entry stops answering paraphrases on A.
    let done = a
        .post("/v1/cache/feedback")
        .body(json!({"key": key, "correct": false}).to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(done, 200);
    for h in semantic_hashes(&redis) {
        assert!(!contains(&h, MARKER));
    }
    for _ in 0..1000 {
        if cached_only(
            &b,
            &ask(PARAPHRASE),
            &[("authorization", "Bearer sk-test-a")],
        )
        .await
        .status
            == 504
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the blocked item still answers on B");
}
