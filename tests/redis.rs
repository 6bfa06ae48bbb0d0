//! The shared Redis tier against a real redis-server: sharing between
//! instances, fail-open, single-flight, stale-if-error, corrupt entries,
//! Redis Cluster and TTLs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::{RedisCluster, RedisServer};
use common::{chat_body, config_for, Mock, Proxy};
use reprise::config::{Backend, Config};
use reprise::pipeline::credential_namespace;
use serde_json::json;

const CHAT: &str = "/v1/chat/completions";

fn tiered(mock: &Mock, redis_urls: &[String], backend: Backend) -> Config {
    let mut config = config_for(&mock.url);
    config.cache.backend = backend;
    if redis_urls.len() == 1 {
        config.cache.redis.url = redis_urls[0].clone();
    } else {
        config.cache.redis.cluster_nodes = redis_urls.to_vec();
    }
    config.cache.redis.op_timeout = Duration::from_millis(200);
    config.cache.redis.breaker_backoff = Duration::from_millis(200);
    config
}

#[tokio::test]
async fn an_entry_written_by_one_instance_is_a_hit_on_another() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(tiered(&mock, &[redis.url()], Backend::Tiered)).await;
    let b = Proxy::start(tiered(&mock, &[redis.url()], Backend::Tiered)).await;
    let body = chat_body("shared");
    let first = a.chat(&body).await;
    assert_eq!(first.cache_status(), "miss");
    b.wait_cached(CHAT, &body, &[]).await;
    assert_eq!(mock.chat_calls().await, 1);

    let from_b = b.chat(&body).await;
    assert_eq!(from_b.cache_status(), "hit");
    assert_eq!(from_b.upstream_json(), first.upstream_json());
    // wait_cached already promoted it into B's memory tier.
    assert_eq!(from_b.header("x-cache-tier"), Some("memory"));

    let c = Proxy::start(tiered(&mock, &[redis.url()], Backend::Tiered)).await;
    let from_c = c.chat(&body).await;
    assert_eq!(from_c.header("x-cache-tier"), Some("redis"));
    assert_eq!(from_c.json()["routing_metadata"]["cache"]["tier"], "redis");
    assert_eq!(
        c.chat(&body).await.header("x-cache-tier"),
        Some("memory"),
        "promoted to L1"
    );
    assert_eq!(mock.chat_calls().await, 1);
}

#[tokio::test]
async fn redis_outage_never_fails_a_request_and_hits_resume() {
    let mut redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(tiered(&mock, &[redis.url()], Backend::Redis)).await;
    let body = chat_body("outage-before");
    a.chat(&body).await;
    a.wait_cached(CHAT, &body, &[]).await;

    redis.stop();
    for i in 0..20 {
        let r = a.chat(&chat_body(&format!("outage-{i}"))).await;
        assert_eq!(r.status, 200, "request {i} during the outage");
    }
    let during = a.chat(&body).await;
    assert_eq!(during.status, 200);
    assert_eq!(during.cache_status(), "miss", "reads become misses");

    redis.restart().await;
    // Writes and reads resume once the breaker probes again.
    let after = chat_body("outage-after");
    let mut resumed = false;
    for _ in 0..300 {
        a.chat(&after).await;
        let probe = a
            .chat_with(&after, &[("cache-control", "only-if-cached")])
            .await;
        if probe.status == 200 {
            assert_eq!(probe.header("x-cache-tier"), Some("redis"));
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(resumed, "hits resumed after redis came back");
}

#[tokio::test]
async fn load_through_a_redis_restart_loses_no_request() {
    let mut redis = RedisServer::start().await;
    let mock = Mock::start().await;
    // Redis only (no L1), half repeated and half fresh prompts, so every
    // request reads Redis and half of them write it.
    let proxy = Arc::new(Proxy::start(tiered(&mock, &[redis.url()], Backend::Redis)).await);
    let shared = chat_body("restart-load");
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let proxy = proxy.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut failures = 0u32;
                for i in 0..150 {
                    let body = if i % 2 == 0 {
                        shared.clone()
                    } else {
                        chat_body(&format!("restart-{w}-{i}"))
                    };
                    let r = proxy.chat(&body).await;
                    if r.status != 200 {
                        failures += 1;
                    }
                }
                failures
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart().await;
    let mut non_2xx = 0;
    for w in workers {
        non_2xx += w.await.unwrap();
    }
    eprintln!("redis restart under load: sent 1200 requests, non-2xx: {non_2xx}");
    assert_eq!(non_2xx, 0);
}

#[tokio::test]
async fn fifty_concurrent_identical_misses_make_one_upstream_call() {
    let redis = RedisServer::start().await;
    let mock = Mock::start_with(&["--latency-ms", "300"]).await;
    let proxy = Arc::new(Proxy::start(tiered(&mock, &[redis.url()], Backend::Tiered)).await);
    let body = chat_body("stampede");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let proxy = proxy.clone();
            let body = body.clone();
            tokio::spawn(async move { proxy.chat(&body).await })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        statuses.push(r.cache_status().to_owned());
        bodies.push(r.upstream_json());
    }
    assert_eq!(mock.chat_calls().await, 1, "statuses: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "miss").count(), 1);
    assert!(statuses
        .iter()
        .all(|s| ["miss", "coalesced", "hit"].contains(&s.as_str())));
    assert!(
        statuses.iter().filter(|s| *s == "coalesced").count() >= 40,
        "{statuses:?}"
    );
    assert!(bodies.iter().all(|b| *b == bodies[0]));
}

#[tokio::test]
async fn a_failed_leader_is_retried_by_one_follower() {
    let mock = Mock::start_with(&["--latency-ms", "200"]).await;
    let proxy = Arc::new(Proxy::start(config_for(&mock.url)).await);
    let mut body = chat_body("leader-fails");
    body["model"] = json!("mock-error-500");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let proxy = proxy.clone();
            let body = body.clone();
            tokio::spawn(async move { proxy.chat(&body).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 500);
    }
    // The leader's error is not copied: one follower retries, and its
    // (confirmed) error answers the rest.
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn stale_entries_are_served_when_the_upstream_fails() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let mut config = tiered(&mock, &[redis.url()], Backend::Tiered);
    config.cache.stale_grace = Duration::from_secs(60);
    // Namespace-scoped custom keys are model-independent, so the failing
    // model maps to the same entry (the default scope includes the model).
    config.cache.custom_key_scope = reprise::cache::key::CustomKeyScope::Namespace;
    let a = Proxy::start(config.clone()).await;
    let key = [("x-cache-key", "stale-demo"), ("x-cache-ttl", "1")];
    let good = chat_body("stale");
    let original = a.chat_with(&good, &key).await;
    a.wait_cached(CHAT, &good, &key).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut failing = good.clone();
    failing["model"] = json!("mock-error-500");
    let stale = a.chat_with(&failing, &key).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.cache_status(), "stale");
    assert_eq!(stale.upstream_json(), original.upstream_json());
    assert_eq!(stale.json()["routing_metadata"]["cache"]["status"], "stale");

    // Another instance finds the stale copy in Redis.
    let b = Proxy::start(config).await;
    let from_redis = b.chat_with(&failing, &key).await;
    assert_eq!(from_redis.cache_status(), "stale");
    assert_eq!(from_redis.header("x-cache-tier"), Some("redis"));

    // Without a grace period the error goes through.
    let plain = Proxy::start(tiered(&mock, &[redis.url()], Backend::Memory)).await;
    let key2 = [("x-cache-key", "no-grace"), ("x-cache-ttl", "1")];
    plain.chat_with(&good, &key2).await;
    plain.wait_cached(CHAT, &good, &key2).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(plain.chat_with(&failing, &key2).await.status, 500);
}

#[tokio::test]
async fn a_corrupt_entry_is_a_miss_and_gets_overwritten() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let proxy = Proxy::start(tiered(&mock, &[redis.url()], Backend::Redis)).await;
    let body = chat_body("corrupt");
    let first = proxy.chat(&body).await;
    proxy.wait_cached(CHAT, &body, &[]).await;
    let redis_key = format!(
        "reprise:v1:{}:{}",
        credential_namespace(Some("sk-test-a")),
        first.header("x-cache-key").unwrap()
    );
    assert_eq!(redis.cli(&["EXISTS", &redis_key]).unwrap().trim(), "1");
    redis
        .cli(&["SET", &redis_key, "garbage that is not an entry"])
        .unwrap();

    let again = proxy.chat(&body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.cache_status(), "miss");
    assert_eq!(mock.chat_calls().await, 2);
    proxy.wait_cached(CHAT, &body, &[]).await;
    let raw = redis.cli(&["GETRANGE", &redis_key, "0", "3"]).unwrap();
    assert_eq!(raw.trim(), "RPR4", "overwritten with a valid entry");
}

#[tokio::test]
async fn redis_ttl_follows_the_entry_ttl() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let proxy = Proxy::start(tiered(&mock, &[redis.url()], Backend::Redis)).await;
    let body = chat_body("ttl");
    let ttl = [("x-cache-ttl", "1")];
    let first = proxy.chat_with(&body, &ttl).await;
    proxy.wait_cached(CHAT, &body, &[]).await;
    let redis_key = format!(
        "reprise:v1:{}:{}",
        credential_namespace(Some("sk-test-a")),
        first.header("x-cache-key").unwrap()
    );
    let pttl: i64 = redis
        .cli(&["PTTL", &redis_key])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pttl > 0 && pttl <= 1000, "{pttl}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(proxy.chat(&body).await.cache_status(), "miss");
    assert_eq!(mock.chat_calls().await, 2);
}

#[tokio::test]
async fn two_instances_share_a_redis_cluster() {
    let cluster = RedisCluster::start().await;
    let mock = Mock::start().await;
    let a = Proxy::start(tiered(&mock, &cluster.urls(), Backend::Tiered)).await;
    let b = Proxy::start(tiered(&mock, &cluster.urls(), Backend::Redis)).await;
    for i in 0..6 {
        let body = chat_body(&format!("cluster-{i}"));
        assert_eq!(a.chat(&body).await.cache_status(), "miss");
        b.wait_cached(CHAT, &body, &[]).await;
        let hit = b.chat(&body).await;
        assert_eq!(hit.cache_status(), "hit");
        assert_eq!(hit.header("x-cache-tier"), Some("redis"));
    }
    assert_eq!(mock.chat_calls().await, 6);
    // Keys spread over the nodes (no hash tags pin them to one).
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]).unwrap().trim() != "0")
        .count();
    assert!(holding >= 2, "entries spread over {holding} node(s)");
}

#[tokio::test]
async fn distributed_single_flight_coalesces_across_instances() {
    let redis = RedisServer::start().await;
    let mock = Mock::start_with(&["--latency-ms", "400"]).await;
    let mut config = tiered(&mock, &[redis.url()], Backend::Tiered);
    config.cache.single_flight.distributed = true;
    let a = Arc::new(Proxy::start(config.clone()).await);
    let b = Arc::new(Proxy::start(config).await);
    let body = chat_body("distributed");
    let first = {
        let (a, body) = (a.clone(), body.clone());
        tokio::spawn(async move { a.chat(&body).await })
    };
    // Wait until A's request reached the upstream (it holds the lock by then).
    for _ in 0..500 {
        if mock.chat_calls().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let second = b.chat(&body).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.cache_status(), "coalesced");
    assert_eq!(first.await.unwrap().cache_status(), "miss");
    assert_eq!(mock.chat_calls().await, 1);
}

/// The config docker-compose runs, with its Redis and provider pointed at
/// the local ones: it loads, and a hit is shared through Redis.
#[tokio::test]
async fn the_docker_compose_config_runs_tiered() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/docker.toml");
    let mut config = Config::load(Some(&path)).unwrap();
    assert_eq!(config.cache.backend, Backend::Tiered);
    assert_eq!(config.server.listen, "0.0.0.0:8080");
    assert_eq!(config.cache.redis.url, "redis://redis:6379");
    config.cache.redis.url = redis.url();
    config.providers[0].base_url = format!("{}/v1", mock.url);
    let a = Proxy::start(config.clone()).await;
    let b = Proxy::start(config).await;
    let body = chat_body("docker");
    assert_eq!(a.chat(&body).await.cache_status(), "miss");
    b.wait_cached(CHAT, &body, &[]).await;
    assert_eq!(mock.chat_calls().await, 1);
}

/// Verified-mode observations recorded on one semantic item by many callers at
/// once (several instances in production) are all kept: the shared item is
/// updated by compare-and-set, not a plain read-modify-write that loses all
/// but one of simultaneous updates.
#[tokio::test]
async fn concurrent_semantic_observations_on_one_item_are_all_kept() {
    use reprise::cache::key::CacheKey;
    use reprise::cache::redis::RedisTier;
    use reprise::cache::seal::Sealer;
    use reprise::semantic::index::Item;
    use reprise::semantic::partition::PartitionId;
    use reprise::semantic::shared;

    let server = RedisServer::start().await;
    let mut config = Config::default();
    config.cache.backend = Backend::Redis;
    config.cache.redis.url = server.url();
    let settings = config.cache.tier_settings().redis.unwrap();
    let redis = Arc::new(RedisTier::new(&settings).unwrap());
    let sealing = Sealer::off().shared();
    let partition = PartitionId([7; 32]);
    let key = CacheKey([9; 32]);
    let item = Item {
        key,
        vector: Arc::from(vec![0.5f32; 8]),
        text: Arc::from("how do I reset my password"),
        blocked: false,
        observations: Default::default(),
    };
    assert!(shared::store(&redis, "ns", &partition, &item, None, 100, &sealing).await);

    // As many simultaneous updates as the retry budget allows (one winner per round).
    const UPDATES: usize = 16;
    let tasks: Vec<_> = (0..UPDATES)
        .map(|i| {
            let (redis, sealing) = (Arc::clone(&redis), sealing.clone());
            tokio::spawn(async move {
                let similarity = 0.80 + i as f32 / 1000.0;
                shared::record(&redis, "ns", &key, similarity, true, &sealing).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Some(true));
    }
    let items = shared::load(&redis, &partition, &sealing).await.unwrap();
    let stored = items.iter().find(|i| i.key == key).unwrap();
    let mut kept: Vec<f32> = stored
        .observations
        .samples()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    kept.sort_by(f32::total_cmp);
    assert_eq!(kept.len(), UPDATES, "every observation kept: {kept:?}");
}
