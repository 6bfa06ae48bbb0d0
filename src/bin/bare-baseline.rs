//! `bare-baseline`: the throughput ceiling for reprise's cache-hit path.
//!
//! A bare axum server on the same tokio multi-thread runtime and the same axum
//! version as reprise, answering `POST /v1/chat/completions` with fixed bytes
//! shaped like a reprise cache hit: the request body is read fully (as reprise
//! does), then a `chat.completion` JSON body with `routing_metadata` is
//! returned with the same response headers a hit carries (`content-type`,
//! `x-cache-status`, `x-cache-key`, `x-cache-tier`, `age`,
//! `x-reprise-cost-usd`, `x-reprise-savings-usd`). It does no JSON parsing,
//! hashing, cache lookup, tracing or metrics: the benchmark target is
//! "hit-path throughput ≥ 50% of this".
//!
//! `--body-file PATH` serves those exact bytes instead of the built-in body
//! (the load bench passes a body captured from a real reprise hit, so both
//! servers send the same number of bytes).
//!
//! After binding, exactly one line is printed to stdout:
//! `bare-baseline listening on http://ADDR`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use clap::Parser;

/// A bare axum handler returning a fixed cache-hit-shaped response.
#[derive(Parser, Debug)]
#[command(name = "bare-baseline", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// Serve the bytes of this file as the response body.
    #[arg(long)]
    body_file: Option<PathBuf>,
}

/// Shaped like a reprise hit on a mock-upstream answer (about 700 bytes).
const DEFAULT_BODY: &str = concat!(
    r#"{"id":"chatcmpl-mock-000000000001","object":"chat.completion","created":1717000000,"#,
    r#""model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","#,
    r#""content":"Mock answer to: Say something about the cache, request number 0 [1a2b3c4d]","#,
    r#""refusal":null},"logprobs":null,"finish_reason":"stop"}],"#,
    r#""usage":{"prompt_tokens":25,"completion_tokens":14,"total_tokens":39,"#,
    r#""prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"#,
    r#""completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"#,
    r#""accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"#,
    r#""service_tier":"default","system_fingerprint":"fp_mock","#,
    r#""routing_metadata":{"provider":"openai","cache":{"status":"hit","tier":"memory","#,
    r#""age_s":0,"tokens_saved":39}}}"#
);

/// A hex SHA-256, the length of reprise's `x-cache-key`.
const KEY: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

async fn completions(State(body): State<Bytes>, request: Bytes) -> Response {
    // Read fully, like reprise; the content is not looked at.
    let _ = request.len();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                HeaderName::from_static("x-cache-status"),
                HeaderValue::from_static("hit"),
            ),
            (
                HeaderName::from_static("x-cache-key"),
                HeaderValue::from_static(KEY),
            ),
            (
                HeaderName::from_static("x-cache-tier"),
                HeaderValue::from_static("memory"),
            ),
            (header::AGE, HeaderValue::from_static("0")),
            (
                HeaderName::from_static("x-reprise-cost-usd"),
                HeaderValue::from_static("0"),
            ),
            (
                HeaderName::from_static("x-reprise-savings-usd"),
                HeaderValue::from_static("0.0000249"),
            ),
        ],
        body,
    )
        .into_response()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let body = match &args.body_file {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                eprintln!("bare-baseline: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Bytes::from_static(DEFAULT_BODY.as_bytes()),
    };
    // The same runtime reprise builds in its `main`.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bare-baseline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args.listen, body)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-baseline: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: String, body: Bytes) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "bare-baseline listening on http://{addr}")?;
        out.flush()?;
    }
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(body);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
