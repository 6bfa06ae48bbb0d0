//! `[mcp]`: the MCP tool servers reprise proxies at `/mcp/{NAME}`.
//!
//! ```toml
//! [mcp.servers.github]
//! url = "http://127.0.0.1:3000/mcp"
//! headers = { Authorization = "Bearer ${GITHUB_TOKEN}" }
//! list_ttl = "5m"
//! call_ttl = "0s"
//! tools = { "search_*" = { ttl = "10m" }, create_issue = { cache = false } }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::ttl::Ttl;
use crate::config::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Servers by name; the name is the last path segment of `/mcp/{NAME}`.
    pub servers: BTreeMap<String, McpServerConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The server's Streamable HTTP endpoint.
    pub url: String,
    /// Headers sent upstream. `${VAR}` in a value is replaced by that
    /// environment variable. Without an `Authorization` here, the caller's
    /// `Authorization` passes through.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Lifetime of a cached `tools/list` answer (0 = not cached).
    #[serde(default = "default_list_ttl")]
    pub list_ttl: Ttl,
    /// Lifetime of a cached `tools/call` result for tools without a rule
    /// (0 = tool results are not cached unless a tool opts in).
    #[serde(default = "default_call_ttl")]
    pub call_ttl: Ttl,
    /// Per-tool rules by name or glob (`*`, `?`): `{ ttl = "10m" }` or
    /// `{ cache = false }`. An exact name wins over globs; among globs the
    /// longest pattern wins.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolRule>,
    /// Results the server marks `cacheScope: "public"` are shared by every
    /// tenant. Off: they stay per tenant like everything else.
    #[serde(default)]
    pub share_public: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ToolRule {
    /// Lifetime of this tool's cached results.
    #[serde(default)]
    pub ttl: Option<Ttl>,
    /// `false`: this tool's results are never cached.
    #[serde(default)]
    pub cache: Option<bool>,
}

fn default_list_ttl() -> Ttl {
    Ttl::After(Duration::from_secs(300))
}

fn default_call_ttl() -> Ttl {
    Ttl::After(Duration::ZERO)
}

fn invalid(field: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

impl McpConfig {
    /// Checks names, URLs, header names and the variables headers refer to.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, server) in &self.servers {
            let field = |f: &str| format!("mcp.servers.{name}.{f}");
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return Err(invalid(
                    format!("mcp.servers.{name}"),
                    "server names are 1-64 characters of A-Z a-z 0-9 - _",
                ));
            }
            let url = reqwest::Url::parse(&server.url)
                .map_err(|e| invalid(field("url"), format!("`{}`: {e}", server.url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(field("url"), "scheme must be http or https"));
            }
            for (header, value) in &server.headers {
                let at = field(&format!("headers.{header}"));
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(invalid(at, "not a valid header name"));
                }
                let resolved = expand_env(value).map_err(|m| invalid(at.clone(), m))?;
                if http::HeaderValue::from_str(&resolved).is_err() {
                    return Err(invalid(at, "not a valid header value"));
                }
            }
            for (pattern, rule) in &server.tools {
                if pattern.is_empty() {
                    return Err(invalid(field("tools"), "tool patterns must be non-empty"));
                }
                if rule.cache.is_none() && rule.ttl.is_none() {
                    return Err(invalid(
                        field(&format!("tools.{pattern}")),
                        "set `ttl` or `cache = false`",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Replaces every `${VAR}` with the variable's value; an unset variable is an
/// error naming it (a secret silently sent as an empty string would be worse).
pub fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated `${`".into());
        };
        let var = &after[..end];
        match std::env::var(var) {
            Ok(v) => out.push_str(&v),
            Err(_) => return Err(format!("environment variable `{var}` is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> McpConfig {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(toml))
            .extract()
            .unwrap()
    }

    #[test]
    fn defaults_and_rules_parse() {
        let c = parse(
            "[servers.gh]\nurl = \"http://127.0.0.1:1/mcp\"\n\
             tools = { \"search_*\" = { ttl = \"10m\" }, create = { cache = false } }\n",
        );
        let gh = &c.servers["gh"];
        assert_eq!(gh.list_ttl, Ttl::After(Duration::from_secs(300)));
        assert!(gh.call_ttl.is_zero());
        assert_eq!(gh.tools["create"].cache, Some(false));
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_field() {
        let c = parse("[servers.gh]\nurl = \"ftp://x\"\n");
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("mcp.servers.gh.url"), "{err}");
        let c = parse(
            "[servers.gh]\nurl = \"http://x\"\nheaders = { Authorization = \"Bearer ${REPRISE_TEST_UNSET_VAR}\" }\n",
        );
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("headers.Authorization"), "{err}");
        assert!(err.contains("REPRISE_TEST_UNSET_VAR"), "{err}");
        let c = parse("[servers.\"a/b\"]\nurl = \"http://x\"\n");
        assert!(c.validate().is_err());
    }

    #[test]
    fn env_expansion() {
        assert_eq!(expand_env("plain").unwrap(), "plain");
        let path = std::env::var("PATH").unwrap();
        assert_eq!(expand_env("x ${PATH} y").unwrap(), format!("x {path} y"));
        assert!(expand_env("${NOPE_REPRISE_X").is_err());
    }
}
