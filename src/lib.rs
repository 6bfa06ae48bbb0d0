//! reprise: an OpenAI-compatible caching reverse proxy for LLM APIs.
//!
//! Middleware order, outermost first (see [`app`] and [`limits`]):
//! 0. the accept loop (`limits::connections`) — `limits.max_connections`
//!    (one more is answered 503 and closed), `limits.header_read_timeout`
//!    (a request head still incomplete after it closes the connection), the
//!    peer address as `ConnectInfo`;
//! 1. `TraceLayer` — one span per request (method, path, status, latency);
//! 2. `DefaultBodyLimit` — the routes' own body extractor cap;
//! 3. `limits::requests::shed` — `limits.max_in_flight` requests (streams
//!    until their last byte); one more gets 503 + `Retry-After`
//!    (`/health`, `/ready`, `/metrics` are exempt; MCP GET streams count
//!    against `limits.max_mcp_streams` instead);
//! 4. per route group:
//!    - API routes (`api` in [`app`]: completions, messages, embeddings,
//!      batch, models, `/v1/cache/*` admin and operator routes, `/mcp/*`):
//!      `server::guard::authenticate_then_read`: the credential
//!      (401 from the headers alone, before any body byte is read), then
//!      the body as `limits::requests::buffered` reads it
//!      (`server.body_limit_bytes` → 413 before reading when declared,
//!      `limits.body_read_timeout` → 408);
//!    - `/metrics`: `server::guard::metrics_access` (a metrics/admin key, or
//!      a loopback peer when no metrics keys are configured);
//!    - `/health`, `/ready`, `/dashboard` (static files; its data requests
//!      carry the key to the API routes): no credential;
//! 5. the route handler — parse and validate, then `pipeline::run`
//!    (directives, routing, key, tiers, upstream, store).

#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod cost;
pub mod dashboard;
pub mod error;
pub mod json;
pub mod limits;
pub mod mcp;
pub mod percpu;
pub mod pipeline;
pub mod providers;
pub mod render;
pub mod runtime;
pub mod semantic;
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
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
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
    #[error("{0}")]
    Semantic(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// The router for a given state.
pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.config.server.body_limit_bytes;
    let limits = &state.config.limits;
    let body_read = limits::requests::BodyRead {
        timeout: limits.body_read_timeout,
        limit,
    };
    let in_flight = limits::requests::InFlight::new(
        limits.max_in_flight,
        limits.max_mcp_streams,
        limits.shed_retry_after,
    );
    // Routes that need a caller credential: authenticated before the body
    // is read (layers run bottom-up: the last added runs first).
    let api = Router::new()
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
        .route("/v1/cache/feedback", post(server::feedback::create))
        .route("/v1/cache/stats/series", get(server::series::series))
        .route("/v1/cache/top", get(server::top::top))
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
        .merge(mcp::router(state.clone()))
        .layer(from_fn_with_state(
            (state.clone(), body_read),
            server::guard::authenticate_then_read,
        ));
    let metrics = get(server::admin::metrics).layer(from_fn_with_state(
        state.clone(),
        server::guard::metrics_access,
    ));
    let routes = Router::new()
        .merge(api)
        .route("/metrics", metrics)
        .route("/health", get(server::ops::health))
        .route("/ready", get(server::ops::ready))
        // Static files only: the page asks for a key and sends it with
        // every data request (a browser cannot add one to a navigation).
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/{file}", get(dashboard::file))
        .fallback(server::ops::not_found)
        .with_state(state);
    // The process-wide layers wrap the router once, outside routing:
    // `Router::layer` would wrap every route's boxed service in each of them,
    // and a request then clones a box per layer and level.
    let layered = tower::ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state(in_flight, limits::requests::shed))
        .service(routes);
    Router::new().fallback_service(layered)
}

/// Serves on an already-bound listener until `shutdown` resolves; in-flight
/// requests finish before it returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let addr = listener.local_addr()?;
    let (state, connection_limits) = start(config, addr)?;
    tracing::info!(%addr, "reprise listening on {addr}");
    limits::connections::serve(listener, app(state), connection_limits, shutdown).await;
    tracing::info!("reprise stopped");
    Ok(())
}

/// Validates the config, builds the state and starts the background tasks
/// (metrics upkeep, watermark sync, fleet stats) on the current runtime.
pub(crate) fn start(
    config: Config,
    addr: std::net::SocketAddr,
) -> Result<(Arc<AppState>, limits::connections::ConnectionLimits), RunError> {
    config.validate()?;
    config.check_exposure(addr)?;
    crate::telemetry::spawn_upkeep();
    let connection_limits = limits::connections::ConnectionLimits {
        max_connections: config.limits.max_connections,
        header_read_timeout: config.limits.header_read_timeout,
    };
    let state = Arc::new(AppState::new(config)?);
    admin::sync::spawn(&state);
    admin::fleet::spawn(&state);
    Ok((state, connection_limits))
}
