//! End-to-end: a real reprise in front of the real mock upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{chat_body, config_for, Mock, Proxy, Reply};
use serde_json::json;

async fn setup() -> (Mock, Proxy) {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    (mock, proxy)
}

#[tokio::test]
async fn second_identical_request_is_a_memory_hit() {
    let (mock, proxy) = setup().await;
    let body = chat_body("hit");
    let first = proxy.chat(&body).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache_status(), "miss");
    assert_eq!(first.json()["routing_metadata"]["cache"]["status"], "miss");
    let key = first.header("x-cache-key").unwrap().to_owned();
    assert_eq!(key.len(), 64);

    proxy.wait_cached("/v1/chat/completions", &body, &[]).await;
    let second = proxy.chat(&body).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.cache_status(), "hit");
    assert_eq!(second.header("x-cache-tier"), Some("memory"));
    assert_eq!(second.header("x-cache-key"), Some(key.as_str()));
    assert!(second.header("age").unwrap().parse::<u64>().is_ok());
    assert_eq!(second.upstream_json(), first.upstream_json());
    let meta = &second.json()["routing_metadata"];
    assert_eq!(meta["provider"], "mock");
    assert_eq!(meta["cache"]["status"], "hit");
    assert_eq!(meta["cache"]["tier"], "memory");
    assert_eq!(
        meta["cache"]["tokens_saved"],
        first.json()["usage"]["total_tokens"]
    );
    assert_eq!(mock.chat_calls().await, 1, "a hit never reaches upstream");
}

#[tokio::test]
async fn output_affecting_changes_and_other_callers_miss() {
    let (mock, proxy) = setup().await;
    let body = chat_body("variants");
    proxy.chat(&body).await;
    proxy.wait_cached("/v1/chat/completions", &body, &[]).await;

    let mut warmer = body.clone();
    warmer["temperature"] = json!(0.9);
    assert_eq!(proxy.chat(&warmer).await.cache_status(), "miss");

    let mut tools = body.clone();
    tools["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    assert_eq!(proxy.chat(&tools).await.cache_status(), "miss");

    let other_key = proxy
        .chat_with(&body, &[("authorization", "Bearer sk-test-b")])
        .await;
    assert_eq!(
        other_key.cache_status(),
        "miss",
        "namespaces follow the credential"
    );

    let other_ns = proxy
        .chat_with(&body, &[("x-cache-namespace", "team-b")])
        .await;
    assert_eq!(other_ns.cache_status(), "miss");

    // Fields outside the key do not split entries.
    let mut user = body.clone();
    user["user"] = json!("someone");
    assert_eq!(proxy.chat(&user).await.cache_status(), "hit");
    assert_eq!(mock.chat_calls().await, 5);
}

#[tokio::test]
async fn no_store_stores_nothing_and_no_cache_refreshes() {
    let (mock, proxy) = setup().await;
    let body = chat_body("no-store");
    let r = proxy
        .chat_with(&body, &[("cache-control", "no-store")])
        .await;
    assert_eq!(r.status, 200);
    let probe = proxy
        .chat_with(&body, &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(probe.status, 504, "nothing was stored");
    assert_eq!(probe.json()["error"]["code"], "not_cached");

    let body = chat_body("no-cache");
    let original = proxy.chat(&body).await;
    proxy.wait_cached("/v1/chat/completions", &body, &[]).await;
    let refreshed = proxy
        .chat_with(&body, &[("cache-control", "no-cache")])
        .await;
    assert_eq!(refreshed.cache_status(), "bypass");
    assert_ne!(refreshed.json()["id"], original.json()["id"]);
    // Wait until the refreshed entry replaced the original.
    let mut hit = proxy.chat(&body).await;
    for _ in 0..500 {
        if hit.json()["id"] == refreshed.json()["id"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        hit = proxy.chat(&body).await;
    }
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.json()["id"], refreshed.json()["id"]);
    assert_eq!(mock.chat_calls().await, 3);
}

#[tokio::test]
async fn max_age_rejects_older_entries() {
    let (mock, proxy) = setup().await;
    let body = chat_body("max-age");
    proxy.chat(&body).await;
    proxy.wait_cached("/v1/chat/completions", &body, &[]).await;
    let r = proxy
        .chat_with(
            &body,
            &[
                ("cache-control", "max-age=0"),
                ("cache-control", "no-store"),
            ],
        )
        .await;
    assert_eq!(r.cache_status(), "miss");
    assert_eq!(
        proxy
            .chat_with(&body, &[("cache-control", "max-age=3600")])
            .await
            .cache_status(),
        "hit"
    );
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn custom_key_replaces_the_body_hash() {
    let (mock, proxy) = setup().await;
    let a = chat_body("custom-a");
    let b = chat_body("custom-b");
    let first = proxy.chat_with(&a, &[("x-cache-key", "greeting")]).await;
    proxy
        .wait_cached("/v1/chat/completions", &a, &[("x-cache-key", "greeting")])
        .await;
    let second = proxy.chat_with(&b, &[("x-cache-key", "greeting")]).await;
    assert_eq!(second.cache_status(), "hit");
    assert_eq!(second.upstream_json(), first.upstream_json());
    assert_eq!(mock.chat_calls().await, 1);
}

#[tokio::test]
async fn unknown_fields_reach_upstream_and_the_extension_does_not() {
    let (mock, proxy) = setup().await;
    let mut body = chat_body("fidelity");
    body["some_vendor_field"] = json!({"nested": [1, 2.5, "x"]});
    body["cache"] = json!({"ttl": 60});
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 200);
    let last = mock.last().await;
    assert_eq!(last["some_vendor_field"], json!({"nested": [1, 2.5, "x"]}));
    assert!(
        last.get("cache").is_none(),
        "the cache extension is stripped"
    );
    assert_eq!(last["messages"], body["messages"]);

    // Without edits the caller's bytes are forwarded verbatim.
    let raw =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"verbatim"}],"x":1.50}"#;
    proxy
        .post("/v1/chat/completions")
        .body(raw)
        .send()
        .await
        .unwrap();
    let last = mock.last().await;
    assert_eq!(last["x"], json!(1.5));
    let headers = mock.last_headers().await;
    assert_eq!(
        headers["authorization"], "Bearer sk-test-a",
        "BYOK forwards the caller key"
    );
}

#[tokio::test]
async fn provider_prefix_is_stripped_upstream() {
    let (mock, proxy) = setup().await;
    let mut body = chat_body("prefix");
    body["model"] = json!("mock/gpt-4o-mini");
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 200);
    assert_eq!(mock.last().await["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn upstream_errors_pass_through_and_are_not_cached() {
    let (mock, proxy) = setup().await;
    let mut body = chat_body("err500");
    body["model"] = json!("mock-error-500");
    let first = proxy.chat(&body).await;
    assert_eq!(first.status, 500);
    assert_eq!(first.json()["error"]["code"], "mock_500");
    let second = proxy.chat(&body).await;
    assert_eq!(second.status, 500);
    assert_eq!(mock.chat_calls().await, 2, "errors are never cached");

    body["model"] = json!("mock-error-429");
    let limited = proxy.chat(&body).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn truncated_upstream_body_is_a_502_and_not_cached() {
    let (mock, proxy) = setup().await;
    let mut body = chat_body("cut");
    body["model"] = json!("mock-cut-stream");
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.bytes));
    assert_eq!(r.json()["error"]["type"], "upstream_error");
    proxy.chat(&body).await;
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_errors() {
    let (mock, proxy) = setup().await;
    let send = |body: &'static str| {
        let req = proxy.post("/v1/chat/completions").body(body);
        async move { Reply::from(req.send().await.unwrap()).await }
    };
    let r = send("{not json").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("parse the JSON"));
    let r = send(r#"{"messages":[{"role":"user","content":"x"}]}"#).await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("model"))
    );
    let r = send(r#"{"model":"m"}"#).await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("messages"))
    );
    let r = send(r#"{"model":"m","messages":"hi"}"#).await;
    assert_eq!(r.status, 400);
    let r = send(r#"{"model":5,"messages":[{"role":"user","content":"x"}]}"#).await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("model"))
    );
    let r =
        send(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#).await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("stream"))
    );
    let r = send("[1,2]").await;
    assert_eq!(r.status, 400);
    let r =
        send(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"cache":{"ttl":"soon"}}"#)
            .await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("cache.ttl"))
    );
    assert_eq!(
        mock.calls().await["total"],
        0,
        "nothing bad reaches upstream"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.server.body_limit_bytes = 1024;
    let proxy = Proxy::start(config).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn unknown_model_without_default_is_404() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.providers[0].models = vec!["gpt-*".into()];
    config.routing.default_provider = None;
    let proxy = Proxy::start(config).await;
    let mut body = chat_body("unknown-model");
    body["model"] = json!("claude-9");
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert_eq!(r.json()["error"]["param"], "model");
}

#[tokio::test]
async fn unreachable_upstream_is_502_and_slow_upstream_is_504() {
    // A port with nothing listening: bind, note, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = Proxy::start(config_for(&format!("http://127.0.0.1:{port}"))).await;
    let r = proxy.chat(&chat_body("dead")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream_unreachable");

    let mock = Mock::start_with(&["--slow-ms", "5000"]).await;
    let mut config = config_for(&mock.url);
    config.server.upstream_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(config).await;
    let mut body = chat_body("slow");
    body["model"] = json!("mock-slow");
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn with_caching_off_streams_are_forwarded_as_bypass() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.cache.enabled = false;
    let proxy = Proxy::start(config).await;
    let mut body = chat_body("stream");
    body["stream"] = json!(true);
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.cache_status(), "bypass");
    assert!(r.header("x-cache-key").is_none());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let text = String::from_utf8_lossy(&r.bytes);
    assert!(text.contains("chat.completion.chunk"));
    assert!(text.trim_end().ends_with("data: [DONE]"));
    proxy.chat(&body).await;
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn embeddings_are_cached() {
    let (mock, proxy) = setup().await;
    let body = json!({"model": "text-embedding-3-small", "input": ["alpha", "beta"], "encoding_format": "float"});
    let send = || async {
        Reply::from(
            proxy
                .post("/v1/embeddings")
                .body(body.to_string())
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let first = send().await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["data"].as_array().unwrap().len(), 2);
    proxy.wait_cached("/v1/embeddings", &body, &[]).await;
    let second = send().await;
    assert_eq!(second.cache_status(), "hit");
    assert_eq!(
        second.upstream_json()["data"],
        first.upstream_json()["data"]
    );
    assert_eq!(mock.calls().await["embeddings"], 1);
    let r = Reply::from(
        proxy
            .post("/v1/embeddings")
            .body(r#"{"model":"e"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("input"))
    );
}

#[tokio::test]
async fn models_health_and_ready() {
    let (mock, proxy) = setup().await;
    let models = Reply::from(
        proxy
            .http
            .get(format!("{}/v1/models", proxy.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["object"], "list");
    assert_eq!(mock.calls().await["models"], 1);
    for path in ["/health", "/ready"] {
        let r = proxy
            .http
            .get(format!("{}{path}", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = Reply::from(
        proxy
            .http
            .get(format!("{}/v2/nothing", proxy.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "unknown_route");
}

#[tokio::test]
async fn caller_keys_are_enforced_when_configured() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.server.api_keys = vec!["sk-test-a".into()];
    let proxy = Proxy::start(config).await;
    assert_eq!(proxy.chat(&chat_body("auth")).await.status, 200);
    let wrong = proxy
        .chat_with(&chat_body("auth"), &[("authorization", "Bearer nope")])
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["code"], "invalid_api_key");
    let none = Reply::from(
        proxy
            .http
            .post(format!("{}/v1/chat/completions", proxy.url))
            .body(chat_body("auth").to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(none.status, 401);
    assert_eq!(mock.chat_calls().await, 1);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let mock = Mock::start_with(&["--latency-ms", "300"]).await;
    let mut proxy = Proxy::start(config_for(&mock.url)).await;
    let req = proxy
        .post("/v1/chat/completions")
        .body(chat_body("shutdown").to_string());
    let in_flight = tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    // Wait until the request has reached the upstream, then stop.
    for _ in 0..500 {
        if mock.calls().await["chat"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let server = proxy.shutdown();
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    server.await.unwrap().unwrap();
}
