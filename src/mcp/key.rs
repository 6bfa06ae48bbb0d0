//! The MCP cache key: SHA-256 over a version tag, the caller's namespace, a
//! hash of the credential that goes upstream, the server's name and
//! generation, the caller's generation (`tools/list` only), the protocol
//! version, the method, the tool name and the canonical `params` (sorted
//! keys, normalized numbers: `cache::key::canonical_digest`).
//!
//! `_meta` members that only steer the transport (progress tokens, client
//! info and capabilities, the protocol version stamp, log level, trace
//! context) are left out, so two sessions asking the same thing share an
//! entry; unknown `_meta` members may change the answer and are kept.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::cache::key::{canonical_digest, CacheKey};
use crate::json::Json;

/// Bump when the key's form changes: old entries simply stop matching.
pub const MCP_KEY_VERSION: &str = "reprise-mcp-key-v1";

/// `_meta` members that cannot change a result.
const TRANSPORT_META: [&str; 9] = [
    "progressToken",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/logLevel",
    "io.modelcontextprotocol/subscriptionId",
    "traceparent",
    "tracestate",
    "baggage",
];

/// What identifies one cacheable request.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    /// The caller's namespace (credential hash), or the shared public scope.
    pub namespace: &'a str,
    /// The credential sent upstream (`Authorization`), when the caller's own.
    pub upstream_credential: Option<&'a str>,
    pub server: &'a str,
    pub server_generation: &'a str,
    /// `tools/list` only: bumped by this caller's `initialize`.
    pub caller_generation: Option<&'a str>,
    pub protocol_version: &'a str,
    pub method: &'a str,
    pub tool: Option<&'a str>,
    pub params: Option<&'a Json<'a>>,
}

pub fn key(input: &KeyInput<'_>) -> CacheKey {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(MCP_KEY_VERSION.as_bytes());
    field(input.namespace.as_bytes());
    match input.upstream_credential {
        Some(c) => {
            let digest: [u8; 32] = Sha256::digest(c.as_bytes()).into();
            field(&digest);
        }
        None => field(b"-"),
    }
    field(input.server.as_bytes());
    field(input.server_generation.as_bytes());
    field(input.caller_generation.unwrap_or("-").as_bytes());
    field(input.protocol_version.as_bytes());
    field(input.method.as_bytes());
    field(input.tool.unwrap_or("").as_bytes());
    let params = input.params.map(without_transport_meta);
    let digest = canonical_digest("mcp-params", params.as_ref().unwrap_or(&Json::Null));
    field(&digest);
    CacheKey(h.finalize().into())
}

/// `params` with the transport-only `_meta` members removed (and `_meta`
/// itself when nothing else is left in it).
fn without_transport_meta<'a>(params: &Json<'a>) -> Json<'a> {
    let Json::Object(members) = params else {
        return params.clone();
    };
    let mut kept = Vec::with_capacity(members.len());
    for (name, value) in members {
        if name == "_meta" {
            if let Json::Object(meta) = value {
                let meta: Vec<(Cow<'a, str>, Json<'a>)> = meta
                    .iter()
                    .filter(|(k, _)| !TRANSPORT_META.contains(&k.as_ref()))
                    .cloned()
                    .collect();
                if !meta.is_empty() {
                    kept.push((name.clone(), Json::Object(meta)));
                }
                continue;
            }
        }
        kept.push((name.clone(), value.clone()));
    }
    Json::Object(kept)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn key_of(namespace: &str, method: &str, params: Value) -> CacheKey {
        let tool = params["name"].as_str().map(str::to_owned);
        let parsed = Json::from_value(&params);
        key(&KeyInput {
            namespace,
            upstream_credential: None,
            server: "calc",
            server_generation: "g1",
            caller_generation: None,
            protocol_version: "2025-11-25",
            method,
            tool: tool.as_deref(),
            params: Some(&parsed),
        })
    }

    fn call(args: Value) -> Value {
        json!({"name": "add", "arguments": args})
    }

    #[test]
    fn argument_order_and_number_form_do_not_matter() {
        let a = key_of("t1", "tools/call", call(json!({"a": 1, "b": 2})));
        let b = key_of("t1", "tools/call", call(json!({"b": 2.0, "a": 1})));
        assert_eq!(a, b);
        let c = key_of("t1", "tools/call", call(json!({"a": 2, "b": 1})));
        assert_ne!(a, c);
        let nested = |v| {
            key_of(
                "t1",
                "tools/call",
                call(json!({"q": {"x": v, "y": [1, 2]}})),
            )
        };
        assert_eq!(nested(json!(1)), nested(json!(1.0)));
    }

    #[test]
    fn transport_meta_is_ignored_and_unknown_meta_counts() {
        let plain = key_of("t1", "tools/call", call(json!({"a": 1})));
        let mut with_transport = call(json!({"a": 1}));
        with_transport["_meta"] = json!({
            "progressToken": 17,
            "traceparent": "00-abc-def-01",
            "io.modelcontextprotocol/clientInfo": {"name": "x", "version": "1"},
            "io.modelcontextprotocol/logLevel": "debug"
        });
        assert_eq!(plain, key_of("t1", "tools/call", with_transport));
        let mut with_unknown = call(json!({"a": 1}));
        with_unknown["_meta"] = json!({"progressToken": 1, "com.example/locale": "fr"});
        assert_ne!(plain, key_of("t1", "tools/call", with_unknown));
    }

    #[test]
    fn tenants_methods_and_generations_are_separate() {
        let params = call(json!({"a": 1}));
        let base = key_of("t1", "tools/call", params.clone());
        assert_ne!(base, key_of("t2", "tools/call", params.clone()));
        let list = json!({});
        assert_ne!(
            key_of("t1", "tools/list", list.clone()),
            key_of("t1", "tools/call", list.clone())
        );
        let parsed = Json::from_value(&list);
        let with_gen = |server_generation, caller_generation| {
            key(&KeyInput {
                namespace: "t1",
                upstream_credential: None,
                server: "calc",
                server_generation,
                caller_generation,
                protocol_version: "2025-11-25",
                method: "tools/list",
                tool: None,
                params: Some(&parsed),
            })
        };
        assert_ne!(with_gen("g1", Some("c1")), with_gen("g2", Some("c1")));
        assert_ne!(with_gen("g1", Some("c1")), with_gen("g1", Some("c2")));
        assert_eq!(with_gen("g1", Some("c1")), with_gen("g1", Some("c1")));
    }

    #[test]
    fn upstream_credential_and_cursor_count() {
        let list = json!({"cursor": "page2"});
        let parsed = Json::from_value(&list);
        let first = json!({});
        let first = Json::from_value(&first);
        let mk = |cred, params| {
            key(&KeyInput {
                namespace: "t1",
                upstream_credential: cred,
                server: "calc",
                server_generation: "0",
                caller_generation: None,
                protocol_version: "2025-11-25",
                method: "tools/list",
                tool: None,
                params: Some(params),
            })
        };
        assert_ne!(mk(Some("k1"), &parsed), mk(Some("k2"), &parsed));
        assert_ne!(mk(None, &parsed), mk(None, &first));
    }
}
