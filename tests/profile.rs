//! Traces and `reprise profile`: a real reprise writes a trace, the real
//! binary profiles it, and its TOML loads as a valid config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{chat_body, config_for, Mock, Proxy};
use serde_json::{json, Value};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reprise-profile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn profile(files: &[&Path], format: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_reprise"))
        .arg("profile")
        .args(files)
        .args(["--format", format])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Waits (bounded) until `path` holds `n` lines: the writer thread flushes
/// as soon as it has caught up.
async fn wait_lines(path: &Path, n: usize) -> String {
    for _ in 0..1000 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("trace never reached {n} lines");
}

#[tokio::test]
async fn a_real_trace_has_no_text_and_profiles_into_a_loadable_config() {
    let dir = temp("roundtrip");
    let trace = dir.join("trace.jsonl");
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.trace.path = Some(trace.clone());
    let proxy = Proxy::start(config).await;

    let secret = "the-secret-prompt-marker-4711";
    let repeated = json!({"model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": secret}]});
    proxy.chat(&repeated).await;
    proxy
        .wait_cached("/v1/chat/completions", &repeated, &[])
        .await;
    for _ in 0..3 {
        assert_eq!(proxy.chat(&repeated).await.cache_status(), "hit");
    }
    let mut unique = chat_body("never-again");
    unique["model"] = json!("gpt-4o");
    proxy.chat(&unique).await;

    // 4 for the repeated prompt, the only-if-cached probes, 1 unique.
    let text = wait_lines(&trace, 5).await;
    assert!(!text.contains(secret), "prompt text in the trace");
    assert!(!text.contains("never-again"));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hit = lines.iter().find(|l| l["status"] == "hit").unwrap();
    assert_eq!(hit["model"], "gpt-4o-mini");
    assert_eq!(hit["tier"], "memory");
    assert_eq!(hit["key"].as_str().unwrap().len(), 64);
    assert_eq!(hit["ns"].as_str().unwrap().len(), 16);
    assert!(hit["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(hit["ttl_s"], 3600);
    let miss = lines.iter().find(|l| l["status"] == "miss").unwrap();
    assert!(miss["upstream_ms"].as_f64().is_some());

    let toml = profile(&[&trace], "toml").await;
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, &toml).unwrap();
    let loaded = reprise::Config::load(Some(&rules)).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let mini = loaded
        .cache
        .rules
        .iter()
        .find(|r| r.models == ["gpt-4o-mini"])
        .unwrap_or_else(|| panic!("{toml}"));
    assert_eq!(mini.mode, None, "{toml}");
    assert!(mini.ttl.is_some(), "{toml}");
    let big = loaded
        .cache
        .rules
        .iter()
        .find(|r| r.models == ["gpt-4o"])
        .unwrap();
    assert_eq!(big.mode, Some(reprise::cache::mode::Mode::Off));

    // The same report over the live window.
    let live: Value = proxy
        .http
        .get(format!("{}/v1/cache/profile", proxy.url))
        .header("authorization", "Bearer sk-test-a")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let models = live["models"].as_array().unwrap();
    let mini = models.iter().find(|m| m["model"] == "gpt-4o-mini").unwrap();
    assert!(mini["requests"].as_u64().unwrap() >= 4);
    assert_eq!(mini["distinct_keys"], 1);
    assert_eq!(mini["mode"], "cache");
    // Another caller sees none of it.
    let other: Value = proxy
        .http
        .get(format!("{}/v1/cache/profile", proxy.url))
        .header("authorization", "Bearer sk-other")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(other["requests"], 0);
}

/// A trace line as `reprise profile` reads it.
fn line(ts: f64, model: &str, key: u32) -> String {
    json!({"ts": ts, "ns": "0123456789abcdef", "endpoint": "chat", "provider": "openai",
        "model": model, "key": format!("{key:032x}{key:032x}"), "status": "miss",
        "http_status": 200, "usd": 0.002, "completion_tokens": 100})
    .to_string()
}

/// A streamed miss's line is written when the stream ends, with the same
/// tokens and cost as a JSON miss of the same prompt.
#[tokio::test]
async fn a_streamed_miss_line_carries_tokens_and_cost() {
    let dir = temp("streamed");
    let trace = dir.join("trace.jsonl");
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.trace.path = Some(trace.clone());
    let proxy = Proxy::start(config).await;

    let body = chat_body("streamed-trace");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = proxy
        .chat_with(&streamed, &[("x-cache-namespace", "streams")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.cache_status(), "miss");
    assert!(String::from_utf8_lossy(&r.bytes).contains("[DONE]"));
    let r = proxy
        .chat_with(&body, &[("x-cache-namespace", "json")])
        .await;
    assert_eq!(r.cache_status(), "miss");

    let text = wait_lines(&trace, 2).await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines.iter().all(|l| l["status"] == "miss"), "{text}");
    let (a, b) = (&lines[0], &lines[1]);
    assert_ne!(a["key"], b["key"], "two namespaces, two keys");
    for field in ["prompt_tokens", "completion_tokens"] {
        assert!(a[field].as_u64().unwrap() > 0, "{field}: {text}");
        assert_eq!(a[field], b[field], "{field}: {text}");
    }
    assert!(a["usd"].as_f64().unwrap() > 0.0, "{text}");
    assert_eq!(a["usd"], b["usd"], "{text}");
    assert_eq!(a["saved_usd"], b["saved_usd"], "{text}");
    assert!(a["upstream_ms"].as_f64().is_some() && b["upstream_ms"].as_f64().is_some());
}

#[tokio::test]
async fn known_repeat_intervals_give_the_expected_ttl() {
    let dir = temp("synthetic");
    let path = dir.join("synthetic.jsonl");
    let mut text = String::new();
    // "steady": 600 prompts, each asked once more 4 minutes later.
    // 1m catches nothing, 5m every repeat: 5m is the recommendation.
    for k in 0..600u32 {
        let t = f64::from(k * 30);
        text.push_str(&line(t, "steady", k));
        text.push('\n');
        text.push_str(&line(t + 240.0, "steady", k));
        text.push('\n');
    }
    // "daily": asked again after 2 hours: only 6h and longer catch it.
    for k in 0..50u32 {
        text.push_str(&line(f64::from(k), "daily", 1000 + k));
        text.push('\n');
        text.push_str(&line(7200.0 + f64::from(k), "daily", 1000 + k));
        text.push('\n');
    }
    // "unique": never repeats.
    for k in 0..30u32 {
        text.push_str(&line(f64::from(k), "unique", 5000 + k));
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();

    let report: Value = serde_json::from_str(&profile(&[&path], "json").await).unwrap();
    let model = |name: &str| {
        report["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == name)
            .unwrap()
            .clone()
    };
    let steady = model("steady");
    assert_eq!(steady["requests"], 1200);
    assert_eq!(steady["distinct_keys"], 600);
    assert_eq!(steady["recommended_ttl"], "5m");
    assert_eq!(steady["ttls"][0]["hits"], 0);
    assert_eq!(steady["ttls"][1]["hits"], 600);
    assert_eq!(steady["ttls"][6]["hits"], 600);
    assert_eq!(model("daily")["recommended_ttl"], "6h");
    assert_eq!(model("daily")["expected_hit_rate"], 0.5);
    let unique = model("unique");
    assert_eq!(unique["mode"], "off");
    assert_eq!(unique["recommended_ttl"], Value::Null);
    assert_eq!(report["requests"], 1200 + 100 + 30);

    let toml = profile(&[&path], "toml").await;
    assert!(
        toml.contains("models = [\"steady\"]\nttl = \"5m\""),
        "{toml}"
    );
    assert!(
        toml.contains("models = [\"unique\"]\nmode = \"off\""),
        "{toml}"
    );
}
