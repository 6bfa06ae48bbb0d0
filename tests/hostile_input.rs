//! Hostile caller input (issue 11, part 1): absurd durations, headers that
//! change the answer, oversized names. Each test failed on the code before
//! the fix it guards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{chat_body, config_for, Mock, Proxy};
use reprise::config::{Backend, Config};

const CHAT: &str = "/v1/chat/completions";
const HUGE: &str = "18446744073709551615";

fn with_grace(mock: &Mock, backend: Backend, redis: Option<&RedisServer>) -> Config {
    let mut config = config_for(&mock.url);
    config.cache.backend = backend;
    config.cache.stale_grace = Duration::from_secs(60);
    if let Some(redis) = redis {
        config.cache.redis.url = redis.url();
        config.cache.redis.op_timeout = Duration::from_millis(500);
    }
    config
}

/// A huge TTL or max-age with a stale grace: answered, stored, and every
/// later request for the key is a normal hit (before: a panic in the expiry
/// arithmetic, then an empty reply for that key until eviction).
#[tokio::test]
async fn overflowing_durations_are_clamped_not_fatal() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(with_grace(&mock, Backend::Memory, None)).await;
    let max_age = format!("max-age={HUGE}");
    for (i, headers) in [
        vec![("x-cache-ttl", HUGE)],
        vec![("cache-control", max_age.as_str())],
        vec![("x-cache-ttl", "99999999999999999999999999999")],
    ]
    .iter()
    .enumerate()
    {
        let body = chat_body(&format!("huge-ttl-{i}"));
        let first = proxy.chat_with(&body, headers).await;
        assert_eq!(first.status, 200, "{headers:?}");
        assert_eq!(first.cache_status(), "miss");
        proxy.wait_cached(CHAT, &body, headers).await;
        for _ in 0..3 {
            let again = proxy.chat_with(&body, headers).await;
            assert_eq!(again.status, 200, "{headers:?}");
            assert_eq!(again.cache_status(), "hit");
            assert_eq!(again.upstream_json(), first.upstream_json());
        }
        // Without the header too (same key: the TTL is not part of it).
        assert_eq!(proxy.chat(&body).await.cache_status(), "hit");
    }
    assert_eq!(mock.chat_calls().await, 3);
}

/// One tenant's absurd TTLs never reach Redis as a rejected `PX`, so they can
/// never open the breaker and switch the shared tier off for everyone.
#[tokio::test]
async fn absurd_ttls_never_open_the_redis_breaker() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(with_grace(&mock, Backend::Tiered, Some(&redis))).await;
    let max_age = format!("max-age={HUGE}");
    let n = 14;
    for i in 0..n {
        let headers: &[(&str, &str)] = if i % 2 == 0 {
            &[("x-cache-ttl", HUGE)]
        } else {
            &[("cache-control", &max_age)]
        };
        let body = chat_body(&format!("tenant-ttl-{i}"));
        let r = a.chat_with(&body, headers).await;
        assert_eq!(r.status, 200);
    }
    // Every write reached Redis with a sane expiry (365 days + grace).
    let b = Proxy::start(with_grace(&mock, Backend::Redis, Some(&redis))).await;
    for i in 0..n {
        let body = chat_body(&format!("tenant-ttl-{i}"));
        b.wait_cached(CHAT, &body, &[]).await;
        let hit = b.chat(&body).await;
        assert_eq!(hit.cache_status(), "hit", "entry {i}");
        assert_eq!(hit.header("x-cache-tier"), Some("redis"));
    }
    let keys = redis.cli(&["--scan", "--pattern", "reprise:*"]).unwrap();
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), n);
    let year_ms = 365 * 24 * 3600 * 1000_i64;
    for key in keys {
        let pttl: i64 = redis.cli(&["PTTL", key]).unwrap().trim().parse().unwrap();
        assert!(
            pttl > year_ms - 60_000 && pttl <= year_ms + 60_000,
            "{pttl}"
        );
    }
    // The breaker stayed closed: a normal request is still written to Redis.
    let after = chat_body("after-the-storm");
    a.chat(&after).await;
    b.wait_cached(CHAT, &after, &[]).await;
    assert_eq!(mock.chat_calls().await, n as u64 + 1);
}
