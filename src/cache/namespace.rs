//! The namespace part derived from a caller's credential.

use sha2::{Digest, Sha256};

/// The namespace part derived from a credential: a hash, never the secret.
pub fn credential_namespace(credential: Option<&str>) -> String {
    match credential {
        None => "anonymous".into(),
        Some(c) => {
            let digest: [u8; 32] = Sha256::new()
                .chain_update(b"reprise-namespace-v1\0")
                .chain_update(c.as_bytes())
                .finalize()
                .into();
            let hex = super::key::hex_into(&digest);
            String::from_utf8(hex[..32].to_vec()).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_the_credential() {
        let ns = credential_namespace(Some("sk-secret"));
        assert_eq!(ns.len(), 32);
        assert!(!ns.contains("secret"));
        assert_ne!(ns, credential_namespace(Some("sk-other")));
        assert_eq!(credential_namespace(None), "anonymous");
    }
}
