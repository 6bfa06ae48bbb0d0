//! Per-request cache directives, from headers and the `cache` body extension.
//!
//! | header                     | body (`cache` object) | effect                                   |
//! |----------------------------|-----------------------|------------------------------------------|
//! | `Cache-Control: no-cache`  | `"no_cache": true`    | do not read; still write                 |
//! | `Cache-Control: no-store`  | `"no_store": true`    | do not write                             |
//! | `Cache-Control: only-if-cached` | —              | answer from the cache or 504, no upstream |
//! | `Cache-Control: max-age=N` | `"max_age": N`        | only entries younger than N s; TTL N     |
//! | `x-cache-ttl: N\|forever`  | `"ttl": N\|"forever"` | TTL of the write (wins over max-age)     |
//! | `x-cache-namespace: S`     | `"namespace": "S"`    | extra namespace segment                  |
//! | `x-cache-key: S`           | `"key": "S"`          | custom key inside the namespace          |
//!
//! When both a header and the body set the same control, the header wins.

use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::Value;

use super::ttl::{self, Ttl};
use crate::error::ProxyError;
use crate::json::Json;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub no_cache: bool,
    pub no_store: bool,
    /// `Cache-Control: only-if-cached`: answer from the cache or 504, never
    /// call the provider (standard HTTP; also how tests wait for a write).
    pub only_if_cached: bool,
    pub max_age: Option<Duration>,
    pub ttl: Option<Ttl>,
    pub namespace: Option<String>,
    pub key: Option<String>,
}

impl Directives {
    /// The directives of the body's `cache` object alone (the extension is
    /// removed from what goes upstream by `Request::payload`).
    pub fn from_body(body: &Json<'_>) -> Result<Self, ProxyError> {
        let mut d = Directives::default();
        if let Some(ext) = body.get("cache") {
            d.apply_body(ext.to_value())?;
        }
        Ok(d)
    }

    /// These directives with the request's headers applied (headers win).
    pub fn with_headers(mut self, headers: &HeaderMap) -> Result<Self, ProxyError> {
        self.apply_headers(headers)?;
        Ok(self)
    }

    /// The TTL of a write, given the configured default.
    pub fn write_ttl(&self, default: Ttl) -> Ttl {
        self.ttl.or(self.max_age.map(Ttl::after)).unwrap_or(default)
    }

    fn apply_headers(&mut self, headers: &HeaderMap) -> Result<(), ProxyError> {
        for value in headers.get_all("cache-control") {
            let text = header_text(value.as_bytes(), "cache-control")?;
            for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, arg) = match part.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (part, None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-cache" => self.no_cache = true,
                    "no-store" => self.no_store = true,
                    "only-if-cached" => self.only_if_cached = true,
                    "max-age" => {
                        let secs = arg.and_then(max_age_secs).ok_or_else(|| {
                            bad("Cache-Control max-age must be a whole number of seconds")
                        })?;
                        self.max_age = Some(ttl::clamp(Duration::from_secs(secs)));
                    }
                    // Other directives (private, must-revalidate, …) mean nothing here.
                    _ => {}
                }
            }
        }
        if let Some(v) = headers.get("x-cache-ttl") {
            let text = header_text(v.as_bytes(), "x-cache-ttl")?;
            self.ttl = Some(Ttl::parse(text).ok_or_else(|| {
                bad("x-cache-ttl must be a number of seconds, a duration like 1h, or `forever`")
            })?);
        }
        if let Some(v) = headers.get("x-cache-namespace") {
            self.namespace = Some(checked_segment(header_text(
                v.as_bytes(),
                "x-cache-namespace",
            )?)?);
        }
        if let Some(v) = headers.get("x-cache-key") {
            self.key = Some(checked_custom_key(
                header_text(v.as_bytes(), "x-cache-key")?,
                "x-cache-key",
            )?);
        }
        Ok(())
    }

    fn apply_body(&mut self, ext: Value) -> Result<(), ProxyError> {
        let Value::Object(map) = ext else {
            return Err(ProxyError::bad_request(
                "`cache` must be an object",
                Some("cache"),
            ));
        };
        for (name, value) in map {
            match name.as_str() {
                "no_cache" => self.no_cache = body_bool(&value, "cache.no_cache")?,
                "no_store" => self.no_store = body_bool(&value, "cache.no_store")?,
                "max_age" => {
                    let secs = value.as_u64().ok_or_else(|| {
                        ProxyError::bad_request("`cache.max_age` must be a non-negative integer", Some("cache.max_age"))
                    })?;
                    self.max_age = Some(ttl::clamp(Duration::from_secs(secs)));
                }
                "ttl" => {
                    let ttl = match &value {
                        Value::Number(n) => n.as_u64().map(Ttl::secs),
                        Value::String(s) => Ttl::parse(s),
                        _ => None,
                    };
                    self.ttl = Some(ttl.ok_or_else(|| {
                        ProxyError::bad_request(
                            "`cache.ttl` must be a number of seconds, a duration like \"1h\", or \"forever\"",
                            Some("cache.ttl"),
                        )
                    })?);
                }
                "namespace" => {
                    let s = value.as_str().ok_or_else(|| {
                        ProxyError::bad_request("`cache.namespace` must be a string", Some("cache.namespace"))
                    })?;
                    self.namespace = Some(checked_segment(s)?);
                }
                "key" => {
                    let s = value.as_str().ok_or_else(|| {
                        ProxyError::bad_request("`cache.key` must be a string", Some("cache.key"))
                    })?;
                    self.key = Some(checked_custom_key(s, "cache.key")?);
                }
                other => {
                    return Err(ProxyError::bad_request(
                        format!("unknown field `cache.{other}` (known: no_cache, no_store, max_age, ttl, namespace, key)"),
                        Some("cache"),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// `max-age` seconds: digits only; a value too large for u64 means "very
/// long" (RFC 9111 §1.2.2 says to treat it as 2^31), clamped by the caller.
fn max_age_secs(arg: &str) -> Option<u64> {
    let digits = !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| arg.parse::<u64>().unwrap_or(u64::MAX))
}

fn bad(message: &str) -> ProxyError {
    ProxyError::bad_request(message, None)
}

fn header_text<'a>(bytes: &'a [u8], name: &str) -> Result<&'a str, ProxyError> {
    std::str::from_utf8(bytes).map_err(|_| bad(&format!("header {name} is not valid UTF-8")))
}

fn body_bool(value: &Value, field: &'static str) -> Result<bool, ProxyError> {
    value
        .as_bool()
        .ok_or_else(|| ProxyError::bad_request(format!("`{field}` must be a boolean"), Some(field)))
}

/// Namespace segments end up in Redis keys: keep them short and plain.
fn checked_segment(s: &str) -> Result<String, ProxyError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(bad(
            "cache namespace must be 1-64 characters of A-Z a-z 0-9 - _ .",
        ))
    }
}

fn checked_custom_key(s: &str, field: &str) -> Result<String, ProxyError> {
    if s.is_empty() || s.len() > 1024 {
        Err(bad(&format!("{field} must be 1-1024 characters")))
    } else {
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn extract(
        headers: &[(&'static str, &'static str)],
        body: Value,
    ) -> Result<Directives, ProxyError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, HeaderValue::from_static(v));
        }
        Directives::from_body(&Json::from_value(&body))?.with_headers(&map)
    }

    #[test]
    fn cache_control_forms() {
        let d = extract(
            &[
                ("cache-control", "no-cache, no-store"),
                ("cache-control", "max-age=30"),
            ],
            json!({}),
        )
        .unwrap();
        assert!(d.no_cache && d.no_store);
        assert_eq!(d.max_age, Some(Duration::from_secs(30)));
        assert_eq!(
            d.write_ttl(Ttl::Forever),
            Ttl::After(Duration::from_secs(30))
        );
        assert!(extract(&[("cache-control", "max-age=soon")], json!({})).is_err());
    }

    #[test]
    fn huge_durations_are_clamped() {
        let d = extract(
            &[
                ("cache-control", "max-age=18446744073709551615"),
                ("x-cache-ttl", "18446744073709551615"),
            ],
            json!({}),
        )
        .unwrap();
        assert_eq!(d.max_age, Some(ttl::MAX_TTL));
        assert_eq!(d.ttl, Some(Ttl::After(ttl::MAX_TTL)));
        let d = extract(
            &[("cache-control", "max-age=999999999999999999999999")],
            json!({}),
        )
        .unwrap();
        assert_eq!(d.write_ttl(Ttl::Forever), Ttl::After(ttl::MAX_TTL));
        let d = extract(
            &[],
            json!({"cache": {"ttl": u64::MAX, "max_age": u64::MAX}}),
        )
        .unwrap();
        assert_eq!(d.ttl, Some(Ttl::After(ttl::MAX_TTL)));
        assert_eq!(d.max_age, Some(ttl::MAX_TTL));
    }

    #[test]
    fn ttl_header_wins_over_max_age_and_default() {
        let d = extract(
            &[("cache-control", "max-age=30"), ("x-cache-ttl", "forever")],
            json!({}),
        )
        .unwrap();
        assert_eq!(
            d.write_ttl(Ttl::After(Duration::from_secs(1))),
            Ttl::Forever
        );
        let d = extract(&[], json!({})).unwrap();
        assert_eq!(d.write_ttl(Ttl::Forever), Ttl::Forever);
    }

    #[test]
    fn body_extension_is_read() {
        let d = extract(
            &[],
            json!({"model": "m", "cache": {"no_store": true, "ttl": "2m", "namespace": "team-a", "key": "k1", "max_age": 5}}),
        )
        .unwrap();
        assert!(d.no_store && !d.no_cache);
        assert_eq!(d.ttl, Some(Ttl::After(Duration::from_secs(120))));
        assert_eq!(d.namespace.as_deref(), Some("team-a"));
        assert_eq!(d.key.as_deref(), Some("k1"));
    }

    #[test]
    fn header_wins_over_body() {
        let d = extract(
            &[("x-cache-namespace", "hdr")],
            json!({"cache": {"namespace": "body"}}),
        )
        .unwrap();
        assert_eq!(d.namespace.as_deref(), Some("hdr"));
    }

    #[test]
    fn bad_values_are_named() {
        for body in [
            json!({"cache": 5}),
            json!({"cache": {"ttl": true}}),
            json!({"cache": {"no_store": "yes"}}),
            json!({"cache": {"bogus": 1}}),
            json!({"cache": {"namespace": "has space"}}),
        ] {
            let err = extract(&[], body.clone()).unwrap_err();
            assert_eq!(err.status(), 400, "{body}");
            assert!(err.to_string().contains("cache"), "{err}");
        }
        assert!(extract(&[("x-cache-ttl", "later")], json!({})).is_err());
    }
}
