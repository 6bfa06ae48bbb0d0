//! The cache key: SHA-256 over a canonical, versioned byte string of
//! `key version | namespace | endpoint kind | provider | model | body digest`,
//! where the body digest is SHA-256 over the canonical form of the
//! output-affecting body (`key version | endpoint kind | body`). Two stages, so
//! the body's part depends on its bytes alone and can be remembered per body
//! (`cache::facts`), whoever sends it.
//!
//! The canonical form is a tagged, length-prefixed encoding (not JSON text), so
//! it is unambiguous and needs no escaping; it is streamed straight into the
//! hasher without building an intermediate string. Rules (each unit-tested):
//! - object keys are sorted; top-level `null` fields count as absent;
//! - numbers are normalized (`0` == `0.0`, `1e2` == `100`);
//! - a string message `content` equals `[{"type":"text","text":…}]`;
//! - `cache_control` markers are ignored only where providers define them: on
//!   message content blocks (and the blocks inside a `tool_result`'s content),
//!   on `system` blocks, on `tools` entries, and the top-level field. Anywhere
//!   else (tool-call input, arguments, schemas, unknown fields) it is data;
//! - fields that cannot change the output are excluded (see `chat_field`);
//!   unknown fields are included, because unknown means "may affect output".
//!
//! Files: this one assembles keys (scope, body digest, custom keys);
//! [`fields`] decides which top-level fields count per endpoint;
//! [`canonical`] is the encoding streamed into the hasher.

mod canonical;
mod fields;

use sha2::{Digest, Sha256};

use self::canonical::{last_of_each_name, Encoder, Shape};
use self::fields::{chat_field, embeddings_field, messages_field, FieldRole};
use crate::json::Json;

/// Bump when the canonical form changes: old entries then simply stop matching.
pub const KEY_VERSION: &str = "reprise-key-v3";

/// A 32-byte SHA-256 digest identifying one cache entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    pub fn hex(&self) -> String {
        String::from_utf8(self.hex_bytes().to_vec()).unwrap_or_default()
    }

    /// The lowercase hex digits, without allocating (hot path: response headers).
    pub fn hex_bytes(&self) -> [u8; 64] {
        hex_into(&self.0)
    }
}

/// Lowercase hex of 32 bytes into a fixed buffer.
pub fn hex_into(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// Which endpoint a request belongs to; entries never cross kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    Chat,
    Embeddings,
    /// Anthropic's native `/v1/messages`.
    Messages,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Chat => "chat",
            EndpointKind::Embeddings => "embeddings",
            EndpointKind::Messages => "messages",
        }
    }
}

/// The identity of a request outside its body.
#[derive(Clone, Copy, Debug)]
pub struct KeyScope<'a> {
    pub namespace: &'a str,
    pub kind: EndpointKind,
    pub provider: &'a str,
    /// The model as sent upstream (after any `provider/` prefix is stripped).
    pub model: &'a str,
}

/// Key of a request body (a JSON object; anything else keys as its value).
pub fn body_key(scope: &KeyScope<'_>, body: &Json<'_>) -> CacheKey {
    scoped_key(scope, &body_digest(scope.kind, body))
}

/// The digest of a body's canonical form: depends on the endpoint kind and
/// the body only (the model is part of the scope, not of the digest).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BodyDigest(pub [u8; 32]);

/// Key of a body whose digest is known.
pub fn scoped_key(scope: &KeyScope<'_>, digest: &BodyDigest) -> CacheKey {
    scoped_key_with(scope, digest, |_| {})
}

/// Key of a body whose digest is known, plus the upstream request headers
/// that can change the answer: `headers` is called with a sink taking
/// `(name, value)` pairs in a fixed order. No pairs: the same key as
/// [`scoped_key`].
pub fn scoped_key_with(
    scope: &KeyScope<'_>,
    digest: &BodyDigest,
    headers: impl FnOnce(&mut dyn FnMut(&str, &[u8])),
) -> CacheKey {
    let mut enc = Encoder::new(scope, b"body");
    enc.bytes(&digest.0);
    let mut first = true;
    headers(&mut |name, value| {
        if std::mem::take(&mut first) {
            enc.bytes(b"headers");
        }
        enc.str(name);
        enc.bytes(value);
    });
    enc.finish()
}

/// The canonical form of a body, hashed.
pub fn body_digest(kind: EndpointKind, body: &Json<'_>) -> BodyDigest {
    let role: fn(&str) -> FieldRole = match kind {
        EndpointKind::Chat => chat_field,
        EndpointKind::Embeddings => embeddings_field,
        EndpointKind::Messages => messages_field,
    };
    // Sorted by name already (`last_of_each_name`); filtering keeps the order.
    let fields: Vec<(&str, &Json<'_>, FieldRole)> = last_of_each_name(body)
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k, v, role(k)))
        .filter(|(_, _, r)| {
            matches!(
                r,
                FieldRole::Messages | FieldRole::System | FieldRole::Tools | FieldRole::Included
            )
        })
        .collect();

    let mut enc = Encoder {
        hasher: Sha256::new(),
    };
    enc.str(KEY_VERSION);
    enc.str(kind.as_str());
    enc.tag(b'{');
    enc.len(fields.len());
    for (name, value, role) in fields {
        enc.str(name);
        match role {
            FieldRole::Messages => enc.array_of(value, Shape::Message),
            FieldRole::System => match value {
                Json::String(text) => enc.text_part_array(text),
                other => enc.array_of(other, Shape::Block),
            },
            FieldRole::Tools => enc.array_of(value, Shape::Marked),
            _ => enc.value(value),
        }
    }
    BodyDigest(enc.hasher.finalize().into())
}

/// What a custom key is scoped by, besides namespace, endpoint kind and provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomKeyScope {
    /// The model too: a custom key never answers a request for another model.
    #[default]
    Model,
    /// The namespace only: every model of the namespace shares the entry.
    Namespace,
}

/// Key of a caller-chosen custom key (`x-cache-key`): replaces the body, stays
/// inside the namespace, endpoint kind and provider (and the model, unless
/// `scope_by` is `Namespace`).
pub fn custom_key(scope: &KeyScope<'_>, custom: &str, scope_by: CustomKeyScope) -> CacheKey {
    let mode: &[u8] = match scope_by {
        CustomKeyScope::Model => b"custom-model",
        CustomKeyScope::Namespace => b"custom",
    };
    let mut enc = Encoder::new(scope, mode);
    enc.str(custom);
    enc.finish()
}

/// SHA-256 of a JSON value's canonical form under `tag`, for keys built
/// outside this module (MCP tool arguments): sorted keys (last of repeated
/// members), normalized numbers, and every member kept, `cache_control` too.
pub fn canonical_digest(tag: &str, value: &Json<'_>) -> [u8; 32] {
    let mut enc = Encoder {
        hasher: Sha256::new(),
    };
    enc.str(KEY_VERSION);
    enc.str(tag);
    enc.value(value);
    enc.hasher.finalize().into()
}

#[cfg(test)]
mod tests;
