//! The export/import line: one cache entry with its namespace, key and
//! remaining lifetime, its value in the Redis codec (base64), so a dump
//! moves between deployments whatever their backend.
//!
//! ```json
//! {"namespace":"…","key":"<64 hex>","remaining_ms":12345,"value":"<base64>"}
//! ```
//! `remaining_ms` is null for `forever`. On import the value's write time is
//! re-stamped from `remaining_ms` (not from the writer's wall clock), so TTLs
//! survive clock differences between the two machines. With encryption at
//! rest the value is sealed exactly as in Redis (the body; the header stays
//! readable), and it is carried unopened: only a deployment with the same
//! server secret, asked by the same tenant, opens it.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec::{self, Meta};
use super::entry::unix_ms_now;
use super::key::CacheKey;
use super::ttl::Ttl;

/// Longest namespace accepted on import.
pub const MAX_NAMESPACE: usize = 512;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DumpLine<'a> {
    #[serde(borrow)]
    namespace: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    remaining_ms: Option<u64>,
    #[serde(borrow)]
    value: std::borrow::Cow<'a, str>,
}

/// A JSON line (with its newline) for one encoded value with `remaining`
/// lifetime (None = forever); None once expired.
pub fn encode_line(
    namespace: &str,
    key: &CacheKey,
    remaining: Option<Duration>,
    value: &[u8],
) -> Option<String> {
    let remaining_ms = match remaining {
        Some(r) if r.is_zero() => return None,
        Some(r) => Some(u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
        None => None,
    };
    let line = DumpLine {
        namespace: namespace.into(),
        key: key.hex().into(),
        remaining_ms,
        value: STANDARD.encode(value).into(),
    };
    serde_json::to_string(&line).ok().map(|mut s| {
        s.push('\n');
        s
    })
}

/// One decoded, validated line.
#[derive(Debug)]
pub struct Imported {
    pub namespace: String,
    pub key: CacheKey,
    /// The value, re-stamped so it expires `remaining_ms` from now.
    pub value: Bytes,
    /// Its header after the re-stamp.
    pub meta: Meta,
}

/// Checks a line (shape, namespace, key, the value's header and TTL) and
/// re-stamps its value. The body is not opened here: a sealed value is
/// opened, or not, by the tenant reading it.
pub fn decode_line(bytes: &[u8]) -> Result<Imported, String> {
    let line: DumpLine<'_> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a dump line: {e}"))?;
    let namespace = line.namespace.into_owned();
    if namespace.is_empty()
        || namespace.len() > MAX_NAMESPACE
        || namespace
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("`namespace` must be 1-512 characters without spaces".into());
    }
    let key = parse_key_hex(&line.key).ok_or("`key` must be 64 hex digits")?;
    let value = STANDARD
        .decode(line.value.as_bytes())
        .map_err(|e| format!("`value` is not base64: {e}"))?;
    let meta = codec::peek(&value).ok_or("`value` is not a reprise entry")?;
    let age = match (meta.ttl, line.remaining_ms) {
        (Ttl::After(ttl), Some(remaining)) => {
            if remaining == 0 {
                return Err("the entry has expired".into());
            }
            ttl - Duration::from_millis(remaining).min(ttl)
        }
        (Ttl::Forever, None) => Duration::ZERO,
        _ => return Err("`remaining_ms` does not match the entry's TTL".into()),
    };
    let written_at_ms = unix_ms_now().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(0));
    let value = codec::restamp(&value, written_at_ms).ok_or("`value` is not a reprise entry")?;
    let meta = codec::peek(&value).ok_or("`value` is not a reprise entry")?;
    Ok(Imported {
        namespace,
        key,
        value,
        meta,
    })
}

/// A key from its 64 lowercase or uppercase hex digits.
pub fn parse_key_hex(hex: &str) -> Option<CacheKey> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(CacheKey(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::Entry;
    use crate::cache::seal::Sealer;

    #[test]
    fn round_trip_keeps_the_remaining_ttl_and_the_seal() {
        let entry = Entry::new(
            Bytes::from_static(b"{\"id\":\"x\"}"),
            "application/json".into(),
            Ttl::After(Duration::from_secs(100)),
            Some(7),
        );
        let key = CacheKey([9; 32]);
        let sealing = Sealer::per_tenant(&[7; 32]).tenant("sk-a");
        let value = codec::encode_for(&entry, 1024, &key, &sealing).unwrap();
        let line = encode_line("ns.a", &key, Some(Duration::from_secs(70)), &value).unwrap();
        assert!(!line.contains("\"id\""));
        let back = decode_line(line.trim_end().as_bytes()).unwrap();
        assert_eq!((back.namespace.as_str(), back.key), ("ns.a", key));
        let remaining = back.meta.remaining().unwrap();
        assert!(remaining <= Duration::from_secs(70) && remaining > Duration::from_secs(68));
        let opened = codec::decode_for(&back.value, &key, &sealing).unwrap();
        assert_eq!(opened.body, entry.body);
        assert!(opened.remaining().unwrap() <= Duration::from_secs(70));
        assert!(encode_line("n", &key, Some(Duration::ZERO), &value).is_none());
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(decode_line(b"{").unwrap_err().contains("not a dump line"));
        let bad_key = br#"{"namespace":"n","key":"zz","remaining_ms":1,"value":""}"#;
        assert!(decode_line(bad_key).unwrap_err().contains("key"));
        let k = "a".repeat(64);
        let bad_value =
            format!(r#"{{"namespace":"n","key":"{k}","remaining_ms":1,"value":"AAAA"}}"#);
        assert!(decode_line(bad_value.as_bytes())
            .unwrap_err()
            .contains("entry"));
        let spaced = format!(r#"{{"namespace":"a b","key":"{k}","remaining_ms":1,"value":""}}"#);
        assert!(decode_line(spaced.as_bytes())
            .unwrap_err()
            .contains("namespace"));
    }
}
