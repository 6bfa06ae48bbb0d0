//! The `reprise` binary: config loading, env overrides, refusal of bad config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn reprise() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reprise"));
    c.env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    c
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("reprise-cli-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn unknown_key_is_refused_naming_it() {
    let path = temp_config("unknown", "[cache]\nttll = \"1h\"\n");
    let out = reprise().arg("--config").arg(&path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ttll"), "{err}");
}

#[tokio::test]
async fn bad_value_is_refused_naming_the_field() {
    let path = temp_config("badvalue", "[server]\nlisten = \"not an address\"\n");
    let out = reprise().arg("--config").arg(&path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen"), "{err}");

    let out = reprise()
        .env("REPRISE__CACHE__TTL", "whenever")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ttl"), "{err}");
}

#[tokio::test]
async fn missing_config_file_is_refused() {
    let out = reprise()
        .args(["--config", "/nonexistent/reprise.toml"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Starts `reprise` with no config file on `listen`; returns the child and
/// the address from its "listening on" line.
async fn start_serving(listen: &str) -> (tokio::process::Child, String) {
    let mut child = reprise()
        .env("REPRISE__SERVER__LISTEN", listen)
        .env_remove("REPRISE_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once("listening on ") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("no listening line");
    })
    .await
    .unwrap();
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test]
async fn env_overrides_and_no_file_defaults_start_and_serve() {
    let (mut child, addr) = start_serving("127.0.0.1:0").await;
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    child.kill().await.unwrap();
}

/// The default (per-core) layout binds with SO_REUSEPORT; a second instance
/// on the same port must still be refused, not silently take half the
/// first one's connections.
#[tokio::test]
async fn a_second_instance_on_a_taken_port_is_refused() {
    let (mut first, addr) = start_serving("127.0.0.1:0").await;
    let second = reprise()
        .env("REPRISE__SERVER__LISTEN", &addr)
        .env_remove("REPRISE_CONFIG")
        .output();
    let second = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the second instance exits instead of serving")
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&addr), "names the address: {stderr}");
    assert!(
        stderr.to_lowercase().contains("in use"),
        "says why: {stderr}"
    );
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200, "the first instance still serves");
    first.kill().await.unwrap();
}
