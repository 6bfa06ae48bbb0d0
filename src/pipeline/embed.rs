//! Where the semantic tier's vectors come from. `semantic.embedder = "local"`:
//! the in-process model, on the tier's bounded blocking pool. `"provider"`:
//! `semantic.embedding_model` asked through reprise's own flow, as the caller
//! (same credential, same namespace), like the judge: the embeddings request
//! is routed, priced, counted and exact-cached, so embedding a text twice
//! costs one provider call. The provider's vector is L2-normalized and its
//! dimension taken as it comes (vectors of another dimension are never
//! compared). A failure or a timeout (`semantic.embed_timeout`) skips the
//! lookup (counted), failing open; a busy pool skips it too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Request;
use crate::cache::facts::BodyFacts;
use crate::cache::key::EndpointKind;
use crate::cache::seal::Sealing;
use crate::json::Json;
use crate::semantic::settings::EmbedderKind;
use crate::semantic::tier::{Embedded, SemanticTier};
use crate::state::AppState;

/// Bigger embedding responses are not read (3072 floats as JSON are ~70 KB).
const MAX_EMBEDDING_BODY: usize = 1024 * 1024;
/// Longest vector accepted from a provider (Redis items store the dimension in a u16).
const MAX_DIMENSIONS: usize = 16_384;

/// Who the semantic work after a request acts as: the caller's credential
/// and namespace (the provider embedder asks with them) and its sealing key
/// (what goes to Redis is sealed with it).
#[derive(Clone)]
pub(crate) struct Caller {
    pub state: Arc<AppState>,
    headers: HeaderMap,
    pub sealing: Sealing,
}

impl Caller {
    pub fn of(request: &Request) -> Self {
        let mut headers = HeaderMap::new();
        for name in ["authorization", "x-api-key", "x-cache-namespace"] {
            if let Some(v) = request.headers.get(name) {
                headers.insert(name, v.clone());
            }
        }
        headers.insert("x-cache-semantic", HeaderValue::from_static("off"));
        Caller {
            state: request.state.clone(),
            headers,
            sealing: request.sealing.clone(),
        }
    }
}

/// The vector of a request's last user text.
pub(crate) async fn text(tier: &SemanticTier, caller: &Caller, text: &str) -> Embedded {
    match tier.config.embedder {
        EmbedderKind::Local => tier.embed(text).await,
        EmbedderKind::Provider => provider(tier, caller, text).await,
    }
}

/// The vector of an answer (verified mode compares two).
pub(crate) async fn answer(tier: &SemanticTier, caller: &Caller, text: &str) -> Embedded {
    match tier.config.embedder {
        EmbedderKind::Local => tier.embed_answer(text).await,
        EmbedderKind::Provider => provider(tier, caller, text).await,
    }
}

/// Mixed into every partition id with the provider embedder, so vectors of
/// another embedding model (even of the same dimension) are never compared.
pub(crate) fn partition_context(tier: &SemanticTier) -> Option<[u8; 32]> {
    (tier.config.embedder == EmbedderKind::Provider).then(|| {
        Sha256::new()
            .chain_update(b"reprise semantic provider embedder\0")
            .chain_update(tier.config.embedding_model.as_bytes())
            .finalize()
            .into()
    })
}

fn counted(outcome: &'static str) {
    metrics::counter!("reprise_semantic_embed_total", "outcome" => outcome).increment(1);
}

async fn provider(tier: &SemanticTier, caller: &Caller, text: &str) -> Embedded {
    // The same bound as local embeddings: a saturated pool skips, never queues.
    let Some(_permit) = tier.try_permit() else {
        counted("busy");
        return Embedded::Busy;
    };
    let started = tokio::time::Instant::now();
    let asked = tokio::time::timeout(tier.config.embed_timeout, ask(tier, caller, text)).await;
    metrics::histogram!("reprise_semantic_embed_seconds").record(started.elapsed());
    match asked {
        Ok(Some(vector)) => {
            counted("ok");
            Embedded::Vector(Arc::from(vector))
        }
        Ok(None) => {
            counted("error");
            Embedded::Failed
        }
        Err(_) => {
            counted("timeout");
            Embedded::Failed
        }
    }
}

/// Boxed with its `Send` bound spelled out: the embeddings request runs the
/// same flow that called it (see `judge::confirms`).
fn ask<'a>(
    tier: &'a SemanticTier,
    caller: &'a Caller,
    text: &'a str,
) -> Pin<Box<dyn Future<Output = Option<Vec<f32>>> + Send + 'a>> {
    Box::pin(async move {
        let body = serde_json::json!({"model": tier.config.embedding_model, "input": text});
        let raw = Bytes::from(body.to_string());
        let parsed = Json::parse(&raw).ok()?;
        let facts = BodyFacts::derive(EndpointKind::Embeddings, &parsed).ok()?;
        let response = super::run(
            caller.state.clone(),
            EndpointKind::Embeddings,
            caller.headers.clone(),
            raw.clone(),
            &facts,
        )
        .await;
        if !response.status().is_success() {
            tracing::debug!(status = %response.status(), "provider embedding failed");
            return None;
        }
        let bytes = axum::body::to_bytes(response.into_body(), MAX_EMBEDDING_BODY)
            .await
            .ok()?;
        parse_vector(&bytes)
    })
}

/// The first embedding of an embeddings response, L2-normalized; None for
/// anything else (empty, too long, non-finite, all zeros).
pub(crate) fn parse_vector(body: &[u8]) -> Option<Vec<f32>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let floats = value["data"][0]["embedding"].as_array()?;
    if floats.is_empty() || floats.len() > MAX_DIMENSIONS {
        return None;
    }
    let vector: Vec<f32> = floats
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32).filter(|x| x.is_finite()))
        .collect::<Option<_>>()?;
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| vector.iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_read_normalized_and_bounded() {
        let body = |embedding: Value| {
            serde_json::json!({"object": "list", "data": [{"embedding": embedding}]}).to_string()
        };
        let v = parse_vector(body(serde_json::json!([3.0, 4.0])).as_bytes()).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        for bad in [
            serde_json::json!([]),
            serde_json::json!([0.0, 0.0]),
            serde_json::json!([1.0, "x"]),
            serde_json::json!("AACAPw=="),
            serde_json::json!(vec![1.0; MAX_DIMENSIONS + 1]),
        ] {
            assert!(
                parse_vector(body(bad.clone()).as_bytes()).is_none(),
                "{bad}"
            );
        }
        assert!(parse_vector(b"not json").is_none());
    }
}
