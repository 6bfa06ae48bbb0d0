//! Stream caching end to end: miss → hit replay, cross-format answers,
//! cut streams never stored, usage handling and single-flight for streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{chat_body, config_for, Mock, Proxy, Reply};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

/// The JSON chunks of an SSE body, and whether it ended with `[DONE]`.
fn chunks(reply: &Reply) -> (Vec<Value>, bool) {
    let text = String::from_utf8_lossy(&reply.bytes);
    let mut out = Vec::new();
    let mut done = false;
    for event in text.split("\n\n") {
        let Some(data) = event.trim().strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
        } else {
            out.push(serde_json::from_str(data).unwrap());
        }
    }
    (out, done)
}

/// Concatenated content, reasoning and tool-call arguments of choice 0.
fn assembled(chunks: &[Value]) -> (String, String, Vec<(String, String)>, Option<String>) {
    let (mut content, mut reasoning, mut finish) = (String::new(), String::new(), None);
    let mut tools: Vec<(String, String)> = Vec::new();
    for c in chunks {
        for choice in c["choices"].as_array().unwrap() {
            let d = &choice["delta"];
            content += d["content"].as_str().unwrap_or("");
            reasoning += d["reasoning_content"].as_str().unwrap_or("");
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().unwrap() as usize;
                if tools.len() <= i {
                    tools.push((String::new(), String::new()));
                }
                tools[i].0 += tc["function"]["name"].as_str().unwrap_or("");
                tools[i].1 += tc["function"]["arguments"].as_str().unwrap_or("");
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_owned());
            }
        }
    }
    (content, reasoning, tools, finish)
}

fn streamed(mut body: Value, usage: bool) -> Value {
    body["stream"] = json!(true);
    if usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test]
async fn a_streamed_request_twice_is_replayed_from_the_cache() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut body = streamed(chat_body("stream-twice"), false);
    body["model"] = json!("mock-reasoning");
    let first = proxy.chat(&body).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache_status(), "miss");
    let (c1, done1) = chunks(&first);
    assert!(done1);
    assert!(
        c1.iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "usage chunk hidden"
    );
    assert!(
        c1.iter().all(|c| c.get("usage").is_none()),
        "reprise's include_usage is invisible"
    );
    assert_eq!(
        mock.last().await["stream_options"]["include_usage"],
        true,
        "reprise asked upstream for usage"
    );
    assert_eq!(
        c1.last().unwrap()["routing_metadata"]["cache"]["status"],
        "miss"
    );

    proxy.wait_cached(CHAT, &body, &[]).await;
    let second = proxy.chat(&body).await;
    assert_eq!(second.cache_status(), "hit");
    assert!(second
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let (c2, done2) = chunks(&second);
    assert!(done2);
    let a1 = assembled(&c1);
    assert_eq!(assembled(&c2), a1);
    assert!(
        !a1.0.is_empty() && !a1.1.is_empty(),
        "content and reasoning"
    );
    assert_eq!(
        c2.last().unwrap()["routing_metadata"]["cache"]["status"],
        "hit"
    );
    assert_eq!(c1.len(), c2.len(), "original chunk boundaries kept");
    assert_eq!(mock.chat_calls().await, 1);
}

#[tokio::test]
async fn usage_requested_by_the_client_arrives_on_a_hit_too() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut body = streamed(chat_body("stream-usage"), true);
    body["model"] = json!("gpt-4o-mini");
    let first = proxy.chat(&body).await;
    let (c1, _) = chunks(&first);
    let usage1 = c1.last().unwrap()["usage"].clone();
    assert!(usage1["total_tokens"].as_u64().unwrap() > 0);
    assert!(
        c1.last().unwrap()["routing_metadata"]["cost"]["usd"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    proxy.wait_cached(CHAT, &body, &[]).await;
    let hit = proxy.chat(&body).await;
    let (c2, _) = chunks(&hit);
    let last = c2.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], usage1);
    assert_eq!(last["routing_metadata"]["cost"]["usd"], 0.0);
    assert!(
        last["routing_metadata"]["cost"]["cache_savings_usd"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[tokio::test]
async fn stream_and_json_entries_answer_each_other() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut base = chat_body("cross");
    base["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);

    // Streamed miss, then a JSON request: assembled completion.
    let stream_body = streamed(base.clone(), false);
    let s = proxy.chat(&stream_body).await;
    let (sc, _) = chunks(&s);
    let (_, _, tools, finish) = assembled(&sc);
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    proxy.wait_cached(CHAT, &stream_body, &[]).await;
    let json_hit = proxy.chat(&base).await;
    assert_eq!(json_hit.cache_status(), "hit");
    let message = &json_hit.json()["choices"][0]["message"];
    assert_eq!(json_hit.json()["object"], "chat.completion");
    assert_eq!(message["tool_calls"][0]["function"]["name"], tools[0].0);
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        tools[0].1
    );
    assert_eq!(json_hit.json()["choices"][0]["finish_reason"], "tool_calls");
    // A second JSON hit (served from the completion assembled on the first)
    // carries the same completion, with its own routing metadata.
    let again = proxy.chat(&base).await;
    assert_eq!(again.cache_status(), "hit");
    let (mut first, mut second) = (json_hit.json(), again.json());
    for v in [&mut first, &mut second] {
        v.as_object_mut().unwrap().remove("routing_metadata");
    }
    assert_eq!(first, second);
    assert_eq!(again.json()["routing_metadata"]["cache"]["status"], "hit");

    // JSON miss, then a streamed request: synthesized chunks.
    let mut other = chat_body("cross-2");
    other["model"] = json!("mock-reasoning");
    let j = proxy.chat(&other).await;
    proxy.wait_cached(CHAT, &other, &[]).await;
    let sbody = streamed(other.clone(), true);
    let replay = proxy.chat(&sbody).await;
    assert_eq!(replay.cache_status(), "hit");
    let (rc, done) = chunks(&replay);
    assert!(done);
    let (content, reasoning, _, finish) = assembled(&rc);
    let m = &j.json()["choices"][0]["message"];
    assert_eq!(content, m["content"].as_str().unwrap());
    assert_eq!(reasoning, m["reasoning_content"].as_str().unwrap());
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(rc[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(rc.last().unwrap()["usage"], j.json()["usage"]);
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn a_cut_stream_reaches_the_client_cut_and_is_not_cached() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut body = streamed(chat_body("cut"), false);
    body["model"] = json!("mock-cut-stream");
    let response = proxy
        .post(CHAT)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let read = response.bytes().await;
    assert!(read.is_err(), "the client sees the cut, not a clean end");
    let again = proxy
        .chat_with(&body, &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(again.status, 504, "never stored");
    let _ = proxy
        .post(CHAT)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    assert_eq!(
        mock.chat_calls().await,
        2,
        "the next identical request goes upstream"
    );
}

#[tokio::test]
async fn upstream_errors_on_streams_pass_through() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut body = streamed(chat_body("stream-500"), false);
    body["model"] = json!("mock-error-500");
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["code"], "mock_500");
}

#[tokio::test]
async fn concurrent_identical_streams_share_one_upstream_stream() {
    let mock = Mock::start_with(&["--latency-ms", "200", "--chunk-delay-ms", "20"]).await;
    let proxy = Arc::new(Proxy::start(config_for(&mock.url)).await);
    let body = streamed(chat_body("stream-flight"), false);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (proxy, body) = (proxy.clone(), body.clone());
            tokio::spawn(async move { proxy.chat(&body).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        results.push((r.cache_status().to_owned(), assembled(&chunks(&r).0)));
    }
    assert_eq!(
        mock.chat_calls().await,
        1,
        "{:?}",
        results.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    assert_eq!(results.iter().filter(|r| r.0 == "miss").count(), 1);
    assert!(results
        .iter()
        .all(|r| r.1 == results[0].1 && !r.1 .0.is_empty()));
}
