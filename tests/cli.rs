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

#[tokio::test]
async fn env_overrides_and_no_file_defaults_start_and_serve() {
    let mut child = reprise()
        .env("REPRISE__SERVER__LISTEN", "127.0.0.1:0")
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
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    child.kill().await.unwrap();
}
