//! Replicas: a real reprise in front of three real mock-upstream processes
//! (each with its own imitation prefix cache): prefix affinity, spreading,
//! losing a replica, failover, ejection and the probe that brings a replica
//! back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{config_for, Mock, Proxy, Reply};
use reprise::config::Config;
use serde_json::{json, Value};

const CONVERSATIONS: usize = 30;

async fn replicas() -> Vec<Mock> {
    let mut mocks = Vec::new();
    for _ in 0..3 {
        mocks.push(Mock::start_with(&["--prefix-cache"]).await);
    }
    mocks
}

/// One provider `mock` whose `base_urls` are the three mocks.
fn config(mocks: &[Mock]) -> Config {
    let mut config = config_for(&mocks[0].url);
    config.providers[0].base_url = String::new();
    config.providers[0].base_urls = mocks.iter().map(|m| format!("{}/v1", m.url)).collect();
    config
}

/// Turn `turn` (0-based) of conversation `c`: the shared system prompt, the
/// conversation's own first question, and the history so far.
fn turn(c: usize, turn: usize) -> Value {
    let mut messages = vec![
        json!({"role": "system", "content": format!("You are a helpful assistant. {}", "Rules. ".repeat(60))}),
        json!({"role": "user", "content": format!("Conversation {c}: tell me about topic {c}. {}", "Details. ".repeat(30))}),
    ];
    for t in 1..=turn {
        messages.push(
            json!({"role": "assistant", "content": format!("Answer {t} of conversation {c}.")}),
        );
        messages.push(
            json!({"role": "user", "content": format!("Follow-up {t} in conversation {c}.")}),
        );
    }
    json!({"model": "gpt-4o-mini", "messages": messages})
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

fn replica(reply: &Reply) -> usize {
    route(reply)["replica"].as_u64().unwrap() as usize
}

async fn calls(mocks: &[Mock]) -> Vec<u64> {
    let mut out = Vec::new();
    for m in mocks {
        out.push(m.chat_calls().await);
    }
    out
}

#[tokio::test]
async fn a_conversation_stays_on_one_replica_and_openings_spread() {
    let mocks = replicas().await;
    let proxy = Proxy::start(config(&mocks)).await;
    let mut home: HashMap<usize, usize> = HashMap::new();
    for t in 0..3 {
        for c in 0..CONVERSATIONS {
            let reply = proxy.chat(&turn(c, t)).await;
            let r = route(&reply);
            assert_eq!(r["target"], "mock");
            assert_eq!(r["reason"], "affinity");
            assert_eq!(r["attempts"], 1);
            let at = replica(&reply);
            assert_eq!(*home.entry(c).or_insert(at), at, "conversation {c} moved");
            let cached = reply.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap();
            if t > 0 {
                // The replica holds the previous turn: everything but the new
                // exchange is read from its prefix cache.
                assert!(cached > 150, "turn {t} of {c}: {cached} cached tokens");
            }
        }
    }
    let used: HashSet<usize> = home.values().copied().collect();
    assert_eq!(used.len(), 3, "{CONVERSATIONS} openings use every replica");
    // The first ten openings alone already reach more than one replica.
    let first_ten: HashSet<usize> = (0..10).map(|c| home[&c]).collect();
    assert!(first_ten.len() >= 2, "{first_ten:?}");
    let per_mock = calls(&mocks).await;
    assert_eq!(per_mock.iter().sum::<u64>(), 3 * CONVERSATIONS as u64);
    for (i, n) in per_mock.iter().enumerate() {
        let homed = home.values().filter(|&&r| r == i).count() as u64;
        assert_eq!(
            *n,
            3 * homed,
            "replica {i} served exactly its conversations"
        );
    }
}

#[tokio::test]
async fn losing_a_replica_mid_run_moves_only_its_conversations() {
    let mut mocks = replicas().await;
    let proxy = Proxy::start(config(&mocks)).await;
    let mut home = Vec::new();
    for c in 0..CONVERSATIONS {
        home.push(replica(&proxy.chat(&turn(c, 0)).await));
    }
    let lost = home[0];
    mocks[lost].kill().await;

    for t in 1..3 {
        for (c, was) in home.iter().enumerate() {
            let reply = proxy.chat(&turn(c, t)).await;
            assert_eq!(reply.status, 200, "no client error (conversation {c})");
            let now = replica(&reply);
            if *was == lost {
                assert_ne!(now, lost);
            } else {
                assert_eq!(now, *was, "conversation {c} moved off a live replica");
                assert_eq!(route(&reply)["attempts"], 1);
            }
        }
    }
    // Once ejected (3 failures), the lost replica costs no more attempts.
    let reply = proxy.chat(&turn(0, 3)).await;
    assert_eq!(route(&reply)["attempts"], 1);
    assert_ne!(replica(&reply), lost);
}

#[tokio::test]
async fn failover_retries_once_before_the_first_byte_only() {
    let mocks = replicas().await;
    let mut cfg = config(&mocks);
    cfg.routing.health.eject_after = 100;
    let proxy = Proxy::start(cfg).await;
    let first = proxy.chat(&turn(1, 0)).await;
    let home = replica(&first);

    // The home replica answers 503: the request is retried once elsewhere.
    mocks[home].fault(json!({"status": 503})).await;
    let before = calls(&mocks).await;
    let reply = proxy.chat(&turn(1, 1)).await;
    let r = route(&reply);
    assert_eq!(r["attempts"], 2);
    assert_eq!(r["reason"], "failover");
    assert_ne!(replica(&reply), home);
    let after = calls(&mocks).await;
    assert_eq!(after[home] - before[home], 1);
    assert_eq!(after.iter().sum::<u64>() - before.iter().sum::<u64>(), 2);

    // Every replica failing: one retry, then the provider's error as sent.
    for m in &mocks {
        m.fault(json!({"status": 503})).await;
    }
    let before = calls(&mocks).await.iter().sum::<u64>();
    let reply = proxy.chat(&turn(2, 0)).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"]["code"], "mock_fault");
    assert_eq!(
        calls(&mocks).await.iter().sum::<u64>() - before,
        2,
        "exactly one retry"
    );

    // A 429 asking for a long wait moves; a short one is the caller's to retry.
    for m in &mocks {
        m.fault(json!({"status": 0})).await;
    }
    mocks[home]
        .fault(json!({"status": 429, "retry_after": "30"}))
        .await;
    let reply = proxy.chat(&turn(1, 2)).await;
    assert_eq!(route(&reply)["attempts"], 2);
    mocks[home]
        .fault(json!({"status": 429, "retry_after": "1"}))
        .await;
    let reply = proxy.chat(&turn(1, 3)).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("1"));
    mocks[home].fault(json!({"status": 0})).await;

    // A stream cut after its first byte is never retried.
    let before = calls(&mocks).await.iter().sum::<u64>();
    let mut cut = turn(3, 0);
    cut["model"] = json!("mock-cut-stream");
    cut["stream"] = json!(true);
    let response = proxy
        .post("/v1/chat/completions")
        .body(cut.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err(), "the client sees the cut");
    assert_eq!(calls(&mocks).await.iter().sum::<u64>() - before, 1);
}

#[tokio::test]
async fn an_ejected_replica_is_probed_back_into_service() {
    let mocks = replicas().await;
    let mut cfg = config(&mocks);
    cfg.routing.health.eject_after = 1;
    cfg.routing.health.backoff = Duration::from_millis(50);
    let proxy = Proxy::start(cfg).await;
    let home = replica(&proxy.chat(&turn(5, 0)).await);

    mocks[home].fault(json!({"status": 502})).await;
    let reply = proxy.chat(&turn(5, 1)).await;
    assert_eq!(route(&reply)["attempts"], 2, "failed over and ejected");
    let before = mocks[home].calls().await["total"].as_u64().unwrap();
    let reply = proxy.chat(&turn(5, 2)).await;
    assert_eq!(
        route(&reply)["attempts"],
        1,
        "the ejected replica is skipped"
    );
    assert_ne!(replica(&reply), home);

    // Healed: once the back-off ends, a probe (GET /models) brings it back
    // and the conversation returns home. Waits on that event, bounded.
    mocks[home].fault(json!({"status": 0})).await;
    let mut back = false;
    for t in 3..400 {
        let reply = proxy.chat(&turn(5, t)).await;
        if replica(&reply) == home {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(back, "the replica never came back");
    let probes = mocks[home].calls().await["models"].as_u64().unwrap();
    assert!(probes >= 1, "it was probed");
    assert!(mocks[home].calls().await["total"].as_u64().unwrap() > before);
}

#[tokio::test]
async fn round_robin_spreads_turns_and_the_key_ignores_the_replica() {
    let mocks = replicas().await;
    let mut cfg = config(&mocks);
    cfg.routing.strategy = reprise::config::ReplicaStrategy::RoundRobin;
    let proxy = Proxy::start(cfg).await;
    let mut seen = HashSet::new();
    for t in 0..3 {
        let reply = proxy.chat(&turn(7, t)).await;
        assert_eq!(route(&reply)["reason"], "round_robin");
        seen.insert(replica(&reply));
    }
    assert_eq!(seen.len(), 3, "one conversation, three replicas");
    // Same provider, same answers: the entry serves whichever replica wrote it.
    let body = turn(7, 0);
    proxy.wait_cached("/v1/chat/completions", &body, &[]).await;
    let hit = proxy.chat(&body).await;
    assert_eq!(hit.cache_status(), "hit");
    assert_eq!(calls(&mocks).await.iter().sum::<u64>(), 3);
}
