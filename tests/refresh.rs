//! Refresh-ahead against a real reprise, the mock upstream (its call
//! counter and switchable fault) and a real redis-server. TTLs are real and
//! short; the tests wait on events (stats counters, upstream call counts,
//! a changed answer), and only the boundary test keeps asking until the old
//! entry's expiry instant has passed, checking every answer on the way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{chat_body, config_for, Mock, Proxy};
use reprise::cache::mode::CacheRule;
use reprise::cache::refresh::RefreshWindow;
use reprise::cache::ttl::Ttl;
use reprise::config::{Backend, Config};
use serde_json::Value;

const CHAT: &str = "/v1/chat/completions";

/// A config whose `gpt-4o-mini` rule refreshes ahead.
fn refreshing(mock: &Mock, ttl: &str, min_hits: u32, window: &str, budget: u32) -> Config {
    let mut config = config_for(&mock.url);
    config.cache.rules = vec![CacheRule {
        models: vec!["gpt-4o-mini".into()],
        ttl: Ttl::parse(ttl),
        refresh_ahead: true,
        refresh_min_hits: Some(min_hits),
        refresh_window: RefreshWindow::parse(window),
        ..CacheRule::default()
    }];
    config.cache.refresh_max_per_minute = budget;
    config
}

async fn stats(proxy: &Proxy) -> Value {
    let r = proxy
        .http
        .get(format!("{}/v1/cache/stats", proxy.url))
        .header("authorization", "Bearer sk-test-a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// Waits (bounded) until the refresh counters satisfy `done`.
async fn refresh_stats(proxy: &Proxy, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1000 {
        let s = stats(proxy).await;
        if done(&s["refresh"]) {
            return s["refresh"].clone();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("refresh counters never got there: {}", stats(proxy).await);
}

/// A hit, and its answer's id.
async fn hit_id(proxy: &Proxy, body: &Value) -> String {
    let r = proxy.chat(body).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.cache_status(),
        "hit",
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    r.json()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_hot_entry_is_refreshed_before_it_expires_and_never_misses() {
    let mock = Mock::start().await;
    // 40% of 4 s: due from 2.4 s of age; the refreshed entry would be due
    // again 2.4 s after its own write, past the end of this test.
    let proxy = Proxy::start(refreshing(&mock, "4s", 2, "40%", 60)).await;
    let body = chat_body("hot");
    let first = proxy.chat(&body).await;
    assert_eq!(first.cache_status(), "miss");
    let old_id = first.json()["id"].as_str().unwrap().to_owned();
    proxy.wait_cached(CHAT, &body, &[]).await;
    // The old entry was written before this instant, so it expires before
    // `boundary`: every answer until then crosses its expiry.
    let boundary = Instant::now() + Duration::from_secs(4) + Duration::from_millis(300);

    let mut ids = vec![old_id.clone()];
    while Instant::now() < boundary {
        let id = hit_id(&proxy, &body).await;
        if ids.last() != Some(&id) {
            ids.push(id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mock.chat_calls().await, 2, "exactly one refresh call");
    assert_eq!(
        ids.len(),
        2,
        "the old answer, then the refreshed one: {ids:?}"
    );
    assert_eq!(ids[0], old_id);
    let refresh = stats(&proxy).await["refresh"].clone();
    assert_eq!(refresh["refreshed"], 1, "{refresh}");
    assert_eq!(refresh["failed"], 0, "{refresh}");
    let s = stats(&proxy).await;
    assert_eq!(s["misses"], 1, "{s}");
    assert!(
        s["usd"]["spent"].as_f64().unwrap() > 0.0,
        "refresh spend is counted: {s}"
    );

    let metrics = proxy.metrics().await;
    // The recorder is process-wide: other tests' refreshes count too.
    let refreshed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("reprise_refresh_total{outcome=\"refreshed\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(refreshed >= Some(1), "{metrics}");
}

#[tokio::test]
async fn an_entry_below_min_hits_is_not_refreshed() {
    let mock = Mock::start().await;
    // The whole TTL is the window: only the hit count decides.
    let proxy = Proxy::start(refreshing(&mock, "1h", 4, "100%", 60)).await;
    let body = chat_body("lukewarm");
    assert_eq!(proxy.chat(&body).await.cache_status(), "miss");
    proxy.wait_cached(CHAT, &body, &[]).await; // hit 1
    hit_id(&proxy, &body).await; // hit 2
    hit_id(&proxy, &body).await; // hit 3
    let refresh = stats(&proxy).await["refresh"].clone();
    assert_eq!(refresh["refreshed"], 0, "{refresh}");
    assert_eq!(refresh["failed"], 0, "{refresh}");
    assert_eq!(mock.chat_calls().await, 1);
    // The fourth hit is the one that starts it.
    hit_id(&proxy, &body).await;
    refresh_stats(&proxy, |r| r["refreshed"] == 1).await;
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn the_budget_is_never_exceeded() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(refreshing(&mock, "1h", 1, "100%", 2)).await;
    let bodies: Vec<Value> = (0..5).map(|i| chat_body(&format!("hot-{i}"))).collect();
    for body in &bodies {
        assert_eq!(proxy.chat(body).await.cache_status(), "miss");
        proxy.wait_cached(CHAT, body, &[]).await; // a hit: due at once
    }
    let refresh = refresh_stats(&proxy, |r| r["refreshed"] == 2).await;
    assert_eq!(refresh["over_budget"], 3, "{refresh}");
    assert_eq!(mock.chat_calls().await, 5 + 2);
    // Five hot entries keep being hit: the minute's budget is spent.
    for _ in 0..3 {
        for body in &bodies {
            hit_id(&proxy, body).await;
        }
    }
    let refresh = stats(&proxy).await["refresh"].clone();
    assert_eq!(refresh["refreshed"], 2, "{refresh}");
    assert_eq!(refresh["failed"], 0, "{refresh}");
    assert_eq!(mock.chat_calls().await, 5 + 2);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_old_entry() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(refreshing(&mock, "1h", 1, "100%", 60)).await;
    let body = chat_body("flaky");
    let first = proxy.chat(&body).await;
    let old_id = first.json()["id"].as_str().unwrap().to_owned();
    mock.fault(serde_json::json!({"status": 500, "times": 1}))
        .await;
    proxy.wait_cached(CHAT, &body, &[]).await; // the hit that starts it
    refresh_stats(&proxy, |r| r["failed"] == 1).await;
    assert_eq!(mock.chat_calls().await, 2, "the refresh did call");
    // The old answer is still served, and the refresh is not retried.
    for _ in 0..5 {
        assert_eq!(hit_id(&proxy, &body).await, old_id);
    }
    let refresh = stats(&proxy).await["refresh"].clone();
    assert_eq!(refresh["refreshed"], 0, "{refresh}");
    assert_eq!(refresh["failed"], 1, "{refresh}");
    assert_eq!(mock.chat_calls().await, 2);
}

/// A miss for the key while its refresh is in flight waits for the refresh
/// (single-flight) instead of calling the provider again.
#[tokio::test]
async fn a_miss_during_a_refresh_joins_it() {
    let mock = Mock::start_with(&["--latency-ms", "1000"]).await;
    let proxy = Proxy::start(refreshing(&mock, "1h", 1, "100%", 60)).await;
    let body = chat_body("joined");
    let first = proxy.chat(&body).await;
    let old_id = first.json()["id"].as_str().unwrap().to_owned();
    proxy.wait_cached(CHAT, &body, &[]).await; // starts the refresh (1 s upstream)
                                               // `no-cache` skips the lookup: a miss, which finds the refresh's flight.
    let joined = proxy
        .chat_with(&body, &[("cache-control", "no-cache")])
        .await;
    assert_eq!(joined.status, 200);
    assert_eq!(joined.cache_status(), "coalesced");
    let new_id = joined.json()["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id, "the refreshed answer");
    refresh_stats(&proxy, |r| r["refreshed"] == 1).await;
    assert_eq!(
        mock.chat_calls().await,
        2,
        "one miss, one refresh, nothing more"
    );
    assert_eq!(hit_id(&proxy, &body).await, new_id);
}

/// An entry recorded from a stream is refreshed with a JSON call, and the
/// refreshed entry still answers stream callers.
#[tokio::test]
async fn a_streamed_entry_is_refreshed_as_json_and_still_streams() {
    let mock = Mock::start().await;
    // Two hits, so the stream hit on the refreshed entry below starts none.
    let proxy = Proxy::start(refreshing(&mock, "1h", 2, "100%", 60)).await;
    let mut streamed = chat_body("streamed-hot");
    streamed["stream"] = true.into();
    let first = proxy.chat(&streamed).await;
    assert_eq!(first.cache_status(), "miss");
    assert!(String::from_utf8_lossy(&first.bytes).contains("[DONE]"));
    proxy.wait_cached(CHAT, &streamed, &[]).await; // hit 1
    assert_eq!(proxy.chat(&streamed).await.cache_status(), "hit"); // 2: the refresh
    refresh_stats(&proxy, |r| r["refreshed"] == 1).await;
    let sent = mock.last().await;
    assert!(
        sent.get("stream").is_none(),
        "the refresh asks for JSON: {sent}"
    );
    assert!(sent.get("stream_options").is_none(), "{sent}");
    assert_eq!(sent["messages"], streamed["messages"]);

    let again = proxy.chat(&streamed).await;
    assert_eq!(again.cache_status(), "hit");
    let text = String::from_utf8_lossy(&again.bytes);
    assert!(
        text.starts_with("data: ") && text.contains("[DONE]"),
        "{text}"
    );
    assert!(text.contains("hello from streamed-hot"), "{text}");
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn a_rule_without_refresh_ahead_never_refreshes() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.cache.rules = vec![CacheRule {
        models: vec!["gpt-4o-mini".into()],
        ttl: Ttl::parse("1h"),
        ..CacheRule::default()
    }];
    let proxy = Proxy::start(config).await;
    let body = chat_body("plain");
    assert_eq!(proxy.chat(&body).await.cache_status(), "miss");
    proxy.wait_cached(CHAT, &body, &[]).await;
    for _ in 0..20 {
        hit_id(&proxy, &body).await;
    }
    let refresh = stats(&proxy).await["refresh"].clone();
    for outcome in ["refreshed", "failed", "over_budget", "skipped"] {
        assert_eq!(refresh[outcome], 0, "{refresh}");
    }
    assert_eq!(mock.chat_calls().await, 1);
}

/// Redis backend: the refreshed entry lands in the shared tier (another
/// instance serves it), and only refreshing rules keep the request in the
/// stored value.
#[tokio::test]
async fn redis_refresh_is_shared_and_only_refreshing_rules_keep_the_request() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let with_redis = |mut c: Config| {
        c.cache.backend = Backend::Redis;
        c.cache.redis.url = redis.url();
        c
    };
    // Two hits each: one instance's hits never make the other refresh.
    let mut config = refreshing(&mock, "1h", 2, "100%", 60);
    config.cache.rules.push(CacheRule {
        models: vec!["gpt-4o".into()],
        ..CacheRule::default()
    });
    let a = Proxy::start(with_redis(config.clone())).await;
    let b = Proxy::start(with_redis(config)).await;

    let body = chat_body("shared-hot");
    let first = a.chat(&body).await;
    assert_eq!(first.cache_status(), "miss");
    let old_id = first.json()["id"].as_str().unwrap().to_owned();
    let redis_key = format!(
        "reprise:v1:{}:{}",
        reprise::pipeline::credential_namespace(Some("sk-test-a")),
        first.header("x-cache-key").unwrap()
    );
    a.wait_cached(CHAT, &body, &[]).await; // hit 1 on a
    assert_eq!(hit_id(&a, &body).await, old_id); // hit 2: refresh
    refresh_stats(&a, |r| r["refreshed"] == 1).await;
    assert_eq!(mock.chat_calls().await, 2);
    let new_id = hit_id(&b, &body).await;
    assert_ne!(new_id, old_id, "b reads the refreshed entry from Redis");
    assert_eq!(hit_id(&a, &body).await, new_id);
    let stored = redis.cli(&["GET", &redis_key]).unwrap();
    assert!(
        stored.contains("\"content\":\"hello from shared-hot\""),
        "{stored}"
    );

    let mut plain = chat_body("not-refreshed");
    plain["model"] = "gpt-4o".into();
    let r = a.chat(&plain).await;
    let plain_key = format!(
        "reprise:v1:{}:{}",
        reprise::pipeline::credential_namespace(Some("sk-test-a")),
        r.header("x-cache-key").unwrap()
    );
    a.wait_cached(CHAT, &plain, &[]).await;
    let stored = redis.cli(&["GET", &plain_key]).unwrap();
    assert!(
        stored.contains("Mock answer to: hello from not-refreshed"),
        "{stored}"
    );
    assert!(
        !stored.contains("\"content\":\"hello from not-refreshed\""),
        "{stored}"
    );
}

#[test]
fn refresh_settings_are_validated_by_name() {
    let load = |toml: &str| {
        let dir = std::env::temp_dir().join(format!("reprise-refresh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.toml", toml.len()));
        std::fs::write(&path, toml).unwrap();
        Config::load(Some(&path))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let rule = |extra: &str| format!("[[cache.rules]]\nmodels = [\"m\"]\n{extra}\n");
    assert!(load(&rule("refresh_ahead = true\nrefresh_window = \"30s\"")).is_ok());
    assert!(load(&rule("refresh_ahead = true\nrefresh_window = \"12.5%\"")).is_ok());
    for (extra, field) in [
        ("refresh_min_hits = 3", "cache.rules[0].refresh_min_hits"),
        ("refresh_window = \"10%\"", "cache.rules[0].refresh_window"),
        (
            "refresh_ahead = true\nrefresh_min_hits = 0",
            "cache.rules[0].refresh_min_hits",
        ),
        (
            "refresh_ahead = true\nmode = \"observe\"",
            "cache.rules[0].refresh_ahead",
        ),
        (
            "refresh_ahead = true\nrefresh_window = \"0s\"",
            "cache.rules[0].refresh_window",
        ),
    ] {
        let err = load(&rule(extra)).unwrap_err();
        assert!(err.contains(field), "{extra}: {err}");
    }
    let err = load(&rule("refresh_ahead = true\nrefresh_window = \"150%\"")).unwrap_err();
    assert!(err.contains("refresh_window"), "{err}");
    let err = load("[cache]\nrefresh_max_per_minute = 1000000\n").unwrap_err();
    assert!(err.contains("cache.refresh_max_per_minute"), "{err}");
}

/// Tiered backend: an instance whose memory tier holds the old entry takes
/// the one another instance refreshed into Redis instead of calling again.
#[tokio::test]
async fn a_tiered_instance_takes_a_refresh_another_instance_made() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let mut config = refreshing(&mock, "1h", 2, "100%", 60);
    config.cache.backend = Backend::Tiered;
    config.cache.redis.url = redis.url();
    let a = Proxy::start(config.clone()).await;
    let b = Proxy::start(config).await;

    let body = chat_body("tiered-hot");
    let first = a.chat(&body).await;
    let old_id = first.json()["id"].as_str().unwrap().to_owned();
    a.wait_cached(CHAT, &body, &[]).await; // a: hit 1
    let on_b = b.chat(&body).await; // b: hit 1, promoted into b's memory
    assert_eq!(on_b.header("x-cache-tier"), Some("redis"));
    assert_eq!(hit_id(&a, &body).await, old_id); // a: hit 2, the refresh
    refresh_stats(&a, |r| r["refreshed"] == 1).await;
    assert_eq!(mock.chat_calls().await, 2);

    // b: hit 2 on its old memory copy is due, but Redis has a newer entry.
    assert_eq!(hit_id(&b, &body).await, old_id);
    let on_b = refresh_stats(&b, |r| r["skipped"] == 1).await;
    assert_eq!(on_b["refreshed"], 0, "{on_b}");
    let new_id = hit_id(&b, &body).await;
    assert_ne!(new_id, old_id);
    assert_eq!(hit_id(&a, &body).await, new_id);
    assert_eq!(mock.chat_calls().await, 2, "one refresh for the fleet");
}

/// Encryption at rest: the refreshed entry is sealed for the hit's tenant
/// (another instance with the same secret opens it), and no value in Redis
/// shows the prompt kept for the refresh.
#[tokio::test]
async fn a_refresh_under_encryption_is_sealed_for_the_tenant() {
    std::env::set_var(
        "REPRISE_TEST_REFRESH_SECRET",
        "a refresh test secret, 32 bytes or more",
    );
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let mut config = refreshing(&mock, "1h", 2, "100%", 60);
    config.cache.backend = Backend::Redis;
    config.cache.redis.url = redis.url();
    config.cache.encryption = reprise::cache::seal::Encryption::PerTenant;
    config.cache.encryption_key_env = Some("REPRISE_TEST_REFRESH_SECRET".into());
    let a = Proxy::start(config.clone()).await;
    let b = Proxy::start(config).await;

    let body = chat_body("sealed-zebraquantum");
    let first = a.chat(&body).await;
    assert_eq!(first.cache_status(), "miss");
    let old_id = first.json()["id"].as_str().unwrap().to_owned();
    a.wait_cached(CHAT, &body, &[]).await; // hit 1
    assert_eq!(hit_id(&a, &body).await, old_id); // hit 2: the refresh
    refresh_stats(&a, |r| r["refreshed"] == 1).await;
    let new_id = hit_id(&b, &body).await;
    assert_ne!(new_id, old_id, "b opens the refreshed, sealed entry");

    let redis_key = format!(
        "reprise:v1:{}:{}",
        reprise::pipeline::credential_namespace(Some("sk-test-a")),
        first.header("x-cache-key").unwrap()
    );
    let raw = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "GET", &redis_key])
        .output()
        .unwrap()
        .stdout;
    assert!(raw.len() > 100, "an entry is stored");
    for plain in ["zebraquantum", "Mock answer", new_id.as_str()] {
        assert!(
            !raw.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{plain} in the sealed value"
        );
    }
}
