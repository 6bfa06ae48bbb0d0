//! Encryption at rest (issue 11): `cache.encryption = "per-tenant"` against
//! a real redis-server and real reprise instances. What Redis and an export
//! dump hold is read back raw (redis-cli, base64-decoded dump values) and
//! searched for the prompt and the answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::redis::RedisServer;
use common::{config_for, Mock, Proxy, Reply};
use reprise::cache::mode::CacheRule;
use reprise::cache::seal::Encryption;
use reprise::config::{Backend, Config};
use reprise::pipeline::credential_namespace;
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";
const SECRET_VAR: &str = "REPRISE_TEST_SEAL_SECRET";
const OTHER_SECRET_VAR: &str = "REPRISE_TEST_SEAL_OTHER";

/// A tiered reprise on `redis` sealing under the secret in `secret_var`
/// (None: encryption off).
fn sealed_config(mock: &Mock, redis: &RedisServer, secret_var: Option<&str>) -> Config {
    std::env::set_var(SECRET_VAR, "a test server secret, 32 bytes or more");
    std::env::set_var(OTHER_SECRET_VAR, "another server secret, also long enough");
    let mut config = config_for(&mock.url);
    config.cache.backend = Backend::Tiered;
    config.cache.redis.url = redis.url();
    config.cache.redis.op_timeout = Duration::from_millis(500);
    // Refresh-ahead keeps the caller's request (the prompt) in the value too.
    config.cache.rules = vec![CacheRule {
        models: vec!["gpt-4o-mini".into()],
        refresh_ahead: true,
        ..CacheRule::default()
    }];
    if let Some(var) = secret_var {
        config.cache.encryption = Encryption::PerTenant;
        config.cache.encryption_key_env = Some(var.into());
    }
    config
}

/// A prompt no other test uses, and the words of it to look for.
fn secret_prompt(tag: &str) -> (Value, String) {
    let marker = format!("zebraquantum{tag}");
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": format!("tell me about {marker} please")}],
    });
    (body, marker)
}

/// Every entry value in Redis, raw.
fn redis_values(redis: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let keys = redis.cli(&["--scan", "--pattern", "reprise:v1:*"]).unwrap();
    keys.lines()
        .filter(|k| !k.ends_with(":lock"))
        .map(|k| {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &redis.port.to_string(), "GET", k])
                .output()
                .unwrap();
            (k.to_owned(), out.stdout)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The plaintext an entry for this exchange would show: the prompt marker,
/// the mock's answer text and its completion id.
fn giveaways(marker: &str, reply: &Reply) -> Vec<String> {
    let answer = reply.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    vec![marker.to_owned(), "Mock answer".into(), answer, id]
}

async fn stream(proxy: &Proxy, body: &Value, auth: &str) -> String {
    let mut body = body.clone();
    body["stream"] = true.into();
    let r = proxy
        .post_as(CHAT, auth)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn direct_get(proxy: &Proxy, body: &Value, auth: &str) -> u16 {
    proxy
        .post_as("/v1/cache/get", auth)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `reprise_cache_unopened_entries_total` as `proxy`'s /metrics shows it
/// (the recorder is process-wide: compare before and after).
async fn unopened(proxy: &Proxy) -> f64 {
    let text = proxy.metrics().await;
    text.lines()
        .find(|l| l.starts_with("reprise_cache_unopened_entries_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn redis_holds_no_prompt_or_answer_and_hits_still_work() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(sealed_config(&mock, &redis, Some(SECRET_VAR))).await;
    let (body, marker) = secret_prompt("redis");
    let first = a.chat(&body).await;
    assert_eq!(first.cache_status(), "miss");
    a.wait_cached(CHAT, &body, &[]).await;
    // A recorded stream too (another key: `stream` is not in it, but the
    // streamed entry is written under a separate prompt here).
    let (stream_body, stream_marker) = secret_prompt("stream");
    let streamed = stream(&a, &stream_body, "Bearer sk-test-a").await;
    assert!(streamed.contains("Mock"), "{streamed}");
    a.wait_cached(CHAT, &stream_body, &[]).await;

    let values = redis_values(&redis);
    assert_eq!(values.len(), 2, "{values:?}");
    let mut needles = giveaways(&marker, &first);
    needles.push(stream_marker);
    needles.push("answer".into());
    for (key, value) in &values {
        assert!(value.len() > 40, "{key}: {value:?}");
        for needle in &needles {
            assert!(!contains(value, needle), "{key} shows `{needle}`");
        }
    }

    // A fresh instance with the same secret opens it (a Redis hit)...
    let b = Proxy::start(sealed_config(&mock, &redis, Some(SECRET_VAR))).await;
    let hit = b.chat(&body).await;
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.header("x-cache-tier"), Some("redis"));
    assert_eq!(hit.upstream_json(), first.upstream_json());
    let replayed = stream(&b, &stream_body, "Bearer sk-test-a").await;
    assert!(replayed.contains("data: [DONE]"));
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn with_encryption_off_the_same_search_finds_the_plaintext() {
    // The control: the search above would see an unsealed entry.
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(sealed_config(&mock, &redis, None)).await;
    let (body, marker) = secret_prompt("control");
    let first = a.chat(&body).await;
    a.wait_cached(CHAT, &body, &[]).await;
    let values = redis_values(&redis);
    assert_eq!(values.len(), 1);
    assert!(giveaways(&marker, &first)
        .iter()
        .all(|needle| contains(&values[0].1, needle)));
    // ...and an instance with encryption on does not serve it (plaintext is
    // a miss once encryption is on), without an error.
    let sealed = Proxy::start(sealed_config(&mock, &redis, Some(SECRET_VAR))).await;
    assert_eq!(sealed.chat(&body).await.cache_status(), "miss");
}

#[tokio::test]
async fn another_server_secret_misses_without_an_error() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(sealed_config(&mock, &redis, Some(SECRET_VAR))).await;
    let (body, _) = secret_prompt("secret");
    a.chat(&body).await;
    a.wait_cached(CHAT, &body, &[]).await;

    let b = Proxy::start(sealed_config(&mock, &redis, Some(OTHER_SECRET_VAR))).await;
    let before = unopened(&b).await;
    assert_eq!(direct_get(&b, &body, "Bearer sk-test-a").await, 404);
    let reply = b.chat(&body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.cache_status(), "miss");
    assert_eq!(mock.chat_calls().await, 2, "B went to the provider");
    assert!(
        unopened(&b).await >= before + 2.0,
        "the failed opens are counted"
    );
}

#[tokio::test]
async fn a_tenant_cannot_open_another_tenants_entry_even_under_its_own_key() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let config = sealed_config(&mock, &redis, Some(SECRET_VAR));
    let a = Proxy::start(config.clone()).await;
    let (body, _) = secret_prompt("tenants");
    let (alice, bob) = ("Bearer sk-alice-1", "Bearer sk-bob-2");
    let first = a.chat_with(&body, &[("authorization", alice)]).await;
    let second = a.chat_with(&body, &[("authorization", bob)]).await;
    assert_eq!(second.cache_status(), "miss", "namespaces differ");
    let key_of = |r: &Reply| r.header("x-cache-key").unwrap().to_owned();
    let alice_key = format!(
        "reprise:v1:{}:{}",
        credential_namespace(Some("sk-alice-1")),
        key_of(&first)
    );
    let bob_key = format!(
        "reprise:v1:{}:{}",
        credential_namespace(Some("sk-bob-2")),
        key_of(&second)
    );
    for _ in 0..500 {
        let n = redis.cli(&["EXISTS", &alice_key, &bob_key]).unwrap();
        if n.trim() == "2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Someone with write access to Redis puts Alice's sealed value exactly
    // where Bob's request looks.
    let copied = redis
        .cli(&["COPY", &alice_key, &bob_key, "REPLACE"])
        .unwrap();
    assert_eq!(copied.trim(), "1");

    // A fresh instance (empty memory tier) with the same secret.
    let c = Proxy::start(config).await;
    let before = unopened(&c).await;
    assert_eq!(
        direct_get(&c, &body, bob).await,
        404,
        "Bob opened Alice's entry"
    );
    assert!(unopened(&c).await > before);
    assert_eq!(
        direct_get(&c, &body, alice).await,
        200,
        "Alice's own entry opens"
    );
    // Bob's real request is a miss answered by the provider, not an error.
    let again = c.chat_with(&body, &[("authorization", bob)]).await;
    assert_eq!((again.status, again.cache_status()), (200, "miss"));
}

#[tokio::test]
async fn an_export_dump_is_sealed_and_imports_only_with_the_same_secret() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(sealed_config(&mock, &redis, Some(SECRET_VAR))).await;
    let (body, marker) = secret_prompt("export");
    let first = a.chat(&body).await;
    a.wait_cached(CHAT, &body, &[]).await;

    let dump = a
        .http
        .get(format!("{}/v1/cache/export", a.url))
        .bearer_auth("sk-test-a")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = dump
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{dump}");
    let value = STANDARD
        .decode(lines[0]["value"].as_str().unwrap())
        .unwrap();
    for needle in giveaways(&marker, &first) {
        assert!(!contains(&value, &needle), "the dump shows `{needle}`");
        assert!(!contains(dump.as_bytes(), &needle));
    }

    let import = |proxy: &Proxy| proxy.post("/v1/cache/import").body(dump.clone()).send();
    // Same secret, another Redis: imported, then a hit for the same tenant.
    let redis2 = RedisServer::start().await;
    let b = Proxy::start(sealed_config(&mock, &redis2, Some(SECRET_VAR))).await;
    let answer: Value = import(&b).await.unwrap().json_value().await;
    assert_eq!(answer["imported"], 1, "{answer}");
    let hit = b.chat(&body).await;
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.upstream_json(), first.upstream_json());
    assert_eq!(mock.chat_calls().await, 1);

    // Another secret: the sealed value is kept (Redis) but never opens.
    let redis3 = RedisServer::start().await;
    let c = Proxy::start(sealed_config(&mock, &redis3, Some(OTHER_SECRET_VAR))).await;
    let answer: Value = import(&c).await.unwrap().json_value().await;
    assert_eq!(answer["imported"], 1, "{answer}");
    assert_eq!(c.chat(&body).await.cache_status(), "miss");

    // Memory only with another secret: nothing to keep it sealed in, and it
    // does not open, so the line is skipped with the reason.
    let mut memory_only = sealed_config(&mock, &redis3, Some(OTHER_SECRET_VAR));
    memory_only.cache.backend = Backend::Memory;
    let d = Proxy::start(memory_only).await;
    let answer: Value = import(&d).await.unwrap().json_value().await;
    assert_eq!(
        (answer["imported"].as_u64(), answer["skipped"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(answer["problems"][0]["error"]
        .as_str()
        .unwrap()
        .contains("does not open"));
}

#[tokio::test]
async fn a_memory_only_export_is_sealed_and_reopens_with_the_same_secret() {
    let redis = RedisServer::start().await; // unused by the memory backend
    let mock = Mock::start().await;
    let mut config = sealed_config(&mock, &redis, Some(SECRET_VAR));
    config.cache.backend = Backend::Memory;
    let a = Proxy::start(config.clone()).await;
    let (body, marker) = secret_prompt("memory-export");
    let first = a.chat(&body).await;
    a.wait_cached(CHAT, &body, &[]).await;
    let dump = a
        .http
        .get(format!("{}/v1/cache/export", a.url))
        .bearer_auth("sk-test-a")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line: Value = serde_json::from_str(dump.trim()).unwrap();
    let value = STANDARD.decode(line["value"].as_str().unwrap()).unwrap();
    for needle in giveaways(&marker, &first) {
        assert!(!contains(&value, &needle), "the dump shows `{needle}`");
    }
    let b = Proxy::start(config).await;
    let answer: Value = b
        .post("/v1/cache/import")
        .body(dump)
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(answer["imported"], 1, "{answer}");
    let hit = b.chat(&body).await;
    assert_eq!(
        (hit.cache_status(), hit.header("x-cache-tier")),
        ("hit", Some("memory"))
    );
}

/// `reqwest` here is built without its `json` feature.
trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}
