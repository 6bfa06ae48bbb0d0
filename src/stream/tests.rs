//! Cross-module tests on hand-written streams in the shapes providers send:
//! live path (parse → forward → record), replay, assemble, synthesize.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::fixtures::*;
use super::*;

/// The live miss path: bytes in `pieces`, events forwarded, stream recorded.
fn live(pieces: &[&[u8]], wants_usage: bool) -> (Vec<u8>, ChatStreamRecorder) {
    let mut parser = SseParser::new();
    let mut recorder = ChatStreamRecorder::new(1 << 20);
    let mut client = Vec::new();
    for piece in pieces {
        for event in parser.push(piece) {
            recorder.observe(&event);
            if let Some(bytes) = client_event(&event, wants_usage) {
                client.extend_from_slice(&bytes);
            }
        }
    }
    let end = parser.finish();
    client.extend_from_slice(&end.leftover);
    recorder.observe_end(&end);
    (client, recorder)
}

fn stored_of(body: &str) -> StoredStream {
    let (_, recorder) = live(&[body.as_bytes()], true);
    assert_eq!(recorder.outcome(), StreamOutcome::Complete);
    recorder.into_stored().unwrap()
}

fn concat(events: &[Bytes]) -> String {
    events.iter().map(|b| String::from_utf8_lossy(b)).collect()
}

/// Without usage: the usage chunk gone, `,"usage":null` gone, the rest as sent.
fn without_usage(body: &str) -> String {
    let mut parser = SseParser::new();
    parser
        .push(body.as_bytes())
        .into_iter()
        .filter(|e| !e.data.contains("\"choices\":[],\"usage\":{"))
        .map(|e| String::from_utf8_lossy(&e.raw).replace(",\"usage\":null", ""))
        .collect()
}

#[test]
fn assemble_matches_the_non_stream_api() {
    for (name, body, expected) in fixtures() {
        let got = assemble(&stored_of(&body));
        assert_eq!(got, expected, "{name}");
        // Key order too (the bytes a client sees).
        assert_eq!(got.to_string(), expected.to_string(), "{name}");
    }
}

#[test]
fn live_path_at_every_split_point() {
    for (name, body, _) in fixtures() {
        let whole = stored_of(&body);
        let bytes = body.as_bytes();
        for cut in 0..=bytes.len() {
            let (client, recorder) = live(&[&bytes[..cut], &bytes[cut..]], true);
            assert_eq!(client, bytes, "{name} cut at {cut}");
            assert_eq!(
                recorder.into_stored().as_ref(),
                Some(&whole),
                "{name} cut at {cut}"
            );
        }
        // Byte by byte.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        let (client, _) = live(&singles, false);
        assert_eq!(
            String::from_utf8_lossy(&client),
            without_usage(&body),
            "{name}"
        );
    }
}

#[test]
fn observe_and_forward_is_observe_plus_client_event() {
    for (name, body, _) in fixtures() {
        for wants in [true, false] {
            let (client, recorder) = live(&[body.as_bytes()], wants);
            let mut parser = SseParser::new();
            let mut both = ChatStreamRecorder::new(1 << 20);
            let mut forwarded = Vec::new();
            for event in parser.push(body.as_bytes()) {
                if let Some(bytes) = both.observe_and_forward(&event, wants) {
                    forwarded.extend_from_slice(&bytes);
                }
            }
            assert_eq!(forwarded, client, "{name} wants={wants}");
            assert_eq!(both.into_stored(), recorder.into_stored(), "{name}");
        }
    }
    // Past the cap, still forwarded.
    let mut small = ChatStreamRecorder::new(1);
    let mut parser = SseParser::new();
    let body = openai_text();
    let n = parser
        .push(body.as_bytes())
        .iter()
        .filter_map(|e| small.observe_and_forward(e, false))
        .count();
    assert_eq!(n, 6);
    assert_eq!(small.outcome(), StreamOutcome::OverCap);
}

#[test]
fn client_event_strips_only_what_reprise_added() {
    let body = openai_text();
    let (with, _) = live(&[body.as_bytes()], true);
    assert_eq!(with, body.as_bytes());
    let (without, _) = live(&[body.as_bytes()], false);
    let without = String::from_utf8(without).unwrap();
    assert_eq!(without, without_usage(&body));
    assert!(!without.contains("usage"));
    assert!(without.ends_with(DONE));
    // A chunk with a real usage (DeepSeek's finish chunk) is forwarded as sent.
    let ds = deepseek();
    let (without, _) = live(&[ds.as_bytes()], false);
    let without = String::from_utf8(without).unwrap();
    assert!(without.contains("\"usage\":{\"prompt_tokens\":5"));
    assert!(!without.contains("\"usage\":null"));
    // Event names and ids survive re-framing.
    let mut parser = SseParser::new();
    let events =
        parser.push(b"event: chunk\nid: 3\ndata: {\"choices\":[{\"index\":0}],\"usage\":null}\n\n");
    let out = client_event(&events[0], false).unwrap();
    assert_eq!(
        &out[..],
        b"event: chunk\nid: 3\ndata: {\"choices\":[{\"index\":0}]}\n\n"
    );
    // Non-JSON data and comments are forwarded raw.
    let events = parser.push(b": ping\n\ndata: \"usage\" oops\n\n");
    for e in &events {
        assert_eq!(client_event(e, false).as_ref(), Some(&e.raw));
    }
}

#[test]
fn replay_reproduces_openai_bytes() {
    // serde_json's compact output is OpenAI's: a stored OpenAI stream replays
    // byte for byte, usage chunk included.
    for body in [
        openai_text(),
        openai_tools(),
        openai_logprobs(),
        openai_n2(),
        openai_refusal(),
    ] {
        let stored = stored_of(&body);
        assert_eq!(concat(&replay(&stored, true, None)), body);
        assert_eq!(concat(&replay(&stored, false, None)), without_usage(&body));
    }
}

#[test]
fn replay_round_trips_through_the_recorder() {
    for (name, body, _) in fixtures() {
        let stored = stored_of(&body);
        for wants in [true, false] {
            let events = replay(&stored, wants, None);
            assert_eq!(events.last().map(|b| &b[..]), Some(DONE_EVENT));
            let replayed = concat(&events);
            let (_, recorder) = live(&[replayed.as_bytes()], true);
            assert_eq!(recorder.outcome(), StreamOutcome::Complete, "{name}");
            let again = recorder.into_stored().unwrap();
            let mut want = assemble(&stored);
            if !wants && stored.usage.is_some() {
                want.as_object_mut().unwrap().shift_remove("usage");
            }
            assert_eq!(assemble(&again), want, "{name} wants={wants}");
            if wants {
                assert_eq!(again, stored, "{name}");
            }
        }
    }
}

#[test]
fn replay_routing_metadata_placement() {
    let meta = json!({"provider": "openai", "cache": {"status": "hit", "tier": "memory"}});
    let stored = stored_of(&openai_text());
    let parse = |b: &Bytes| -> Value {
        let s = std::str::from_utf8(b).unwrap();
        serde_json::from_str(s.strip_prefix("data: ").unwrap().trim_end()).unwrap_or(Value::Null)
    };

    let with = replay(&stored, true, Some(&meta));
    let usage_chunk = parse(&with[with.len() - 2]);
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["routing_metadata"], meta);
    let keys: Vec<&String> = usage_chunk.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "object",
            "created",
            "model",
            "service_tier",
            "system_fingerprint",
            "choices",
            "usage",
            "routing_metadata"
        ]
    );
    assert!(with[..with.len() - 2]
        .iter()
        .all(|b| !parse(b).to_string().contains("routing_metadata")));

    let without = replay(&stored, false, Some(&meta));
    assert_eq!(without.len(), stored.chunks.len() + 1);
    let last = parse(&without[without.len() - 2]);
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["routing_metadata"], meta);
    assert!(last.get("usage").is_none());
    assert!(without[..without.len() - 2]
        .iter()
        .all(|b| !parse(b).to_string().contains("routing_metadata")));

    // No stored usage: the metadata goes on the last chunk even when usage was asked.
    let ds = stored_of(&deepseek());
    let events = replay(&ds, true, Some(&meta));
    assert_eq!(events.len(), ds.chunks.len() + 1);
    assert_eq!(parse(&events[events.len() - 2])["routing_metadata"], meta);
}

#[test]
fn stored_stream_serde_round_trip() {
    let stored = stored_of(&openai_tools());
    let bytes = serde_json::to_vec(&stored).unwrap();
    let back: StoredStream = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, stored);
    let ds = stored_of(&deepseek());
    let text = serde_json::to_string(&ds).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v.get("usage").is_none());
    let back: StoredStream = serde_json::from_str(&text).unwrap();
    assert_eq!(back.usage, None);
}

#[test]
fn assemble_inverts_synthesize() {
    for (name, c) in completions() {
        let stored = synthesize(&c);
        let back = assemble(&stored);
        assert_eq!(back, c, "{name}");
        assert_eq!(back.to_string(), c.to_string(), "{name}: key order");
        // And the synthesized stream replays as a complete stream.
        let (_, recorder) = live(&[concat(&replay(&stored, true, None)).as_bytes()], true);
        assert_eq!(recorder.outcome(), StreamOutcome::Complete, "{name}");
    }
}

/// What OpenAI does not round-trip through a stream either (see synthesize.rs).
#[test]
fn assemble_synthesize_normalizations() {
    let base = |message: Value| {
        completion(
            json!([{"index": 0, "message": message, "logprobs": null, "finish_reason": "stop"}]),
        )
    };
    let cases = [
        // `annotations: []` is not streamed.
        (
            json!({"role": "assistant", "content": "a", "refusal": null, "annotations": []}),
            json!({"role": "assistant", "content": "a", "refusal": null}),
        ),
        // A missing refusal comes back as null.
        (
            json!({"role": "assistant", "content": "a"}),
            json!({"role": "assistant", "content": "a", "refusal": null}),
        ),
        // Empty content next to tool calls is null.
        (
            json!({"role": "assistant", "content": "",
                   "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
            json!({"role": "assistant", "content": null,
                   "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}],
                   "refusal": null}),
        ),
        // A tool call without type gets "function".
        (
            json!({"role": "assistant", "content": null,
                   "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "1"}}], "refusal": null}),
            json!({"role": "assistant", "content": null,
                   "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "1"}}],
                   "refusal": null}),
        ),
        // Null / empty message fields are dropped; an empty refusal is null.
        (
            json!({"role": "assistant", "content": "a", "refusal": "", "audio": null, "reasoning_content": ""}),
            json!({"role": "assistant", "content": "a", "refusal": null}),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            assemble(&synthesize(&base(input.clone()))),
            base(want),
            "{input}"
        );
    }
    let mut c = openai_text_expected();
    c["object"] = json!("something.else");
    c["usage"] = Value::Null;
    let back = assemble(&synthesize(&c));
    assert_eq!(back["object"], "chat.completion");
    assert!(back.get("usage").is_none());
    assert_eq!(synthesize(&json!("not an object")), StoredStream::default());
    // A completion that went out with reprise's metadata does not replay it.
    let mut c = openai_text_expected();
    c["routing_metadata"] = json!({"provider": "openai"});
    let stored = synthesize(&c);
    assert!(stored
        .chunks
        .iter()
        .all(|k| k.get("routing_metadata").is_none()));
    assert_eq!(assemble(&stored), openai_text_expected());
}

#[test]
fn synthesize_shape() {
    let stored = synthesize(&openai_tools_expected());
    assert_eq!(
        stored.usage,
        Some(serde_json::from_str(OPENAI_USAGE).unwrap())
    );
    let deltas: Vec<&Value> = stored
        .chunks
        .iter()
        .map(|c| &c["choices"][0]["delta"])
        .collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "content": null, "refusal": null}),
            &json!({"tool_calls": [{"index": 0, "id": "call_a1", "type": "function",
                                    "function": {"name": "get_weather", "arguments": ""}}]}),
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\": \"Paris\"}"}}]}),
            &json!({"tool_calls": [{"index": 1, "id": "call_b2", "type": "function",
                                    "function": {"name": "get_time", "arguments": ""}}]}),
            &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\": \"CET\"}"}}]}),
            &json!({}),
        ]
    );
    for chunk in &stored.chunks {
        let keys: Vec<&String> = chunk.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "id",
                "object",
                "created",
                "model",
                "service_tier",
                "system_fingerprint",
                "choices",
                "usage"
            ]
        );
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["usage"], Value::Null);
        let choice = &chunk["choices"][0];
        assert_eq!(
            choice.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["index", "delta", "logprobs", "finish_reason"]
        );
    }
    assert_eq!(
        stored.chunks[5]["choices"][0]["finish_reason"],
        "tool_calls"
    );
    // Text: role chunk with content "", one content delta carrying the logprobs.
    let stored = synthesize(&openai_logprobs_expected());
    assert_eq!(stored.chunks.len(), 3);
    assert_eq!(
        stored.chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    assert_eq!(
        stored.chunks[1]["choices"][0]["delta"],
        json!({"content": "Hi there"})
    );
    assert_eq!(
        stored.chunks[1]["choices"][0]["logprobs"],
        openai_logprobs_expected()["choices"][0]["logprobs"]
    );
    assert_eq!(stored.chunks[2]["choices"][0]["logprobs"], Value::Null);
}

/// Per choice index: concatenated content, reasoning, refusal, and tool calls
/// as (id, name, arguments) — computed straight from the chunks.
fn summary(stored: &StoredStream) -> Value {
    let mut out = Map::new();
    for choice in stored
        .chunks
        .iter()
        .filter_map(|c| c["choices"].as_array())
        .flatten()
    {
        let index = choice["index"].to_string();
        let entry = out
            .entry(index)
            .or_insert_with(|| json!({"content": "", "reasoning": "", "refusal": "", "calls": {}}));
        let delta = &choice["delta"];
        for (key, field) in [
            ("content", "content"),
            ("reasoning", "reasoning_content"),
            ("refusal", "refusal"),
        ] {
            if let Some(s) = delta[field].as_str() {
                let acc = entry[key].as_str().unwrap().to_owned() + s;
                entry[key] = acc.into();
            }
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let calls = entry["calls"].as_object_mut().unwrap();
            let slot = calls
                .entry(call["index"].to_string())
                .or_insert_with(|| json!({"id": "", "name": "", "arguments": ""}));
            for (key, value) in [
                ("id", &call["id"]),
                ("name", &call["function"]["name"]),
                ("arguments", &call["function"]["arguments"]),
            ] {
                if let Some(s) = value.as_str() {
                    let acc = slot[key].as_str().unwrap().to_owned() + s;
                    slot[key] = acc.into();
                }
            }
        }
    }
    Value::Object(out)
}

#[test]
fn synthesize_of_assemble_keeps_the_text() {
    for (name, body, _) in fixtures() {
        let stored = stored_of(&body);
        let again = synthesize(&assemble(&stored));
        assert_eq!(summary(&again), summary(&stored), "{name}");
        assert_eq!(
            again.usage.is_some(),
            assemble(&stored).get("usage").is_some(),
            "{name}"
        );
        assert_eq!(assemble(&again), assemble(&stored), "{name}");
    }
}

#[test]
fn non_stream_entry_served_as_stream() {
    // A cached non-stream completion, requested with stream=true.
    let c = openai_text_expected();
    let events = replay(&synthesize(&c), false, None);
    let text = concat(&events);
    assert!(!text.contains("usage"));
    let (_, recorder) = live(&[text.as_bytes()], true);
    assert_eq!(recorder.outcome(), StreamOutcome::Complete);
    let mut expected = c.clone();
    expected.as_object_mut().unwrap().shift_remove("usage");
    assert_eq!(assemble(&recorder.into_stored().unwrap()), expected);
}
