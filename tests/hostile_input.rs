//! Hostile caller input (issue 11, part 1): absurd durations, headers that
//! change the answer, oversized names. Each test failed on the code before
//! the fix it guards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{chat_body, config_for, Mock, Proxy, Reply};
use reprise::config::{Backend, Config};
use serde_json::{json, Value};

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
    let keys = redis.cli(&["--scan", "--pattern", "reprise:v1:*"]).unwrap();
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

fn with_claude(mock: &Mock) -> Config {
    common::claude_config(&mock.url)
}

async fn messages(proxy: &Proxy, body: &Value, headers: &[(&str, &str)]) -> Reply {
    proxy.messages(body, headers).await
}

async fn wait_messages_cached(proxy: &Proxy, body: &Value, headers: &[(&str, &str)]) {
    proxy.wait_messages_cached(body, headers).await;
}

/// Forwarded headers that change the answer are part of the key: the same
/// `/v1/messages` body with a beta header (or another API version) is a miss
/// on the entry stored without it, not a false hit.
#[tokio::test]
async fn forwarded_headers_are_part_of_the_key() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(with_claude(&mock)).await;
    let body = json!({"model": "claude-sonnet-4-20250514", "max_tokens": 64,
        "messages": [{"role": "user", "content": "beta or not"}]});
    let variants: [&[(&str, &str)]; 4] = [
        &[],
        &[("anthropic-beta", "prompt-caching-2024-07-31")],
        &[("anthropic-beta", "output-128k-2025-02-19")],
        &[("anthropic-version", "2024-01-01")],
    ];
    for (i, headers) in variants.iter().enumerate() {
        let first = messages(&proxy, &body, headers).await;
        assert_eq!(first.status, 200, "{headers:?}");
        assert_eq!(first.cache_status(), "miss", "{headers:?} must not hit");
        wait_messages_cached(&proxy, &body, headers).await;
        assert_eq!(mock.calls().await["total"], i as u64 + 1);
    }
    for headers in variants {
        assert_eq!(messages(&proxy, &body, headers).await.cache_status(), "hit");
    }
    // The configured default version equals sending it explicitly.
    let explicit = [("anthropic-version", "2023-06-01")];
    assert_eq!(
        messages(&proxy, &body, &explicit).await.cache_status(),
        "hit"
    );

    // OpenAI-compatible providers: `openai-beta` likewise.
    let chat = chat_body("openai-beta");
    proxy.chat(&chat).await;
    proxy.wait_cached(CHAT, &chat, &[]).await;
    let beta = [("openai-beta", "assistants=v2")];
    assert_eq!(proxy.chat_with(&chat, &beta).await.cache_status(), "miss");
    assert_eq!(mock.last_headers().await["openai-beta"], "assistants=v2");
}

/// Model names are bounded (400 bytes → an OpenAI-shaped 400), and made-up
/// names cannot grow the stats without bound.
#[tokio::test]
async fn names_are_bounded() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    for len in [401, 4 * 1024 * 1024] {
        let mut body = chat_body("long-name");
        body["model"] = Value::String("m".repeat(len));
        let r = proxy.chat(&body).await;
        assert_eq!(r.status, 400);
        assert!(r.bytes.len() < 1000, "the error does not echo the name");
        assert_eq!(r.json()["error"]["param"], "model");
    }
    let mut body = chat_body("exact-limit");
    body["model"] = Value::String("m".repeat(400));
    assert_eq!(proxy.chat(&body).await.status, 200);

    for i in 0..60 {
        let mut body = chat_body("many-models");
        body["model"] = Value::String(format!("made-up-{i}"));
        assert_eq!(proxy.chat(&body).await.status, 200);
    }
    let stats = proxy.get_reply("/v1/cache/stats").await.json();
    let models = stats["by_model"].as_object().unwrap();
    assert_eq!(models.len(), reprise::stats::MAX_MODELS_PER_NAMESPACE + 1);
    assert_eq!(stats["requests"], 61);
}

/// Upstream JSON answers are read with a cap: above `limits.max_response_bytes`
/// a 502 (never stored); above `cache.max_entry_bytes` served but not stored.
#[tokio::test]
async fn upstream_answers_are_read_with_a_cap() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.limits.max_response_bytes = 200;
    let capped = Proxy::start(config).await;
    let body = chat_body("a normal answer is about 500 bytes");
    for _ in 0..2 {
        let r = capped.chat(&body).await;
        assert_eq!(r.status, 502);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("max_response_bytes"), "{message}");
    }
    assert_eq!(mock.chat_calls().await, 2, "a refused answer is not stored");

    let mut config = config_for(&mock.url);
    config.cache.max_entry_bytes = 100;
    let small_entries = Proxy::start(config).await;
    for _ in 0..2 {
        let r = small_entries.chat(&body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.cache_status(), "miss", "served, never stored");
    }
}

/// A provider that answers 200 `text/event-stream` and then sends `chunk`
/// forever (close-delimited HTTP/1.1), counting the bytes it managed to send.
async fn endless_upstream(
    chunk: &'static [u8],
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                if socket.write_all(head).await.is_err() {
                    return;
                }
                while socket.write_all(chunk).await.is_ok() {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (url, sent)
}

/// An SSE event that never ends is an error once it passes
/// `limits.max_sse_event_bytes` (before: buffered forever), and a stream
/// that never ends stops at `limits.stream_deadline`; neither is stored.
#[tokio::test]
async fn endless_streams_are_bounded() {
    let (url, _) = endless_upstream(&[b'x'; 16 * 1024]).await;
    let mut config = config_for(&url);
    config.limits.max_sse_event_bytes = 256 * 1024;
    let proxy = Proxy::start(config).await;
    let mut body = chat_body("huge-event");
    body["stream"] = Value::Bool(true);
    let r = proxy
        .post(CHAT)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the client sees a broken stream");

    let (url, _) = endless_upstream(b"data: {\"choices\":[]}\n\n").await;
    let mut config = config_for(&url);
    config.limits.stream_deadline = Duration::from_millis(300);
    let proxy = Proxy::start(config).await;
    let mut body = chat_body("endless");
    body["stream"] = Value::Bool(true);
    let r = proxy
        .post(CHAT)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        r.bytes().await.is_err(),
        "ended by the deadline as an error"
    );
    let again = proxy
        .post(CHAT)
        .header("cache-control", "only-if-cached")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_ne!(again.status(), 200, "nothing stored");
}
