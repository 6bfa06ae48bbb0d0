//! Encryption at rest (`cache.encryption = "per-tenant"`): the body of every
//! value written to Redis or to an export dump is sealed with
//! ChaCha20-Poly1305.
//!
//! - **Keys.** HKDF-SHA256 with the server secret as salt and the caller's
//!   credential as input key material: `PRK = HMAC(secret, credential)`, then
//!   `expand(PRK, "reprise seal v1 tenant")`. Neither the server secret alone
//!   nor another tenant's credential gives the key. Shared namespaces
//!   (`cache.shared_namespace`, keyless callers, MCP public entries) use
//!   `expand(HMAC(secret, ""), "reprise seal v1 shared")`: the server secret
//!   alone.
//! - **Seal.** A fresh random 96-bit nonce per seal, the 32-byte cache key as
//!   associated data (a sealed value copied under another key fails to
//!   open): `nonce (12) | ciphertext | tag (16)`.
//! - **Open failures are misses.** Wrong tenant, wrong secret, another key,
//!   tampered bytes: `open` answers None and the caller counts a miss.
//!
//! A tenant's key is derived on first use (a Redis read or write), so memory
//! hits never pay for it. This module takes plain bytes; it knows nothing of
//! configuration or requests.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, BytesMut};
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Bytes of the random nonce that starts a sealed value.
pub const NONCE_LEN: usize = 12;
/// Bytes of the Poly1305 tag that ends a sealed value.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a value.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Shortest server secret accepted (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

const INFO_TENANT: &[u8] = b"reprise seal v1 tenant";
const INFO_SHARED: &[u8] = b"reprise seal v1 shared";

/// `cache.encryption`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    /// Values are stored as they are (LZ4 at most).
    #[default]
    Off,
    /// Values are sealed per tenant (shared namespaces: server secret only).
    PerTenant,
}

/// A derived 256-bit key, wiped when dropped.
struct SealKey(Zeroizing<[u8; 32]>);

impl SealKey {
    fn derive(secret: &[u8], credential: Option<&[u8]>) -> Option<Self> {
        let (ikm, info) = match credential {
            Some(c) => (c, INFO_TENANT),
            None => (&[][..], INFO_SHARED),
        };
        let mut okm = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(secret), ikm)
            .expand(info, okm.as_mut())
            .ok()?;
        Some(SealKey(okm))
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.0.as_ref()))
    }
}

/// Holds the server secret and hands out each request's [`Sealing`].
#[derive(Clone)]
pub struct Sealer {
    secret: Option<Arc<Zeroizing<Vec<u8>>>>,
    shared: Sealing,
}

impl Sealer {
    /// Encryption off: every [`Sealing`] it hands out stores plaintext.
    pub fn off() -> Self {
        Sealer {
            secret: None,
            shared: Sealing(None),
        }
    }

    /// Encryption on under `secret` (the caller checked its length).
    pub fn per_tenant(secret: &[u8]) -> Self {
        let secret = Arc::new(Zeroizing::new(secret.to_vec()));
        let shared = Lazy {
            secret: secret.clone(),
            credential: None,
            key: OnceLock::new(),
        };
        Sealer {
            secret: Some(secret),
            shared: Sealing(Some(Arc::new(shared))),
        }
    }

    pub fn is_on(&self) -> bool {
        self.secret.is_some()
    }

    /// For shared namespaces: the server secret alone.
    pub fn shared(&self) -> Sealing {
        self.shared.clone()
    }

    /// For the namespace of `credential` (derived on first use).
    pub fn tenant(&self, credential: &str) -> Sealing {
        match &self.secret {
            None => Sealing(None),
            Some(secret) => Sealing(Some(Arc::new(Lazy {
                secret: secret.clone(),
                credential: Some(Zeroizing::new(credential.as_bytes().to_vec())),
                key: OnceLock::new(),
            }))),
        }
    }
}

/// How one request's values are stored: plaintext (encryption off) or sealed
/// under its tenant's (or the shared) key. Only a [`Sealer`] makes one, so
/// no code path can store plaintext while encryption is on.
#[derive(Clone)]
pub struct Sealing(Option<Arc<Lazy>>);

struct Lazy {
    secret: Arc<Zeroizing<Vec<u8>>>,
    credential: Option<Zeroizing<Vec<u8>>>,
    key: OnceLock<Option<SealKey>>,
}

impl Sealing {
    /// Whether values are sealed.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    fn key(&self) -> Option<&SealKey> {
        let lazy = self.0.as_deref()?;
        lazy.key
            .get_or_init(|| {
                let credential = lazy.credential.as_ref().map(|c| c.as_slice());
                SealKey::derive(lazy.secret.as_slice(), credential)
            })
            .as_ref()
    }

    /// Appends `nonce | ciphertext | tag` of `plaintext` to `out`, bound to
    /// `aad`. False (and `out` unchanged) when encryption is off or the
    /// system has no randomness to give: the caller drops the write.
    pub fn seal_into(&self, out: &mut BytesMut, aad: &[u8], plaintext: &[u8]) -> bool {
        let Some(key) = self.key() else {
            return false;
        };
        let mut nonce = [0u8; NONCE_LEN];
        if OsRng.try_fill_bytes(&mut nonce).is_err() {
            return false;
        }
        let start = out.len();
        out.reserve(OVERHEAD + plaintext.len());
        out.put_slice(&nonce);
        out.put_slice(plaintext);
        let body = &mut out[start + NONCE_LEN..];
        match key
            .cipher()
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, body)
        {
            Ok(tag) => {
                out.put_slice(&tag);
                true
            }
            Err(_) => {
                out.truncate(start);
                false
            }
        }
    }

    /// The plaintext of a value `seal_into` wrote with the same key and
    /// `aad`; None for anything else (never an error: a miss).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let key = self.key()?;
        if sealed.len() < OVERHEAD {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = ciphertext.to_vec();
        key.cipher()
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                aad,
                &mut plain,
                Tag::from_slice(tag),
            )
            .ok()?;
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn sealed(s: &Sealing, aad: &[u8], text: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::from(&b"head"[..]);
        assert!(s.seal_into(&mut out, aad, text));
        assert_eq!(&out[..4], b"head");
        out[4..].to_vec()
    }

    #[test]
    fn opens_only_with_the_same_tenant_secret_and_key() {
        let sealer = Sealer::per_tenant(SECRET);
        let alice = sealer.tenant("sk-alice");
        let value = sealed(&alice, b"key-1", b"the answer is 42");
        assert_eq!(value.len(), 16 + OVERHEAD);
        assert!(!value.windows(6).any(|w| w == b"answer"));
        assert_eq!(
            alice.open(b"key-1", &value).as_deref(),
            Some(&b"the answer is 42"[..])
        );
        // A fresh Sealing for the same credential derives the same key.
        assert!(sealer.tenant("sk-alice").open(b"key-1", &value).is_some());
        assert!(sealer.tenant("sk-bob").open(b"key-1", &value).is_none());
        assert!(sealer.shared().open(b"key-1", &value).is_none());
        assert!(
            alice.open(b"key-2", &value).is_none(),
            "moved under another key"
        );
        let other_secret = Sealer::per_tenant(b"another secret, also 32 bytes long!!");
        assert!(other_secret
            .tenant("sk-alice")
            .open(b"key-1", &value)
            .is_none());
        let mut flipped = value.clone();
        flipped[NONCE_LEN] ^= 1;
        assert!(alice.open(b"key-1", &flipped).is_none());
        assert!(alice.open(b"key-1", &value[..OVERHEAD - 1]).is_none());
    }

    #[test]
    fn shared_entries_need_only_the_server_secret() {
        let value = sealed(&Sealer::per_tenant(SECRET).shared(), b"k", b"shared");
        let restarted = Sealer::per_tenant(SECRET);
        assert_eq!(
            restarted.shared().open(b"k", &value).as_deref(),
            Some(&b"shared"[..])
        );
        assert!(restarted.tenant("").open(b"k", &value).is_none());
    }

    #[test]
    fn nonces_are_fresh_and_off_never_seals() {
        let s = Sealer::per_tenant(SECRET).tenant("t");
        assert_ne!(sealed(&s, b"k", b"same"), sealed(&s, b"k", b"same"));
        let off = Sealer::off();
        let mut out = BytesMut::new();
        assert!(!off.tenant("t").seal_into(&mut out, b"k", b"x"));
        assert!(!off.shared().is_on() && out.is_empty());
        assert!(off.shared().open(b"k", &[0; 40]).is_none());
    }
}
