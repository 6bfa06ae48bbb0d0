//! The export/import line: one cache entry with its namespace, key and
//! remaining lifetime, its value in the Redis codec (base64), so a dump
//! moves between deployments whatever their backend.
//!
//! ```json
//! {"namespace":"…","key":"<64 hex>","remaining_ms":12345,"value":"<base64>"}
//! ```
//! `remaining_ms` is null for `forever`. On import the entry is re-stamped
//! from `remaining_ms` (not from the writer's wall clock), so TTLs survive
//! clock differences between the two machines.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::codec;
use super::entry::{unix_ms_now, Entry};
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

/// A JSON line (with its newline) for one live entry; None once expired.
pub fn encode_line(namespace: &str, key: &CacheKey, entry: &Entry) -> Option<String> {
    let remaining_ms = match entry.remaining() {
        Some(r) if r.is_zero() => return None,
        Some(r) => Some(u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
        None => None,
    };
    let line = DumpLine {
        namespace: namespace.into(),
        key: key.hex().into(),
        remaining_ms,
        value: STANDARD.encode(codec::encode(entry, 1024)).into(),
    };
    serde_json::to_string(&line).ok().map(|mut s| {
        s.push('\n');
        s
    })
}

/// One decoded, validated line: (namespace, key, entry re-stamped so it
/// expires `remaining_ms` from now).
pub fn decode_line(bytes: &[u8]) -> Result<(String, CacheKey, Entry), String> {
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
    let mut entry = codec::decode(&value).ok_or("`value` is not a reprise entry")?;
    match (entry.ttl, line.remaining_ms) {
        (Ttl::After(ttl), Some(remaining)) => {
            if remaining == 0 {
                return Err("the entry has expired".into());
            }
            let remaining = Duration::from_millis(remaining).min(ttl);
            let age = ttl - remaining;
            let now = Instant::now();
            entry.stored_at = now.checked_sub(age).unwrap_or(now);
            entry.written_at_ms = unix_ms_now().saturating_sub(age.as_millis() as u64);
        }
        (Ttl::Forever, None) => {}
        _ => return Err("`remaining_ms` does not match the entry's TTL".into()),
    }
    Ok((namespace, key, entry))
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
    use bytes::Bytes;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn round_trip_keeps_the_remaining_ttl() {
        let entry = Entry::new(
            Bytes::from_static(b"{\"id\":\"x\"}"),
            "application/json".into(),
            Ttl::After(Duration::from_secs(100)),
            Some(7),
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        let key = CacheKey([9; 32]);
        let line = encode_line("ns.a", &key, &entry).unwrap();
        let (ns, k, back) = decode_line(line.trim_end().as_bytes()).unwrap();
        assert_eq!((ns.as_str(), k), ("ns.a", key));
        assert_eq!(back.body, entry.body);
        assert_eq!(back.remaining(), Some(Duration::from_secs(70)));
        tokio::time::advance(Duration::from_secs(71)).await;
        assert!(!back.is_fresh());
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
