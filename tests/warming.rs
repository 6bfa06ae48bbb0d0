//! Warming: `reprise cache export|import` between two running instances and
//! `reprise warm`, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{chat_body, config_for, Mock, Proxy};
use serde_json::Value;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reprise-warming-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `reprise ARGS…`; (success, stdout, stderr).
async fn reprise(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(args)
        .env_remove("REPRISE_API_KEY")
        .env_remove("REPRISE_URL")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn remaining(dump: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = dump
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            (
                line["key"].as_str().unwrap().to_owned(),
                line["remaining_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn export_from_a_and_import_into_b_answers_from_cache() {
    let dir = temp("move");
    let (mock_a, mock_b) = (Mock::start().await, Mock::start().await);
    let a = Proxy::start(config_for(&mock_a.url)).await;
    let b = Proxy::start(config_for(&mock_b.url)).await;
    let bodies: Vec<Value> = (0..3).map(|i| chat_body(&format!("move-{i}"))).collect();
    for body in &bodies {
        a.chat(body).await;
        a.wait_cached("/v1/chat/completions", body, &[]).await;
    }
    // Another caller's entry stays out of this caller's export.
    let foreign = chat_body("someone-else");
    a.chat_with(&foreign, &[("authorization", "Bearer sk-other")])
        .await;

    let dump = dir.join("dump.jsonl");
    let (ok, out, err) = reprise(&[
        "cache",
        "export",
        "--url",
        &a.url,
        "--api-key",
        "sk-test-a",
        "--out",
        dump.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("exported 3 entries"), "{out}");
    let exported = std::fs::read_to_string(&dump).unwrap();
    assert!(!exported.contains("someone-else"));

    let (ok, out, err) = reprise(&[
        "cache",
        "import",
        dump.to_str().unwrap(),
        "--url",
        &b.url,
        "--api-key",
        "sk-test-a",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("imported 3 entries, skipped 0"), "{out}");

    for body in &bodies {
        let reply = b.chat(body).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.cache_status(), "hit");
    }
    assert_eq!(mock_b.chat_calls().await, 0, "B never called its provider");

    // TTLs preserved: B's remaining lifetimes match A's within a second.
    let again = dir.join("again.jsonl");
    let (ok, _, err) = reprise(&[
        "cache",
        "export",
        "--url",
        &b.url,
        "--api-key",
        "sk-test-a",
        "--out",
        again.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{err}");
    let (before, after) = (
        remaining(&exported),
        remaining(&std::fs::read_to_string(&again).unwrap()),
    );
    assert_eq!(before.len(), 3);
    for ((ka, ra), (kb, rb)) in before.iter().zip(&after) {
        assert_eq!(ka, kb);
        assert!(ra.abs_diff(*rb) < 1000, "{ra} vs {rb}");
        assert!(*ra > 3_590_000, "{ra}");
    }
}

#[tokio::test]
async fn corrupt_and_foreign_lines_are_reported_and_skipped() {
    let dir = temp("corrupt");
    let mock = Mock::start().await;
    let a = Proxy::start(config_for(&mock.url)).await;
    let body = chat_body("corrupt");
    a.chat(&body).await;
    a.wait_cached("/v1/chat/completions", &body, &[]).await;
    let dump = dir.join("dump.jsonl");
    let (ok, _, err) = reprise(&[
        "cache",
        "export",
        "--url",
        &a.url,
        "--api-key",
        "sk-test-a",
        "--out",
        dump.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{err}");
    let good = std::fs::read_to_string(&dump).unwrap();
    let foreign = good.replacen("\"namespace\":\"", "\"namespace\":\"x", 1);
    let mixed = format!("{{not json\n{good}{foreign}");
    std::fs::write(&dump, mixed).unwrap();

    let mock_b = Mock::start().await;
    let b = Proxy::start(config_for(&mock_b.url)).await;
    let (ok, out, err) = reprise(&[
        "cache",
        "import",
        dump.to_str().unwrap(),
        "--url",
        &b.url,
        "--api-key",
        "sk-test-a",
        "--chunk-bytes",
        "1024",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("line 1: not a dump line"), "{out}");
    assert!(out.contains("line 3: namespace"), "{out}");
    assert!(out.contains("imported 1 entries, skipped 2"), "{out}");
    assert_eq!(b.chat(&body).await.cache_status(), "hit");
}

#[tokio::test]
async fn warm_replays_a_request_log() {
    let dir = temp("warm");
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let log = dir.join("requests.jsonl");
    let (one, two) = (chat_body("warm-1"), chat_body("warm-2"));
    let mut streamed = one.clone();
    streamed["stream"] = Value::Bool(true);
    let text = format!(
        "{}\n{}\nnot json\n{}\n",
        serde_json::json!({"timestamp": 1_764_547_200, "body": one}),
        two,
        streamed
    );
    std::fs::write(&log, text).unwrap();
    let (ok, out, err) = reprise(&[
        "warm",
        log.to_str().unwrap(),
        "--url",
        &proxy.url,
        "--api-key",
        "sk-test-a",
        "--concurrency",
        "1",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("line 3:"), "{out}");
    assert!(out.contains("4 requests:"), "{out}");
    assert!(out.contains("1 errors"), "{out}");
    for body in [&one, &two] {
        proxy.wait_cached("/v1/chat/completions", body, &[]).await;
    }
    let calls = mock.chat_calls().await;
    // Warm again: every line is a hit (line 4 is line 1 with `stream`,
    // dropped by warm), no upstream call.
    let (ok, out, err) = reprise(&[
        "warm",
        log.to_str().unwrap(),
        "--url",
        &proxy.url,
        "--api-key",
        "sk-test-a",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("3 hits, 0 misses"), "{out}");
    assert_eq!(mock.chat_calls().await, calls);
}

#[tokio::test]
async fn a_redis_backed_instance_exports_into_a_memory_one() {
    let dir = temp("redis");
    let redis = common::redis::RedisServer::start().await;
    let mock_a = Mock::start().await;
    let mut config = config_for(&mock_a.url);
    config.cache.backend = reprise::config::Backend::Redis;
    config.cache.redis.url = redis.url();
    config.cache.redis.op_timeout = std::time::Duration::from_secs(2);
    let a = Proxy::start(config).await;
    let body = chat_body("from-redis");
    a.chat(&body).await;
    a.wait_cached("/v1/chat/completions", &body, &[]).await;

    let dump = dir.join("dump.jsonl");
    let (ok, out, err) = reprise(&[
        "cache",
        "export",
        "--url",
        &a.url,
        "--api-key",
        "sk-test-a",
        "--out",
        dump.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("exported 1 entries"), "{out}");

    let mock_b = Mock::start().await;
    let b = Proxy::start(config_for(&mock_b.url)).await;
    let (ok, out, err) = reprise(&[
        "cache",
        "import",
        dump.to_str().unwrap(),
        "--url",
        &b.url,
        "--api-key",
        "sk-test-a",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("imported 1 entries"), "{out}");
    assert_eq!(b.chat(&body).await.cache_status(), "hit");
    assert_eq!(mock_b.chat_calls().await, 0);
}
