//! The direct cache API: `POST /v1/cache/get` and `/v1/cache/set` against a
//! real reprise, mock upstream and redis-server, across two instances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::redis::RedisServer;
use common::{chat_body, config_for, Mock, Proxy, Reply};
use reprise::config::Backend;
use serde_json::{json, Value};

async fn post(proxy: &Proxy, path: &str, auth: &str, body: &Value) -> Reply {
    Reply::from(
        proxy
            .post_as(path, auth)
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

const A: &str = "Bearer sk-test-a";
const B: &str = "Bearer sk-test-b";

fn answer(text: &str) -> Value {
    json!({
        "id": "chatcmpl-direct",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
    })
}

#[tokio::test]
async fn set_then_get_and_a_real_request_hit_on_another_instance() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.cache.backend = Backend::Tiered;
    config.cache.redis.url = redis.url();
    let a = Proxy::start(config.clone()).await;
    let b = Proxy::start(config).await;
    let request = chat_body("direct-set");

    let missing = post(&a, "/v1/cache/get", A, &request).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not_cached");

    let stored = post(
        &a,
        "/v1/cache/set",
        A,
        &json!({"request": request, "response": answer("stored by hand"), "ttl": "1h"}),
    )
    .await;
    assert_eq!(
        stored.status,
        200,
        "{}",
        String::from_utf8_lossy(&stored.bytes)
    );
    let stored = stored.json();
    assert_eq!(stored["object"], "cache.entry");
    assert_eq!(stored["ttl_s"], 3600);
    let key = stored["key"].as_str().unwrap().to_owned();

    let got = post(&a, "/v1/cache/get", A, &request).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.cache_status(), "hit");
    assert_eq!(got.header("x-cache-key"), Some(key.as_str()));
    assert_eq!(
        got.json()["choices"][0]["message"]["content"],
        "stored by hand"
    );

    // A real request on the other instance is a hit on exactly that entry,
    // with savings from the stored usage; the provider is never called.
    let real = b.chat(&request).await;
    assert_eq!(real.cache_status(), "hit");
    assert_eq!(real.header("x-cache-tier"), Some("redis"));
    assert_eq!(real.header("x-cache-key"), Some(key.as_str()));
    let body = real.json();
    assert_eq!(body["choices"][0]["message"]["content"], "stored by hand");
    assert_eq!(body["routing_metadata"]["cache"]["tokens_saved"], 1100);
    assert!(
        body["routing_metadata"]["cost"]["cache_savings_usd"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(mock.chat_calls().await, 0);

    // Caller-scoped: another tenant sees nothing.
    assert_eq!(post(&b, "/v1/cache/get", B, &request).await.status, 404);
}

#[tokio::test]
async fn get_sees_what_real_requests_stored_and_custom_keys_count() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let request = chat_body("direct-get");
    let first = proxy.chat(&request).await;
    proxy
        .wait_cached("/v1/chat/completions", &request, &[])
        .await;
    let got = post(&proxy, "/v1/cache/get", A, &request).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.upstream_json(), first.upstream_json());

    // The custom key header counts, as for a real request.
    let stored = Reply::from(
        proxy
            .post_as("/v1/cache/set", A)
            .header("x-cache-key", "user_1:greeting")
            .body(json!({"request": chat_body("whatever"), "response": answer("hi")}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(stored.status, 200);
    let real = proxy
        .chat_with(
            &chat_body("another prompt"),
            &[("x-cache-key", "user_1:greeting")],
        )
        .await;
    assert_eq!(real.cache_status(), "hit");
    assert_eq!(real.json()["choices"][0]["message"]["content"], "hi");
}

#[tokio::test]
async fn set_validates_like_an_upstream_answer() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let request = chat_body("direct-bad");
    for (bad, param) in [
        (
            json!({"request": request, "response": {"choices": []}}),
            "response",
        ),
        (json!({"request": request, "response": "text"}), "response"),
        (
            json!({"request": request, "response": answer("x"), "ttl": "soon"}),
            "ttl",
        ),
        (
            json!({"request": {"model": "gpt-4o-mini"}, "response": answer("x")}),
            "",
        ),
        (
            json!({"request": request, "response": answer("x"), "extra": 1}),
            "",
        ),
    ] {
        let r = post(&proxy, "/v1/cache/set", A, &bad).await;
        assert_eq!(r.status, 400, "{bad}");
        if !param.is_empty() {
            assert_eq!(r.json()["error"]["param"], param, "{bad}");
        }
    }
    let embeddings = json!({"model": "text-embedding-3-small", "input": "hello"});
    let r = post(
        &proxy,
        "/v1/cache/set",
        A,
        &json!({"request": embeddings, "response": {"object": "list", "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "model": "text-embedding-3-small", "usage": {"prompt_tokens": 1, "total_tokens": 1}}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let got = post(&proxy, "/v1/cache/get", A, &embeddings).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["data"][0]["embedding"], json!([0.1, 0.2]));
}
