//! Model aliases across providers: two real mock-upstream processes (each
//! with its own imitation prefix cache) as providers `a` and `b`, behind
//! `[[routing.models]]` aliases with price-table overrides.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{config_for, Mock, Proxy, Reply};
use reprise::config::{AliasStrategy, Config, ModelAlias, ProviderConfig, ProviderKind};
use reprise::cost::ModelPriceOverride;
use serde_json::{json, Value};

fn price(model: &str, input: f64) -> ModelPriceOverride {
    ModelPriceOverride {
        model: model.into(),
        input: Some(input),
        output: Some(1.0),
        cache_read: Some(input / 10.0),
        supports_prompt_caching: Some(true),
        ..ModelPriceOverride::default()
    }
}

fn alias(name: &str, targets: &[&str], strategy: AliasStrategy) -> ModelAlias {
    ModelAlias {
        name: name.into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        strategy,
    }
}

fn config(a: &Mock, b: &Mock) -> Config {
    let mut config = config_for(&a.url);
    config.providers = vec![
        ProviderConfig::new("a", ProviderKind::Openai, &format!("{}/v1", a.url), &[]),
        ProviderConfig::new("b", ProviderKind::Openai, &format!("{}/v1", b.url), &[]),
    ];
    config.routing.default_provider = Some("a".into());
    config.routing.health.eject_after = 1;
    config.pricing.models = vec![
        // Nearly the same price: where the prefix is cached decides.
        price("a/m1", 1.0),
        price("b/m1", 1.05),
        // `a` so cheap that it wins even against a cached `b`.
        price("a/m2", 0.01),
        price("b/m2", 1.05),
    ];
    config.routing.models = vec![
        alias("balanced", &["a/m1", "b/m1"], AliasStrategy::CacheEconomics),
        alias("lopsided", &["a/m2", "b/m2"], AliasStrategy::CacheEconomics),
        alias("cheap", &["b/m2", "a/m2"], AliasStrategy::Cheapest),
        alias("first", &["a/m1", "b/m1"], AliasStrategy::Failover),
    ];
    config
}

fn turn(model: &str, c: &str, turn: usize) -> Value {
    let mut messages = vec![
        json!({"role": "system", "content": format!("You are terse. {}", "Rules. ".repeat(80))}),
        json!({"role": "user", "content": format!("Conversation {c}: {}", "Context. ".repeat(40))}),
    ];
    for t in 1..=turn {
        messages.push(json!({"role": "assistant", "content": format!("Answer {t}.")}));
        messages.push(json!({"role": "user", "content": format!("Follow-up {t} of {c}.")}));
    }
    json!({"model": model, "messages": messages})
}

fn route(reply: &Reply) -> Value {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    reply.json()["routing_metadata"]["route"].clone()
}

fn cached_tokens(reply: &Reply) -> u64 {
    reply.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn cache_economics_follows_the_cached_prefix_unless_another_is_cheaper() {
    let (a, b) = (
        Mock::start_with(&["--prefix-cache"]).await,
        Mock::start_with(&["--prefix-cache"]).await,
    );
    let proxy = Proxy::start(config(&a, &b)).await;

    // A fresh conversation goes to the cheaper target.
    let fresh = proxy.chat(&turn("balanced", "fresh", 0)).await;
    let r = route(&fresh);
    assert_eq!(r["target"], "a/m1");
    assert_eq!(r["alias"]["name"], "balanced");
    assert_eq!(r["alias"]["strategy"], "cache_economics");
    assert_eq!(r["alias"]["reason"], "cheapest");
    assert_eq!(r["alias"]["expected_usd"].as_array().unwrap().len(), 2);

    // A conversation started on `b` (named explicitly) stays there: its
    // prefix is cached at `b`, which makes the dearer target cheaper.
    let started = proxy.chat(&turn("b/m1", "warm", 0)).await;
    assert_eq!(started.status, 200);
    let next = proxy.chat(&turn("balanced", "warm", 1)).await;
    let r = route(&next);
    assert_eq!(r["target"], "b/m1");
    assert_eq!(r["alias"]["reason"], "prefix_cached");
    assert!(
        cached_tokens(&next) > 100,
        "b read the prefix from its cache"
    );
    assert_eq!(b.chat_calls().await, 2);

    // The same situation with a price table that makes `a` cheaper even
    // uncached: the request switches to `a`.
    assert_eq!(proxy.chat(&turn("b/m2", "pricey", 0)).await.status, 200);
    let next = proxy.chat(&turn("lopsided", "pricey", 1)).await;
    let r = route(&next);
    assert_eq!(r["target"], "a/m2");
    assert_eq!(r["alias"]["reason"], "cheaper_uncached");
    let costs = r["alias"]["expected_usd"].as_array().unwrap();
    let b_cost = costs.iter().find(|c| c["target"] == "b/m2").unwrap();
    assert!(b_cost["cached_share"].as_f64().unwrap() > 0.9);
    assert_eq!(cached_tokens(&next), 0, "a had never seen it");
}

#[tokio::test]
async fn cheapest_and_failover_aliases() {
    let (a, b) = (Mock::start().await, Mock::start().await);
    let proxy = Proxy::start(config(&a, &b)).await;

    let r = route(&proxy.chat(&turn("cheap", "x", 0)).await);
    assert_eq!(r["target"], "a/m2", "listed second, priced lower");
    assert_eq!(r["alias"]["reason"], "cheapest");

    let r = route(&proxy.chat(&turn("first", "y", 0)).await);
    assert_eq!(r["target"], "a/m1");
    assert_eq!(r["alias"]["reason"], "first_healthy");
    assert_eq!(a.last().await["model"], "m1", "the target's model is sent");

    // `a` fails (one upstream: nothing to retry on) and is ejected; the
    // alias then answers from `b`.
    a.fault(json!({"status": 503})).await;
    assert_eq!(proxy.chat(&turn("first", "y", 1)).await.status, 503);
    let r = route(&proxy.chat(&turn("first", "y", 2)).await);
    assert_eq!(r["target"], "b/m1");
    assert_eq!(r["alias"]["reason"], "only_healthy");

    // Entries are the alias's: an answer written by one target is a hit
    // whichever target the next request would pick.
    let body = turn("first", "y", 2);
    proxy.wait_cached("/v1/chat/completions", &body, &[]).await;
    assert_eq!(proxy.chat(&body).await.cache_status(), "hit");
}
