//! `POST|GET|DELETE /mcp/{NAME}`: the transparent pass-through, with
//! `tools/list` and `tools/call` answered from the cache when they can be.
//!
//! Flow of a POST: authenticate → parse the envelope (raw JSON) →
//! `initialize` bumps the caller's `tools/list` generation → a cacheable
//! request reads the generations, builds the key and looks the tiers up →
//! hit: `{"jsonrpc":"2.0","id":<this id>,"result":<stored>}` as JSON →
//! miss: forwarded, the answer streamed back as it arrives (`tee`), its final
//! result captured and stored off the response path. GET streams, DELETE,
//! notifications, batches and every other method pass straight through
//! (still watched for `tools/list_changed`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::capture::{BodyScanner, Capture};
use super::key::{key, KeyInput};
use super::message::{error_response, response_with_id, Envelope};
use super::policy::{configured_ttl, judge, CacheType};
use super::report::{record, Outcome};
use super::tee::{Store, Tee, Work};
use super::{McpState, Server};
use crate::admin::watermarks::Scope;
use crate::cache::entry::{unix_ms_now, Entry, Origin};
use crate::cache::key::CacheKey;
use crate::cache::seal::Sealing;
use crate::cache::ttl::Ttl;
use crate::json::Json;
use crate::render::{cache_headers, CacheStatus, Tier};

/// The namespace of results a server marks public (with `share_public`).
const PUBLIC_NAMESPACE: &str = "mcp-public";

/// Request headers forwarded upstream (plus `mcp-param-*`). Never `Host`,
/// `Origin`, cookies or reprise's own controls.
const FORWARD_UP: [&str; 8] = [
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "authorization",
];

/// Response headers forwarded back to the client.
const FORWARD_DOWN: [&str; 7] = [
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "www-authenticate",
    "retry-after",
    "cache-control",
    "allow",
];

pub async fn handle(
    State(mcp): State<Arc<McpState>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let requested_at_ms = unix_ms_now();
    let credential = match mcp.app.authenticate(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(server) = mcp.servers.get(&name).cloned() else {
        let shown = name.get(..name.len().min(64)).unwrap_or("?");
        return json_rpc_error(
            StatusCode::NOT_FOUND,
            None,
            -32601,
            &format!("reprise has no MCP server named `{shown}`"),
        );
    };
    let up_headers = upstream_headers(&server, &headers);
    if method != Method::POST {
        let body = (method != Method::GET && !body.is_empty()).then_some(body);
        return forward(&mcp, &server, method, up_headers, body, None, None).await;
    }
    // Whatever is not answered from the cache goes to the server as sent.
    let pass_through = |id: Option<Box<RawValue>>| {
        let body = Some(body.clone());
        forward(
            &mcp,
            &server,
            method.clone(),
            up_headers.clone(),
            body,
            id,
            None,
        )
    };
    let Some(env) = Envelope::parse(&body).filter(Envelope::is_request) else {
        return pass_through(None).await;
    };
    let rpc_method = env.method.as_deref().unwrap_or_default();
    let id: Option<Box<RawValue>> = env.id.map(ToOwned::to_owned);
    let namespace = mcp.app.namespace(credential.as_deref(), None);
    // Private results under the caller's key; public ones (shared by every
    // caller) under the server secret alone.
    let sealing = mcp.app.sealing(credential.as_deref());
    let public_sealing = mcp.app.sealer.shared();
    if rpc_method == "initialize" {
        // A new session (or a restarted server, seen as one): this caller's
        // next tools/list must come from the server.
        mcp.generations
            .bump_caller(
                mcp.app.tiers.redis.as_ref(),
                &server.name,
                &namespace,
                server.config.list_ttl.duration(),
            )
            .await;
    }
    let Some(kind) = CacheType::for_method(rpc_method) else {
        return pass_through(id).await;
    };
    let params = match env.params.map(|p| Json::parse(p.get().as_bytes())) {
        Some(Ok(p)) => Some(p),
        None => None,
        Some(Err(_)) => return pass_through(id).await,
    };
    let tool = match (&kind, &params) {
        (CacheType::Call, Some(p)) => p.get("name").and_then(Json::as_str),
        _ => None,
    };
    let control = CacheControl::from_headers(&headers);
    let ttl = configured_ttl(&server.config, kind, tool)
        .filter(|_| mcp.app.config.cache.enabled && !(control.no_store && control.no_cache));
    let Some(ttl) = ttl else {
        record(
            &mcp.app.stats,
            &Outcome {
                namespace: &namespace,
                server: &server.name,
                kind,
                tool,
                status: CacheStatus::Bypass,
                tier: None,
                saved: None,
                error: false,
            },
        );
        return pass_through(id).await;
    };

    let protocol_version = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            params
                .as_ref()
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
                .and_then(Json::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let upstream_credential = (!server.sets_authorization)
        .then(|| headers.get(header::AUTHORIZATION))
        .flatten()
        .and_then(|v| v.to_str().ok());
    let redis = mcp.app.tiers.redis.as_ref();
    let generations = mcp
        .generations
        .current(
            redis,
            &server.name,
            (kind == CacheType::ListTools).then_some(namespace.as_str()),
        )
        .await;
    let input = KeyInput {
        namespace: &namespace,
        upstream_credential,
        server: &server.name,
        server_generation: &generations.server,
        caller_generation: generations.caller.as_deref(),
        protocol_version: &protocol_version,
        method: rpc_method,
        tool,
        params: params.as_ref(),
    };
    let private_key = key(&input);
    let public_key = server.config.share_public.then(|| {
        key(&KeyInput {
            namespace: PUBLIC_NAMESPACE,
            caller_generation: None,
            upstream_credential: None,
            ..input
        })
    });

    if !control.no_cache {
        let mut candidates = vec![(private_key, namespace.as_str(), &sealing)];
        if let Some(k) = public_key {
            candidates.push((k, PUBLIC_NAMESPACE, &public_sealing));
        }
        for (k, ns, seal) in candidates {
            let found = mcp
                .app
                .tiers
                .lookup(&k, ns, seal, None, |e| !purged(&mcp, &k, e, kind))
                .await;
            if let Some((entry, tier)) = found.fresh {
                record(
                    &mcp.app.stats,
                    &Outcome {
                        namespace: &namespace,
                        server: &server.name,
                        kind,
                        tool,
                        status: CacheStatus::Hit,
                        tier: Some(tier),
                        saved: entry.origin.upstream_ms.map(Duration::from_millis),
                        error: false,
                    },
                );
                if let Some(id) = &id {
                    return hit_response(id, &entry, tier, &k);
                }
            }
        }
    }

    record(
        &mcp.app.stats,
        &Outcome {
            namespace: &namespace,
            server: &server.name,
            kind,
            tool,
            status: CacheStatus::Miss,
            tier: None,
            saved: None,
            error: false,
        },
    );
    let plan = StorePlan {
        mcp: mcp.clone(),
        private: (private_key, namespace.clone(), sealing),
        public: public_key,
        ttl,
        write: !control.no_store,
        started: Instant::now(),
        requested_at_ms,
        server: server.name.clone(),
        kind,
        cap: mcp.app.config.cache.max_entry_bytes,
    };
    forward(
        &mcp,
        &server,
        method,
        up_headers,
        Some(body.clone()),
        id,
        Some(plan),
    )
    .await
}

/// Request `Cache-Control` as far as MCP caching honours it.
struct CacheControl {
    no_cache: bool,
    no_store: bool,
}

impl CacheControl {
    fn from_headers(headers: &HeaderMap) -> Self {
        let mut c = CacheControl {
            no_cache: false,
            no_store: false,
        };
        for value in headers.get_all(header::CACHE_CONTROL) {
            for token in value.to_str().unwrap_or("").split(',') {
                match token.trim().to_ascii_lowercase().as_str() {
                    "no-cache" => c.no_cache = true,
                    "no-store" => c.no_store = true,
                    _ => {}
                }
            }
        }
        c
    }
}

/// Where and how a miss's result is stored once its answer ends cleanly.
struct StorePlan {
    mcp: Arc<McpState>,
    private: (CacheKey, String, Sealing),
    public: Option<CacheKey>,
    ttl: Ttl,
    write: bool,
    started: Instant,
    requested_at_ms: u64,
    server: String,
    kind: CacheType,
    cap: usize,
}

impl StorePlan {
    /// The write, when the result may be stored (awaited before the bytes
    /// carrying the result reach the client: read-your-writes).
    fn store(self, result: Bytes) -> Option<Work> {
        let verdict = judge(&result, self.ttl, self.public.is_some())?;
        let (key, namespace, sealing) = match (verdict.public, self.public) {
            (true, Some(k)) => (k, PUBLIC_NAMESPACE.to_owned(), self.mcp.app.sealer.shared()),
            _ => self.private,
        };
        let origin = Origin {
            requested_at_ms: self.requested_at_ms,
            namespace: namespace.clone(),
            model: format!("mcp/{}", self.server),
            endpoint: self.kind.as_str().to_owned(),
            ..Origin::default()
        };
        let entry = Entry::new(result, "application/json".into(), verdict.ttl, None)
            .with_origin(origin, Some(self.started.elapsed()));
        let mcp = self.mcp;
        Some(Box::pin(async move {
            mcp.app
                .tiers
                .store(key, &namespace, &sealing, Arc::new(entry))
                .await;
        }))
    }
}

/// Whether a purge (`/v1/cache/purge`, by namespace, model `mcp/NAME`,
/// endpoint `mcp_list_tools` / `mcp_call` or key) removed this entry.
fn purged(mcp: &McpState, key: &CacheKey, entry: &Entry, kind: CacheType) -> bool {
    let scope = Scope {
        namespace: &entry.origin.namespace,
        model: &entry.origin.model,
        endpoint: kind.as_str(),
        key,
        custom_key: None,
    };
    mcp.app
        .watermarks
        .purged(&scope, entry.origin.requested_at_ms)
}

fn hit_response(id: &RawValue, entry: &Entry, tier: Tier, key: &CacheKey) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    cache_headers(&mut headers, CacheStatus::Hit, Some(key));
    headers.insert(
        HeaderName::from_static("x-cache-tier"),
        HeaderValue::from_static(tier.as_str()),
    );
    headers.insert(header::AGE, HeaderValue::from(entry.age().as_secs()));
    let mut response = Response::new(Body::from(response_with_id(id, &entry.body)));
    *response.headers_mut() = headers;
    response
}

fn upstream_headers(server: &Server, incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in incoming {
        let n = name.as_str();
        if FORWARD_UP.contains(&n) || n.starts_with("mcp-param-") {
            out.append(name.clone(), value.clone());
        }
    }
    if server.sets_authorization {
        out.remove(header::AUTHORIZATION);
    }
    for (name, value) in &server.headers {
        out.insert(name.clone(), value.clone());
    }
    out
}

/// Sends the request upstream and streams the answer back through a `Tee`.
async fn forward(
    mcp: &Arc<McpState>,
    server: &Arc<Server>,
    method: Method,
    headers: HeaderMap,
    body: Option<Bytes>,
    id: Option<Box<RawValue>>,
    plan: Option<StorePlan>,
) -> Response {
    let mut request = mcp
        .app
        .client
        .request(method, server.url.clone())
        .headers(headers);
    if let Some(body) = body {
        request = request.body(body);
    }
    let timeout = mcp.app.config.server.upstream_timeout;
    let upstream = match tokio::time::timeout(timeout, request.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(server = %server.name, error = %e, "mcp upstream unreachable");
            return json_rpc_error(
                StatusCode::BAD_GATEWAY,
                id.as_deref(),
                -32603,
                &format!("could not reach the MCP server `{}`", server.name),
            );
        }
        Err(_) => {
            return json_rpc_error(
                StatusCode::GATEWAY_TIMEOUT,
                id.as_deref(),
                -32603,
                &format!(
                    "the MCP server `{}` did not answer within {} s",
                    server.name,
                    timeout.as_secs()
                ),
            );
        }
    };
    let status = upstream.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if FORWARD_DOWN.contains(&name.as_str()) {
            out_headers.append(name.clone(), value.clone());
        }
    }
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Only a 200 answer's result is ever stored.
    let plan = plan.filter(|_| status == StatusCode::OK);
    if plan.is_some() {
        cache_headers(
            &mut out_headers,
            CacheStatus::Miss,
            plan.as_ref().map(|p| &p.private.0),
        );
    }
    let cap = plan.as_ref().map_or(0, |p| p.cap);
    let capture = Capture::new(if plan.is_some() { id } else { None }, cap);
    let bump = {
        let mcp = mcp.clone();
        let name = server.name.clone();
        Box::new(move || {
            let mcp = mcp.clone();
            let name = name.clone();
            Box::pin(async move {
                tracing::info!(server = %name, "mcp tools/list_changed: server generation bumped");
                mcp.generations
                    .bump_server(mcp.app.tiers.redis.as_ref(), &name)
                    .await;
            }) as Work
        })
    };
    let store = plan
        .filter(|p| p.write)
        .map(|plan| Box::new(move |result: Bytes| plan.store(result)) as Store);
    let tee = Tee::new(
        upstream.bytes_stream().boxed(),
        BodyScanner::for_content_type(&content_type),
        capture,
        bump,
        store,
    );
    let mut response = Response::new(Body::from_stream(tee));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}

fn json_rpc_error(status: StatusCode, id: Option<&RawValue>, code: i64, message: &str) -> Response {
    let mut response = Response::new(Body::from(error_response(id, code, message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
