//! Fault suite (issue 11): a provider that resets mid-body, stalls
//! mid-stream or answers garbage (a non-JSON 2xx: 502), and a Redis paused
//! with SIGSTOP and resumed. Each time the client gets a clear error or a correct answer
//! within a bound, and nothing partial is stored (the follow-up is a miss / `only-if-cached` is a 504).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{chat_body, config_for, Mock, Proxy};
use reprise::config::Backend;

/// Every answer must arrive within this; a hang fails the test.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {BOUND:?}"))
}

/// After a failed request: not readable from the cache, and the same request
/// goes upstream again.
async fn nothing_stored(proxy: &Proxy, mock: &Mock, body: &serde_json::Value) {
    let cached = proxy
        .chat_with(body, &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(cached.status, 504, "a failed answer was stored");
    let before = mock.chat_calls().await;
    bounded("follow-up", proxy.chat(body)).await;
    assert_eq!(
        mock.chat_calls().await,
        before + 1,
        "the follow-up was not a miss"
    );
}

#[tokio::test]
async fn upstream_reset_mid_body_is_a_clear_error_and_not_stored() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut body = chat_body("reset-mid-body");
    body["model"] = "mock-cut-stream".into();
    let reply = bounded("cut JSON", proxy.chat(&body)).await;
    assert_eq!(
        reply.status,
        502,
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    assert_eq!(reply.json()["error"]["type"], "upstream_error");
    nothing_stored(&proxy, &mock, &body).await;
}

/// A 2xx whose body is not JSON is a 502 naming the problem, never stored.
fn assert_non_json_502(what: &str, reply: &common::Reply) {
    assert_eq!(
        reply.status,
        502,
        "{what}: {}",
        String::from_utf8_lossy(&reply.bytes)
    );
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "upstream_error", "{what}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("non-JSON answer"), "{what}: {message}");
    assert_ne!(reply.cache_status(), "hit", "{what}");
}

#[tokio::test]
async fn upstream_garbage_is_a_502_and_never_stored() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut body = chat_body("garbage");
    body["model"] = "mock-garbage".into();
    let reply = bounded("garbage", proxy.chat(&body)).await;
    assert_non_json_502("chat", &reply);
    nothing_stored(&proxy, &mock, &body).await;

    // A stream request answered with a non-SSE, non-JSON 2xx: the same.
    let mut streamed = chat_body("garbage-stream");
    streamed["model"] = "mock-garbage".into();
    streamed["stream"] = true.into();
    let reply = bounded("garbage stream", proxy.chat(&streamed)).await;
    assert_non_json_502("chat stream", &reply);

    let embedding = serde_json::json!({"model": "mock-garbage", "input": "garbage"});
    let reply = bounded(
        "garbage embeddings",
        common::Reply::from(
            proxy
                .post("/v1/embeddings")
                .body(embedding.to_string())
                .send()
                .await
                .unwrap(),
        ),
    )
    .await;
    assert_non_json_502("embeddings", &reply);
    let cached = proxy
        .post("/v1/embeddings")
        .header("cache-control", "only-if-cached")
        .body(embedding.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 504, "a non-JSON embedding was stored");
}

#[tokio::test]
async fn anthropic_garbage_is_an_anthropic_shaped_502_and_never_stored() {
    use reprise::config::{ProviderConfig, ProviderKind};
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.providers = vec![ProviderConfig::new(
        "claude",
        ProviderKind::Anthropic,
        &format!("{}/v1", mock.url),
        &["*"],
    )];
    config.routing.default_provider = Some("claude".into());
    let proxy = Proxy::start(config).await;
    let body = serde_json::json!({
        "model": "mock-garbage",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "garbage"}],
    });
    let send = |extra: Option<(&'static str, &'static str)>| {
        let mut req = proxy
            .post("/v1/messages")
            .header("anthropic-version", "2023-06-01")
            .body(body.to_string());
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        async move { common::Reply::from(req.send().await.unwrap()).await }
    };
    let reply = bounded("anthropic garbage", send(None)).await;
    assert_eq!(
        reply.status,
        502,
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    let json = reply.json();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "api_error");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("non-JSON answer"),
        "{json}"
    );
    let cached = send(Some(("cache-control", "only-if-cached"))).await;
    assert_eq!(cached.status, 504, "a non-JSON answer was stored");
}

#[tokio::test]
async fn a_paused_redis_costs_no_client_error_and_comes_back() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.cache.backend = Backend::Redis;
    config.cache.redis.url = redis.url();
    config.cache.redis.breaker_backoff = Duration::from_millis(200);
    let proxy = Proxy::start(config).await;
    let stored = chat_body("paused-redis-stored");
    assert_eq!(proxy.chat(&stored).await.status, 200);
    proxy
        .wait_cached("/v1/chat/completions", &stored, &[])
        .await;

    redis.signal("STOP");
    // Reads time out into misses, writes are dropped, the breaker opens:
    // every request is answered by the provider, none fails or hangs.
    for i in 0..6 {
        let reply = bounded("paused redis", proxy.chat(&stored)).await;
        assert_eq!(reply.status, 200, "request {i}");
        let fresh = bounded(
            "paused redis",
            proxy.chat(&chat_body(&format!("paused-{i}"))),
        )
        .await;
        assert_eq!(fresh.status, 200, "request {i}");
    }
    redis.signal("CONT");
    // Resumed: the entry written before the pause is served from Redis again
    // once the breaker probes (bounded wait on that event).
    for _ in 0..500 {
        let reply = bounded("resumed redis", proxy.chat(&stored)).await;
        if reply.cache_status() == "hit" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("Redis never served again after SIGCONT");
}

/// A provider that answers a stream's head and first event, then goes
/// silent with the connection open (until the test ends).
async fn stalling_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                      data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\
                      \"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":\
                      {\"role\":\"assistant\",\"content\":\"partial\"},\"finish_reason\":null}]}\n\n",
                )
                .await;
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn upstream_stall_mid_stream_ends_as_an_error_and_is_not_stored() {
    let url = stalling_upstream().await;
    let mut config = config_for(&url);
    // The per-read idle bound ends the stall (the whole-stream deadline is
    // the other bound; both end the stream as an error).
    config.server.upstream_timeout = Duration::from_millis(400);
    let proxy = Proxy::start(config).await;
    let mut body = chat_body("stall-mid-stream");
    body["stream"] = true.into();
    let response = bounded(
        "stalled stream head",
        proxy
            .post("/v1/chat/completions")
            .body(body.to_string())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let read = bounded("stalled stream body", response.bytes()).await;
    assert!(read.is_err(), "the client sees a broken stream, not an end");
    let cached = proxy
        .chat_with(&body, &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(cached.status, 504, "a partial stream was stored");
}
