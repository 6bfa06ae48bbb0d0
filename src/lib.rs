//! reprise: an OpenAI-compatible caching reverse proxy for LLM APIs.
//!
//! Middleware order, outermost first (see [`app`]):
//! 1. `TraceLayer` — one span per request (method, path, status, latency);
//! 2. `DefaultBodyLimit` — bodies over `server.body_limit_bytes` are refused
//!    (the route turns the rejection into an OpenAI-shaped 413);
//! 3. the route handler — parse and validate, then `pipeline::run`
//!    (authentication, directives, routing, key, tiers, upstream, store).

#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod cost;
pub mod dashboard;
pub mod error;
pub mod json;
pub mod mcp;
pub mod percpu;
pub mod pipeline;
pub mod providers;
pub mod render;
pub mod server;
pub mod state;
pub mod stats;
pub mod stream;
pub mod telemetry;
pub mod trace;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use config::Config;
use state::AppState;

/// Why reprise could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("invalid pricing configuration: {0}")]
    Pricing(String),
    #[error("invalid redis configuration: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// The router for a given state.
pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.config.server.body_limit_bytes;
    Router::new()
        .route("/v1/chat/completions", post(server::chat::completions))
        .route(
            "/v1/batch/chat/completions",
            post(server::batch::completions),
        )
        .route("/v1/embeddings", post(server::embeddings::create))
        .route("/v1/messages", post(server::messages::create))
        .route("/v1/models", get(server::models::list))
        .route("/v1/directory/models", get(server::admin::directory))
        .route("/v1/cache/stats", get(server::admin::stats))
        .route("/v1/cache/stats/series", get(server::series::series))
        .route("/v1/cache/top", get(server::top::top))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/{file}", get(dashboard::file))
        .route("/v1/cache/purge", post(server::purge::purge))
        .route("/v1/cache/get", post(server::direct::get))
        .route("/v1/cache/set", post(server::direct::set))
        .route("/v1/cache", delete(server::purge::purge_namespace))
        .route(
            "/v1/cache/entries/{key}",
            delete(server::purge::purge_entry),
        )
        .route("/v1/cache/profile", get(server::profile::live))
        .route("/v1/cache/export", get(server::export::export))
        .route("/v1/cache/import", post(server::export::import))
        .route("/metrics", get(server::admin::metrics))
        .route("/health", get(server::ops::health))
        .route("/ready", get(server::ops::ready))
        .merge(mcp::router(state.clone()))
        .fallback(server::ops::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves on an already-bound listener until `shutdown` resolves; in-flight
/// requests finish before it returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    config.validate()?;
    crate::telemetry::spawn_upkeep();
    let state = Arc::new(AppState::new(config)?);
    admin::sync::spawn(&state);
    admin::fleet::spawn(&state);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "reprise listening on {addr}");
    // TCP_NODELAY: streamed chunks must leave as written, not wait for
    // Nagle's algorithm to meet the client's delayed ACK (a 40 ms stall).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("reprise stopped");
    Ok(())
}
