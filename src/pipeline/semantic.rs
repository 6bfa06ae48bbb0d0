//! The semantic tier in the flow: after an exact miss (memory, then Redis)
//! and before single-flight, an eligible request's last user text is
//! embedded and compared with the stored texts of its context partition; a
//! candidate is served when it is similar enough *and* passes the lexical
//! guard (or, in the judge band, when the judge model says yes). After a
//! stored miss the request's vector is added, off the response path.
//!
//! The exact hit path never reaches this file.

use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use super::embed::{self, Caller};
pub(crate) use super::remember::Remember;
use super::verified::{self, Exploration};
use super::{costing, judge, respond, Answer, Request};
use crate::cache::entry::Entry;
use crate::cache::key::{EndpointKind, KeyScope};
use crate::cache::outcome::{CacheStatus, Tier};
use crate::json::Json;
use crate::semantic::guard::lexical_guard;
use crate::semantic::index::Candidate;
use crate::semantic::partition::{self, Subject};
use crate::semantic::settings::SemanticMode;
use crate::semantic::tier::{Embedded, SemanticTier};
use crate::semantic::verified::VerifiedDecision;
use crate::state::AppState;

/// The semantic tier's part of one request.
#[derive(Default)]
pub(crate) struct Plan {
    /// The tier applies: enabled, model and rule allow it, no custom key,
    /// no answer bucket, not switched off by the request.
    pub enabled: bool,
    /// `x-cache-semantic-threshold` in ten-thousandths (tightens only).
    pub threshold_bp: Option<u16>,
    /// What the lookup derived, reused when the answer is stored.
    pub(super) probe: OnceLock<Arc<Probe>>,
    /// Verified mode: the candidate this request explores (it goes to the
    /// provider, and its answer is compared with the candidate's).
    pub exploration: OnceLock<Exploration>,
}

pub(super) struct Probe {
    pub subject: Subject,
    pub vector: Arc<[f32]>,
}

impl Plan {
    pub fn new(
        state: &AppState,
        model: &str,
        rule: Option<bool>,
        kind: EndpointKind,
        directives: &crate::cache::policy::Directives,
        bucket: u32,
    ) -> Self {
        let enabled = state
            .semantic
            .as_ref()
            .is_some_and(|t| t.applies(model, rule))
            && kind != EndpointKind::Embeddings
            && directives.key.is_none()
            && !directives.semantic_off
            // Sampled traffic keeps several answers per key on purpose: a
            // paraphrase is not a reason to collapse that variety.
            && bucket <= 1;
        Plan {
            enabled,
            threshold_bp: directives.semantic_threshold,
            probe: OnceLock::new(),
            exploration: OnceLock::new(),
        }
    }
}

/// What the semantic lookup found.
pub(crate) enum Found {
    Hit(Box<Answer>),
    /// Observe mode: a hit that was not served, and what it would have saved.
    WouldHit(f64),
    Nothing,
}

/// Where the request's exact key lives: an alias's targets share entries
/// (the exact key's scope), so they share partitions too.
pub(super) fn scope(request: &Request) -> KeyScope<'_> {
    match &request.alias {
        Some(alias) => KeyScope {
            namespace: &request.namespace,
            kind: request.kind,
            provider: "alias/",
            model: &alias.name,
        },
        None => KeyScope {
            namespace: &request.namespace,
            kind: request.kind,
            provider: &request.provider.name,
            model: &request.model,
        },
    }
}

/// The forwarded headers that can change the answer (`anthropic-version`,
/// `anthropic-beta`, …), digested under the request's scope exactly as the
/// exact key takes them: part of the context a paraphrase must share.
/// With the provider embedder, the embedding model is part of it too.
pub(super) fn header_context(request: &Request) -> [u8; 32] {
    let none = crate::cache::key::BodyDigest([0; 32]);
    let headers = crate::cache::key::scoped_key_with(&scope(request), &none, |sink| {
        request
            .provider
            .answer_headers(&request.headers, |name, value| sink(name, value.as_bytes()))
    })
    .0;
    match request
        .state
        .semantic
        .as_deref()
        .and_then(embed::partition_context)
    {
        Some(embedder) => Sha256::new()
            .chain_update(headers)
            .chain_update(embedder)
            .finalize()
            .into(),
        None => headers,
    }
}

/// The request's subject: its last user text and its full-context partition.
fn subject_of(
    request: &Request,
    body: &Json<'_>,
    max_temperature: f64,
) -> Result<Subject, partition::Ineligible> {
    let mut subject = partition::subject(&scope(request), body, max_temperature)?;
    subject.partition = subject.partition.narrowed(&header_context(request));
    Ok(subject)
}

/// The semantic partition's hash of a request whose lookup ran (traces).
pub(crate) fn partition_hex(request: &Request) -> Option<String> {
    request
        .semantic
        .probe
        .get()
        .map(|p| p.subject.partition.hex())
}

fn outcome(what: &'static str) {
    metrics::counter!("reprise_semantic_lookups_total", "outcome" => what).increment(1);
}

/// Looks the request up by meaning (called after an exact miss).
pub(crate) async fn lookup(request: &Request) -> Found {
    let (true, Some(tier)) = (request.semantic.enabled, request.state.semantic.as_ref()) else {
        return Found::Nothing;
    };
    let state = &request.state;
    let subject = match Json::parse(&request.raw)
        .ok()
        .map(|body| subject_of(request, &body, tier.config.max_temperature))
    {
        Some(Ok(subject)) => subject,
        Some(Err(why)) => {
            outcome(why.as_str());
            return Found::Nothing;
        }
        None => return Found::Nothing,
    };
    let vector = match embed::text(tier, &Caller::of(request), &subject.text).await {
        Embedded::Vector(v) => v,
        Embedded::Busy => {
            outcome("skipped_busy");
            return Found::Nothing;
        }
        Embedded::TooLong => {
            outcome("text_size");
            return Found::Nothing;
        }
        Embedded::Failed => {
            outcome("embed_failed");
            return Found::Nothing;
        }
    };
    let threshold = threshold(tier, request.semantic.threshold_bp);
    let verifying = tier.config.mode == SemanticMode::Verified;
    // Verified mode learns each entry's threshold; it does not use the judge.
    let judging = tier.config.judge_model.is_some() && !verifying;
    let floor = if verifying {
        verified::floor(tier, request.semantic.threshold_bp)
    } else if judging {
        tier.config.judge_floor.min(threshold)
    } else {
        threshold
    };
    let redis = state.tiers.redis.as_ref();
    let candidates = tier
        .candidates(
            redis,
            &request.sealing,
            &request.namespace,
            &subject.partition,
            &vector,
            floor,
        )
        .await;
    let probe = request.semantic.probe.get_or_init(|| {
        Arc::new(Probe {
            subject,
            vector: vector.clone(),
        })
    });
    let mut found = Found::Nothing;
    for candidate in candidates {
        if !lexical_guard(&probe.subject.text, &candidate.text) {
            outcome("guard_rejected");
            continue;
        }
        if verifying {
            // vCache: the nearest live candidate decides, by its own history.
            let Some(entry) = matched_entry(request, tier, &probe.subject, &candidate).await else {
                continue;
            };
            let decision = verified::decide(tier, &candidate.observations, candidate.similarity);
            if decision == VerifiedDecision::Serve {
                return serve(request, &candidate, &entry, Some("learned"));
            }
            outcome("explore");
            let _ = request.semantic.exploration.set(Exploration {
                key: candidate.key,
                similarity: candidate.similarity,
                cached: entry,
            });
            return Found::Nothing;
        }
        let needs_judge = candidate.similarity < threshold;
        if needs_judge && !judging {
            continue;
        }
        let Some(entry) = matched_entry(request, tier, &probe.subject, &candidate).await else {
            continue;
        };
        let mut verified = None;
        if needs_judge {
            if !request.mode.serves() {
                // Observe mode does not spend judge calls on would-be hits.
                continue;
            }
            if !judge::confirms(request, &candidate.text, &probe.subject.text).await {
                outcome("judge_no");
                continue;
            }
            outcome("judge_yes");
            verified = Some("judge");
        }
        found = serve(request, &candidate, &entry, verified);
        break;
    }
    if matches!(found, Found::Nothing) {
        outcome("miss");
    }
    found
}

/// A candidate's entry as the answer (or, in observe mode, what serving it
/// would have saved).
fn serve(
    request: &Request,
    candidate: &Candidate,
    entry: &Entry,
    verified: Option<&'static str>,
) -> Found {
    let state = &request.state;
    let cost = costing::hit(state, &request.model, entry);
    if !request.mode.serves() {
        outcome("would_hit");
        return Found::WouldHit(cost.map_or(0.0, |c| c.cache_savings_usd));
    }
    outcome(if verified == Some("learned") {
        "learned"
    } else {
        "hit"
    });
    let matched = respond::SemanticMatch {
        key: candidate.key,
        similarity: candidate.similarity,
        verified,
    };
    let mut record =
        costing::hit_record(CacheStatus::Hit, Some(Tier::Semantic), entry, cost.as_ref());
    record.semantic_learned = verified == Some("learned");
    let saved = cost.as_ref().map_or(0.0, |c| c.cache_savings_usd);
    if saved > 0.0 {
        metrics::counter!("reprise_saved_microusd_total", "source" => "semantic")
            .increment(costing::micro_usd(saved));
    }
    let response = respond::cached_as(
        request,
        entry,
        CacheStatus::Hit,
        Some(Tier::Semantic),
        cost.as_ref(),
        Some(&matched),
    );
    Found::Hit(Box::new(Answer::new(response, record)))
}

/// The configured threshold, tightened (never loosened) by the request.
fn threshold(tier: &SemanticTier, requested_bp: Option<u16>) -> f32 {
    let configured = tier.config.threshold;
    requested_bp.map_or(configured, |bp| configured.max(f32::from(bp) / 10_000.0))
}

/// The exact entry a candidate points at, if it is still there (fresh and
/// servable to this request). A candidate whose entry is gone is dropped.
async fn matched_entry(
    request: &Request,
    tier: &SemanticTier,
    subject: &Subject,
    candidate: &Candidate,
) -> Option<Arc<Entry>> {
    let state = &request.state;
    let found = state
        .tiers
        .lookup(
            &candidate.key,
            &request.namespace,
            &request.sealing,
            request.directives.max_age,
            |e| request.not_purged(&candidate.key, e),
        )
        .await;
    if let Some((entry, _)) = found.fresh {
        return respond::compatible(request, &entry).then_some(entry);
    }
    if found.stale.is_some() {
        return None;
    }
    // Gone (expired, evicted, purged): drop the match, unless Redis merely
    // did not answer.
    let redis = state.tiers.redis.as_ref();
    let gone = match redis {
        Some(r) => {
            r.exists(&r.entry_key(&request.namespace, &candidate.key))
                .await
                == Some(false)
        }
        None => true,
    };
    if gone {
        outcome("entry_gone");
        tier.forget(
            redis,
            &request.namespace,
            &subject.partition,
            &candidate.key,
        )
        .await;
    }
    None
}
