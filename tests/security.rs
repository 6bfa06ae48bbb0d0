//! Secure defaults (issue 11, defects 6 and 7): open-proxy refusal, custom
//! keys scoped by model, authentication before the body is read, `/metrics`
//! access. Real reprise on a real socket; raw TCP where the test is about
//! what happens before a body arrives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use common::{chat_body, config_for, Mock, Proxy};
use reprise::config::{Config, ProviderConfig, ProviderKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

/// A provider whose key the server holds: `PATH` is always set and non-empty.
fn server_held_key_config() -> Config {
    let mut provider = ProviderConfig::new(
        "openai",
        ProviderKind::Openai,
        "http://127.0.0.1:9/v1",
        &["*"],
    );
    provider.api_key_env = Some("PATH".into());
    let mut config = Config {
        providers: vec![provider],
        ..Config::default()
    };
    config.routing.default_provider = Some("openai".into());
    config
}

/// Runs reprise on `0.0.0.0:0`; `Err` if it refused to start, else the port
/// of a server that answers `/health` (shut down when the sender drops).
async fn start_exposed(
    config: Config,
) -> Result<(u16, tokio::sync::oneshot::Sender<()>), reprise::RunError> {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut handle = tokio::spawn(reprise::run(listener, config, async move {
        let _ = rx.await;
    }));
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health"));
    tokio::select! {
        result = &mut handle => Err(result.unwrap().expect_err("run returned Ok before shutdown")),
        reply = health => match reply {
            Ok(reply) => {
                assert_eq!(reply.status(), 200);
                Ok((port, tx))
            }
            // Refused: the listener was dropped before the probe was answered.
            Err(_) => Err(handle.await.unwrap().expect_err("health failed but run is fine")),
        }
    }
}

#[tokio::test]
async fn open_proxy_on_a_public_address_is_refused() {
    let err = start_exposed(server_held_key_config())
        .await
        .unwrap_err()
        .to_string();
    for named in ["allow_open_proxy", "api_keys_env", "127.0.0.1", "openai"] {
        assert!(err.contains(named), "{named} missing from: {err}");
    }
}

#[tokio::test]
async fn exposed_start_is_allowed_with_caller_keys_or_the_flag_or_no_held_keys() {
    let mut with_keys = server_held_key_config();
    with_keys.server.api_keys = vec!["sk-caller".into()];
    start_exposed(with_keys).await.unwrap();

    let mut flagged = server_held_key_config();
    flagged.server.allow_open_proxy = true;
    start_exposed(flagged).await.unwrap();

    // Callers bring their own provider keys: nothing of the operator's to spend.
    let mut pass_through = server_held_key_config();
    pass_through.providers[0].api_key_env = Some("REPRISE_TEST_UNSET_VARIABLE".into());
    start_exposed(pass_through).await.unwrap();
}

#[tokio::test]
async fn loopback_start_is_allowed_with_held_keys() {
    let proxy = Proxy::start(server_held_key_config()).await;
    let r = proxy
        .http
        .get(format!("{}/health", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A keyless POST (the `anonymous` namespace) with a custom key.
async fn anonymous_chat(proxy: &Proxy, model: &str, extra: &[(&str, &str)]) -> u16 {
    let mut body = chat_body("custom-key-scope");
    body["model"] = model.into();
    let mut req = proxy
        .http
        .post(format!("{}/v1/chat/completions", proxy.url))
        .header("content-type", "application/json")
        .header("x-cache-key", "greeting")
        .body(body.to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Waits (bounded) until `model`'s custom-key entry is readable.
async fn wait_custom_cached(proxy: &Proxy, model: &str) {
    for _ in 0..500 {
        if anonymous_chat(proxy, model, &[("cache-control", "only-if-cached")]).await == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("custom-key entry never became readable");
}

#[tokio::test]
async fn custom_keys_stay_inside_their_model_by_default() {
    let mock = Mock::start().await;
    let proxy = Proxy::start(config_for(&mock.url)).await;
    assert_eq!(anonymous_chat(&proxy, "gpt-4o-mini", &[]).await, 200);
    wait_custom_cached(&proxy, "gpt-4o-mini").await;
    let other = anonymous_chat(&proxy, "gpt-4o", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(other, 504, "another model read the custom key");
}

#[tokio::test]
async fn namespace_scope_shares_custom_keys_across_models() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.cache.custom_key_scope = reprise::cache::key::CustomKeyScope::Namespace;
    let proxy = Proxy::start(config).await;
    assert_eq!(anonymous_chat(&proxy, "gpt-4o-mini", &[]).await, 200);
    wait_custom_cached(&proxy, "gpt-4o-mini").await;
    wait_custom_cached(&proxy, "gpt-4o").await;
}

/// Sends a request head announcing a 5 MB body, sends no body, and returns
/// the response head (status line + headers) the server answers with.
async fn head_only(addr: &str, path: &str, auth: Option<&str>) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or(String::new(), |a| format!("authorization: Bearer {a}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: reprise\r\ncontent-type: application/json\r\n\
         {auth}content-length: 5000000\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            seen.extend_from_slice(&buf[..n]);
        }
    };
    // Bounded: an implementation that waits for the body would hang here.
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no answer while the body was still missing");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_before_the_body_is_read() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.server.api_keys = vec!["sk-good".into()];
    config.server.body_limit_bytes = 64 * 1024 * 1024;
    let proxy = Proxy::start(config).await;
    let addr = proxy.url.trim_start_matches("http://").to_owned();
    // Every route that takes a body, the operator, batch and MCP ones included.
    for path in [
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/embeddings",
        "/v1/batch/chat/completions",
        "/v1/cache/get",
        "/v1/cache/set",
        "/v1/cache/purge",
        "/v1/cache/import",
        "/mcp/tools",
        "/v1/cache/mcp/tools/invalidate",
    ] {
        let head = head_only(&addr, path, None).await;
        assert!(head.starts_with("HTTP/1.1 401"), "{path}: {head}");
        let head = head_only(&addr, path, Some("sk-wrong")).await;
        assert!(head.starts_with("HTTP/1.1 401"), "{path}: {head}");
    }
    // The right key and the same missing body: reprise waits for it (no
    // answer within a short bound), so the 401s above came before the read.
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: r\r\nauthorization: Bearer sk-good\r\n\
          content-length: 5000000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 64];
    let waited = tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "an authenticated request was answered without its body"
    );
    assert_eq!(mock.chat_calls().await, 0);
}

#[tokio::test]
async fn read_routes_need_a_key_and_the_dashboard_page_does_not() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.server.api_keys = vec!["sk-good".into()];
    let proxy = Proxy::start(config).await;
    let get = |path: &str, key: Option<&str>| {
        let mut r = proxy.http.get(format!("{}{path}", proxy.url));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    for path in [
        "/v1/models",
        "/v1/cache/stats",
        "/v1/cache/stats/series",
        "/v1/cache/top",
        "/v1/cache/profile",
        "/v1/cache/export",
        "/mcp/tools",
    ] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{path}");
        assert_eq!(get(path, Some("sk-bad")).await.unwrap().status(), 401);
    }
    assert_eq!(
        get("/v1/cache/top", Some("sk-good"))
            .await
            .unwrap()
            .status(),
        200
    );
    // Static files: the page asks for the key and sends it on its data calls.
    for path in ["/dashboard", "/dashboard/app.js"] {
        assert_eq!(get(path, None).await.unwrap().status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_reading() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.server.body_limit_bytes = 1024;
    let proxy = Proxy::start(config).await;
    let addr = proxy.url.trim_start_matches("http://").to_owned();
    let head = head_only(&addr, "/v1/chat/completions", Some("sk-test-a")).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

/// `/metrics` through the router with a chosen peer address.
async fn metrics_status(config: Config, peer: &str, key: Option<&str>) -> u16 {
    let state = std::sync::Arc::new(reprise::state::AppState::new(config).unwrap());
    let mut app = reprise::app(state);
    let mut request = Request::get("/metrics");
    if let Some(k) = key {
        request = request.header("authorization", format!("Bearer {k}"));
    }
    let mut request = request.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    app.call(request).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn metrics_are_open_to_loopback_only_without_keys() {
    let config = config_for("http://127.0.0.1:9");
    assert_eq!(
        metrics_status(config.clone(), "127.0.0.1:5000", None).await,
        200
    );
    assert_eq!(
        metrics_status(config.clone(), "[::1]:5000", None).await,
        200
    );
    assert_eq!(
        metrics_status(config.clone(), "10.1.2.3:5000", None).await,
        403
    );
    assert_eq!(
        metrics_status(config, "[::ffff:127.0.0.1]:5000", None).await,
        200
    );
}

#[tokio::test]
async fn metrics_keys_are_required_everywhere_once_configured() {
    std::env::set_var("REPRISE_TEST_METRICS_KEYS", "mk-1, mk-2");
    std::env::set_var("REPRISE_TEST_ADMIN_KEYS_M", "ak-1");
    let mut config = config_for("http://127.0.0.1:9");
    config.server.metrics_keys_env = Some("REPRISE_TEST_METRICS_KEYS".into());
    config.server.admin_keys_env = Some("REPRISE_TEST_ADMIN_KEYS_M".into());
    assert_eq!(
        metrics_status(config.clone(), "127.0.0.1:5000", None).await,
        401
    );
    assert_eq!(
        metrics_status(config.clone(), "10.1.2.3:5000", Some("nope")).await,
        401
    );
    assert_eq!(
        metrics_status(config.clone(), "10.1.2.3:5000", Some("mk-2")).await,
        200
    );
    assert_eq!(
        metrics_status(config, "10.1.2.3:5000", Some("ak-1")).await,
        200
    );
}

#[tokio::test]
async fn metrics_over_a_real_loopback_socket() {
    let proxy = Proxy::start(config_for("http://127.0.0.1:9")).await;
    let r = proxy
        .http
        .get(format!("{}/metrics", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
