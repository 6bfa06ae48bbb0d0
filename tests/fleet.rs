//! Fleet statistics and series: two reprise instances on one real
//! redis-server add their counters to Redis; either one reports the sum.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{chat_body, config_for, Mock, Proxy, Reply};
use reprise::config::Backend;
use reprise::pipeline::credential_namespace;
use serde_json::Value;

async fn get(proxy: &Proxy, path: &str, auth: &str) -> Reply {
    Reply::from(
        proxy
            .http
            .get(format!("{}{path}", proxy.url))
            .header("authorization", auth)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Polls `path` until `done` accepts the JSON (flushes are batched, once a
/// second); panics after 10 s.
async fn until(proxy: &Proxy, path: &str, auth: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let r = get(proxy, path, auth).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
        let v = r.json();
        if done(&v) {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reached: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn fleet_stats_and_series_count_both_instances() {
    let redis = RedisServer::start().await;
    let mock = Mock::start_with(&["--latency-ms", "40"]).await;
    let mut config = config_for(&mock.url);
    config.cache.backend = Backend::Tiered;
    config.cache.redis.url = redis.url();
    config.admin.stats_flush = Duration::from_millis(100);
    let a = Proxy::start(config.clone()).await;
    let b = Proxy::start(config).await;

    let body = chat_body("fleet");
    let first = a.chat(&body).await;
    assert_eq!(first.cache_status(), "miss");
    // The write is off the response path: wait for it in Redis (no request,
    // so the counts below stay exact).
    let redis_key = format!(
        "reprise:v1:{}:{}",
        credential_namespace(Some("sk-test-a")),
        first.header("x-cache-key").unwrap()
    );
    while redis.cli(&["EXISTS", &redis_key]).unwrap().trim() != "1" {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(b.chat(&body).await.header("x-cache-tier"), Some("redis"));
    assert_eq!(b.chat(&body).await.header("x-cache-tier"), Some("memory"));

    let key = "Bearer sk-test-a";
    let fleet = until(&a, "/v1/cache/stats?scope=fleet", key, |v| {
        v["requests"] == 3
    })
    .await;
    assert_eq!(fleet["view"], "fleet");
    assert_eq!(fleet["misses"], 1);
    assert_eq!(fleet["hits"]["redis"], 1);
    assert_eq!(fleet["hits"]["memory"], 1);
    assert_eq!(fleet["hits_by_type"]["memory"]["hits"], 1);
    assert!(fleet["usd"]["saved_by_cache"].as_f64().unwrap() > 0.0);
    assert!(
        fleet["latency_saved_ms"].as_u64().unwrap() >= 80,
        "two hits, each saving the original >= 40 ms call: {fleet}"
    );
    assert_eq!(fleet["by_model"]["gpt-4o-mini"]["requests"], 3);
    assert!(
        fleet.get("refresh").is_none(),
        "refresh-ahead is per instance"
    );

    // Per instance stays the default.
    let own = get(&a, "/v1/cache/stats", key).await.json();
    assert_eq!(own["view"], "instance");
    assert_eq!(own["refresh"]["refreshed"], 0);
    assert_eq!(own["requests"], 1);
    assert_eq!(own["server"]["redis"], "ok");

    // Another tenant sees none of it.
    let other = get(&b, "/v1/cache/stats?scope=fleet", "Bearer sk-test-b")
        .await
        .json();
    assert_eq!(other["requests"], 0);

    let series = until(
        &b,
        "/v1/cache/stats/series?window=15m&scope=fleet",
        key,
        |v| {
            v["points"].as_array().is_some_and(|p| {
                p.iter()
                    .map(|x| x["requests"].as_i64().unwrap())
                    .sum::<i64>()
                    == 3
            })
        },
    )
    .await;
    assert_eq!(series["view"], "fleet");
    assert_eq!(series["step_s"], 60);
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 15);
    let sum = |f: &dyn Fn(&Value) -> f64| points.iter().map(f).sum::<f64>();
    assert_eq!(sum(&|p| p["hits"]["redis"].as_f64().unwrap_or(0.0)), 1.0);
    assert_eq!(sum(&|p| p["hits"]["memory"].as_f64().unwrap_or(0.0)), 1.0);
    assert!(sum(&|p| p["spent_usd"].as_f64().unwrap()) > 0.0);
    assert!(sum(&|p| p["saved_usd_by_type"]["redis"].as_f64().unwrap_or(0.0)) > 0.0);

    let day = get(&a, "/v1/cache/stats/series?window=24h&scope=fleet", key)
        .await
        .json();
    assert_eq!(day["step_s"], 600);
    assert_eq!(day["points"].as_array().unwrap().len(), 144);
    for bad in ["window=2h", "scope=galaxy", "nope=1"] {
        let r = get(&a, &format!("/v1/cache/stats/series?{bad}"), key).await;
        assert_eq!(r.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn without_redis_the_series_is_this_instances() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.admin.stats_flush = Duration::from_millis(50);
    let proxy = Proxy::start(config).await;
    let body = chat_body("local-series");
    proxy.chat(&body).await;
    proxy.wait_cached("/v1/chat/completions", &body, &[]).await;
    proxy.chat(&body).await;
    let key = "Bearer sk-test-a";
    let series = until(
        &proxy,
        "/v1/cache/stats/series?window=1h&scope=fleet",
        key,
        |v| {
            v["points"].as_array().is_some_and(|p| {
                p.iter()
                    .map(|x| x["requests"].as_i64().unwrap())
                    .sum::<i64>()
                    >= 3
            })
        },
    )
    .await;
    assert_eq!(series["view"], "instance", "no redis: the instance view");
    assert_eq!(series["points"].as_array().unwrap().len(), 60);
    let stats = get(&proxy, "/v1/cache/stats?scope=fleet", key).await.json();
    assert_eq!(stats["view"], "instance");
    assert_eq!(stats["server"]["redis"], "off");

    let top = get(&proxy, "/v1/cache/top", key).await.json();
    let first = &top["data"][0];
    assert_eq!(first["model"], "gpt-4o-mini");
    assert!(first["hits"].as_u64().unwrap() >= 1);
    assert!(
        first.get("namespace").is_none(),
        "only admins see namespaces"
    );
}
