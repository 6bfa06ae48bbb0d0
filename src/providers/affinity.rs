//! The conversation's opening, as a 64-bit digest: what prefix affinity
//! hashes to pick a replica, and what `cache_economics` keys its estimates by.
//!
//! The opening is the part of the prompt every later turn repeats: the tools,
//! the system (and developer) instructions and the first user turn. Each turn
//! of a chat sends the whole history again, so turn N's prompt extends turn
//! N-1's and shares its opening: hashing the opening sends every turn to the
//! replica whose prefix cache already holds the conversation, while two
//! conversations with the same system prompt but different first questions
//! still spread.
//!
//! Members are hashed in document order (SDKs serialize deterministically;
//! the cache key, not this, is what must be canonical). SHA-256, truncated:
//! stable across builds and instances, so several reprise instances in front
//! of the same replicas agree on where a conversation lives.

use sha2::{Digest, Sha256};

use crate::cache::key::EndpointKind;
use crate::json::Json;

/// The opening's digest; None for endpoints without conversations
/// (embeddings) or a body without messages.
pub fn opening_digest(kind: EndpointKind, body: &Json<'_>) -> Option<u64> {
    let messages = match kind {
        EndpointKind::Chat | EndpointKind::Messages => body.get("messages")?.as_array()?,
        EndpointKind::Embeddings => return None,
    };
    let mut h = Sha256::new();
    h.update(b"reprise-opening-v1\0");
    if let Some(tools) = body.get("tools") {
        h.update(b"T");
        feed(&mut h, tools);
    }
    // Anthropic keeps the system prompt outside `messages`.
    if let Some(system) = body.get("system") {
        h.update(b"S");
        feed(&mut h, system);
    }
    for message in messages {
        h.update(b"M");
        feed(&mut h, message);
        if message.get("role").and_then(Json::as_str) == Some("user") {
            break;
        }
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Some(u64::from_le_bytes(first))
}

/// A tagged, length-prefixed encoding of a JSON value (no escaping needed).
fn feed(h: &mut Sha256, value: &Json<'_>) {
    match value {
        Json::Null => h.update(b"n"),
        Json::Bool(true) => h.update(b"t"),
        Json::Bool(false) => h.update(b"f"),
        Json::Number(n) => {
            h.update(b"#");
            text(h, &n.to_string());
        }
        Json::String(s) => {
            h.update(b"s");
            text(h, s);
        }
        Json::Array(items) => {
            h.update(b"[");
            h.update((items.len() as u64).to_le_bytes());
            for item in items {
                feed(h, item);
            }
        }
        Json::Object(members) => {
            h.update(b"{");
            h.update((members.len() as u64).to_le_bytes());
            for (k, v) in members {
                text(h, k);
                feed(h, v);
            }
        }
    }
}

fn text(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(kind: EndpointKind, text: &str) -> Option<u64> {
        opening_digest(kind, &Json::parse(text.as_bytes()).unwrap())
    }

    #[test]
    fn later_turns_share_the_opening_and_other_openings_differ() {
        let turn1 = r#"{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],
            "messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#;
        let turn2 = r#"{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],
            "messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},
            {"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}"#;
        let other_question = turn1.replace("\"hi\"", "\"bye\"");
        let other_tools = turn1.replace("\"f\"", "\"g\"");
        let other_system = turn1.replace("be brief", "be long");
        let a = digest(EndpointKind::Chat, turn1);
        assert!(a.is_some());
        assert_eq!(a, digest(EndpointKind::Chat, turn2));
        for other in [other_question, other_tools, other_system] {
            assert_ne!(a, digest(EndpointKind::Chat, &other));
        }
        // Whitespace between tokens does not matter; the model does not either.
        assert_eq!(
            a,
            digest(
                EndpointKind::Chat,
                &turn1.replace(", ", ",").replace("\"m\"", "\"n\"")
            )
        );
    }

    #[test]
    fn anthropic_system_counts_and_embeddings_have_none() {
        let a = r#"{"model":"c","system":"rules","messages":[{"role":"user","content":"q"}]}"#;
        let b = a.replace("rules", "other rules");
        assert_ne!(
            digest(EndpointKind::Messages, a),
            digest(EndpointKind::Messages, &b)
        );
        let e = r#"{"model":"e","input":"text"}"#;
        assert_eq!(digest(EndpointKind::Embeddings, e), None);
        assert_eq!(digest(EndpointKind::Chat, r#"{"model":"m"}"#), None);
    }
}
