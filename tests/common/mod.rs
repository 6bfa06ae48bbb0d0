//! Test harness: the real `mock-upstream` binary on a free port, and a real
//! reprise served in-process on `127.0.0.1:0` through `reprise::run`.
#![allow(dead_code)]

pub mod redis;
pub mod semantic;

use std::process::Stdio;
use std::time::Duration;

use reprise::config::{Config, ProviderConfig, ProviderKind};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running `mock-upstream` process, killed on drop.
pub struct Mock {
    _child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Mock {
    pub async fn start() -> Mock {
        Self::start_with(&[]).await
    }

    pub async fn start_with(args: &[&str]) -> Mock {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mock-upstream");
        let stdout = child.stdout.take().expect("mock stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .expect("mock first line");
        let url = line
            .trim()
            .strip_prefix("mock-upstream listening on ")
            .unwrap_or_else(|| panic!("unexpected mock output: {line}"))
            .to_owned();
        Mock {
            _child: child,
            url,
            http: reqwest::Client::new(),
        }
    }

    /// `{"chat": n, "embeddings": n, "models": n, "total": n}`
    pub async fn calls(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/_mock/calls", self.url))
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }

    /// Kills the process and waits for it to exit (its port then refuses).
    pub async fn kill(&mut self) {
        let _ = self._child.kill().await;
    }

    /// Sets (`{"status": 503, ...}`) or clears (`{"status": 0}`) the mock's
    /// switchable fault (see the mock's `faults.rs`).
    pub async fn fault(&self, fault: Value) {
        let r = self
            .http
            .post(format!("{}/_mock/fault", self.url))
            .header("content-type", "application/json")
            .body(fault.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    pub async fn chat_calls(&self) -> u64 {
        self.calls().await["chat"].as_u64().unwrap()
    }

    /// The last request body the mock received.
    pub async fn last(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/_mock/last", self.url))
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }

    pub async fn last_headers(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/_mock/last_headers", self.url))
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }
}

/// A config routing `claude-*` to the mock's Anthropic route and every other
/// model to its OpenAI one.
pub fn claude_config(mock_url: &str) -> Config {
    let mut config = config_for(mock_url);
    config.providers.insert(
        0,
        ProviderConfig::new(
            "claude",
            ProviderKind::Anthropic,
            &format!("{mock_url}/v1"),
            &["claude-*"],
        ),
    );
    config
}

/// A config routing every model to the mock.
pub fn config_for(mock_url: &str) -> Config {
    let mut config = Config {
        providers: vec![ProviderConfig::new(
            "mock",
            ProviderKind::Openai,
            &format!("{mock_url}/v1"),
            &["*"],
        )],
        ..Config::default()
    };
    config.routing.default_provider = Some("mock".into());
    config.server.upstream_timeout = Duration::from_secs(10);
    config
}

/// A reprise served in-process; shut down gracefully on drop.
pub struct Proxy {
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: Option<JoinHandle<Result<(), reprise::RunError>>>,
    pub http: reqwest::Client,
}

impl Proxy {
    pub async fn start(config: Config) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(reprise::run(listener, config, async move {
            let _ = rx.await;
        }));
        Proxy {
            url: format!("http://{addr}"),
            shutdown: Some(tx),
            handle: Some(handle),
            http: reqwest::Client::new(),
        }
    }

    /// Starts graceful shutdown and returns the server task.
    pub fn shutdown(&mut self) -> JoinHandle<Result<(), reprise::RunError>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().expect("server task")
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.post_as(path, "Bearer sk-test-a")
    }

    pub fn post_as(&self, path: &str, authorization: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .header("authorization", authorization)
            .header("content-type", "application/json")
    }

    /// GET `path` with the default key.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.url))
            .header("authorization", "Bearer sk-test-a")
    }

    /// GET `path` with the default key, buffered.
    pub async fn get_reply(&self, path: &str) -> Reply {
        Reply::from(self.get(path).send().await.unwrap()).await
    }

    /// The Prometheus text of `/metrics` (loopback peers may read it).
    pub async fn metrics(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    /// POSTs a body to `/v1/messages` with an Anthropic-style key and `headers`.
    pub async fn messages(&self, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut req = self
            .http
            .post(format!("{}/v1/messages", self.url))
            .header("x-api-key", "sk-ant-test")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Reply::from(req.send().await.unwrap()).await
    }

    /// Waits (bounded) until `/v1/messages` with `body` and `headers` is
    /// readable from the cache (`only-if-cached`), instead of sleeping.
    pub async fn wait_messages_cached(&self, body: &Value, headers: &[(&str, &str)]) {
        let mut with = headers.to_vec();
        with.push(("cache-control", "only-if-cached"));
        for _ in 0..500 {
            if self.messages(body, &with).await.status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("never cached");
    }

    /// POSTs a JSON body to `/v1/chat/completions` with the default key.
    pub async fn chat(&self, body: &Value) -> Reply {
        Reply::from(
            self.post("/v1/chat/completions")
                .body(body.to_string())
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Like `chat`, with extra headers; an `authorization` among them
    /// replaces the default key.
    pub async fn chat_with(&self, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let auth = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map_or("Bearer sk-test-a", |(_, v)| *v);
        let mut req = self
            .post_as("/v1/chat/completions", auth)
            .body(body.to_string());
        for (k, v) in headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        {
            req = req.header(*k, *v);
        }
        Reply::from(req.send().await.unwrap()).await
    }

    /// Waits (bounded) until the entry for `body` is readable from the cache.
    /// Writes happen off the response path; this waits on that event
    /// through `Cache-Control: only-if-cached` instead of sleeping.
    pub async fn wait_cached(&self, path: &str, body: &Value, headers: &[(&str, &str)]) {
        for _ in 0..500 {
            let mut req = self
                .post(path)
                .body(body.to_string())
                .header("cache-control", "only-if-cached");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if req.send().await.unwrap().status() == 200 {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("entry never became readable");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A buffered response.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: bytes::Bytes,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        Reply {
            status,
            headers,
            bytes,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn cache_status(&self) -> &str {
        self.header("x-cache-status").unwrap_or("")
    }

    /// The body without reprise's `routing_metadata`.
    pub fn upstream_json(&self) -> Value {
        let mut v = self.json();
        if let Some(o) = v.as_object_mut() {
            o.remove("routing_metadata");
        }
        v
    }
}

/// A chat request with a prompt unique to `tag`.
/// Opens a connection to `addr` and completes one keep-alive request on it,
/// so the server has surely accepted it (and holds a connection slot).
pub async fn held_connection(addr: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nhost: reprise\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    tcp
}

pub fn chat_body(tag: &str) -> Value {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": format!("hello from {tag}")}],
        "temperature": 0.2
    })
}
