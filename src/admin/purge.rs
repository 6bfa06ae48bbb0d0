//! Purge: `POST /v1/cache/purge`, `DELETE /v1/cache`, `DELETE
//! /v1/cache/entries/{key}`.
//!
//! A purge is a set of watermark rules (`watermarks`). Applying one: merge the
//! rules locally (every later lookup here misses), drop matching entries from
//! this instance's memory tier, publish the rules to Redis (the other
//! instances pick them up within `admin.watermark_poll` and sweep their own
//! memory), then delete the matching Redis entries in the background
//! (`cleanup`). Nothing here runs on the request path of a cached call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::watermarks::{Mark, Rule, Scope, Stamp};
use crate::cache::entry::{unix_ms_now, Entry, Origin};
use crate::cache::key::{CacheKey, EndpointKind};
use crate::error::ProxyError;
use crate::state::AppState;

/// Bounds on what a purge may name (each is a rule kept for a day).
const MAX_KEYS: usize = 1000;
const MAX_GLOBS: usize = 100;
const MAX_TEXT: usize = 512;
/// How long the answer waits for the Redis clean-up to count what it deleted.
const COUNT_BUDGET: Duration = Duration::from_secs(2);

/// The body of `POST /v1/cache/purge`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Hex `x-cache-key` values of single entries.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Globs over custom keys (`user_123:*`).
    #[serde(default)]
    pub custom_keys: Vec<String>,
    pub model: Option<String>,
    pub endpoint: Option<String>,
    /// Only entries written before now − this (`"1h"`).
    pub older_than: Option<String>,
    /// Another namespace (admin keys only).
    pub namespace: Option<String>,
    /// `"all"`: every namespace (admin keys only, with `confirm: "all"`).
    pub scope: Option<String>,
    pub confirm: Option<String>,
}

/// Who asks: their own namespace (with any `x-cache-namespace` segment) and
/// whether their key is an admin key.
pub struct Caller {
    pub namespace: String,
    pub admin: bool,
}

/// A validated purge.
#[derive(Debug)]
pub struct Plan {
    pub rules: Vec<Rule>,
    pub stamp: Stamp,
}

/// What the answer reports.
pub struct Outcome {
    pub id: String,
    pub watermark_ms: u64,
    pub deleted: u64,
}

fn bounded<'a>(text: &'a str, field: &'static str) -> Result<&'a str, ProxyError> {
    if text.is_empty() || text.len() > MAX_TEXT {
        return Err(ProxyError::bad_request(
            format!("`{field}` must be 1 to {MAX_TEXT} bytes"),
            Some(field),
        ));
    }
    Ok(text)
}

/// Checks a request against the caller's rights and turns it into rules.
pub fn plan(request: &PurgeRequest, caller: &Caller, now_ms: u64) -> Result<Plan, ProxyError> {
    let all = match request.scope.as_deref() {
        None | Some("namespace") => false,
        Some("all") => true,
        Some(_) => {
            return Err(ProxyError::bad_request(
                "`scope` must be \"namespace\" or \"all\"",
                Some("scope"),
            ))
        }
    };
    if (all || request.namespace.is_some()) && !caller.admin {
        return Err(ProxyError::Forbidden(
            "purging another namespace (`namespace`, `scope: \"all\"`) needs an admin key".into(),
        ));
    }
    if all && request.confirm.as_deref() != Some("all") {
        return Err(ProxyError::bad_request(
            "`scope: \"all\"` purges every tenant's entries: confirm with `\"confirm\": \"all\"`",
            Some("confirm"),
        ));
    }
    if all && request.namespace.is_some() {
        return Err(ProxyError::bad_request(
            "`namespace` and `scope: \"all\"` exclude each other",
            Some("namespace"),
        ));
    }
    let namespace = match (&request.namespace, all) {
        (_, true) => None,
        (Some(ns), false) => Some(bounded(ns, "namespace")?.to_owned()),
        (None, false) => Some(caller.namespace.clone()),
    };
    let model = match &request.model {
        Some(m) => Some(bounded(m, "model")?.to_owned()),
        None => None,
    };
    let endpoint = match request.endpoint.as_deref() {
        None => None,
        Some(e) => Some(
            [
                EndpointKind::Chat,
                EndpointKind::Embeddings,
                EndpointKind::Messages,
            ]
            .into_iter()
            .map(EndpointKind::as_str)
            .find(|k| *k == e)
            .ok_or_else(|| {
                ProxyError::bad_request(
                    "`endpoint` must be one of chat, embeddings, messages",
                    Some("endpoint"),
                )
            })?
            .to_owned(),
        ),
    };
    if request.keys.len() > MAX_KEYS || request.custom_keys.len() > MAX_GLOBS {
        return Err(ProxyError::bad_request(
            format!("at most {MAX_KEYS} `keys` and {MAX_GLOBS} `custom_keys` per purge"),
            Some("keys"),
        ));
    }
    let watermark_ms = match &request.older_than {
        None => now_ms,
        Some(text) => {
            let d = humantime::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ProxyError::bad_request(
                        "`older_than` must be a duration such as \"30m\", \"1h\" or \"7d\"",
                        Some("older_than"),
                    )
                })?;
            now_ms.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
    };
    let base = Rule {
        namespace,
        model,
        endpoint,
        key: None,
        custom_key: None,
    };
    let mut rules = Vec::new();
    for key in &request.keys {
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProxyError::bad_request(
                "`keys` holds x-cache-key values: 64 hex digits each",
                Some("keys"),
            ));
        }
        rules.push(Rule {
            key: Some(key.to_ascii_lowercase()),
            ..base.clone()
        });
    }
    for glob in &request.custom_keys {
        rules.push(Rule {
            custom_key: Some(bounded(glob, "custom_keys")?.to_owned()),
            ..base.clone()
        });
    }
    if rules.is_empty() {
        rules.push(base);
    }
    Ok(Plan {
        rules,
        stamp: Stamp {
            watermark_ms,
            created_ms: now_ms,
        },
    })
}

/// The scope an entry carries, for rules matched against stored entries.
pub fn entry_scope<'a>(key: &'a CacheKey, entry: &'a Entry) -> Scope<'a> {
    origin_scope(key, &entry.origin)
}

/// The scope of a stored value from its origin (readable without opening a
/// sealed body).
pub fn origin_scope<'a>(key: &'a CacheKey, o: &'a Origin) -> Scope<'a> {
    Scope {
        namespace: &o.namespace,
        model: &o.model,
        endpoint: &o.endpoint,
        key,
        custom_key: o.custom_key.as_deref(),
    }
}

/// Drops what `marks` purge from this instance's memory tier.
pub async fn sweep_memory(state: &AppState, marks: &[Mark]) -> u64 {
    let Some(memory) = &state.tiers.memory else {
        return 0;
    };
    if marks.is_empty() {
        return 0;
    }
    memory
        .sweep(|key, entry| {
            let scope = entry_scope(key, entry);
            marks
                .iter()
                .any(|m| m.purges(&scope, entry.origin.requested_at_ms))
        })
        .await
}

/// Applies a plan here and fleet-wide; `who` is the caller's namespace hash
/// (for the log line).
pub async fn execute(state: &Arc<AppState>, plan: Plan, who: &str) -> Outcome {
    let now = unix_ms_now();
    let retention =
        u64::try_from(state.config.admin.watermark_retention.as_millis()).unwrap_or(u64::MAX);
    let incoming: Vec<(Rule, Stamp)> = plan.rules.iter().map(|r| (r.clone(), plan.stamp)).collect();
    state
        .watermarks
        .merge(incoming, now.saturating_sub(retention));
    let marks: Vec<Mark> = plan
        .rules
        .iter()
        .map(|r| Mark::new(r.clone(), plan.stamp))
        .collect();
    let from_memory = sweep_memory(state, &marks).await;
    let deleted = match &state.tiers.redis {
        None => from_memory,
        Some(redis) => {
            let published = super::sync::publish(redis, &plan.rules, plan.stamp).await;
            if !published {
                tracing::warn!("purge not published to redis (unavailable): other instances keep their entries until it is repeated");
            }
            let counter = Arc::new(AtomicU64::new(0));
            let task = {
                let state = state.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    if let Some(redis) = &state.tiers.redis {
                        super::cleanup::run(redis, &marks, &counter).await;
                    }
                })
            };
            // The clean-up goes on in the background if it takes longer.
            let _ = tokio::time::timeout(COUNT_BUDGET, task).await;
            counter.load(Ordering::Relaxed)
        }
    };
    let scope = if plan.rules.iter().any(|r| r.namespace.is_none()) {
        "all"
    } else {
        "namespace"
    };
    metrics::counter!("reprise_cache_purges_total", "scope" => scope).increment(1);
    metrics::counter!("reprise_cache_purged_entries_total").increment(deleted);
    tracing::info!(
        who,
        rules = %serde_json::to_string(&plan.rules).unwrap_or_default(),
        watermark_ms = plan.stamp.watermark_ms,
        deleted,
        "cache purge"
    );
    Outcome {
        id: format!("purge_{:x}{:06x}", now, next_id() & 0xff_ffff),
        watermark_ms: plan.stamp.watermark_ms,
        deleted,
    }
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(admin: bool) -> Caller {
        Caller {
            namespace: "abc".into(),
            admin,
        }
    }

    #[test]
    fn a_bare_purge_is_the_callers_namespace() {
        let p = plan(&PurgeRequest::default(), &caller(false), 5000).unwrap();
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].namespace.as_deref(), Some("abc"));
        assert_eq!(p.stamp.watermark_ms, 5000);
    }

    #[test]
    fn other_namespaces_and_all_need_an_admin() {
        let other = PurgeRequest {
            namespace: Some("xyz".into()),
            ..Default::default()
        };
        assert_eq!(plan(&other, &caller(false), 1).unwrap_err().status(), 403);
        assert_eq!(
            plan(&other, &caller(true), 1).unwrap().rules[0]
                .namespace
                .as_deref(),
            Some("xyz")
        );
        let all = PurgeRequest {
            scope: Some("all".into()),
            ..Default::default()
        };
        assert_eq!(plan(&all, &caller(false), 1).unwrap_err().status(), 403);
        assert_eq!(plan(&all, &caller(true), 1).unwrap_err().status(), 400);
        let confirmed = PurgeRequest {
            scope: Some("all".into()),
            confirm: Some("all".into()),
            ..Default::default()
        };
        assert_eq!(
            plan(&confirmed, &caller(true), 1).unwrap().rules[0].namespace,
            None
        );
    }

    #[test]
    fn older_than_moves_the_watermark_back() {
        let r = PurgeRequest {
            older_than: Some("1h".into()),
            ..Default::default()
        };
        let p = plan(&r, &caller(false), 10_000_000).unwrap();
        assert_eq!(p.stamp.watermark_ms, 10_000_000 - 3_600_000);
        assert_eq!(p.stamp.created_ms, 10_000_000);
        let bad = PurgeRequest {
            older_than: Some("soon".into()),
            ..Default::default()
        };
        assert_eq!(plan(&bad, &caller(false), 1).unwrap_err().status(), 400);
    }

    #[test]
    fn keys_and_globs_become_one_rule_each_and_are_bounded() {
        let r = PurgeRequest {
            keys: vec!["AB".repeat(32)],
            custom_keys: vec!["user_1:*".into(), "user_2:*".into()],
            model: Some("gpt-4o".into()),
            ..Default::default()
        };
        let p = plan(&r, &caller(false), 1).unwrap();
        assert_eq!(p.rules.len(), 3);
        assert_eq!(p.rules[0].key.as_deref(), Some("ab".repeat(32).as_str()));
        assert!(p.rules.iter().all(|r| r.model.as_deref() == Some("gpt-4o")));
        let bad_key = PurgeRequest {
            keys: vec!["nothex".into()],
            ..Default::default()
        };
        assert_eq!(plan(&bad_key, &caller(false), 1).unwrap_err().status(), 400);
        let too_many = PurgeRequest {
            custom_keys: vec!["x".into(); MAX_GLOBS + 1],
            ..Default::default()
        };
        assert_eq!(
            plan(&too_many, &caller(false), 1).unwrap_err().status(),
            400
        );
        let endpoint = PurgeRequest {
            endpoint: Some("images".into()),
            ..Default::default()
        };
        assert_eq!(
            plan(&endpoint, &caller(false), 1).unwrap_err().status(),
            400
        );
    }
}
