//! MCP (Model Context Protocol) tool servers behind reprise: a transparent
//! Streamable HTTP proxy at `/mcp/{NAME}` whose `tools/list` and `tools/call`
//! answers are cached per tenant in the same tiers as completions.
//!
//! - `message`: JSON-RPC envelopes read from the raw bytes (nothing re-serialized);
//! - `key`: the cache key (server, generations, method, tool, canonical params);
//! - `policy`: what is cached and for how long (`ttlMs`, `cacheScope`, `isError`);
//! - `capture` + `tee`: the answer forwarded as it arrives while its final
//!   result is captured and `tools/list_changed` notifications are noticed;
//! - `generations`: invalidation by generation (in Redis when configured);
//! - `proxy`: the route; `report`: stats, metrics and logs.

pub mod capture;
pub mod config;
pub mod generations;
pub mod key;
pub mod message;
pub mod policy;
pub mod proxy;
mod report;
mod tee;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;

use crate::state::AppState;
use config::McpServerConfig;
use generations::Generations;

/// One configured server, with its headers resolved.
pub struct Server {
    pub name: String,
    pub config: McpServerConfig,
    pub url: reqwest::Url,
    pub headers: HeaderMap,
    /// The configured headers carry `Authorization` (the caller's is dropped).
    pub sets_authorization: bool,
}

pub struct McpState {
    pub app: Arc<AppState>,
    pub servers: HashMap<String, Arc<Server>>,
    pub generations: Generations,
}

impl McpState {
    /// Servers whose configuration cannot be used are logged and left out
    /// (`Config::validate` refuses them before this point).
    pub fn new(app: Arc<AppState>) -> Self {
        let mut servers = HashMap::new();
        for (name, config) in &app.config.mcp.servers {
            match Server::new(name, config) {
                Ok(server) => {
                    servers.insert(name.clone(), Arc::new(server));
                }
                Err(e) => tracing::error!(server = %name, "mcp server left out: {e}"),
            }
        }
        report::describe_metrics();
        McpState {
            app,
            servers,
            generations: Generations::default(),
        }
    }
}

impl Server {
    fn new(name: &str, config: &McpServerConfig) -> Result<Self, String> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        for (header, value) in &config.headers {
            let name = HeaderName::from_bytes(header.as_bytes()).map_err(|e| e.to_string())?;
            let value = config::expand_env(value)?;
            let mut value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(Server {
            name: name.to_owned(),
            config: config.clone(),
            sets_authorization: headers.contains_key(axum::http::header::AUTHORIZATION),
            url,
            headers,
        })
    }
}

/// `/mcp/{NAME}` (POST, GET, DELETE) and the admin invalidation route.
pub fn router(app: Arc<AppState>) -> Router<Arc<AppState>> {
    let state = Arc::new(McpState::new(app));
    Router::new()
        .route("/mcp/{name}", any(proxy::handle))
        .route("/v1/cache/mcp/{name}/invalidate", post(invalidate))
        .with_state(state)
}

/// `POST /v1/cache/mcp/{NAME}/invalidate`: bumps the server's generation, so
/// every cached `tools/list` and `tools/call` of it misses (on every
/// instance, when Redis is configured). With admin keys configured, only an
/// admin may do this.
async fn invalidate(
    State(mcp): State<Arc<McpState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let credential = match mcp.app.authenticate(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if !mcp.app.config.admin_keys().is_empty() && !mcp.app.is_admin(credential.as_deref()) {
        return crate::error::ProxyError::Unauthorized(
            "invalidating an MCP server's cache needs an admin key".into(),
        )
        .into_response();
    }
    if !mcp.servers.contains_key(&name) {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": {
                "message": format!("no MCP server named `{}`", name.get(..64).unwrap_or(&name)),
                "type": "invalid_request_error", "param": null, "code": "mcp_server_not_found"}})),
        )
            .into_response();
    }
    mcp.generations
        .bump_server(mcp.app.tiers.redis.as_ref(), &name)
        .await;
    tracing::info!(server = %name, "mcp cache invalidated");
    axum::Json(serde_json::json!({"server": name, "invalidated": true})).into_response()
}
