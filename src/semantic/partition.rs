//! Context partitions: which requests may be answered by meaning, and which
//! stored entries they may be compared with.
//!
//! Only the last user message's text is compared by meaning; everything else
//! must be identical. The partition id is therefore the exact cache key of
//! the request with that one text removed: the same scope (namespace,
//! endpoint, provider, model) and the same canonical body (system prompt,
//! every earlier turn, tools, sampling parameters, `n`, unknown fields, …),
//! computed by `cache::key`'s canonical form, so "identical context" means
//! exactly what "identical request" means to the exact tier.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::cache::key::{body_digest, scoped_key, EndpointKind, KeyScope};
use crate::json::Json;

/// Texts longer than this are not eligible (a bound on the embedding work).
/// The tier also refuses any text the embedder would truncate (256 tokens):
/// two long texts that differ only past the cut would look identical to it.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Version of the partition derivation (part of every partition id).
const PARTITION_VERSION: &[u8] = b"reprise-semantic-partition-v1";

/// Identifies one context: requests in the same partition differ at most in
/// their last user text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PartitionId(pub [u8; 32]);

impl PartitionId {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// This partition narrowed by more context that is not in the body (the
    /// forwarded headers that can change the answer, as digested into the
    /// exact key): requests differing there never share a partition.
    pub fn narrowed(self, context: &[u8; 32]) -> Self {
        PartitionId(
            Sha256::new()
                .chain_update(PARTITION_VERSION)
                .chain_update(self.0)
                .chain_update(context)
                .finalize()
                .into(),
        )
    }
}

/// An eligible request: its partition and the text compared by meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    pub partition: PartitionId,
    pub text: String,
}

/// Why a request is not eligible (counted in metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ineligible {
    /// Embeddings are never semantic.
    Endpoint,
    /// The last message is not a user message made of text.
    NotUserText,
    /// `temperature` above `semantic.max_temperature`.
    Temperature,
    /// The text is empty or longer than [`MAX_TEXT_BYTES`].
    TextSize,
}

impl Ineligible {
    pub fn as_str(self) -> &'static str {
        match self {
            Ineligible::Endpoint => "endpoint",
            Ineligible::NotUserText => "not_user_text",
            Ineligible::Temperature => "temperature",
            Ineligible::TextSize => "text_size",
        }
    }
}

/// The subject of a request body, or why it has none. `temperature` absent
/// counts as 1.0 (the OpenAI and Anthropic default).
pub fn subject(
    scope: &KeyScope<'_>,
    body: &Json<'_>,
    max_temperature: f64,
) -> Result<Subject, Ineligible> {
    if scope.kind == EndpointKind::Embeddings {
        return Err(Ineligible::Endpoint);
    }
    let temperature = match body.get("temperature") {
        None | Some(Json::Null) => 1.0,
        Some(Json::Number(n)) => n.as_f64().unwrap_or(f64::INFINITY),
        Some(_) => f64::INFINITY,
    };
    if temperature > max_temperature {
        return Err(Ineligible::Temperature);
    }
    let messages = body
        .get("messages")
        .and_then(Json::as_array)
        .ok_or(Ineligible::NotUserText)?;
    let last = messages.last().ok_or(Ineligible::NotUserText)?;
    if last.get("role").and_then(Json::as_str) != Some("user") {
        return Err(Ineligible::NotUserText);
    }
    let text = user_text(last.get("content")).ok_or(Ineligible::NotUserText)?;
    if text.trim().is_empty() || text.len() > MAX_TEXT_BYTES {
        return Err(Ineligible::TextSize);
    }
    Ok(Subject {
        partition: partition_id(scope, body),
        text: text.into_owned(),
    })
}

/// The text of a user message's content: a string, or an array made only of
/// text parts (joined by newlines). Images, audio, files: None.
fn user_text<'j>(content: Option<&'j Json<'_>>) -> Option<Cow<'j, str>> {
    match content? {
        Json::String(s) => Some(Cow::Borrowed(s.as_ref())),
        Json::Array(parts) if !parts.is_empty() => {
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                if part.get("type").and_then(Json::as_str) != Some("text") {
                    return None;
                }
                texts.push(part.get("text")?.as_str()?);
            }
            Some(Cow::Owned(texts.join("\n")))
        }
        _ => None,
    }
}

/// The exact key of the body with the last message's `content` set to null
/// (an eligible request always has text there, so null marks "removed"),
/// hashed once more under the partition version.
fn partition_id(scope: &KeyScope<'_>, body: &Json<'_>) -> PartitionId {
    let mut stripped = body.clone();
    if let Json::Object(members) = &mut stripped {
        for (name, value) in members.iter_mut() {
            if name != "messages" {
                continue;
            }
            if let Some(Json::Object(last)) = match value {
                Json::Array(items) => items.last_mut(),
                _ => None,
            } {
                for (field, v) in last.iter_mut() {
                    if field == "content" {
                        *v = Json::Null;
                    }
                }
            }
        }
    }
    let key = scoped_key(scope, &body_digest(scope.kind, &stripped));
    let digest: [u8; 32] = Sha256::new()
        .chain_update(PARTITION_VERSION)
        .chain_update(key.0)
        .finalize()
        .into();
    PartitionId(digest)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn scope<'a>(ns: &'a str, model: &'static str) -> KeyScope<'a> {
        KeyScope {
            namespace: ns,
            kind: EndpointKind::Chat,
            provider: "openai",
            model,
        }
    }

    fn of(body: &Value) -> Result<Subject, Ineligible> {
        subject(&scope("ns", "gpt-4o"), &Json::from_value(body), 1.0)
    }

    fn chat(system: &str, earlier: &str, last: Value) -> Value {
        json!({"model": "gpt-4o", "temperature": 0, "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": earlier},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": last}]})
    }

    #[test]
    fn only_the_last_user_text_varies_within_a_partition() {
        let a = of(&chat(
            "be brief",
            "hi",
            json!("How do I reset my password?"),
        ))
        .unwrap();
        let b = of(&chat("be brief", "hi", json!("password reset steps?"))).unwrap();
        assert_eq!(a.partition, b.partition);
        assert_eq!(a.text, "How do I reset my password?");
        // Text parts join; they live in the same partition as a string.
        let parts = of(&chat(
            "be brief",
            "hi",
            json!([{"type": "text", "text": "password"}, {"type": "text", "text": "reset?"}]),
        ))
        .unwrap();
        assert_eq!(parts.text, "password\nreset?");
        assert_eq!(parts.partition, a.partition);
        // Anything else in the context changes the partition.
        for other in [
            chat("be verbose", "hi", json!("x")),
            chat("be brief", "hello", json!("x")),
        ] {
            assert_ne!(of(&other).unwrap().partition, a.partition);
        }
        let mut tools = chat("be brief", "hi", json!("x"));
        tools["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
        assert_ne!(of(&tools).unwrap().partition, a.partition);
        let mut n = chat("be brief", "hi", json!("x"));
        n["n"] = json!(2);
        assert_ne!(of(&n).unwrap().partition, a.partition);
        // Excluded fields (stream, user) do not.
        let mut streamed = chat("be brief", "hi", json!("x"));
        streamed["stream"] = json!(true);
        streamed["user"] = json!("u1");
        assert_eq!(of(&streamed).unwrap().partition, a.partition);
    }

    #[test]
    fn scope_separates_partitions() {
        let body = chat("s", "e", json!("q"));
        let j = Json::from_value(&body);
        let a = subject(&scope("ns", "gpt-4o"), &j, 1.0).unwrap();
        assert_ne!(
            subject(&scope("other", "gpt-4o"), &j, 1.0)
                .unwrap()
                .partition,
            a.partition
        );
        assert_ne!(
            subject(&scope("ns", "gpt-4o-mini"), &j, 1.0)
                .unwrap()
                .partition,
            a.partition
        );
    }

    #[test]
    fn ineligible_requests() {
        let tool_result = json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "tool", "tool_call_id": "c", "content": "42"}]});
        assert_eq!(of(&tool_result), Err(Ineligible::NotUserText));
        let image = json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "http://x"}}]}]});
        assert_eq!(of(&image), Err(Ineligible::NotUserText));
        let hot = json!({"model": "m", "temperature": 1.5, "messages": [{"role": "user", "content": "q"}]});
        assert_eq!(of(&hot), Err(Ineligible::Temperature));
        let long = json!({"model": "m", "temperature": 0,
            "messages": [{"role": "user", "content": "x".repeat(MAX_TEXT_BYTES + 1)}]});
        assert_eq!(of(&long), Err(Ineligible::TextSize));
        let blank = json!({"model": "m", "messages": [{"role": "user", "content": "  "}]});
        assert_eq!(of(&blank), Err(Ineligible::TextSize));
        // Absent temperature counts as 1.0.
        let plain = json!({"model": "m", "messages": [{"role": "user", "content": "q"}]});
        assert!(of(&plain).is_ok());
        assert_eq!(
            subject(&scope("ns", "m"), &Json::from_value(&plain), 0.5),
            Err(Ineligible::Temperature)
        );
        let embed = KeyScope {
            kind: EndpointKind::Embeddings,
            ..scope("ns", "e")
        };
        assert_eq!(
            subject(&embed, &Json::from_value(&plain), 1.0),
            Err(Ineligible::Endpoint)
        );
    }
}
