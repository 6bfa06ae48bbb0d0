//! The Redis value format: a small binary header plus the body, LZ4-compressed
//! when large, sealed (ChaCha20-Poly1305, `cache::seal`) when encryption at
//! rest is on. Versioned by its magic; anything that does not decode is a
//! miss (and gets overwritten by the next write).
//!
//! ```text
//! "RPR4"            magic + format version (RPR1-RPR3 values decode to a miss)
//! u8   flags        bit 0: body is LZ4 (size-prepended); bit 1: an OpenAI stream;
//!                   bit 2: an Anthropic SSE stream; bit 3: body is sealed
//! u64  written_at   ms since the Unix epoch
//! u64  ttl_ms       u64::MAX = forever
//! u64  total_tokens u64::MAX = unknown
//! u32  len + bytes  usage JSON (len u32::MAX = none)
//! u16  len + bytes  content type
//! u64  requested_at ms since the Unix epoch (origin: what purges compare)
//! u64  upstream_ms  provider latency, u64::MAX = unknown
//! u16  len + bytes  namespace, then model, then endpoint
//! u16  len + bytes  custom key (len u16::MAX = none)
//! ---- payload: in clear, or sealed as a whole ----
//! u32  len + bytes  the caller's request, kept for refresh-ahead (len u32::MAX = none)
//! ...  body
//! ```
//! Sealed, the payload is `nonce (12) | ciphertext | tag (16)` with the
//! 32-byte cache key as associated data. All integers little-endian. The
//! header stays readable (purges, clean-up and export work on it without a
//! tenant's credential); the payload — the prompt kept for refresh-ahead and
//! the answer — is sealed. RPR4 (the sealed flag) moved the version so an
//! older instance sharing the Redis never serves a sealed payload.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use super::entry::{unix_ms_now, BodyFormat, Entry, Origin};
use super::key::CacheKey;
use super::seal::{Sealer, Sealing, OVERHEAD};
use super::ttl::Ttl;

const MAGIC: &[u8; 4] = b"RPR4";
const FLAG_LZ4: u8 = 1;
const FLAG_STREAM: u8 = 2;
const FLAG_ANTHROPIC_SSE: u8 = 4;
const FLAG_SEALED: u8 = 8;
const HEADER: usize = 4 + 1 + 8 + 8 + 8 + 4 + 2;
/// Offset of `written_at` (rewritten in place by [`restamp`]).
const WRITTEN_AT: usize = 5;

/// Why a value did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecodable {
    /// Not a value of this version, or damaged.
    Corrupt,
    /// Sealed, and this request's key does not open it (another tenant,
    /// another server secret, another cache key, tampered); or sealed while
    /// encryption is off, or plaintext while it is on.
    Unopened,
}

/// Encodes an entry as plaintext; bodies of at least `compress_min` bytes
/// (0 = never) are compressed when that actually saves space.
pub fn encode(entry: &Entry, compress_min: usize) -> Bytes {
    encode_for(
        entry,
        compress_min,
        &CacheKey([0; 32]),
        &Sealer::off().shared(),
    )
    .unwrap_or_default()
}

/// Encodes an entry stored under `key`, sealed when `sealing` is on. None
/// only when sealing failed (no randomness): the write is dropped.
pub fn encode_for(
    entry: &Entry,
    compress_min: usize,
    key: &CacheKey,
    sealing: &Sealing,
) -> Option<Bytes> {
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
    if sealing.is_on() {
        flags |= FLAG_SEALED;
    }
    let body: &[u8] = compressed.as_deref().unwrap_or(&entry.body);
    let ct = entry.content_type.as_bytes();
    let ct_len = u16::try_from(ct.len()).unwrap_or(0);
    let usage = entry
        .usage
        .as_deref()
        .filter(|u| u.len() < u32::MAX as usize);
    let request = entry
        .request
        .as_deref()
        .filter(|r| r.len() < u32::MAX as usize);
    let payload_len = 4 + request.map_or(0, <[u8]>::len) + body.len();
    let mut out = BytesMut::with_capacity(
        HEADER + 4 + usage.map_or(0, <[u8]>::len) + ct.len() + payload_len + OVERHEAD,
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
    let put_payload = |out: &mut BytesMut| {
        match request {
            Some(r) => {
                out.put_u32_le(r.len() as u32);
                out.put_slice(r);
            }
            None => out.put_u32_le(u32::MAX),
        }
        out.put_slice(body);
    };
    if sealing.is_on() {
        let mut payload = BytesMut::with_capacity(payload_len);
        put_payload(&mut payload);
        if !sealing.seal_into(&mut out, &key.0, &payload) {
            return None;
        }
    } else {
        put_payload(&mut out);
    }
    Some(out.freeze())
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

/// What a value's header says, without its body (purges, clean-up, export).
#[derive(Debug, Clone)]
pub struct Meta {
    pub written_at_ms: u64,
    pub ttl: Ttl,
    pub origin: Origin,
    pub sealed: bool,
}

impl Meta {
    /// Time left before expiry by the wall clock (None = forever).
    pub fn remaining(&self) -> Option<Duration> {
        let age = Duration::from_millis(unix_ms_now().saturating_sub(self.written_at_ms));
        self.ttl.duration().map(|ttl| ttl.saturating_sub(age))
    }
}

/// The parsed header and where the body starts.
struct Header {
    flags: u8,
    meta: Meta,
    total_tokens: Option<u64>,
    usage: Option<Bytes>,
    content_type: String,
    body_at: usize,
}

fn header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let flags = bytes[4];
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let written_at_ms = u64_at(WRITTEN_AT)?;
    let ttl_ms = u64_at(13)?;
    let tokens = u64_at(21)?;
    let usage_len = u32::from_le_bytes(bytes.get(29..33)?.try_into().ok()?);
    let (usage, at) = if usage_len == u32::MAX {
        (None, 33)
    } else {
        let end = 33 + usage_len as usize;
        (Some(Bytes::copy_from_slice(bytes.get(33..end)?)), end)
    };
    let ct_len = usize::from(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let content_type = std::str::from_utf8(bytes.get(at + 2..at + 2 + ct_len)?)
        .ok()?
        .to_owned();
    let (origin, body_at) = get_origin(bytes, at + 2 + ct_len)?;
    let ttl = if ttl_ms == u64::MAX {
        Ttl::Forever
    } else {
        Ttl::after(Duration::from_millis(ttl_ms))
    };
    Some(Header {
        flags,
        meta: Meta {
            written_at_ms,
            ttl,
            origin,
            sealed: flags & FLAG_SEALED != 0,
        },
        total_tokens: (tokens != u64::MAX).then_some(tokens),
        usage,
        content_type,
        body_at,
    })
}

/// The header of a value; None for anything corrupt or of another version.
pub fn peek(bytes: &[u8]) -> Option<Meta> {
    header(bytes).map(|h| h.meta)
}

/// The value with its write time replaced (the body, sealed or not, is left
/// as it is: the seal binds the body to the cache key, not to the header).
pub fn restamp(bytes: &[u8], written_at_ms: u64) -> Option<Bytes> {
    header(bytes)?;
    let mut out = BytesMut::from(bytes);
    out[WRITTEN_AT..WRITTEN_AT + 8].copy_from_slice(&written_at_ms.to_le_bytes());
    Some(out.freeze())
}

/// Decodes a plaintext value; None for anything corrupt, sealed or of an
/// unknown version.
pub fn decode(bytes: &[u8]) -> Option<Entry> {
    decode_for(bytes, &CacheKey([0; 32]), &Sealer::off().shared()).ok()
}

/// Decodes a value stored under `key`, opening its body with `sealing`. A
/// sealed value needs sealing on (and the right key); a plaintext value needs
/// it off, so turning encryption on never serves what was stored in clear.
pub fn decode_for(bytes: &[u8], key: &CacheKey, sealing: &Sealing) -> Result<Entry, Undecodable> {
    decode_inner(bytes, None, key, sealing)
}

/// [`decode_for`] of a value the caller hands over (a Redis reply): the
/// body and the kept request are slices of it, not copies. Only the small
/// header (counted in `Entry::weight` anyway) stays alive with them.
pub fn decode_owned(bytes: Bytes, key: &CacheKey, sealing: &Sealing) -> Result<Entry, Undecodable> {
    decode_inner(&bytes, Some(&bytes), key, sealing)
}

/// `owner`, when given, holds exactly `bytes`: parts are sliced from it.
fn decode_inner(
    bytes: &[u8],
    owner: Option<&Bytes>,
    key: &CacheKey,
    sealing: &Sealing,
) -> Result<Entry, Undecodable> {
    let h = header(bytes).ok_or(Undecodable::Corrupt)?;
    let payload = bytes.get(h.body_at..).ok_or(Undecodable::Corrupt)?;
    let opened: Bytes;
    let (payload, owner): (&[u8], Option<&Bytes>) = match (h.meta.sealed, sealing.is_on()) {
        (false, false) => (payload, owner),
        (true, true) => {
            // A fresh buffer: slice the parts from it too.
            opened = Bytes::from(sealing.open(&key.0, payload).ok_or(Undecodable::Unopened)?);
            (&opened, Some(&opened))
        }
        _ => return Err(Undecodable::Unopened),
    };
    let part = |p: &[u8]| owner.map_or_else(|| Bytes::copy_from_slice(p), |o| o.slice_ref(p));
    let (request, raw_body) = split_payload(payload).ok_or(Undecodable::Corrupt)?;
    let body = if h.flags & FLAG_LZ4 != 0 {
        Bytes::from(
            lz4_flex::decompress_size_prepended(raw_body).map_err(|_| Undecodable::Corrupt)?,
        )
    } else {
        part(raw_body)
    };
    let Meta {
        written_at_ms,
        ttl,
        origin,
        ..
    } = h.meta;
    let age = Duration::from_millis(unix_ms_now().saturating_sub(written_at_ms));
    let now = Instant::now();
    Ok(Entry {
        format: if h.flags & FLAG_STREAM != 0 {
            BodyFormat::Stream
        } else if h.flags & FLAG_ANTHROPIC_SSE != 0 {
            BodyFormat::AnthropicSse
        } else {
            BodyFormat::Json
        },
        body,
        content_type: h.content_type,
        written_at_ms,
        stored_at: now.checked_sub(age).unwrap_or(now),
        ttl,
        total_tokens: h.total_tokens,
        usage: h.usage,
        origin,
        request: request.map(part),
        derived: Default::default(),
    })
}

/// The kept request and the (possibly compressed) body of a payload.
fn split_payload(payload: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    if len == u32::MAX {
        return Some((None, payload.get(4..)?));
    }
    let end = 4usize.checked_add(len as usize)?;
    Some((Some(payload.get(4..end)?), payload.get(end..)?))
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
        let mut v5 = encode(&entry(b"{}".to_vec(), Ttl::Forever), 0).to_vec();
        v5[3] = b'5';
        assert!(decode(&v5).is_none());
        // RPR3 (same layout, no sealed flag) and RPR2 (no request section):
        // misses, so an old value is never mistaken for a new one or back.
        for old in [b'3', b'2'] {
            let mut v = encode(&entry(b"{}".to_vec(), Ttl::Forever), 0).to_vec();
            v[3] = old;
            assert!(decode(&v).is_none());
        }
        // A request length running past the value is a miss too.
        let kept =
            entry(b"{}".to_vec(), Ttl::Forever).with_request(Some(Bytes::from_static(b"{}")));
        let mut cut = encode(&kept, 0).to_vec();
        let n = cut.len();
        cut.truncate(n - 3);
        assert!(decode(&cut).is_none());
        // The format before (RPR1, no origin section) is a miss, not a panic.
        let mut v1 = encode(&entry(b"{}".to_vec(), Ttl::Forever), 0).to_vec();
        v1[3] = b'1';
        assert!(decode(&v1).is_none());
        let mut bad_lz4 = encode(&entry(b"x".repeat(10_000), Ttl::Forever), 1).to_vec();
        let n = bad_lz4.len();
        bad_lz4.truncate(n - 10);
        assert!(decode(&bad_lz4).is_none());
    }

    /// Whether `part` points into `owner`'s buffer (shared, not copied).
    fn within(part: &Bytes, owner: &Bytes) -> bool {
        let range = owner.as_ptr_range();
        part.is_empty() || range.contains(&part.as_ptr())
    }

    #[test]
    fn an_owned_value_decodes_to_slices_of_itself_and_equals_the_copying_decode() {
        let key = CacheKey([3; 32]);
        let off = Sealer::off().shared();
        let tenant = Sealer::per_tenant(SECRET).tenant("sk-alice");
        let kept = Some(Bytes::from_static(br#"{"model":"m","messages":[]}"#));
        for (body, compress_min) in [
            (b"{\"a\":1}".to_vec(), 0),
            (br#"{"content":"repeat repeat"}"#.repeat(500), 64),
        ] {
            let e = entry(body, Ttl::Forever).with_request(kept.clone());
            for sealing in [&off, &tenant] {
                let value = encode_for(&e, compress_min, &key, sealing).unwrap();
                let copied = decode_for(&value, &key, sealing).unwrap();
                let owned = decode_owned(value.clone(), &key, sealing).unwrap();
                assert_eq!(owned.body, copied.body);
                assert_eq!(owned.body, e.body);
                assert_eq!(owned.request, e.request);
                assert_eq!(owned.usage, copied.usage);
                assert_eq!(owned.origin, copied.origin);
                let plain_clear = !sealing.is_on() && compress_min == 0;
                if plain_clear {
                    assert!(within(&owned.body, &value), "no copy of the body");
                    assert!(within(owned.request.as_ref().unwrap(), &value));
                }
            }
        }
        // Damaged owned values are misses, never panics.
        let value = encode(&entry(b"{}".to_vec(), Ttl::Forever), 0);
        for cut in 0..value.len() {
            let _ = decode_owned(value.slice(..cut), &key, &off);
        }
    }

    const SECRET: &[u8] = b"a server secret of at least 32 bytes";

    #[test]
    fn sealed_values_hide_the_body_and_open_only_for_their_tenant_and_key() {
        let sealer = Sealer::per_tenant(SECRET);
        let (alice, bob) = (sealer.tenant("sk-alice"), sealer.tenant("sk-bob"));
        let key = CacheKey([7; 32]);
        for body in [
            br#"{"answer":"the secret plan"}"#.to_vec(),
            br#"{"answer":"the secret plan, again and again"}"#.repeat(200),
        ] {
            let e = entry(body, Ttl::After(Duration::from_secs(60))).with_request(Some(
                Bytes::from_static(br#"{"messages":[{"content":"my private question"}]}"#),
            ));
            let sealed = encode_for(&e, 64, &key, &alice).unwrap();
            assert!(!sealed.windows(11).any(|w| w == b"secret plan"));
            assert!(!sealed.windows(16).any(|w| w == b"private question"));
            let back = decode_for(&sealed, &key, &alice).unwrap();
            assert_eq!((back.body, back.origin), (e.body.clone(), e.origin.clone()));
            assert_eq!(back.request, e.request);
            assert_eq!(
                decode_for(&sealed, &key, &bob).unwrap_err(),
                Undecodable::Unopened
            );
            let elsewhere = CacheKey([8; 32]);
            assert_eq!(
                decode_for(&sealed, &elsewhere, &alice).unwrap_err(),
                Undecodable::Unopened
            );
            let restarted = Sealer::per_tenant(SECRET).tenant("sk-alice");
            assert!(decode_for(&sealed, &key, &restarted).is_ok());
            // Off reads no sealed value; on reads no plaintext one.
            assert!(decode(&sealed).is_none());
            let plain = encode(&e, 64);
            assert_eq!(
                decode_for(&plain, &key, &alice).unwrap_err(),
                Undecodable::Unopened
            );
            // The header stays readable; a re-stamp keeps the seal valid.
            let meta = peek(&sealed).unwrap();
            assert!(meta.sealed);
            assert_eq!(meta.origin, e.origin);
            let moved = restamp(&sealed, 1_800_000_000_000).unwrap();
            assert_eq!(
                decode_for(&moved, &key, &alice).unwrap().written_at_ms,
                1_800_000_000_000
            );
        }
        assert!(peek(b"RPR4").is_none() && restamp(b"junk", 1).is_none());
    }
}
