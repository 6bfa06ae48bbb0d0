//! Purge across instances: two reprise instances on one real redis-server.
//! A purge on A must make the entry a miss on B (which holds it in memory)
//! within 1.5 s, touch nothing of another tenant, and clean Redis up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{chat_body, config_for, Mock, Proxy, Reply};
use reprise::config::{Backend, Config};
use reprise::pipeline::credential_namespace;
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";
const TENANT_A: &str = "Bearer sk-test-a";
const TENANT_B: &str = "Bearer sk-test-b";
const ADMIN: &str = "Bearer sk-purge-admin";

fn shared(mock: &Mock, redis: &RedisServer) -> Config {
    let mut config = config_for(&mock.url);
    config.cache.backend = Backend::Tiered;
    config.cache.redis.url = redis.url();
    std::env::set_var("REPRISE_TEST_PURGE_ADMIN", "sk-purge-admin");
    config.server.admin_keys_env = Some("REPRISE_TEST_PURGE_ADMIN".into());
    config
}

async fn pair() -> (RedisServer, Mock, Proxy, Proxy) {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(shared(&mock, &redis)).await;
    let b = Proxy::start(shared(&mock, &redis)).await;
    (redis, mock, a, b)
}

/// Caches `body` through A and makes sure B holds it in memory.
async fn cached_on_both(a: &Proxy, b: &Proxy, body: &Value, headers: &[(&str, &str)]) {
    let first = a.chat_with(body, headers).await;
    assert_eq!(first.status, 200);
    // The write is off the response path: wait for it to be readable on B.
    for _ in 0..500 {
        if readable(b, body, headers).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let on_b = b.chat_with(body, headers).await;
    assert_eq!(on_b.cache_status(), "hit");
    assert_eq!(on_b.header("x-cache-tier"), Some("memory"));
}

fn auth_free<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .copied()
        .collect()
}

/// Whether `body` is answerable from `proxy`'s cache (only-if-cached: never
/// calls the provider, never writes).
async fn readable(proxy: &Proxy, body: &Value, headers: &[(&str, &str)]) -> bool {
    let auth = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map_or(TENANT_A, |(_, v)| *v);
    let mut req = proxy
        .post_as(CHAT, auth)
        .body(body.to_string())
        .header("cache-control", "only-if-cached");
    for (k, v) in auth_free(headers) {
        req = req.header(k, v);
    }
    req.send().await.unwrap().status() == 200
}

/// Waits until `body` is no longer readable from `proxy`; panics after
/// 1.5 s from `since`.
async fn gone_within(proxy: &Proxy, body: &Value, headers: &[(&str, &str)], since: Instant) {
    while readable(proxy, body, headers).await {
        assert!(
            since.elapsed() < Duration::from_millis(1500),
            "still cached 1.5 s after the purge"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn purge(proxy: &Proxy, auth: &str, body: Value) -> Reply {
    Reply::from(
        proxy
            .post_as("/v1/cache/purge", auth)
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_namespace_purge_on_a_is_a_miss_on_b_and_cleans_redis() {
    let (redis, _mock, a, b) = pair().await;
    let mine = chat_body("ns-mine");
    let theirs = chat_body("ns-theirs");
    cached_on_both(&a, &b, &mine, &[]).await;
    cached_on_both(&a, &b, &theirs, &[("authorization", TENANT_B)]).await;

    let started = Instant::now();
    let r = Reply::from(
        a.http
            .delete(format!("{}/v1/cache", a.url))
            .header("authorization", TENANT_A)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let answer = r.json();
    assert_eq!(answer["object"], "cache.purge");
    assert!(answer["id"].as_str().unwrap().starts_with("purge_"));
    assert!(answer["watermark_ms"].as_u64().unwrap() > 0);
    assert_eq!(answer["deleted"], 1, "{answer}");
    assert!(!readable(&a, &mine, &[]).await, "a miss at once on A");
    gone_within(&b, &mine, &[], started).await;

    assert!(readable(&b, &theirs, &[("authorization", TENANT_B)]).await);
    let ns_a = credential_namespace(Some("sk-test-a"));
    let ns_b = credential_namespace(Some("sk-test-b"));
    let keys = |ns: &str| {
        redis
            .cli(&["--scan", "--pattern", &format!("reprise:v1:{ns}:*")])
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(keys(&ns_a), 0, "purged entries are unlinked from redis");
    assert_eq!(keys(&ns_b), 1, "the other tenant's entry stays");
    assert_eq!(b.chat(&mine).await.cache_status(), "miss");
}

#[tokio::test]
async fn custom_key_glob_purge_spares_other_keys() {
    let (_redis, _mock, a, b) = pair().await;
    let (one, two, other) = (
        chat_body("glob-1"),
        chat_body("glob-2"),
        chat_body("glob-3"),
    );
    cached_on_both(&a, &b, &one, &[("x-cache-key", "user_123:profile")]).await;
    cached_on_both(&a, &b, &two, &[("x-cache-key", "user_123:history")]).await;
    cached_on_both(&a, &b, &other, &[("x-cache-key", "user_999:profile")]).await;

    let started = Instant::now();
    let r = purge(&a, TENANT_A, json!({"custom_keys": ["user_123:*"]})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["deleted"], 2);
    gone_within(&b, &one, &[("x-cache-key", "user_123:profile")], started).await;
    gone_within(&b, &two, &[("x-cache-key", "user_123:history")], started).await;
    assert!(readable(&b, &other, &[("x-cache-key", "user_999:profile")]).await);
}

#[tokio::test]
async fn model_and_older_than_purges() {
    let (_redis, _mock, a, b) = pair().await;
    let mini = chat_body("model-mini");
    let mut big = chat_body("model-big");
    big["model"] = json!("gpt-4o");
    cached_on_both(&a, &b, &mini, &[]).await;
    cached_on_both(&a, &b, &big, &[]).await;

    // Nothing is an hour old yet.
    let r = purge(&a, TENANT_A, json!({"older_than": "1h"})).await;
    assert_eq!(r.json()["deleted"], 0);

    let started = Instant::now();
    let r = purge(&a, TENANT_A, json!({"model": "gpt-4o"})).await;
    assert_eq!(r.json()["deleted"], 1);
    gone_within(&b, &big, &[], started).await;
    assert!(readable(&b, &mini, &[]).await, "another model stays");

    let started = Instant::now();
    let r = purge(&a, TENANT_A, json!({"older_than": "1ms"})).await;
    assert_eq!(r.json()["deleted"], 1);
    gone_within(&b, &mini, &[], started).await;
}

#[tokio::test]
async fn one_entry_by_key_and_another_tenants_purges_touch_nothing_of_yours() {
    let (_redis, _mock, a, b) = pair().await;
    let mine = chat_body("tenant-mine");
    let kept = chat_body("tenant-kept");
    let theirs = chat_body("tenant-theirs");
    cached_on_both(&a, &b, &mine, &[]).await;
    cached_on_both(&a, &b, &kept, &[]).await;
    cached_on_both(&a, &b, &theirs, &[("authorization", TENANT_B)]).await;
    let key = a
        .chat(&mine)
        .await
        .header("x-cache-key")
        .unwrap()
        .to_owned();

    // Tenant B purges everything it can name, including A's key and globs.
    let started = Instant::now();
    for body in [
        json!({}),
        json!({"custom_keys": ["*"]}),
        json!({"keys": [key]}),
        json!({"model": "gpt-4o-mini"}),
    ] {
        let r = purge(&b, TENANT_B, body).await;
        assert_eq!(r.status, 200);
    }
    gone_within(&a, &theirs, &[("authorization", TENANT_B)], started).await;
    assert!(readable(&a, &mine, &[]).await);
    assert!(readable(&b, &kept, &[]).await);

    // B may not reach into A's namespace.
    let ns_a = credential_namespace(Some("sk-test-a"));
    let r = purge(&b, TENANT_B, json!({"namespace": ns_a})).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["type"], "permission_error");

    // A purges one entry by its x-cache-key.
    let started = Instant::now();
    let r = Reply::from(
        a.http
            .delete(format!("{}/v1/cache/entries/{key}", a.url))
            .header("authorization", TENANT_A)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["deleted"], 1);
    gone_within(&b, &mine, &[], started).await;
    assert!(readable(&b, &kept, &[]).await);
}

#[tokio::test]
async fn admin_purges_a_namespace_or_everything() {
    let (_redis, _mock, a, b) = pair().await;
    let mine = chat_body("admin-mine");
    let theirs = chat_body("admin-theirs");
    cached_on_both(&a, &b, &mine, &[]).await;
    cached_on_both(&a, &b, &theirs, &[("authorization", TENANT_B)]).await;

    let r = purge(&a, TENANT_A, json!({"scope": "all", "confirm": "all"})).await;
    assert_eq!(r.status, 403);
    let r = purge(&a, ADMIN, json!({"scope": "all"})).await;
    assert_eq!(r.status, 400, "scope all needs confirm");
    assert_eq!(r.json()["error"]["param"], "confirm");

    let started = Instant::now();
    let ns_b = credential_namespace(Some("sk-test-b"));
    let r = purge(&a, ADMIN, json!({"namespace": ns_b})).await;
    assert_eq!(r.json()["deleted"], 1);
    gone_within(&b, &theirs, &[("authorization", TENANT_B)], started).await;
    assert!(readable(&b, &mine, &[]).await);

    let started = Instant::now();
    let r = purge(&a, ADMIN, json!({"scope": "all", "confirm": "all"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["deleted"], 1);
    gone_within(&b, &mine, &[], started).await;
}

#[tokio::test]
async fn an_answer_in_flight_during_a_purge_is_not_resurrected() {
    let redis = RedisServer::start().await;
    let mock = Mock::start_with(&["--latency-ms", "300"]).await;
    let a = Proxy::start(shared(&mock, &redis)).await;
    let body = chat_body("in-flight");
    let slow = {
        let req = a.post(CHAT).body(body.to_string());
        tokio::spawn(async move { Reply::from(req.send().await.unwrap()).await })
    };
    while mock.chat_calls().await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = purge(&a, TENANT_A, json!({})).await;
    assert_eq!(r.status, 200);
    let reply = slow.await.unwrap();
    assert_eq!(reply.cache_status(), "miss");
    // Its write lands after the purge (off the response path): wait for it
    // in Redis, then check it is not served.
    let key = reply.header("x-cache-key").unwrap().to_owned();
    let ns = credential_namespace(Some("sk-test-a"));
    let redis_key = format!("reprise:v1:{ns}:{key}");
    while redis.cli(&["EXISTS", &redis_key]).unwrap().trim() != "1" {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!readable(&a, &body, &[]).await, "stamped before the purge");
    assert_eq!(a.chat(&body).await.cache_status(), "miss");
}

#[tokio::test]
async fn purge_requests_are_validated() {
    let (_redis, _mock, a, _b) = pair().await;
    for bad in [
        json!({"keys": ["xyz"]}),
        json!({"older_than": "later"}),
        json!({"endpoint": "images"}),
        json!({"unknown": 1}),
        json!({"scope": "everything"}),
    ] {
        let r = purge(&a, TENANT_A, bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    }
}
