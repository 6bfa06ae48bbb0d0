//! `POST /v1/batch/chat/completions` against a real reprise and the mock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{chat_body, config_for, Mock, Proxy, Reply};
use serde_json::{json, Value};

async fn batch(proxy: &Proxy, requests: Value) -> Reply {
    Reply::from(
        proxy
            .post("/v1/batch/chat/completions")
            .body(json!({ "requests": requests }).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn two_cached_and_two_identical_items_make_two_upstream_calls() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let (a, b, c, d) = (
        chat_body("batch-a"),
        chat_body("batch-b"),
        chat_body("batch-c"),
        chat_body("batch-d"),
    );
    for body in [&a, &b] {
        proxy.chat(body).await;
        proxy.wait_cached("/v1/chat/completions", body, &[]).await;
    }
    let before = mock.chat_calls().await;

    let reply = batch(&proxy, json!([a, c, b, c, d])).await;
    assert_eq!(reply.status, 200);
    let answer = reply.json();
    assert_eq!(
        mock.chat_calls().await - before,
        2,
        "only c and d go upstream"
    );
    assert_eq!(answer["object"], "batch.result");
    let results = answer["results"].as_array().unwrap();
    let caches: Vec<&str> = results
        .iter()
        .map(|r| r["cache"].as_str().unwrap())
        .collect();
    assert_eq!(caches, ["hit", "miss", "hit", "coalesced", "miss"]);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(r["status"], 200);
        assert_eq!(r["response"]["object"], "chat.completion");
        assert!(r["response"]["routing_metadata"]["cost"].is_object(), "{r}");
    }
    // The copy is the same answer, and cost nothing.
    assert_eq!(
        results[1]["response"]["choices"],
        results[3]["response"]["choices"]
    );
    assert_eq!(
        results[3]["response"]["routing_metadata"]["cost"]["usd"],
        0.0
    );
    let total = &answer["routing_metadata"]["cost"];
    let spent: f64 = results
        .iter()
        .map(|r| {
            r["response"]["routing_metadata"]["cost"]["usd"]
                .as_f64()
                .unwrap()
        })
        .sum();
    assert!((total["usd"].as_f64().unwrap() - spent).abs() < 1e-9);
    assert!(total["usd"].as_f64().unwrap() > 0.0);
    assert!(total["cache_savings_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(answer["counts"]["hit"], 2);
}

#[tokio::test]
async fn one_bad_item_fails_only_its_slot() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let good = chat_body("batch-good");
    let mut streaming = chat_body("batch-stream");
    streaming["stream"] = json!(true);
    let reply = batch(
        &proxy,
        json!([{"model": "gpt-4o-mini"}, good, streaming, "not an object"]),
    )
    .await;
    assert_eq!(reply.status, 200);
    let results = reply.json()["results"].as_array().unwrap().clone();
    assert_eq!(results[0]["status"], 400);
    assert_eq!(results[0]["error"]["param"], "messages");
    assert_eq!(results[1]["status"], 200);
    assert_eq!(results[2]["status"], 400);
    assert_eq!(results[2]["error"]["param"], "stream");
    assert_eq!(results[3]["status"], 400);
    assert_eq!(mock.chat_calls().await, 1);
}

#[tokio::test]
async fn batch_size_and_shape_are_checked() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.batch.max_items = 2;
    let proxy = Proxy::start(config).await;
    let three = json!([chat_body("1"), chat_body("2"), chat_body("3")]);
    let reply = batch(&proxy, three).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["param"], "requests");
    assert_eq!(batch(&proxy, json!([])).await.status, 400);
    let reply = Reply::from(
        proxy
            .post("/v1/batch/chat/completions")
            .body("{\"items\": []}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 400);
    let unauthorized = Reply::from(
        proxy
            .http
            .post(format!("{}/v1/batch/chat/completions", proxy.url))
            .body(json!({"requests": [chat_body("x")]}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    // An open proxy (no api_keys) accepts anonymous callers.
    assert_eq!(unauthorized.status, 200);
    assert_eq!(mock.chat_calls().await, 1);
}
