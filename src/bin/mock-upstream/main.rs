//! `mock-upstream`: a deterministic, scriptable fake of the OpenAI API.
//!
//! Used by the integration tests, the load benchmarks and the README's offline demo.
//! Every answer is derived from the request body alone, so identical requests produce
//! identical content and different requests produce different content; only `id` (a
//! global sequence number) and `created` change between calls.
//!
//! Routes (see each module):
//! - `anthropic.rs`: `/v1/messages` (Anthropic Messages JSON and SSE, prompt-cache
//!   usage accounting, Anthropic-shaped errors).
//! - `openai.rs`: `/v1/chat/completions` (→ `chat.rs`, `stream.rs`), `/v1/embeddings`
//!   (→ `embeddings.rs`), `/v1/models`, the failure models and OpenAI-shaped errors;
//!   `text.rs` holds the shared text/hash helpers.
//! - `control.rs`: `/_mock/calls`, `/_mock/reset`, `/_mock/last`, `/_mock/last_headers`.
//! - `faults.rs`: `/_mock/fault`, a switchable error status (a sick replica).
//! - `fixed.rs`: `/_mock/answer`, a switchable fixed chat answer (verified-mode tests).
//! - `prefix_cache.rs`: `--prefix-cache`, a vLLM-style prefix cache per process.
//!
//! Adding a provider (e.g. Anthropic `/v1/messages`): write `anthropic.rs` with a
//! `routes()` function, merge it in [`app`], and add a variant to
//! `control::Endpoint` so its calls are counted.
//!
//! After binding, exactly one line is printed to stdout:
//! `mock-upstream listening on http://127.0.0.1:PORT`.

mod anthropic;
mod chat;
mod control;
mod embeddings;
mod faults;
mod fixed;
mod openai;
mod prefix_cache;
mod stream;
mod text;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use axum::Router;
use clap::Parser;

/// Request bodies up to this size are accepted (load tests send large prompts).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How long in-flight requests (e.g. `mock-slow`) may delay exit after a signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Deterministic, scriptable fake of the OpenAI API.
#[derive(Parser, Debug, Clone)]
#[command(name = "mock-upstream", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: String,
    /// Delay before the response headers, in ms (per request: `x-mock-latency-ms`).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay between SSE chunks of a streamed response, in ms.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// How long model `mock-slow` sleeps before answering, in ms.
    #[arg(long, default_value_t = 30_000)]
    slow_ms: u64,
    /// Imitate a self-hosted prefix cache for every chat model: remember the
    /// prompts' message prefixes and report `cached_tokens` for them.
    #[arg(long)]
    prefix_cache: bool,
}

/// Timing knobs from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub latency: Duration,
    pub chunk_delay: Duration,
    pub slow: Duration,
    pub prefix_cache: bool,
}

/// Shared state of all routes.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub recorder: control::Recorder,
    /// Prompt-cache imitation (Anthropic breakpoints, DeepSeek prefixes).
    pub prompt_cache: anthropic::PromptCache,
    /// `--prefix-cache` (vLLM-style, every chat model).
    pub prefix_cache: prefix_cache::PrefixCache,
    pub faults: faults::Faults,
    /// `/_mock/answer`: when set, every chat answer's text.
    pub fixed_answer: fixed::FixedAnswer,
}

pub type Shared = Arc<AppState>;

/// The whole router. New route families are merged here.
fn app(state: Shared) -> Router {
    Router::new()
        .merge(openai::routes())
        .merge(anthropic::routes())
        .merge(control::routes())
        .merge(faults::routes())
        .merge(fixed::routes())
        .fallback(openai::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mock-upstream: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let config = Config {
        latency: Duration::from_millis(args.latency_ms),
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        slow: Duration::from_millis(args.slow_ms),
        prefix_cache: args.prefix_cache,
    };
    let state = Arc::new(AppState {
        config,
        recorder: control::Recorder::default(),
        prompt_cache: anthropic::PromptCache::default(),
        prefix_cache: prefix_cache::PrefixCache::default(),
        faults: faults::Faults::default(),
        fixed_answer: fixed::FixedAnswer::default(),
    });

    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "mock-upstream listening on http://{addr}")?;
        out.flush()?;
    }

    // Small SSE chunks must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app(state))
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });

    tokio::select! {
        res = &mut server => return res.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        () = shutdown => {}
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(res) => res.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        // Requests still in flight (e.g. `mock-slow`) are abandoned.
        Err(_elapsed) => Ok(()),
    }
}

/// Installs the Ctrl-C / SIGTERM handlers now (so a signal sent right after the
/// address line is printed is never missed) and resolves when one arrives.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
