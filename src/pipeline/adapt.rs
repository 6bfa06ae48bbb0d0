//! Per provider dialect: which upstream endpoint a request goes to, the
//! request translation (OpenAI chat → Anthropic Messages) and the automatic
//! prompt-cache injection. Runs after the key is computed, so nothing done
//! here can change which entry a request maps to.

use serde_json::{Map, Value};

use crate::cache::key::EndpointKind;
use crate::config::{PromptCacheField, ProviderKind};
use crate::error::ProxyError;
use crate::providers::{inject, translate, Provider};
use crate::state::AppState;

/// How a request travels to its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI format both ways (chat completions, embeddings).
    OpenAi,
    /// Anthropic Messages both ways (`/v1/messages`).
    Anthropic,
    /// An OpenAI chat request answered by an Anthropic model: translated there
    /// and back, streams included.
    ChatToAnthropic,
}

pub fn wire(kind: EndpointKind, provider: &Provider) -> Result<Wire, ProxyError> {
    match (kind, provider.kind) {
        (EndpointKind::Chat | EndpointKind::Embeddings, ProviderKind::Openai) => Ok(Wire::OpenAi),
        (EndpointKind::Chat, ProviderKind::Anthropic) => Ok(Wire::ChatToAnthropic),
        (EndpointKind::Messages, ProviderKind::Anthropic) => Ok(Wire::Anthropic),
        (EndpointKind::Embeddings, ProviderKind::Anthropic) => Err(ProxyError::bad_request(
            format!("provider `{}` (anthropic) has no embeddings endpoint", provider.name),
            Some("model"),
        )),
        (EndpointKind::Messages, ProviderKind::Openai) => Err(ProxyError::bad_request(
            format!(
                "/v1/messages needs an Anthropic model; this model routes to `{}`, an OpenAI-compatible provider (use /v1/chat/completions)",
                provider.name
            ),
            Some("model"),
        )),
    }
}

/// Upstream path, relative to the provider's base URL.
pub fn path(kind: EndpointKind, wire: Wire) -> &'static str {
    match (kind, wire) {
        (EndpointKind::Embeddings, _) => "/embeddings",
        (_, Wire::OpenAi) => "/chat/completions",
        _ => "/messages",
    }
}

/// Whether `prepare_body` may edit the body at all (so the caller's bytes
/// can be forwarded without parsing them again when it cannot).
pub fn may_change(kind: EndpointKind, wire: Wire, provider: &Provider) -> bool {
    match wire {
        Wire::OpenAi => kind == EndpointKind::Chat && provider.inject_prompt_cache,
        Wire::Anthropic => provider.inject_prompt_cache,
        Wire::ChatToAnthropic => true,
    }
}

/// Translates the body for the provider and injects prompt-cache fields.
/// Returns whether the body changed.
pub fn prepare_body(
    state: &AppState,
    kind: EndpointKind,
    wire: Wire,
    provider: &Provider,
    namespace: &str,
    model: &str,
    body: &mut Map<String, Value>,
) -> Result<bool, ProxyError> {
    let min_tokens = || {
        state
            .pricing
            .price(model)
            .and_then(|p| p.min_cacheable_tokens)
    };
    match wire {
        Wire::OpenAi => {
            if kind != EndpointKind::Chat || !provider.inject_prompt_cache {
                return Ok(false);
            }
            let use_user = provider.prompt_cache_field == PromptCacheField::User;
            Ok(inject::inject_openai(
                body,
                namespace,
                provider.retention_for(model),
                use_user,
            ))
        }
        Wire::Anthropic => {
            Ok(provider.inject_prompt_cache && inject::inject_anthropic(body, min_tokens()) > 0)
        }
        Wire::ChatToAnthropic => {
            let mut translated = translate::chat_to_messages(body, provider.default_max_tokens)?;
            if provider.inject_prompt_cache {
                inject::inject_anthropic(&mut translated, min_tokens());
            }
            *body = translated;
            Ok(true)
        }
    }
}
