//! Answer buckets: the first N requests for a key go upstream and are all
//! stored, later ones get one of those N at random.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{chat_body, config_for, Mock, Proxy};
use reprise::cache::mode::CacheRule;
use serde_json::Value;

/// Waits (bounded) until the caller's export lists `n` entries: stores
/// happen off the response path.
async fn wait_entries(proxy: &Proxy, n: usize) {
    for _ in 0..1000 {
        let dump = proxy
            .http
            .get(format!("{}/v1/cache/export", proxy.url))
            .header("authorization", "Bearer sk-test-a")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if dump.lines().count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("never reached {n} entries");
}

async fn fill_then_draw(
    proxy: &Proxy,
    mock: &Mock,
    body: &Value,
    headers: &[(&str, &str)],
    n: usize,
) {
    let mut stored = HashSet::new();
    for i in 0..n {
        let reply = proxy.chat_with(body, headers).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.cache_status(), "miss", "request {i} fills slot {i}");
        stored.insert(reply.json()["id"].as_str().unwrap().to_owned());
        wait_entries(proxy, i + 1).await;
    }
    assert_eq!(stored.len(), n, "every slot holds its own answer");
    assert_eq!(mock.chat_calls().await, n as u64);
    let mut drawn = HashSet::new();
    for _ in 0..30 {
        let reply = proxy.chat_with(body, headers).await;
        assert_eq!(reply.cache_status(), "hit");
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        assert!(stored.contains(&id), "{id} is one of the stored answers");
        drawn.insert(id);
    }
    assert_eq!(
        mock.chat_calls().await,
        n as u64,
        "no call once the bucket is full"
    );
    // 30 uniform draws from n ≥ 2 answers all equal: probability n^-29.
    assert!(drawn.len() >= 2, "answers are drawn at random");
}

#[tokio::test]
async fn bucket_header_of_three_makes_three_calls_then_draws() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut body = chat_body("bucket");
    body["temperature"] = serde_json::json!(0.9);
    fill_then_draw(&proxy, &mock, &body, &[("x-cache-bucket", "3")], 3).await;

    let bad = proxy.chat_with(&body, &[("x-cache-bucket", "many")]).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn a_rules_bucket_size_applies_without_the_header() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.cache.rules = vec![CacheRule {
        models: vec!["gpt-4o-mini".into()],
        mode: None,
        ttl: None,
        bucket_size: Some(2),
        ..CacheRule::default()
    }];
    let proxy = Proxy::start(config).await;
    fill_then_draw(&proxy, &mock, &chat_body("rule-bucket"), &[], 2).await;
}
