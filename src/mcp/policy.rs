//! What may be cached, for how long, and for whom.
//!
//! Only `tools/list` and `tools/call` are ever cached. The configured TTL
//! (`list_ttl`, a tool rule, or `call_ttl`) is an upper bound: a server's
//! `ttlMs` lowers it (0 = not stored) and never raises it. Results with
//! `isError: true` or a `resultType` other than `complete` (e.g.
//! `input_required`) are never stored.

use std::time::Duration;

use serde::Deserialize;

use super::config::McpServerConfig;
use crate::cache::ttl::Ttl;

/// The two cached methods, named as stats and metrics report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheType {
    ListTools,
    Call,
}

impl CacheType {
    pub fn for_method(method: &str) -> Option<Self> {
        match method {
            "tools/list" => Some(CacheType::ListTools),
            "tools/call" => Some(CacheType::Call),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CacheType::ListTools => "mcp_list_tools",
            CacheType::Call => "mcp_call",
        }
    }
}

/// The configured TTL for a request; None = not cached.
pub fn configured_ttl(
    server: &McpServerConfig,
    kind: CacheType,
    tool: Option<&str>,
) -> Option<Ttl> {
    let ttl = match kind {
        CacheType::ListTools => server.list_ttl,
        CacheType::Call => {
            let tool = tool?;
            match tool_rule(server, tool) {
                Some(rule) if rule.cache == Some(false) => return None,
                Some(rule) => rule.ttl.unwrap_or(server.call_ttl),
                None => server.call_ttl,
            }
        }
    };
    (!ttl.is_zero()).then_some(ttl)
}

/// The rule for `tool`: its exact name, else the longest matching glob.
fn tool_rule<'c>(server: &'c McpServerConfig, tool: &str) -> Option<&'c super::config::ToolRule> {
    if let Some(rule) = server.tools.get(tool) {
        return Some(rule);
    }
    server
        .tools
        .iter()
        .filter(|(pattern, _)| wildmatch::WildMatch::new(pattern).matches(tool))
        .max_by_key(|(pattern, _)| pattern.len())
        .map(|(_, rule)| rule)
}

/// How a result may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub ttl: Ttl,
    /// Shared by every tenant (`cacheScope: "public"` and `share_public`).
    pub public: bool,
}

/// The members of a result that decide whether it is stored.
#[derive(Deserialize)]
struct Flags<'a> {
    #[serde(rename = "isError", default)]
    is_error: Option<serde_json::Value>,
    #[serde(rename = "resultType", borrow, default)]
    result_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "ttlMs", default)]
    ttl_ms: Option<serde_json::Value>,
    #[serde(rename = "cacheScope", borrow, default)]
    cache_scope: Option<std::borrow::Cow<'a, str>>,
}

/// Judges a captured result against the configured TTL; None = not stored.
pub fn judge(result: &[u8], configured: Ttl, share_public: bool) -> Option<Verdict> {
    let flags: Flags<'_> = serde_json::from_slice(result).ok()?;
    if flags
        .is_error
        .as_ref()
        .is_some_and(|v| v != &serde_json::Value::Bool(false))
    {
        return None;
    }
    if flags
        .result_type
        .as_deref()
        .is_some_and(|t| t != "complete")
    {
        return None;
    }
    let mut ttl = configured;
    if let Some(ms) = flags.ttl_ms.as_ref().and_then(serde_json::Value::as_f64) {
        if ms <= 0.0 || !ms.is_finite() {
            return None;
        }
        // Clamped: a huge hint can only lower the configured TTL anyway.
        let hinted = Duration::from_millis(ms.min(u64::MAX as f64 / 2.0) as u64);
        ttl = match configured {
            Ttl::Forever => Ttl::After(hinted),
            Ttl::After(d) => Ttl::After(d.min(hinted)),
        };
        if ttl.is_zero() {
            return None;
        }
    }
    let public = share_public && flags.cache_scope.as_deref() == Some("public");
    Some(Verdict { ttl, public })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::mcp::config::ToolRule;

    fn server() -> McpServerConfig {
        let mut tools = BTreeMap::new();
        tools.insert(
            "search_*".to_owned(),
            ToolRule {
                ttl: Some(Ttl::After(Duration::from_secs(600))),
                cache: None,
            },
        );
        tools.insert(
            "search_live".to_owned(),
            ToolRule {
                ttl: None,
                cache: Some(false),
            },
        );
        tools.insert(
            "*".to_owned(),
            ToolRule {
                ttl: Some(Ttl::After(Duration::from_secs(5))),
                cache: None,
            },
        );
        McpServerConfig {
            url: "http://x".into(),
            headers: BTreeMap::new(),
            list_ttl: Ttl::After(Duration::from_secs(300)),
            call_ttl: Ttl::After(Duration::ZERO),
            tools,
            share_public: false,
        }
    }

    #[test]
    fn tool_rules_exact_then_longest_glob() {
        let s = server();
        let secs = |t: Option<Ttl>| t.and_then(Ttl::duration).map(|d| d.as_secs());
        assert_eq!(
            secs(configured_ttl(&s, CacheType::Call, Some("search_docs"))),
            Some(600)
        );
        assert_eq!(
            configured_ttl(&s, CacheType::Call, Some("search_live")),
            None
        );
        assert_eq!(
            secs(configured_ttl(&s, CacheType::Call, Some("add"))),
            Some(5)
        );
        assert_eq!(
            secs(configured_ttl(&s, CacheType::ListTools, None)),
            Some(300)
        );
        let mut plain = server();
        plain.tools.clear();
        assert_eq!(configured_ttl(&plain, CacheType::Call, Some("add")), None);
    }

    #[test]
    fn errors_and_interim_results_are_never_stored() {
        let ttl = Ttl::After(Duration::from_secs(60));
        assert!(judge(br#"{"content":[],"isError":false}"#, ttl, false).is_some());
        assert!(judge(br#"{"content":[],"isError":true}"#, ttl, false).is_none());
        assert!(judge(
            br#"{"resultType":"input_required","inputRequests":{}}"#,
            ttl,
            false
        )
        .is_none());
        assert!(judge(br#"{"resultType":"complete","content":[]}"#, ttl, false).is_some());
        assert!(judge(b"[1,2]", ttl, false).is_none());
    }

    #[test]
    fn ttl_hints_lower_and_scope_is_honoured() {
        let ttl = Ttl::After(Duration::from_secs(60));
        let v = judge(br#"{"tools":[],"ttlMs":1500}"#, ttl, false).unwrap();
        assert_eq!(v.ttl, Ttl::After(Duration::from_millis(1500)));
        let v = judge(br#"{"tools":[],"ttlMs":999999999}"#, ttl, false).unwrap();
        assert_eq!(v.ttl, ttl);
        assert!(judge(br#"{"tools":[],"ttlMs":0}"#, ttl, false).is_none());
        assert!(
            !judge(br#"{"tools":[],"cacheScope":"public"}"#, ttl, false)
                .unwrap()
                .public
        );
        assert!(
            judge(br#"{"tools":[],"cacheScope":"public"}"#, ttl, true)
                .unwrap()
                .public
        );
        assert!(
            !judge(br#"{"tools":[],"cacheScope":"private"}"#, ttl, true)
                .unwrap()
                .public
        );
    }
}
