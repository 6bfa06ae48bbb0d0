//! Test fixtures: streams written by hand in the shapes providers send, and
//! the non-stream completions they correspond to.

use serde_json::{json, Map, Value};

/// The envelope of the OpenAI fixtures, in OpenAI's key order.
pub(super) const ENV: &str = r#""id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8""#;

/// One OpenAI chunk event for a single choice (`include_usage` on: `"usage":null`).
pub(super) fn ev(index: u32, delta: &str, finish: &str) -> String {
    ev_lp(index, delta, "null", finish)
}

pub(super) fn ev_lp(index: u32, delta: &str, logprobs: &str, finish: &str) -> String {
    format!(
        "data: {{{ENV},\"choices\":[{{\"index\":{index},\"delta\":{delta},\"logprobs\":{logprobs},\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
    )
}

pub(super) const OPENAI_USAGE: &str = r#"{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#;

pub(super) fn usage_ev() -> String {
    format!("data: {{{ENV},\"choices\":[],\"usage\":{OPENAI_USAGE}}}\n\n")
}

pub(super) const DONE: &str = "data: [DONE]\n\n";

/// The non-stream envelope around `choices`, in OpenAI's key order.
pub(super) fn completion(choices: Value) -> Value {
    json!({
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": choices,
        "usage": serde_json::from_str::<Value>(OPENAI_USAGE).unwrap(),
        "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
    })
}

pub(super) fn openai_text() -> String {
    [
        ev(
            0,
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ),
        ev(0, r#"{"content":"Hello"}"#, "null"),
        ev(0, r#"{"content":"! How"}"#, "null"),
        ev(0, r#"{"content":" can I help — é 日本?"}"#, "null"),
        ev(0, "{}", r#""stop""#),
        usage_ev(),
        DONE.into(),
    ]
    .concat()
}

pub(super) fn openai_text_expected() -> Value {
    completion(json!([{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I help — é 日本?", "refusal": null},
        "logprobs": null,
        "finish_reason": "stop",
    }]))
}

/// Two parallel tool calls, arguments split mid-token; the first tool call rides
/// on the role delta as OpenAI sends it.
pub(super) fn openai_tools() -> String {
    [
        ev(0, r#"{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a1","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null}"#, "null"),
        ev(0, r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]}"#, "null"),
        ev(0, r#"{"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"Par"}}]}"#, "null"),
        ev(0, r#"{"tool_calls":[{"index":0,"function":{"arguments":"is\"}"}}]}"#, "null"),
        ev(0, r#"{"tool_calls":[{"index":1,"id":"call_b2","type":"function","function":{"name":"get_time","arguments":""}}]}"#, "null"),
        ev(0, r#"{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":"}}]}"#, "null"),
        ev(0, r#"{"tool_calls":[{"index":1,"function":{"arguments":" \"CET\"}"}}]}"#, "null"),
        ev(0, "{}", r#""tool_calls""#),
        usage_ev(),
        DONE.into(),
    ]
    .concat()
}

pub(super) fn openai_tools_expected() -> Value {
    completion(json!([{
        "index": 0,
        "message": {
            "role": "assistant",
            "content": null,
            "tool_calls": [
                {"id": "call_a1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                {"id": "call_b2", "type": "function",
                 "function": {"name": "get_time", "arguments": "{\"tz\": \"CET\"}"}},
            ],
            "refusal": null,
        },
        "logprobs": null,
        "finish_reason": "tool_calls",
    }]))
}

pub(super) fn lp(token: &str, logprob: f64) -> String {
    let bytes: Vec<u8> = token.bytes().collect();
    let v = json!({"content": [{"token": token, "logprob": logprob, "bytes": bytes,
                                "top_logprobs": [{"token": token, "logprob": logprob, "bytes": bytes}]}],
                   "refusal": null});
    v.to_string()
}

pub(super) fn openai_logprobs() -> String {
    [
        ev_lp(
            0,
            r#"{"role":"assistant","content":"","refusal":null}"#,
            r#"{"content":[],"refusal":null}"#,
            "null",
        ),
        ev_lp(0, r#"{"content":"Hi"}"#, &lp("Hi", -0.0012), "null"),
        ev_lp(
            0,
            r#"{"content":" there"}"#,
            &lp(" there", -1.25e-5),
            "null",
        ),
        ev(0, "{}", r#""stop""#),
        usage_ev(),
        DONE.into(),
    ]
    .concat()
}

pub(super) fn openai_logprobs_expected() -> Value {
    let hi: Value = serde_json::from_str(&lp("Hi", -0.0012)).unwrap();
    let there: Value = serde_json::from_str(&lp(" there", -1.25e-5)).unwrap();
    completion(json!([{
        "index": 0,
        "message": {"role": "assistant", "content": "Hi there", "refusal": null},
        "logprobs": {"content": [hi["content"][0], there["content"][0]], "refusal": null},
        "finish_reason": "stop",
    }]))
}

/// `n=2`, the choices interleaved as OpenAI sends them.
pub(super) fn openai_n2() -> String {
    [
        ev(
            0,
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ),
        ev(
            1,
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ),
        ev(1, r#"{"content":"Bon"}"#, "null"),
        ev(0, r#"{"content":"Hel"}"#, "null"),
        ev(0, r#"{"content":"lo"}"#, "null"),
        ev(1, r#"{"content":"jour"}"#, "null"),
        ev(1, "{}", r#""length""#),
        ev(0, "{}", r#""stop""#),
        usage_ev(),
        DONE.into(),
    ]
    .concat()
}

pub(super) fn openai_n2_expected() -> Value {
    completion(json!([
        {"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": null},
         "logprobs": null, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "Bonjour", "refusal": null},
         "logprobs": null, "finish_reason": "length"},
    ]))
}

pub(super) fn openai_refusal() -> String {
    [
        ev(
            0,
            r#"{"role":"assistant","content":null,"refusal":""}"#,
            "null",
        ),
        ev(0, r#"{"refusal":"I'm sorry, "}"#, "null"),
        ev(0, r#"{"refusal":"I can't help with that."}"#, "null"),
        ev(0, "{}", r#""stop""#),
        usage_ev(),
        DONE.into(),
    ]
    .concat()
}

pub(super) fn openai_refusal_expected() -> Value {
    completion(json!([{
        "index": 0,
        "message": {"role": "assistant", "content": null, "refusal": "I'm sorry, I can't help with that."},
        "logprobs": null,
        "finish_reason": "stop",
    }]))
}

/// DeepSeek-reasoner: `reasoning_content` deltas, the other field `null`, no
/// usage-only chunk (usage on the finish chunk), no `service_tier`.
pub(super) fn deepseek() -> String {
    let env = r#""id":"ds-1","object":"chat.completion.chunk","created":1738000000,"model":"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08""#;
    let line = |delta: &str, finish: &str, usage: &str| {
        format!("data: {{{env},\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":{usage}}}\n\n")
    };
    [
        line(
            r#"{"role":"assistant","content":null,"reasoning_content":""}"#,
            "null",
            "null",
        ),
        line(
            r#"{"content":null,"reasoning_content":"Greet"}"#,
            "null",
            "null",
        ),
        line(
            r#"{"content":null,"reasoning_content":" back."}"#,
            "null",
            "null",
        ),
        line(
            r#"{"content":"Hi","reasoning_content":null}"#,
            "null",
            "null",
        ),
        line(
            r#"{"content":"!","reasoning_content":null}"#,
            "null",
            "null",
        ),
        line(
            r#"{"content":"","reasoning_content":null}"#,
            r#""stop""#,
            r#"{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}"#,
        ),
        DONE.into(),
    ]
    .concat()
}

pub(super) fn deepseek_expected() -> Value {
    json!({
        "id": "ds-1", "object": "chat.completion", "created": 1738000000, "model": "deepseek-reasoner",
        "choices": [{"index": 0,
                     // `refusal: null` is reprise's (OpenAI's) shape; DeepSeek omits it.
                     "message": {"role": "assistant", "content": "Hi!", "reasoning_content": "Greet back.", "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        "system_fingerprint": "fp_7e73fd9a08",
    })
}

/// The mock upstream's shape (src/bin/mock-upstream/stream.rs): role chunk without
/// `refusal`, reasoning in pieces, a word per delta, tool-call header + fragments.
pub(super) fn mock(tool: bool) -> String {
    let env = r#""id":"chatcmpl-mock-7","object":"chat.completion.chunk","created":1700000000,"model":"mock-reasoning-x","system_fingerprint":"fp_mock""#;
    let line = |delta: &str, finish: &str| {
        format!("data: {{{env},\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n")
    };
    let mut out = vec![
        line(r#"{"role":"assistant","content":""}"#, "null"),
        line(r#"{"reasoning_content":"Thinking "}"#, "null"),
        line(r#"{"reasoning_content":"about: "}"#, "null"),
        line(r#"{"reasoning_content":"hi"}"#, "null"),
    ];
    if tool {
        out.push(line(r#"{"tool_calls":[{"index":0,"id":"call_mock_1","type":"function","function":{"name":"search","arguments":""}}]}"#, "null"));
        for frag in [r#"{\"quer"#, r#"y\": \"h"#, r#"i\"}"#] {
            out.push(line(
                &format!(r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":"{frag}"}}}}]}}"#),
                "null",
            ));
        }
        out.push(line("{}", r#""tool_calls""#));
    } else {
        for word in ["Mock ", "answer ", "to: ", "hi ", "[0a1b2c3d]"] {
            out.push(line(&format!(r#"{{"content":"{word}"}}"#), "null"));
        }
        out.push(line("{}", r#""stop""#));
    }
    out.push(format!("data: {{{env},\"choices\":[],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":8,\"total_tokens\":9,\"prompt_tokens_details\":{{\"cached_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":3}}}}}}\n\n"));
    out.push(DONE.into());
    out.concat()
}

/// What the mock's non-stream rendering (`chat::render`) returns for the same answer.
pub(super) fn mock_expected(tool: bool) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert(
        "content".into(),
        if tool {
            Value::Null
        } else {
            "Mock answer to: hi [0a1b2c3d]".into()
        },
    );
    message.insert("reasoning_content".into(), "Thinking about: hi".into());
    if tool {
        message.insert(
            "tool_calls".into(),
            json!([{"id": "call_mock_1", "type": "function",
                    "function": {"name": "search", "arguments": "{\"query\": \"hi\"}"}}]),
        );
    }
    message.insert("refusal".into(), Value::Null);
    json!({
        "id": "chatcmpl-mock-7", "object": "chat.completion", "created": 1700000000,
        "model": "mock-reasoning-x",
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": if tool { "tool_calls" } else { "stop" }}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 8, "total_tokens": 9,
                  "prompt_tokens_details": {"cached_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 3}},
        "system_fingerprint": "fp_mock",
    })
}

pub(super) fn fixtures() -> Vec<(&'static str, String, Value)> {
    vec![
        ("openai_text", openai_text(), openai_text_expected()),
        ("openai_tools", openai_tools(), openai_tools_expected()),
        (
            "openai_logprobs",
            openai_logprobs(),
            openai_logprobs_expected(),
        ),
        ("openai_n2", openai_n2(), openai_n2_expected()),
        (
            "openai_refusal",
            openai_refusal(),
            openai_refusal_expected(),
        ),
        ("deepseek", deepseek(), deepseek_expected()),
        ("mock_text", mock(false), mock_expected(false)),
        ("mock_tool", mock(true), mock_expected(true)),
    ]
}

/// Completions in OpenAI's key order that round-trip exactly.
pub(super) fn completions() -> Vec<(&'static str, Value)> {
    let one = |message: Value, finish: &str| {
        completion(
            json!([{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}]),
        )
    };
    let mut extra = one(
        json!({"role": "assistant", "content": "x", "refusal": null}),
        "stop",
    );
    extra["choices"][0]["stop_reason"] = json!(128009);
    extra["prompt_filter_results"] = json!([{"prompt_index": 0, "content_filter_results": {}}]);
    vec![
        ("text", openai_text_expected()),
        ("tools", openai_tools_expected()),
        ("refusal", openai_refusal_expected()),
        ("logprobs", openai_logprobs_expected()),
        ("n2", openai_n2_expected()),
        ("deepseek", deepseek_expected()),
        ("mock_tool", mock_expected(true)),
        ("mock_text", mock_expected(false)),
        (
            "text_and_tool",
            one(
                json!({
            "role": "assistant", "content": "Let me check.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            "refusal": null}),
                "tool_calls",
            ),
        ),
        (
            "custom_tool",
            one(
                json!({
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_2", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}],
            "refusal": null}),
                "tool_calls",
            ),
        ),
        (
            "annotations",
            one(
                json!({
            "role": "assistant", "content": "See [1].", "refusal": null,
            "annotations": [{"type": "url_citation", "url_citation": {"start_index": 4, "end_index": 7,
                              "url": "https://example.com", "title": "Example"}}]}),
                "stop",
            ),
        ),
        (
            "audio",
            one(
                json!({
            "role": "assistant", "content": null, "refusal": null,
            "audio": {"id": "audio_1", "expires_at": 1741573883, "data": "UklGR", "transcript": "Hi"}}),
                "stop",
            ),
        ),
        (
            "empty_answer",
            one(
                json!({"role": "assistant", "content": "", "refusal": null}),
                "length",
            ),
        ),
        ("extras", extra),
    ]
}
