//! Unit tests of the key: canonicalization rules, scopes, custom keys.

use serde_json::{json, Value};

use super::*;

fn scope(ns: &str) -> KeyScope<'_> {
    KeyScope {
        namespace: ns,
        kind: EndpointKind::Chat,
        provider: "openai",
        model: "gpt-4o",
    }
}

fn key(body: Value) -> CacheKey {
    body_key(&scope("ns"), &Json::from_value(&body))
}

fn base() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2})
}

fn with(field: &str, value: Value) -> Value {
    let mut b = base();
    b[field] = value;
    b
}

#[test]
fn deterministic_and_hex() {
    assert_eq!(key(base()), key(base()));
    let k = key(base());
    assert_eq!(k.hex(), hex::encode(k.0));
}

/// The canonical form is a stored format (Redis entries outlive a
/// process): this pins it to a hash computed independently from the
/// format's definition (a 40-line Python encoder, quoted in the message of
/// the commit that introduced key v3), covering floats, integers, a long
/// string, an excluded field, content normalization, markers dropped on
/// a content block and a tools entry, and a schema property named
/// `cache_control` kept.
#[test]
fn canonical_form_is_stable() {
    let long = "You are terse. ".repeat(40);
    let k = key(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": long},
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"cache_control": 1}},
                   "cache_control": {"type": "ephemeral"}}],
        "temperature": 0.7, "max_tokens": 100, "top_p": 1.0, "user": "u1"
    }));
    assert_eq!(
        k.hex(),
        "1aa2c8ecb62ab2d31b20f8f4de605ccd3ac9af35285eaaf416b6c471d9e96d06"
    );
}

/// A repeated member keys like its last value (what the upstream's
/// JSON parser, like serde_json's `Map`, would see).
#[test]
fn repeated_members_key_as_their_last_value() {
    let parse = |text: &'static str| body_key(&scope("ns"), &Json::parse(text.as_bytes()).unwrap());
    let once =
        parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1}"#);
    let twice = parse(
        r#"{"temperature":0,"model":"m","messages":[{"role":"user","content":"x","content":"hi"}],"temperature":1}"#,
    );
    assert_eq!(once, twice);
    let other = parse(
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1,"temperature":0}"#,
    );
    assert_ne!(once, other);
}

#[test]
fn key_order_does_not_matter() {
    let a = json!({"temperature": 0.2, "messages": [{"content": "hi", "role": "user"}], "model": "gpt-4o"});
    assert_eq!(key(a), key(base()));
}

#[test]
fn numbers_are_normalized() {
    assert_eq!(key(with("seed", json!(0))), key(with("seed", json!(0.0))));
    assert_eq!(key(with("seed", json!(100))), key(with("seed", json!(1e2))));
    assert_ne!(key(with("seed", json!(1))), key(with("seed", json!(1.5))));
}

#[test]
fn string_content_equals_text_part_array() {
    let parts = with(
        "messages",
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
    );
    assert_eq!(key(parts), key(base()));
    let other = with(
        "messages",
        json!([{"role": "user", "content": [{"type": "text", "text": "ho"}]}]),
    );
    assert_ne!(key(other), key(base()));
}

#[test]
fn excluded_fields_do_not_change_the_key() {
    for (field, value) in [
        ("stream", json!(true)),
        ("stream_options", json!({"include_usage": true})),
        ("user", json!("u-1")),
        ("metadata", json!({"a": "b"})),
        ("store", json!(true)),
        ("prompt_cache_key", json!("pck")),
        ("prompt_cache_retention", json!("24h")),
        ("cache", json!({"ttl": 5})),
    ] {
        assert_eq!(key(with(field, value)), key(base()), "{field}");
    }
}

#[test]
fn null_fields_count_as_absent() {
    assert_eq!(key(with("seed", Value::Null)), key(base()));
}

#[test]
fn cache_control_markers_are_ignored() {
    let marked = with(
        "messages",
        json!([{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]),
    );
    assert_eq!(key(marked), key(base()));
}

#[test]
fn markers_are_dropped_only_where_providers_define_them() {
    let s = KeyScope {
        kind: EndpointKind::Messages,
        ..scope("ns")
    };
    let k = |b: Value| body_key(&s, &Json::from_value(&b));
    let marker = json!({"type": "ephemeral"});
    let body = |m: Option<&Value>| {
        let mut tool_result = json!({"type": "tool_result", "tool_use_id": "t1",
            "content": [{"type": "text", "text": "42"}]});
        let mut text = json!({"type": "text", "text": "go"});
        let mut system = json!({"type": "text", "text": "be brief"});
        let mut tool = json!({"name": "calc", "input_schema": {"type": "object"}});
        let mut b = json!({"model": "claude", "max_tokens": 10});
        if let Some(m) = m {
            tool_result["content"][0]["cache_control"] = m.clone();
            tool_result["cache_control"] = m.clone();
            text["cache_control"] = m.clone();
            system["cache_control"] = m.clone();
            tool["cache_control"] = m.clone();
            b["cache_control"] = m.clone();
        }
        b["system"] = json!([system]);
        b["tools"] = json!([tool]);
        b["messages"] = json!([
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "calc", "input": {"x": 1}}]},
            {"role": "user", "content": [tool_result, text]}
        ]);
        b
    };
    assert_eq!(k(body(Some(&marker))), k(body(None)));

    // Elsewhere `cache_control` is data and changes the key.
    let base = body(None);
    let mut in_input = base.clone();
    in_input["messages"][0]["content"][0]["input"]["cache_control"] = marker.clone();
    let mut in_message = base.clone();
    in_message["messages"][1]["cache_control"] = marker.clone();
    let mut in_schema = base.clone();
    in_schema["tools"][0]["input_schema"]["cache_control"] = marker.clone();
    let mut in_unknown = base.clone();
    in_unknown["vendor_options"] = json!({"cache_control": marker.clone()});
    let mut in_block_data = base.clone();
    in_block_data["messages"][1]["content"][1]["citations"] = json!([{"cache_control": 1}]);
    for (name, changed) in [
        ("tool_use.input", in_input),
        ("message object", in_message),
        ("schema", in_schema),
        ("unknown field", in_unknown),
        ("block data", in_block_data),
    ] {
        assert_ne!(k(changed), k(base.clone()), "{name}");
    }

    // Chat: tool-call arguments and tool message JSON are data.
    let args = |a: &str| {
        with(
            "messages",
            json!([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": a}}]},
                {"role": "tool", "tool_call_id": "c", "content": a}]),
        )
    };
    assert_ne!(key(args(r#"{"cache_control":1}"#)), key(args("{}")));
}

#[test]
fn answer_headers_change_the_key() {
    let digest = body_digest(EndpointKind::Chat, &Json::from_value(&base()));
    let s = scope("ns");
    let with = |pairs: &'static [(&'static str, &'static str)]| {
        scoped_key_with(&s, &digest, |sink| {
            for (n, v) in pairs {
                sink(n, v.as_bytes());
            }
        })
    };
    assert_eq!(with(&[]), scoped_key(&s, &digest));
    let beta = with(&[("anthropic-beta", "x")]);
    assert_ne!(beta, scoped_key(&s, &digest));
    assert_ne!(beta, with(&[("anthropic-beta", "y")]));
    assert_ne!(beta, with(&[("openai-beta", "x")]));
    assert_ne!(
        with(&[("a", "bc")]),
        with(&[("ab", "c")]),
        "length-prefixed"
    );
}

#[test]
fn cache_control_inside_a_schema_counts() {
    let tool = |props: Value| {
        with(
            "tools",
            json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": props}}}]),
        )
    };
    let a = tool(json!({"cache_control": {"type": "string"}}));
    let b = tool(json!({}));
    assert_ne!(key(a), key(b));
}

#[test]
fn output_affecting_fields_change_the_key() {
    let b = key(base());
    for (field, value) in [
        ("temperature", json!(0.3)),
        ("top_p", json!(0.5)),
        ("max_tokens", json!(10)),
        ("max_completion_tokens", json!(10)),
        ("stop", json!(["x"])),
        ("seed", json!(1)),
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(2)),
        ("logit_bias", json!({"1": 5})),
        ("presence_penalty", json!(0.1)),
        ("frequency_penalty", json!(0.1)),
        ("reasoning_effort", json!("low")),
        ("parallel_tool_calls", json!(false)),
        ("modalities", json!(["text"])),
        ("response_format", json!({"type": "json_object"})),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}]),
        ),
        ("tool_choice", json!("auto")),
        ("some_unknown_vendor_field", json!(1)),
    ] {
        assert_ne!(key(with(field, value)), b, "{field}");
    }
}

#[test]
fn messages_fields_change_the_key() {
    let b = key(base());
    for messages in [
        json!([{"role": "user", "content": "hi", "name": "bob"}]),
        json!([{"role": "system", "content": "hi"}]),
        json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]),
        json!([{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]),
        json!([{"role": "tool", "tool_call_id": "c", "content": "hi"}]),
    ] {
        assert_ne!(key(with("messages", messages)), b);
    }
}

#[test]
fn scope_parts_change_the_key() {
    let body = base();
    let map = &Json::from_value(&body);
    let b = body_key(&scope("ns"), map);
    assert_ne!(body_key(&scope("other"), map), b);
    let mut s = scope("ns");
    s.provider = "azure";
    assert_ne!(body_key(&s, map), b);
    let mut s = scope("ns");
    s.model = "gpt-4o-mini";
    assert_ne!(body_key(&s, map), b);
    let mut s = scope("ns");
    s.kind = EndpointKind::Embeddings;
    assert_ne!(body_key(&s, map), b);
}

#[test]
fn custom_key_stays_in_namespace() {
    let m = CustomKeyScope::Model;
    let a = custom_key(&scope("ns"), "k", m);
    assert_eq!(a, custom_key(&scope("ns"), "k", m));
    assert_ne!(a, custom_key(&scope("other"), "k", m));
    assert_ne!(a, custom_key(&scope("ns"), "k2", m));
    assert_ne!(a, key(base()));
}

#[test]
fn custom_key_scope_decides_about_the_model() {
    let other_model = KeyScope {
        model: "another-model",
        ..scope("ns")
    };
    let m = CustomKeyScope::Model;
    assert_ne!(
        custom_key(&scope("ns"), "k", m),
        custom_key(&other_model, "k", m)
    );
    let n = CustomKeyScope::Namespace;
    assert_eq!(
        custom_key(&scope("ns"), "k", n),
        custom_key(&other_model, "k", n)
    );
    assert_ne!(
        custom_key(&scope("ns"), "k", n),
        custom_key(&scope("ns"), "k", m)
    );
}

#[test]
fn anthropic_messages_normalize_system_and_keep_stream() {
    let s = KeyScope {
        kind: EndpointKind::Messages,
        ..scope("ns")
    };
    let k = |b: Value| body_key(&s, &Json::from_value(&b));
    let base = json!({"model": "claude", "max_tokens": 10, "system": "be brief", "messages": [{"role": "user", "content": "hi"}]});
    let blocks = json!({"model": "claude", "max_tokens": 10,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
    assert_eq!(k(blocks), k(base.clone()));
    let mut streamed = base.clone();
    streamed["stream"] = json!(true);
    assert_ne!(k(streamed), k(base.clone()));
    let mut meta = base.clone();
    meta["metadata"] = json!({"user_id": "u"});
    assert_eq!(k(meta), k(base));
}

#[test]
fn embeddings_exclude_user_only() {
    let s = KeyScope {
        kind: EndpointKind::Embeddings,
        ..scope("ns")
    };
    let k = |b: Value| body_key(&s, &Json::from_value(&b));
    let b = json!({"model": "e", "input": "x"});
    assert_eq!(
        k(json!({"model": "e", "input": "x", "user": "u"})),
        k(b.clone())
    );
    assert_ne!(
        k(json!({"model": "e", "input": "x", "encoding_format": "base64"})),
        k(b.clone())
    );
    assert_ne!(k(json!({"model": "e", "input": "y"})), k(b));
}
