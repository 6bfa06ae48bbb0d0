//! What routing decided for one request (`routing_metadata.route` and the
//! `route` log field), how an attempt's outcome is judged (healthy? worth a
//! retry elsewhere?), and the probe that brings an ejected replica back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, Method, StatusCode};
use serde::Serialize;

use super::replicas::{Pick, PickReason};
use super::Provider;
use crate::error::ProxyError;
use crate::upstream::{self, Deadline};

/// How an alias chose its target (see `economics`).
#[derive(Debug, Clone, Serialize)]
pub struct AliasChoice {
    /// The model name the caller used.
    pub name: String,
    pub strategy: crate::config::AliasStrategy,
    /// Why this target: `first_healthy`, `only_healthy`, `cheapest`,
    /// `prefix_cached`, `cheaper_uncached`, `no_prices`.
    pub reason: &'static str,
    /// What each candidate was expected to cost, when prices were compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expected_usd: Vec<ExpectedCost>,
}

/// One candidate of a price comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectedCost {
    pub target: String,
    /// Expected USD with the estimated cached share (infinite: no price,
    /// serialized as null).
    pub usd: f64,
    #[serde(skip)]
    pub uncached_usd: f64,
    /// Estimated share of the prompt read from this target's cache.
    pub cached_share: f64,
}

/// `routing_metadata.route`: where the request went and why.
#[derive(Debug, Clone, Serialize)]
pub struct RouteInfo {
    /// The provider (`provider/model` when an alias chose it).
    pub target: String,
    /// Index of the replica in the provider's `base_urls`.
    pub replica: usize,
    pub reason: PickReason,
    /// 2 when the first attempt failed before any response byte.
    pub attempts: u8,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_alias"
    )]
    pub alias: Option<Arc<AliasChoice>>,
}

fn serialize_alias<S: serde::Serializer>(
    alias: &Option<Arc<AliasChoice>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    alias.as_deref().serialize(s)
}

impl RouteInfo {
    /// A short form for the request log line: `mock[1] affinity`.
    pub fn label(&self) -> String {
        let mut out = format!("{}[{}] {:?}", self.target, self.replica, self.reason);
        if let Some(alias) = &self.alias {
            out.push_str(&format!(" via {} ({})", alias.name, alias.reason));
        }
        out
    }
}

/// The route of a request, set by the forward step (once per attempt).
#[derive(Debug, Default)]
pub struct RouteNote(Mutex<Option<RouteInfo>>);

impl RouteNote {
    pub fn set(&self, info: RouteInfo) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
    }

    pub fn get(&self) -> Option<RouteInfo> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A route for `provider`'s replica `pick`.
pub fn route_info(
    target: &str,
    pick: Pick,
    attempts: u8,
    alias: Option<&Arc<AliasChoice>>,
) -> RouteInfo {
    RouteInfo {
        target: target.to_owned(),
        replica: pick.index,
        reason: pick.reason,
        attempts,
        alias: alias.cloned(),
    }
}

/// What one attempt says about its replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Counts as a success for the replica's health.
    pub healthy: bool,
    /// Failed before any response byte in a way another replica may not:
    /// worth one retry elsewhere.
    pub retry: bool,
}

/// Connect errors and connections that broke before the response head are
/// retried; a timeout is not (the request's time is spent).
pub fn judge_error(e: &ProxyError) -> Verdict {
    match e {
        ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamBroken { .. } => Verdict {
            healthy: false,
            retry: true,
        },
        ProxyError::UpstreamTimeout { .. } => Verdict {
            healthy: false,
            retry: false,
        },
        _ => Verdict {
            healthy: true,
            retry: false,
        },
    }
}

/// 502/503/504 and a 429 that asks to wait longer than `retry_after_bound`
/// are retried elsewhere; any 5xx counts against the replica.
pub fn judge_status(
    status: StatusCode,
    headers: &HeaderMap,
    retry_after_bound: Duration,
) -> Verdict {
    match status.as_u16() {
        502..=504 => Verdict {
            healthy: false,
            retry: true,
        },
        429 => {
            let long = retry_after(headers).is_some_and(|d| d > retry_after_bound);
            Verdict {
                healthy: !long,
                retry: long,
            }
        }
        s if s >= 500 => Verdict {
            healthy: false,
            retry: false,
        },
        _ => Verdict {
            healthy: true,
            retry: false,
        },
    }
}

/// `Retry-After` in seconds (the HTTP-date form counts as long: providers
/// use it for long waits).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    match v.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Some(Duration::from_secs_f64(secs.min(1e9))),
        Ok(_) => None,
        Err(_) => Some(Duration::MAX),
    }
}

/// Probes replicas whose ejection ended, off the request path: a GET of
/// `probe_path`; any answer below 500 brings the replica back.
pub fn spawn_probes(
    client: &reqwest::Client,
    provider: &Arc<Provider>,
    probe_path: &str,
    timeout: Duration,
) {
    for index in provider.replicas.claim_probes() {
        let (client, provider) = (client.clone(), provider.clone());
        let url = provider.url_at(index, probe_path);
        tokio::spawn(async move {
            let headers = provider.upstream_headers(&HeaderMap::new());
            let deadline = Deadline::after(timeout);
            let ok = upstream::send_to(
                &client,
                &provider,
                url,
                Method::GET,
                headers,
                None,
                deadline,
            )
            .await
            .is_ok_and(|r| !r.status().is_server_error());
            tracing::info!(provider = %provider.name, replica = index, ok, "replica probed");
            provider.replicas.probe_done(index, ok);
        });
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn verdicts() {
        let bound = Duration::from_secs(1);
        let none = HeaderMap::new();
        let retry =
            |s: u16, h: &HeaderMap| judge_status(StatusCode::from_u16(s).unwrap(), h, bound);
        assert_eq!(
            retry(200, &none),
            Verdict {
                healthy: true,
                retry: false
            }
        );
        assert_eq!(
            retry(400, &none),
            Verdict {
                healthy: true,
                retry: false
            }
        );
        assert_eq!(
            retry(500, &none),
            Verdict {
                healthy: false,
                retry: false
            }
        );
        for s in [502, 503, 504] {
            assert_eq!(
                retry(s, &none),
                Verdict {
                    healthy: false,
                    retry: true
                }
            );
        }
        assert_eq!(
            retry(429, &none),
            Verdict {
                healthy: true,
                retry: false
            }
        );
        let mut short = HeaderMap::new();
        short.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        assert_eq!(
            retry(429, &short),
            Verdict {
                healthy: true,
                retry: false
            }
        );
        let mut long = HeaderMap::new();
        long.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(
            retry(429, &long),
            Verdict {
                healthy: false,
                retry: true
            }
        );
        let mut date = HeaderMap::new();
        date.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"),
        );
        assert!(retry(429, &date).retry);

        let connect = ProxyError::UpstreamConnect {
            provider: "p".into(),
            detail: "refused".into(),
        };
        assert_eq!(
            judge_error(&connect),
            Verdict {
                healthy: false,
                retry: true
            }
        );
        let timeout = ProxyError::UpstreamTimeout {
            provider: "p".into(),
            secs: 1,
        };
        assert_eq!(
            judge_error(&timeout),
            Verdict {
                healthy: false,
                retry: false
            }
        );
    }
}
