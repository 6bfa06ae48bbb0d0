//! Anthropic: native /v1/messages caching (JSON and SSE), OpenAI-format
//! requests to Claude models (translated both ways), prompt-cache injection,
//! usage normalization and exact costs with cache reads and writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Mock, Proxy, Reply};
use reprise::config::Config;
use serde_json::{json, Value};

const MESSAGES: &str = "/v1/messages";
const CHAT: &str = "/v1/chat/completions";

/// `claude-*` to the mock's Anthropic route, everything else to its OpenAI one.
fn config(mock: &Mock) -> Config {
    common::claude_config(&mock.url)
}

/// `/v1/messages` with `anthropic-version: 2023-06-01` and `headers`.
async fn messages(proxy: &Proxy, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut with = vec![("anthropic-version", "2023-06-01")];
    with.extend_from_slice(headers);
    proxy.messages(body, &with).await
}

async fn wait_messages_cached(proxy: &Proxy, body: &Value) {
    proxy
        .wait_messages_cached(body, &[("anthropic-version", "2023-06-01")])
        .await;
}

fn claude(tag: &str) -> Value {
    json!({
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 256,
        // Long enough to pass claude-sonnet-4's 1024-token cacheable minimum.
        "system": "You are a careful assistant who checks every fact twice. ".repeat(150),
        "tools": [{"name": "lookup", "description": "look things up", "input_schema": {"type": "object"}},
                  {"name": "calc", "description": "calculate", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "none"},
        "messages": [{"role": "user", "content": format!("hello {tag}")}]
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test]
async fn native_messages_are_cached_with_native_usage_and_exact_costs() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config(&mock)).await;
    let body = claude("native");
    let miss = messages(&proxy, &body, &[]).await;
    assert_eq!(miss.status, 200, "{}", String::from_utf8_lossy(&miss.bytes));
    assert_eq!(miss.cache_status(), "miss");
    let m = miss.json();
    assert_eq!(m["type"], "message");
    let u = &m["usage"];
    let (input, read, write, output) = (
        u["input_tokens"].as_f64().unwrap(),
        u["cache_read_input_tokens"].as_f64().unwrap(),
        u["cache_creation_input_tokens"].as_f64().unwrap(),
        u["output_tokens"].as_f64().unwrap(),
    );
    assert!(
        write > 0.0,
        "injected breakpoints made the mock write its cache: {u}"
    );
    // claude-sonnet-4: $3 input, $0.30 cache read, $3.75 5-minute write, $15 output per M.
    let usd = input * 3e-6 + read * 0.3e-6 + write * 3.75e-6 + output * 15e-6;
    let uncached = (input + read + write) * 3e-6 + output * 15e-6;
    let cost = &m["routing_metadata"]["cost"];
    assert!(close(cost["usd"].as_f64().unwrap(), usd), "{cost} vs {usd}");
    assert!(close(
        cost["cache_savings_usd"].as_f64().unwrap(),
        uncached - usd
    ));
    assert!(
        cost["cache_savings_usd"].as_f64().unwrap() < 0.0,
        "a first write costs more: reported honestly"
    );

    wait_messages_cached(&proxy, &body).await;
    let hit = messages(&proxy, &body, &[]).await;
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(hit.upstream_json(), miss.upstream_json());
    let total = (input + read + write + output) as u64;
    assert_eq!(
        hit.json()["routing_metadata"]["cache"]["tokens_saved"],
        total
    );
    let cost = &hit.json()["routing_metadata"]["cost"];
    assert_eq!(cost["usd"], 0.0);
    assert!(close(cost["cache_savings_usd"].as_f64().unwrap(), usd));
    assert_eq!(mock.calls().await["messages"], 1);

    // A second conversation with the same prefix reads the provider's cache.
    let other = messages(&proxy, &claude("native-2"), &[]).await;
    let u = &other.json()["usage"];
    assert!(u["cache_read_input_tokens"].as_u64().unwrap() > 0, "{u}");
    let read = u["cache_read_input_tokens"].as_f64().unwrap();
    let input = u["input_tokens"].as_f64().unwrap();
    let write = u["cache_creation_input_tokens"].as_f64().unwrap();
    let output = u["output_tokens"].as_f64().unwrap();
    let usd = input * 3e-6 + read * 0.3e-6 + write * 3.75e-6 + output * 15e-6;
    let savings = (input + read + write) * 3e-6 + output * 15e-6 - usd;
    let cost = &other.json()["routing_metadata"]["cost"];
    assert!(close(cost["cache_savings_usd"].as_f64().unwrap(), savings));
    assert!(cost["cache_savings_percent"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn breakpoints_are_injected_unless_the_caller_set_any() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config(&mock)).await;
    let mut body = claude("inject");
    // Tools long enough that the prefix up to the last tool is cacheable too.
    body["tools"][0]["description"] = json!("Looks up facts in the knowledge base. ".repeat(200));
    messages(&proxy, &body, &[]).await;
    let sent = mock.last().await;
    let system = sent["system"].as_array().unwrap();
    assert_eq!(
        system.last().unwrap()["cache_control"],
        json!({"type": "ephemeral"})
    );
    let tools = sent["tools"].as_array().unwrap();
    assert_eq!(
        tools.last().unwrap()["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert!(tools[0].get("cache_control").is_none());

    let mut own = claude("inject-own");
    own["messages"] = json!([{"role": "user", "content": [
        {"type": "text", "text": "mine", "cache_control": {"type": "ephemeral"}}]}]);
    messages(&proxy, &own, &[]).await;
    let sent = mock.last().await;
    assert_eq!(sent["system"], own["system"], "forwarded unchanged");
    assert_eq!(sent["tools"], own["tools"]);
    assert_eq!(sent["messages"], own["messages"]);
}

/// The SSE events of a body: (name, data).
fn events(reply: &Reply) -> Vec<(String, Value)> {
    String::from_utf8_lossy(&reply.bytes)
        .split("\n\n")
        .filter_map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = e.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

fn text_of(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect()
}

#[tokio::test]
async fn native_streams_are_replayed_faithfully() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config(&mock)).await;
    let mut body = claude("native-stream");
    body["system"] = json!("short");
    body["stream"] = json!(true);
    let first = messages(&proxy, &body, &[]).await;
    assert_eq!(first.status, 200);
    let e1 = events(&first);
    assert_eq!(e1.first().unwrap().0, "message_start");
    assert_eq!(e1.last().unwrap().0, "message_stop");
    assert_eq!(
        e1.last().unwrap().1["routing_metadata"]["cache"]["status"],
        "miss"
    );
    let hit = messages(&proxy, &body, &[]).await;
    assert_eq!(hit.cache_status(), "hit");
    let e2 = events(&hit);
    assert_eq!(text_of(&e2), text_of(&e1));
    assert!(!text_of(&e1).is_empty());
    let names = |e: &[(String, Value)]| e.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&e2), names(&e1), "same events in the same order");
    assert_eq!(
        e2.last().unwrap().1["routing_metadata"]["cache"]["status"],
        "hit"
    );
    assert_eq!(mock.calls().await["messages"], 1);

    // A cut stream is never stored.
    let mut cut = body.clone();
    cut["model"] = json!("claude/mock-cut-stream");
    let r = proxy
        .http
        .post(format!("{}{MESSAGES}", proxy.url))
        .header("x-api-key", "k")
        .body(cut.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.bytes().await.is_err());
    assert_eq!(
        messages(&proxy, &cut, &[("cache-control", "only-if-cached")])
            .await
            .status,
        504
    );
}

#[tokio::test]
async fn openai_requests_to_claude_are_translated_both_ways() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config(&mock)).await;
    let body = json!({
        "model": "claude-sonnet-4-20250514",
        "messages": [{"role": "system", "content": "Be precise."}, {"role": "user", "content": "weather in Paris"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
    });
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    assert_eq!(mock.calls().await["messages"], 1);
    let sent = mock.last().await;
    assert_eq!(sent["system"][0]["text"], "Be precise.");
    assert!(sent["max_tokens"].as_u64().unwrap() > 0);
    let c = r.json();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    let call = &c["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["query"].is_string());
    assert!(c["usage"]["prompt_tokens_details"]
        .get("cached_tokens")
        .is_some());
    assert!(c["routing_metadata"]["cost"]["usd"].as_f64().unwrap() > 0.0);

    // Streamed: Anthropic events become OpenAI chunks, cached as a chat stream.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["messages"][1]["content"] = json!("weather in Rome");
    let s = proxy.chat(&streamed).await;
    let text = String::from_utf8_lossy(&s.bytes).to_string();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let mut args = String::new();
    for line in text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
    {
        let chunk: Value = serde_json::from_str(line).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        for tc in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            args += tc["function"]["arguments"].as_str().unwrap_or("");
        }
    }
    let parsed: Value = serde_json::from_str(&args).unwrap();
    assert!(parsed["query"].is_string());
    let again = proxy.chat(&streamed).await;
    assert_eq!(again.cache_status(), "hit");
    assert_eq!(mock.calls().await["messages"], 2);

    // Unsupported OpenAI fields are refused, not silently dropped.
    let mut n2 = body.clone();
    n2["n"] = json!(2);
    let refused = proxy.chat(&n2).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["param"], "n");
}

#[tokio::test]
async fn openai_providers_get_a_prompt_cache_key_unless_the_caller_chose() {
    let mock = Mock::start().await;
    let mut config = config(&mock);
    config.providers[1].inject_prompt_cache = Some(true);
    let proxy = Proxy::start(config).await;
    let mut body = common::chat_body("pck");
    proxy.chat(&body).await;
    let key = mock.last().await["prompt_cache_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("reprise-"), "{key}");
    assert!(!key.contains("sk-test-a"));
    body["prompt_cache_key"] = json!("mine");
    body["messages"][0]["content"] = json!("another question");
    proxy.chat(&body).await;
    assert_eq!(mock.last().await["prompt_cache_key"], "mine");
}

#[tokio::test]
async fn deepseek_style_usage_is_normalized() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config(&mock)).await;
    let mut body = common::chat_body("deepseek");
    body["model"] = json!("deepseek-chat");
    body["messages"] = json!([{"role": "system", "content": "long shared prefix ".repeat(50)}, {"role": "user", "content": "one"}]);
    proxy.chat(&body).await;
    body["messages"][1]["content"] = json!("two");
    let r = proxy.chat(&body).await;
    let usage = &r.json()["usage"];
    let hit = usage["prompt_cache_hit_tokens"].as_u64().unwrap();
    assert!(hit > 0, "{usage}");
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
        hit
    );
}

#[tokio::test]
async fn wrong_route_and_upstream_errors() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config(&mock)).await;
    let mut body = claude("wrong");
    body["model"] = json!("gpt-4o");
    let r = messages(&proxy, &body, &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["type"],
        "error",
        "Anthropic-shaped error on the Anthropic route"
    );
    body["model"] = json!("claude/mock-error-500");
    let r = messages(&proxy, &body, &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["error"]["type"],
        "api_error",
        "passed through as sent"
    );
    let missing = messages(
        &proxy,
        &json!({"model": "claude-x", "messages": [{"role": "user", "content": "x"}]}),
        &[],
    )
    .await;
    assert_eq!(missing.status, 400);
    assert!(missing.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
    let _ = CHAT;
}
