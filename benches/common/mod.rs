//! Realistic request and response bodies shared by the criterion benches.
//!
//! Deterministic (no randomness): the same sizes on every run, so numbers are
//! comparable between runs and machines.

#![allow(dead_code)]

use serde_json::{json, Value};

/// Filler prose with some variety (so LZ4 sees text-like, not trivially
/// repetitive, input).
pub fn prose(words: usize, seed: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "cache",
        "returns",
        "a",
        "stored",
        "response",
        "when",
        "request",
        "matches",
        "exactly",
        "provider",
        "latency",
        "token",
        "budget",
        "stream",
        "chunk",
        "model",
        "answer",
        "question",
        "context",
        "window",
        "summary",
        "document",
        "section",
        "customer",
        "invoice",
        "payment",
        "refund",
        "policy",
        "shipping",
        "address",
        "order",
        "status",
        "delayed",
        "because",
        "weather",
        "warehouse",
        "Berlin",
        "Lisbon",
        "2024",
        "42",
        "quickly",
        "carefully",
        "please",
        "explain",
        "why",
    ];
    let mut out = String::with_capacity(words * 7);
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for i in 0..words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i > 0 {
            out.push(if i % 17 == 0 { '.' } else { ' ' });
            if i % 17 == 0 {
                out.push(' ');
            }
        }
        out.push_str(WORDS[x % WORDS.len()]);
    }
    out
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_order_status",
            "description": "Look up the shipping status of a customer order by its id.",
            "parameters": {"type": "object", "properties": {
                "order_id": {"type": "string", "description": "The order id, e.g. A-1234"},
                "include_history": {"type": "boolean", "default": false}
            }, "required": ["order_id"], "additionalProperties": false}}},
        {"type": "function", "function": {
            "name": "issue_refund",
            "description": "Refund part or all of an order.",
            "parameters": {"type": "object", "properties": {
                "order_id": {"type": "string"},
                "amount_cents": {"type": "integer", "minimum": 1},
                "reason": {"type": "string", "enum": ["damaged", "late", "other"]}
            }, "required": ["order_id", "amount_cents", "reason"]}}}
    ])
}

/// A chat-completions request: a system prompt, `turns` user/assistant turns
/// (one with a tool call and its result), tools, and the usual sampling fields.
/// `words_per_turn` scales the body size.
pub fn chat_request(system_words: usize, turns: usize, words_per_turn: usize) -> Value {
    let mut messages = vec![json!({"role": "system", "content": prose(system_words, 1)})];
    for t in 0..turns {
        messages.push(json!({"role": "user", "content": prose(words_per_turn, 10 + t)}));
        if t == 0 && turns > 1 {
            messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc123", "type": "function", "function": {
                    "name": "get_order_status",
                    "arguments": "{\"order_id\":\"A-1234\",\"include_history\":true}"}}]}));
            messages.push(json!({"role": "tool", "tool_call_id": "call_abc123",
                "content": "{\"status\":\"delayed\",\"eta\":\"2024-06-03\",\"carrier\":\"DHL\"}"}));
        }
        if t + 1 < turns {
            messages.push(json!({"role": "assistant",
                "content": [{"type": "text", "text": prose(words_per_turn, 100 + t)}]}));
        }
    }
    json!({
        "model": "gpt-4o-mini",
        "messages": messages,
        "tools": tools(),
        "tool_choice": "auto",
        "temperature": 0.2,
        "top_p": 1.0,
        "max_tokens": 512,
        "seed": 7,
        "user": "bench-user",
        "stream": false
    })
}

/// A serialized [`chat_request`] of at least `target` bytes (the turns grow).
pub fn chat_request_of_size(target: usize, turns: usize) -> Vec<u8> {
    let mut words = 5;
    loop {
        let bytes = serde_json::to_vec(&chat_request(words * 2, turns, words)).unwrap();
        if bytes.len() >= target {
            return bytes;
        }
        words += 1.max(words * (target - bytes.len()) / target / 2);
    }
}

/// (label, serialized request) for the three sizes the key bench uses: a
/// two-message request, and ~4 KiB / ~100 KiB conversations (system prompt,
/// turns, a tool call and its result, two tools).
pub fn request_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let small = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}
        ],
        "temperature": 0
    });
    vec![
        ("small", serde_json::to_vec(&small).unwrap()),
        ("4KiB", chat_request_of_size(4 * 1024, 4)),
        ("100KiB", chat_request_of_size(100 * 1024, 12)),
    ]
}

/// A `chat.completion` response body of `target` bytes or a few more (the
/// assistant message grows to reach it).
pub fn completion_body(target: usize) -> Vec<u8> {
    let render = |words: usize| {
        serde_json::to_vec(&json!({
            "id": "chatcmpl-9x8y7z6w5v4u3t2s1r",
            "object": "chat.completion",
            "created": 1_717_000_000u64,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": prose(words, 3), "refusal": null},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1500, "completion_tokens": words,
                "total_tokens": 1500 + words,
                "prompt_tokens_details": {"cached_tokens": 1200, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default",
            "system_fingerprint": "fp_0123456789"
        }))
        .unwrap()
    };
    let mut words = 0;
    loop {
        let body = render(words);
        if body.len() >= target {
            return body;
        }
        words += 1.max((target - body.len()) / 8);
    }
}
