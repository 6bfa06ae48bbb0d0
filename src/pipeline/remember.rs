//! After a stored miss, the request's vector goes into the semantic index,
//! off the response path (the background task that writes the entry to
//! Redis runs it). An explored request (verified mode) first settles its
//! comparison with the candidate's answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::embed::{self, Caller};
use super::semantic::{header_context, scope, Probe};
use super::verified::{self, Exploration};
use super::Request;
use crate::cache::entry::Entry;
use crate::cache::key::{CacheKey, EndpointKind, KeyScope};
use crate::json::Json;
use crate::semantic::partition;
use crate::semantic::tier::Embedded;
use crate::state::AppState;

/// Adds a stored answer's vector to the index, off the response path.
pub(crate) struct Remember {
    state: Arc<AppState>,
    namespace: String,
    kind: EndpointKind,
    /// The exact key's scope (an alias's name when one chose the target).
    provider: String,
    model: String,
    /// The answer-changing headers' digest (see `header_context`).
    context: [u8; 32],
    raw: Bytes,
    probe: Option<Arc<Probe>>,
    /// Verified mode: the candidate this request explored.
    exploration: Option<Exploration>,
    /// The stats slot of verification outcomes (route, upstream model).
    stats_model: String,
    /// Whom the provider embedder asks as.
    caller: Caller,
}

impl Remember {
    /// None when this request's answer does not go into the index.
    pub fn from(request: &Request) -> Option<Self> {
        if !request.semantic.enabled || !request.writes() {
            return None;
        }
        let scope = scope(request);
        Some(Remember {
            state: request.state.clone(),
            namespace: request.namespace.clone(),
            kind: request.kind,
            provider: scope.provider.to_owned(),
            model: scope.model.to_owned(),
            context: header_context(request),
            raw: request.raw.clone(),
            probe: request.semantic.probe.get().cloned(),
            exploration: request.semantic.exploration.get().cloned(),
            stats_model: request.model.clone(),
            caller: Caller::of(request),
        })
    }

    /// Adds the vector for `key`, whose entry (`fresh`) lives `expire` more
    /// (None = forever). An explored request first settles its comparison:
    /// an answer that agrees with the candidate's adds no entry.
    pub async fn run(self, key: CacheKey, expire: Option<Duration>, fresh: &Entry) {
        let Some(tier) = self.state.semantic.as_ref() else {
            return;
        };
        if let Some(exploration) = &self.exploration {
            let stats = (self.kind.as_str(), self.stats_model.as_str());
            let settled = verified::settle(
                tier,
                &self.caller,
                &self.namespace,
                stats,
                exploration,
                fresh,
            )
            .await;
            if settled == Some(true) {
                return;
            }
        }
        let (subject, vector) = match self.probe {
            Some(p) => (p.subject.clone(), p.vector.clone()),
            None => {
                let scope = KeyScope {
                    namespace: &self.namespace,
                    kind: self.kind,
                    provider: &self.provider,
                    model: &self.model,
                };
                let Some(Ok(mut subject)) = Json::parse(&self.raw)
                    .ok()
                    .map(|b| partition::subject(&scope, &b, tier.config.max_temperature))
                else {
                    return;
                };
                subject.partition = subject.partition.narrowed(&self.context);
                match embed::text(tier, &self.caller, &subject.text).await {
                    Embedded::Vector(v) => (subject, v),
                    _ => {
                        metrics::counter!("reprise_semantic_store_skipped_total").increment(1);
                        return;
                    }
                }
            }
        };
        let grace = self.state.config.cache.stale_grace;
        tier.remember(
            self.state.tiers.redis.as_ref(),
            &self.caller.sealing,
            &self.namespace,
            subject.partition,
            &subject.text,
            vector,
            key,
            expire.map(|e| e + grace),
        )
        .await;
    }
}
