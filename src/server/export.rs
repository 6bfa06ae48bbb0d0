//! `GET /v1/cache/export` and `POST /v1/cache/import`: moving entries
//! between deployments (`reprise cache export|import`), as JSONL of
//! `cache::dump` lines. A caller's key exports and imports its own namespace
//! (and its `x-cache-namespace` segments); an admin key any namespace, or
//! all of them. Export reads Redis when the backend has it (every instance's
//! entries), else the memory tier. With `cache.encryption = "per-tenant"`
//! every exported value is sealed: Redis values are copied as stored
//! (unopened), memory entries are sealed on the way out for the namespaces
//! the caller holds the key of (its own, shared ones); other tenants' memory
//! entries are left out of a memory-only export.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;

use crate::cache::{codec, dump};
use crate::error::ProxyError;
use crate::state::AppState;

/// Keys fetched per Redis `SCAN` step.
const SCAN_COUNT: usize = 500;
/// Import problems listed in the answer (the count covers all of them).
const MAX_LISTED: usize = 100;

#[derive(Deserialize)]
pub struct ExportQuery {
    /// Only this namespace (admins: any; callers: one of their own).
    #[serde(default)]
    namespace: Option<String>,
}

/// Who may see which namespaces.
struct Scope {
    credential: Option<String>,
    admin: bool,
    own: String,
    only: Option<String>,
}

impl Scope {
    fn of(state: &AppState, headers: &HeaderMap, only: Option<String>) -> Result<Self, ProxyError> {
        let credential = state.authenticate(headers)?;
        Ok(Scope {
            admin: state.is_admin(credential.as_deref()),
            own: state.namespace(credential.as_deref(), None),
            credential,
            only,
        })
    }

    fn allows(&self, namespace: &str) -> bool {
        let mine = self.admin
            || namespace == self.own
            || namespace
                .strip_prefix(self.own.as_str())
                .is_some_and(|rest| rest.starts_with('.'));
        mine && self.only.as_deref().is_none_or(|o| o == namespace)
    }
}

pub async fn export(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<ExportQuery>,
) -> Response {
    let scope = match Scope::of(&state, &headers, query.namespace) {
        Ok(s) => Arc::new(s),
        Err(e) => return e.into_response(),
    };
    let body = if state.tiers.redis.is_some() {
        // Probe once so an unreachable Redis is an error, not an empty dump.
        let Some(first) = scan_page(&state, &scope, 0).await else {
            return unavailable();
        };
        let pages = stream::unfold(Some(first), move |page| {
            let (state, scope) = (state.clone(), scope.clone());
            async move {
                let (next, chunk) = page?;
                let following = match next {
                    0 => None,
                    cursor => scan_page(&state, &scope, cursor).await,
                };
                Some((Ok::<_, std::io::Error>(chunk), following))
            }
        });
        Body::from_stream(pages)
    } else if let Some(memory) = &state.tiers.memory {
        let lines: Vec<_> = memory
            .snapshot()
            .into_iter()
            .filter(|(_, ns, _)| scope.allows(ns))
            .filter_map(|(key, ns, entry)| {
                let sealing = state.sealing_for_namespace(scope.credential.as_deref(), &ns)?;
                let value = codec::encode_for(&entry, 1024, &key, &sealing)?;
                dump::encode_line(&ns, &key, entry.remaining(), &value)
            })
            .map(|line| Ok::<_, std::io::Error>(Bytes::from(line)))
            .collect();
        Body::from_stream(stream::iter(lines))
    } else {
        Body::empty()
    };
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// One SCAN step rendered as dump lines: (next cursor, bytes).
async fn scan_page(state: &AppState, scope: &Scope, cursor: u64) -> Option<(u64, Bytes)> {
    let redis = state.tiers.redis.as_ref()?;
    let (next, keys) = redis.scan(cursor, SCAN_COUNT).await?;
    let mut out = String::new();
    for redis_key in keys {
        let Some((namespace, key)) = redis.parse_entry_key(&redis_key) else {
            continue;
        };
        if !scope.allows(&namespace) {
            continue;
        }
        // As stored: a sealed value leaves sealed, whoever exports it.
        let Some(value) = redis.get_raw(&redis_key).await else {
            continue;
        };
        let Some(meta) = codec::peek(&value) else {
            continue;
        };
        if let Some(line) = dump::encode_line(&namespace, &key, meta.remaining(), &value) {
            out.push_str(&line);
        }
    }
    Some((next, Bytes::from(out)))
}

fn unavailable() -> Response {
    let body = json!({"error": {"message": "the Redis tier is unavailable; nothing exported",
        "type": "server_error", "param": null, "code": "cache_unavailable"}});
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Stores every valid line; answers what was imported and which lines were
/// skipped (with their 1-based line number and why).
pub async fn import(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let scope = match Scope::of(&state, &headers, None) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = state.config.server.body_limit_bytes;
            return ProxyError::PayloadTooLarge { limit }.into_response();
        }
        Err(rejection) => {
            return ProxyError::bad_request(rejection.to_string(), None).into_response()
        }
    };
    let (mut imported, mut skipped) = (0u64, 0u64);
    let mut problems = Vec::new();
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let outcome = dump::decode_line(line).and_then(|line| {
            if !scope.allows(&line.namespace) {
                return Err(format!(
                    "namespace `{}` is not yours to import into",
                    line.namespace
                ));
            }
            Ok(line)
        });
        let outcome = match outcome {
            Ok(line) => {
                let sealing =
                    state.sealing_for_namespace(scope.credential.as_deref(), &line.namespace);
                let stored = state
                    .tiers
                    .store_encoded(
                        line.key,
                        &line.namespace,
                        &line.value,
                        &line.meta,
                        sealing.as_ref(),
                    )
                    .await;
                if stored {
                    Ok(())
                } else {
                    Err(
                        "the value does not open with this deployment's secret and your key, \
                         and there is no Redis tier to keep it sealed"
                            .to_owned(),
                    )
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                imported += 1;
            }
            Err(error) => {
                skipped += 1;
                if problems.len() < MAX_LISTED {
                    problems.push(json!({"line": index + 1, "error": error}));
                }
            }
        }
    }
    Json(json!({"object": "cache.import", "imported": imported,
        "skipped": skipped, "problems": problems}))
    .into_response()
}
