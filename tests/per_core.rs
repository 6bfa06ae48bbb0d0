//! The per-core layout (`server.runtime = "per-core"`, `runtime.rs`): several
//! single-threaded workers on one `SO_REUSEPORT` port, against the real mock
//! and a real redis-server. Misses, background Redis writes and hits work
//! whichever worker a connection lands on; the connection limit is one
//! budget for the process; shutdown stops every worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{chat_body, config_for, held_connection, Mock, Reply};
use reprise::config::{Backend, Config};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const CHAT: &str = "/v1/chat/completions";
const WORKERS: usize = 2;

/// A reprise in the per-core layout, its workers on their own threads.
struct PerCore {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), reprise::RunError>>>,
}

impl PerCore {
    /// The listeners are bound (and queue connections) before this returns.
    fn start(config: Config) -> PerCore {
        let listeners = reprise::runtime::bind_shared_port("127.0.0.1:0", WORKERS).unwrap();
        assert_eq!(listeners.len(), WORKERS);
        let addr = listeners[0].local_addr().unwrap();
        for l in &listeners {
            assert_eq!(l.local_addr().unwrap(), addr, "one port for every worker");
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            reprise::runtime::run_per_core(listeners, config, async move {
                let _ = stopped.await;
            })
        });
        PerCore {
            addr: addr.to_string(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A chat request on a new connection (a new client each time, so the
    /// kernel spreads the requests over the workers).
    async fn chat(&self, body: &serde_json::Value, headers: &[(&str, &str)]) -> Reply {
        let client = reqwest::Client::new();
        let mut request = client
            .post(format!("http://{}{CHAT}", self.addr))
            .header("authorization", "Bearer sk-test-a")
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    /// Stops every worker and waits for them (bounded).
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let thread = self.thread.take().unwrap();
        let joined = tokio::task::spawn_blocking(move || thread.join());
        let result = tokio::time::timeout(Duration::from_secs(10), joined)
            .await
            .expect("the workers never stopped")
            .unwrap()
            .expect("a worker panicked");
        assert!(result.is_ok(), "{result:?}");
    }
}

impl Drop for PerCore {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_background_redis_writes_and_hits_work_on_every_worker() {
    let redis = RedisServer::start().await;
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    // Redis only: a hit below proves the background write (a task spawned
    // on the worker that served the miss) reached Redis.
    config.cache.backend = Backend::Redis;
    config.cache.redis.url = redis.url();
    let proxy = PerCore::start(config);
    for i in 0..8 {
        let body = chat_body(&format!("per-core {i}"));
        let miss = proxy.chat(&body, &[]).await;
        assert_eq!(miss.status, 200, "{}", String::from_utf8_lossy(&miss.bytes));
        assert_eq!(miss.cache_status(), "miss");
        let mut hit = None;
        for _ in 0..500 {
            let r = proxy
                .chat(&body, &[("cache-control", "only-if-cached")])
                .await;
            if r.status == 200 {
                hit = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let hit = hit.expect("the Redis write never landed");
        assert_eq!(hit.cache_status(), "hit");
        assert_eq!(hit.header("x-cache-tier"), Some("redis"));
        assert_eq!(hit.upstream_json(), miss.upstream_json());
    }
    assert_eq!(mock.chat_calls().await, 8);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_is_one_budget_across_workers() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.limits.max_connections = 2;
    let proxy = PerCore::start(config);
    // Three more connections than the budget allows, whichever workers they
    // land on: with a budget per worker most of them would be accepted.
    let _held = [
        held_connection(&proxy.addr).await,
        held_connection(&proxy.addr).await,
    ];
    for _ in 0..3 {
        let mut extra = TcpStream::connect(&proxy.addr).await.unwrap();
        let mut seen = Vec::new();
        let read = extra.read_to_end(&mut seen);
        let _ = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("an over-limit connection was never closed");
        let text = String::from_utf8_lossy(&seen);
        assert!(
            seen.is_empty() || text.starts_with("HTTP/1.1 503"),
            "{text}"
        );
    }
    proxy.shutdown().await;
}

#[test]
fn a_port_with_a_listener_is_refused_even_with_reuseport() {
    let first = reprise::runtime::bind_shared_port("127.0.0.1:0", WORKERS).unwrap();
    let addr = first[0].local_addr().unwrap().to_string();
    let err = reprise::runtime::bind_shared_port(&addr, WORKERS).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    drop(first);
    // Free again once the first listeners close.
    let again = reprise::runtime::bind_shared_port(&addr, WORKERS).unwrap();
    assert_eq!(again.len(), WORKERS);
}

#[test]
fn a_layout_with_no_listener_is_an_error_not_a_hang() {
    let config = Config::default();
    let result = reprise::runtime::run_per_core(Vec::new(), config, async {});
    assert!(result.is_err());
}

#[test]
fn worker_count_zero_means_one_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(reprise::runtime::worker_count(0), cores);
    assert_eq!(reprise::runtime::worker_count(3), 3);
}
