//! The `[limits]` layer (issue 11, defect 5) against a real reprise over raw
//! TCP: slow request heads and bodies are cut, connections over the limit
//! are refused at once, a saturated proxy sheds with 503 + Retry-After.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{chat_body, config_for, held_connection, Mock, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound on every wait: a broken limit hangs until it, a working one
/// answers in about the configured 300 ms.
const BOUND: Duration = Duration::from_secs(10);

fn addr(proxy: &Proxy) -> String {
    proxy.url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (EOF or reset); returns what
/// arrived. Panics if the connection is still open after `BOUND`.
async fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("the connection was never closed");
    seen
}

#[tokio::test]
async fn an_incomplete_request_head_is_closed_after_the_header_timeout() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.limits.header_read_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(config).await;
    let mut tcp = TcpStream::connect(addr(&proxy)).await.unwrap();
    let started = tokio::time::Instant::now();
    tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: reprise\r\nx-slow: ")
        .await
        .unwrap();
    read_until_closed(&mut tcp).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the timeout"
    );
}

#[tokio::test]
async fn a_trickled_body_is_cut_with_408() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.limits.body_read_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(config).await;
    let tcp = TcpStream::connect(addr(&proxy)).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    wr.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: reprise\r\nauthorization: Bearer k\r\n\
          content-type: application/json\r\ncontent-length: 1000\r\n\r\n",
    )
    .await
    .unwrap();
    // One byte every 50 ms: always "making progress", never done in time.
    let trickle = tokio::spawn(async move {
        for _ in 0..999 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the trickled request was never answered");
    trickle.abort();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert_eq!(mock.chat_calls().await, 0);
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_at_once() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.limits.max_connections = 2;
    let proxy = Proxy::start(config).await;
    let addr = addr(&proxy);
    let first = held_connection(&addr).await;
    let _second = held_connection(&addr).await;
    let mut third = TcpStream::connect(&addr).await.unwrap();
    let answer = read_until_closed(&mut third).await;
    let text = String::from_utf8_lossy(&answer);
    // A 503 (or, if the client's bytes raced the close, a reset): never a hang.
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 503"),
        "{text}"
    );
    if !answer.is_empty() {
        assert!(
            text.to_ascii_lowercase().contains("retry-after: 1"),
            "{text}"
        );
    }
    // A freed slot is usable again.
    drop(first);
    for _ in 0..500 {
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(b"GET /health HTTP/1.1\r\nhost: r\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        if read_until_closed(&mut tcp)
            .await
            .starts_with(b"HTTP/1.1 200")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the freed connection slot never came back");
}

#[tokio::test]
async fn a_saturated_proxy_sheds_with_503_and_retry_after() {
    let mock = Mock::start_with(&["--slow-ms", "20000"]).await;
    let mut config = config_for(&mock.url);
    config.limits.max_in_flight = 1;
    config.limits.shed_retry_after = Duration::from_secs(2);
    let proxy = Proxy::start(config).await;
    let mut slow = chat_body("shed-slow");
    slow["model"] = "mock-slow".into();
    let request = proxy.post("/v1/chat/completions").body(slow.to_string());
    let in_flight = tokio::spawn(request.send());
    // The event: the slow request reached the provider, so it holds the slot.
    for _ in 0..2000 {
        if mock.chat_calls().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(mock.chat_calls().await, 1);
    let shed = proxy.chat(&chat_body("shed-fast")).await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("retry-after"), Some("2"));
    assert_eq!(shed.json()["error"]["code"], "overloaded");
    // Probes are exempt.
    let health = proxy
        .http
        .get(format!("{}/health", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // The slot frees when the slow caller goes away.
    in_flight.abort();
    for _ in 0..2000 {
        if proxy.chat(&chat_body("shed-after")).await.status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the in-flight slot was never released");
}

/// An MCP server whose every answer is a session's server-to-client stream:
/// an SSE head and one comment, then open and silent until the test ends.
async fn listening_mcp_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n: open\n\n")
                .await;
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn idle_mcp_streams_have_their_own_bound_and_shed_no_traffic() {
    let mock = Mock::start().await;
    let mut config = config_for(&mock.url);
    config.limits.max_in_flight = 2;
    config.limits.max_mcp_streams = 2;
    config.limits.shed_retry_after = Duration::from_secs(3);
    config.mcp.servers.insert(
        "listen".into(),
        serde_json::from_value(serde_json::json!({"url": listening_mcp_server().await})).unwrap(),
    );
    let proxy = Proxy::start(config).await;
    let open = || {
        proxy
            .http
            .get(format!("{}/mcp/listen", proxy.url))
            .header("authorization", "Bearer sk-test-a")
            .header("accept", "text/event-stream")
            .send()
    };
    // Two listeners: each response head arrived, so each holds its slot.
    let first = tokio::time::timeout(BOUND, open()).await.unwrap().unwrap();
    let second = tokio::time::timeout(BOUND, open()).await.unwrap().unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );

    // Model traffic is not shed by them (max_in_flight = 2 is all free)...
    for i in 0..3 {
        let reply = proxy.chat(&chat_body(&format!("beside-mcp-{i}"))).await;
        assert_eq!(
            reply.status, 200,
            "request {i} was shed by idle MCP streams"
        );
    }
    // ...and a third listener is over its own bound.
    let third = tokio::time::timeout(BOUND, open()).await.unwrap().unwrap();
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "3");
    let body: serde_json::Value = serde_json::from_slice(&third.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 open MCP streams"), "{message}");

    // A listener going away frees its slot.
    drop(first);
    for _ in 0..2000 {
        let again = tokio::time::timeout(BOUND, open()).await.unwrap().unwrap();
        if again.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the MCP stream slot was never released");
}
