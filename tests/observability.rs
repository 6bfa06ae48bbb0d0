//! Cost on every response, cache modes, stats, the model directory and
//! Prometheus metrics, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{chat_body, config_for, Mock, Proxy, Reply};
use reprise::cache::mode::{CacheRule, Mode};
use serde_json::json;

const CHAT: &str = "/v1/chat/completions";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

async fn get(proxy: &Proxy, path: &str, key: &str) -> Reply {
    let r = proxy
        .http
        .get(format!("{}{path}", proxy.url))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    Reply::from(r).await
}

#[tokio::test]
async fn a_miss_is_priced_and_a_hit_saves_exactly_the_original_cost() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut body = chat_body("priced");
    body["model"] = json!("gpt-4o");
    let miss = proxy.chat(&body).await;
    let usage = miss.json()["usage"].clone();
    let (p, c) = (
        usage["prompt_tokens"].as_f64().unwrap(),
        usage["completion_tokens"].as_f64().unwrap(),
    );
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    // gpt-4o: $2.50 / M input, $10.00 / M output, nothing cached.
    let expected = p * 2.5e-6 + c * 10e-6;
    let cost = &miss.json()["routing_metadata"]["cost"];
    assert!(
        close(cost["usd"].as_f64().unwrap(), expected),
        "{cost} vs {expected}"
    );
    assert_eq!(cost["cache_savings_usd"].as_f64().unwrap(), 0.0);
    assert!(
        cost.get("cache_savings_percent").is_none(),
        "omitted when savings are 0"
    );
    assert!(close(
        miss.header("x-reprise-cost-usd").unwrap().parse().unwrap(),
        expected
    ));

    proxy.wait_cached(CHAT, &body, &[]).await;
    let hit = proxy.chat(&body).await;
    let cost = &hit.json()["routing_metadata"]["cost"];
    assert_eq!(cost["usd"].as_f64().unwrap(), 0.0);
    assert!(close(cost["cache_savings_usd"].as_f64().unwrap(), expected));
    assert_eq!(cost["cache_savings_percent"], 100);
    assert!(close(
        hit.header("x-reprise-savings-usd")
            .unwrap()
            .parse()
            .unwrap(),
        expected
    ));
}

#[tokio::test]
async fn unknown_models_get_no_cost_rather_than_a_guess() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let mut body = chat_body("unpriced");
    body["model"] = json!("my-private-model");
    let r = proxy.chat(&body).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["routing_metadata"].get("cost").is_none());
    assert!(r.header("x-reprise-cost-usd").is_none());
}

#[tokio::test]
async fn price_overrides_from_config_apply() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.pricing.models = serde_json::from_value(json!([
        {"model": "my-private-model", "provider": "local", "input": 1.0, "output": 2.0}
    ]))
    .unwrap();
    let proxy = Proxy::start(config).await;
    let mut body = chat_body("override");
    body["model"] = json!("my-private-model");
    let r = proxy.chat(&body).await;
    let usage = &r.json()["usage"];
    let expected = usage["prompt_tokens"].as_f64().unwrap() * 1e-6
        + usage["completion_tokens"].as_f64().unwrap() * 2e-6;
    assert!(close(
        r.json()["routing_metadata"]["cost"]["usd"]
            .as_f64()
            .unwrap(),
        expected
    ));
}

#[tokio::test]
async fn observe_mode_serves_nothing_but_counts_would_be_hits() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.cache.mode = Mode::Observe;
    let proxy = Proxy::start(config).await;
    let mut body = chat_body("observe");
    body["model"] = json!("gpt-4o-mini");
    let first = proxy.chat(&body).await;
    assert_eq!(first.cache_status(), "miss");
    // The entry is written off the response path; repeat until the lookup sees it.
    let mut second = proxy.chat(&body).await;
    for _ in 0..200 {
        if second.header("x-cache-observe") == Some("would-hit") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        second = proxy.chat(&body).await;
    }
    assert_eq!(second.cache_status(), "miss");
    assert_eq!(second.header("x-cache-observe"), Some("would-hit"));
    assert_ne!(
        second.json()["id"],
        first.json()["id"],
        "observe never serves from the cache"
    );
    let calls = mock.chat_calls().await;
    let stats = get(&proxy, "/v1/cache/stats", "sk-test-a").await.json();
    assert_eq!(
        stats["requests"].as_u64().unwrap(),
        calls,
        "every request went upstream"
    );
    assert!(stats["observe"]["would_be_hits"].as_u64().unwrap() >= 1);
    let first_cost = first.json()["routing_metadata"]["cost"]["usd"]
        .as_f64()
        .unwrap();
    let per_hit = stats["observe"]["would_save_usd"].as_f64().unwrap()
        / stats["observe"]["would_be_hits"].as_f64().unwrap();
    assert!(close(per_hit, first_cost), "{per_hit} vs {first_cost}");
    assert_eq!(stats["hits"]["total"], 0);
}

#[tokio::test]
async fn modes_per_model_rule() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.cache.rules = vec![
        CacheRule {
            models: vec!["off-*".into()],
            mode: Some(Mode::Off),
            ttl: None,
            semantic: None,
            bucket_size: None,
            ..CacheRule::default()
        },
        CacheRule {
            models: vec!["ro-*".into()],
            mode: Some(Mode::ReadOnly),
            ttl: None,
            semantic: None,
            bucket_size: None,
            ..CacheRule::default()
        },
        CacheRule {
            models: vec!["wo-*".into()],
            mode: Some(Mode::WriteOnly),
            ttl: None,
            semantic: None,
            bucket_size: None,
            ..CacheRule::default()
        },
    ];
    let proxy = Proxy::start(config).await;
    let with_model = |m: &str| {
        let mut b = chat_body(m);
        b["model"] = json!(m);
        b
    };
    let off = with_model("off-model");
    let r = proxy.chat(&off).await;
    assert_eq!(r.cache_status(), "bypass");
    assert!(r.header("x-cache-key").is_none());
    assert_eq!(proxy.chat(&off).await.cache_status(), "bypass");

    let ro = with_model("ro-model");
    assert_eq!(proxy.chat(&ro).await.cache_status(), "miss");
    let probe = proxy
        .chat_with(&ro, &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(probe.status, 504, "read_only never writes");

    let wo = with_model("wo-model");
    assert_eq!(proxy.chat(&wo).await.cache_status(), "bypass");
    assert_eq!(
        proxy.chat(&wo).await.cache_status(),
        "bypass",
        "write_only never serves"
    );
    assert_eq!(mock.chat_calls().await, 5);
}

#[tokio::test]
async fn stats_are_scoped_to_the_callers_namespace_and_admins_see_all() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    std::env::set_var("REPRISE_TEST_ADMIN_KEYS", "sk-admin");
    config.server.admin_keys_env = Some("REPRISE_TEST_ADMIN_KEYS".into());
    let proxy = Proxy::start(config).await;
    let body = chat_body("scoped");
    proxy.chat(&body).await;
    proxy.wait_cached(CHAT, &body, &[]).await;
    proxy.chat(&body).await;
    proxy
        .chat_with(
            &chat_body("other"),
            &[("authorization", "Bearer sk-test-b")],
        )
        .await;

    let a = get(&proxy, "/v1/cache/stats", "sk-test-a").await.json();
    assert_eq!(a["scope"], "namespace");
    assert_eq!(a["misses"], 1);
    assert!(a["hits"]["memory"].as_u64().unwrap() >= 2, "{a}");
    assert!(a["by_type"]["chat"].is_object());
    assert!(
        a["by_model"]["gpt-4o-mini"]["tokens_saved"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(a["usd"]["saved_by_cache"].as_f64().unwrap() > 0.0);
    assert!(a.get("tiers").is_none());

    let b = get(&proxy, "/v1/cache/stats", "sk-test-b").await.json();
    assert_eq!(b["requests"], 1);
    assert_eq!(b["misses"], 1);

    let admin = get(&proxy, "/v1/cache/stats", "sk-admin").await.json();
    assert_eq!(admin["scope"], "all");
    assert_eq!(admin["misses"], 2);
    assert!(admin["tiers"]["memory"]["entries"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn the_model_directory_lists_prices() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let dir = get(&proxy, "/v1/directory/models", "sk-test-a")
        .await
        .json();
    let models = dir["data"].as_array().unwrap();
    let gpt4o = models.iter().find(|m| m["model"] == "gpt-4o").unwrap();
    assert_eq!(gpt4o["input_price"], 2.5);
    assert_eq!(gpt4o["cache_read_price"], 1.25);
    assert_eq!(gpt4o["supports_prompt_caching"], true);
    let sonnet = models
        .iter()
        .find(|m| m["model"] == "claude-sonnet-4")
        .unwrap();
    assert_eq!(sonnet["cache_write_price"], 3.75);
    for provider in ["openai", "anthropic", "google", "deepseek"] {
        assert!(
            models.iter().any(|m| m["provider"] == provider),
            "{provider}"
        );
    }
}

fn counter(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v)
            | prometheus_parse::Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn scrape(proxy: &Proxy) -> prometheus_parse::Scrape {
    let text = proxy.metrics().await;
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

#[tokio::test]
async fn metrics_parse_and_move_with_requests() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    let before = scrape(&proxy).await;
    let body = chat_body("metrics");
    proxy.chat(&body).await;
    proxy.wait_cached(CHAT, &body, &[]).await;
    proxy.chat(&body).await;
    let after = scrape(&proxy).await;
    let hits = |s: &prometheus_parse::Scrape| {
        counter(
            s,
            "reprise_requests_total",
            &[("route", "chat"), ("cache", "hit")],
        )
    };
    let misses = |s: &prometheus_parse::Scrape| {
        counter(
            s,
            "reprise_requests_total",
            &[("route", "chat"), ("cache", "miss")],
        )
    };
    assert!(hits(&after) >= hits(&before) + 2.0);
    assert!(misses(&after) >= misses(&before) + 1.0);
    assert!(
        counter(&after, "reprise_tokens_saved_total", &[])
            > counter(&before, "reprise_tokens_saved_total", &[])
    );
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric == "reprise_overhead_seconds"));
    assert!(counter(&after, "reprise_cache_entries", &[("tier", "memory")]) >= 1.0);
    // No high-cardinality labels.
    for s in &after.samples {
        for (k, _) in s.labels.iter() {
            assert!(
                !["key", "namespace", "model"].contains(&k.as_str()),
                "label {k} on {}",
                s.metric
            );
        }
    }
}
