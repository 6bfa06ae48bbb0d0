//! The Redis value format: a small binary header plus the body, LZ4-compressed
//! when large. Versioned by its magic; anything that does not decode is a miss
//! (and gets overwritten by the next write).
//!
//! ```text
//! "RPR3"            magic + format version (RPR1, RPR2 values decode to a miss)
//! u8   flags        bit 0: body is LZ4 (size-prepended); bit 1: an OpenAI stream;
//!                   bit 2: an Anthropic SSE stream
//! u64  written_at   ms since the Unix epoch
//! u64  ttl_ms       u64::MAX = forever
//! u64  total_tokens u64::MAX = unknown
//! u32  len + bytes  usage JSON (len u32::MAX = none)
//! u16  len + bytes  content type
//! u64  requested_at ms since the Unix epoch (origin: what purges compare)
//! u64  upstream_ms  provider latency, u64::MAX = unknown
//! u16  len + bytes  namespace, then model, then endpoint
//! u16  len + bytes  custom key (len u16::MAX = none)
//! u32  len + bytes  the caller's request, kept for refresh-ahead (len u32::MAX = none)
//! ...  body
//! ```
//! All integers little-endian.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use super::entry::{unix_ms_now, BodyFormat, Entry, Origin};
use super::ttl::Ttl;

const MAGIC: &[u8; 4] = b"RPR3";
const FLAG_LZ4: u8 = 1;
const FLAG_STREAM: u8 = 2;
const FLAG_ANTHROPIC_SSE: u8 = 4;
const HEADER: usize = 4 + 1 + 8 + 8 + 8 + 4 + 2;

/// Encodes an entry; bodies of at least `compress_min` bytes (0 = never) are
/// compressed when that actually saves space.
pub fn encode(entry: &Entry, compress_min: usize) -> Bytes {
    let mut flags = 0u8;
    match entry.format {
        BodyFormat::Json => {}
        BodyFormat::Stream => flags |= FLAG_STREAM,
        BodyFormat::AnthropicSse => flags |= FLAG_ANTHROPIC_SSE,
    }
    let compressed = (compress_min > 0 && entry.body.len() >= compress_min)
        .then(|| lz4_flex::compress_prepend_size(&entry.body))
        .filter(|c| c.len() < entry.body.len() * 9 / 10);
    if compressed.is_some() {
        flags |= FLAG_LZ4;
    }
    let body: &[u8] = compressed.as_deref().unwrap_or(&entry.body);
    let ct = entry.content_type.as_bytes();
    let ct_len = u16::try_from(ct.len()).unwrap_or(0);
    let usage = entry
        .usage
        .as_deref()
        .filter(|u| u.len() < u32::MAX as usize);
    let request_len = entry.request.as_ref().map_or(0, Bytes::len);
    let mut out = BytesMut::with_capacity(
        HEADER + 8 + usage.map_or(0, <[u8]>::len) + ct.len() + request_len + body.len(),
    );
    out.put_slice(MAGIC);
    out.put_u8(flags);
    out.put_u64_le(entry.written_at_ms);
    out.put_u64_le(match entry.ttl.duration() {
        Some(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1),
        None => u64::MAX,
    });
    out.put_u64_le(entry.total_tokens.unwrap_or(u64::MAX));
    match usage {
        Some(u) => {
            out.put_u32_le(u.len() as u32);
            out.put_slice(u);
        }
        None => out.put_u32_le(u32::MAX),
    }
    out.put_u16_le(ct_len);
    out.put_slice(&ct[..usize::from(ct_len)]);
    put_origin(&mut out, &entry.origin);
    match entry
        .request
        .as_deref()
        .filter(|r| r.len() < u32::MAX as usize)
    {
        Some(r) => {
            out.put_u32_le(r.len() as u32);
            out.put_slice(r);
        }
        None => out.put_u32_le(u32::MAX),
    }
    out.put_slice(body);
    out.freeze()
}

/// Strings longer than a u16 length can say are cut (names are bounded far
/// below that at the edge; the cut only guards the format).
fn put_text(out: &mut BytesMut, text: &str) {
    let mut end = text.len().min(usize::from(u16::MAX - 1));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16_le(end as u16);
    out.put_slice(&text.as_bytes()[..end]);
}

fn put_origin(out: &mut BytesMut, origin: &Origin) {
    out.put_u64_le(origin.requested_at_ms);
    out.put_u64_le(origin.upstream_ms.unwrap_or(u64::MAX));
    put_text(out, &origin.namespace);
    put_text(out, &origin.model);
    put_text(out, &origin.endpoint);
    match &origin.custom_key {
        Some(k) => put_text(out, k),
        None => out.put_u16_le(u16::MAX),
    }
}

/// Reads the origin section at `at`; returns it and the offset after it.
fn get_origin(bytes: &[u8], at: usize) -> Option<(Origin, usize)> {
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let text_at = |at: usize| -> Option<(Option<String>, usize)> {
        let len = u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?);
        if len == u16::MAX {
            return Some((None, at + 2));
        }
        let end = at + 2 + usize::from(len);
        let text = std::str::from_utf8(bytes.get(at + 2..end)?).ok()?;
        Some((Some(text.to_owned()), end))
    };
    let requested_at_ms = u64_at(at)?;
    let upstream = u64_at(at + 8)?;
    let (namespace, at) = text_at(at + 16)?;
    let (model, at) = text_at(at)?;
    let (endpoint, at) = text_at(at)?;
    let (custom_key, at) = text_at(at)?;
    let origin = Origin {
        requested_at_ms,
        upstream_ms: (upstream != u64::MAX).then_some(upstream),
        namespace: namespace?,
        model: model?,
        endpoint: endpoint?,
        custom_key,
    };
    Some((origin, at))
}

/// Decodes a value; None for anything corrupt or of an unknown version.
pub fn decode(bytes: &[u8]) -> Option<Entry> {
    decode_owned(Bytes::copy_from_slice(bytes))
}

/// [`decode`] of a value the caller owns (a Redis reply): the body and usage
/// are slices of it, not copies. The value is the entry's own bytes (a few
/// header bytes more than the body), so the slices pin nothing larger.
pub fn decode_owned(bytes: Bytes) -> Option<Entry> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let flags = bytes[4];
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let written_at_ms = u64_at(5)?;
    let ttl_ms = u64_at(13)?;
    let tokens = u64_at(21)?;
    let usage_len = u32::from_le_bytes(bytes.get(29..33)?.try_into().ok()?);
    let (usage, at) = if usage_len == u32::MAX {
        (None, 33)
    } else {
        let end = 33 + usage_len as usize;
        bytes.get(33..end)?;
        (Some(bytes.slice(33..end)), end)
    };
    let ct_len = usize::from(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let content_type = std::str::from_utf8(bytes.get(at + 2..at + 2 + ct_len)?)
        .ok()?
        .to_owned();
    let (origin, at) = get_origin(&bytes, at + 2 + ct_len)?;
    let request_len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
    let (request, at) = if request_len == u32::MAX {
        (None, at + 4)
    } else {
        let end = (at + 4).checked_add(request_len as usize)?;
        bytes.get(at + 4..end)?;
        (Some(bytes.slice(at + 4..end)), end)
    };
    let raw_body = bytes.get(at..)?;
    let body = if flags & FLAG_LZ4 != 0 {
        Bytes::from(lz4_flex::decompress_size_prepended(raw_body).ok()?)
    } else {
        bytes.slice(at..)
    };
    let age = Duration::from_millis(unix_ms_now().saturating_sub(written_at_ms));
    let now = Instant::now();
    Some(Entry {
        format: if flags & FLAG_STREAM != 0 {
            BodyFormat::Stream
        } else if flags & FLAG_ANTHROPIC_SSE != 0 {
            BodyFormat::AnthropicSse
        } else {
            BodyFormat::Json
        },
        body,
        content_type,
        written_at_ms,
        stored_at: now.checked_sub(age).unwrap_or(now),
        ttl: if ttl_ms == u64::MAX {
            Ttl::Forever
        } else {
            Ttl::after(Duration::from_millis(ttl_ms))
        },
        total_tokens: (tokens != u64::MAX).then_some(tokens),
        usage,
        origin,
        request,
        derived: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: Vec<u8>, ttl: Ttl) -> Entry {
        Entry::new(Bytes::from(body), "application/json".into(), ttl, Some(42))
            .with_usage(Some(Bytes::from_static(b"{\"total_tokens\":42}")))
            .with_origin(
                Origin {
                    requested_at_ms: 1_700_000_000_000,
                    namespace: "ns.team".into(),
                    model: "gpt-4o-mini".into(),
                    endpoint: "chat".into(),
                    custom_key: Some("user_1:profile".into()),
                    ..Origin::default()
                },
                Some(Duration::from_millis(840)),
            )
    }

    #[test]
    fn round_trips_small_and_large() {
        for (body, ttl) in [
            (b"{\"a\":1}".to_vec(), Ttl::After(Duration::from_secs(60))),
            (
                br#"{"content":"repeat repeat repeat"}"#.repeat(500),
                Ttl::Forever,
            ),
        ] {
            let e = entry(body, ttl);
            let encoded = encode(&e, 4096);
            let d = decode(&encoded).unwrap();
            assert_eq!(d.body, e.body);
            assert_eq!(d.ttl, e.ttl);
            assert_eq!(d.total_tokens, Some(42));
            assert_eq!(d.written_at_ms, e.written_at_ms);
            assert_eq!(d.content_type, "application/json");
            assert_eq!(d.format, BodyFormat::Json);
            assert_eq!(d.usage, e.usage);
            assert_eq!(d.origin, e.origin);
            assert_eq!(d.origin.upstream_ms, Some(840));
            assert_eq!(d.request, None);
        }
        let kept = entry(b"{}".to_vec(), Ttl::Forever)
            .with_request(Some(Bytes::from_static(br#"{"model":"m","messages":[]}"#)));
        let d = decode(&encode(&kept, 0)).unwrap();
        assert_eq!(d.request, kept.request);
        assert_eq!(d.body, kept.body);
    }

    #[test]
    fn large_repetitive_bodies_are_compressed() {
        let e = entry(br#"{"content":"repeat"}"#.repeat(1000), Ttl::Forever);
        assert!(encode(&e, 4096).len() < e.body.len() / 4);
        assert!(encode(&e, 0).len() > e.body.len(), "0 = never compress");
    }

    #[test]
    fn garbage_and_other_versions_are_rejected() {
        assert!(decode(b"").is_none());
        assert!(decode(b"not an entry at all, just some bytes").is_none());
        let mut v4 = encode(&entry(b"{}".to_vec(), Ttl::Forever), 0).to_vec();
        v4[3] = b'4';
        assert!(decode(&v4).is_none());
        // The previous format (RPR2, no request section) is a miss, not a panic.
        let mut v2 = encode(&entry(b"{}".to_vec(), Ttl::Forever), 0).to_vec();
        v2[3] = b'2';
        assert!(decode(&v2).is_none());
        // A request length running past the value is a miss too.
        let kept =
            entry(b"{}".to_vec(), Ttl::Forever).with_request(Some(Bytes::from_static(b"{}")));
        let mut cut = encode(&kept, 0).to_vec();
        let n = cut.len();
        cut.truncate(n - 3);
        assert!(decode(&cut).is_none());
        // The previous format (RPR1, no origin section) is a miss, not a panic.
        let mut v1 = encode(&entry(b"{}".to_vec(), Ttl::Forever), 0).to_vec();
        v1[3] = b'1';
        assert!(decode(&v1).is_none());
        let mut bad_lz4 = encode(&entry(b"x".repeat(10_000), Ttl::Forever), 1).to_vec();
        let n = bad_lz4.len();
        bad_lz4.truncate(n - 10);
        assert!(decode(&bad_lz4).is_none());
    }
}
