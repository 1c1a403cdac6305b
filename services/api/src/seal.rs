//! Small secrets the browser carries for us, sealed (AES-256-GCM) with a
//! key derived from the server key (`api.cursor_key`): the console's
//! sign-in state (PKCE verifier, `state`, `nonce`, where to go next).
//!
//! Sealing rather than signing: the PKCE verifier is a secret of the
//! client, which the browser (and whatever reads its cookies) must carry
//! without learning; and because the key derives from the cursor key,
//! every api task opens what another sealed, with no store to share.
//! `purpose` is the AAD, so a value sealed for one use never opens as
//! another.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::cursor::CursorCodec;

/// Sealed values longer than this are refused before any work.
const MAX_SEALED_CHARS: usize = 4096;

/// Seals and opens values with one key.
pub struct Sealer {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// The sealer whose key is HMAC(server key, "seal-key"): the same on
    /// every api task sharing `api.cursor_key`, independent of the MACs
    /// the codec makes for other purposes.
    pub fn from_server_key(codec: &CursorCodec) -> Self {
        let derived = URL_SAFE_NO_PAD
            .decode(codec.tag("seal-key", b"kopter-seal-v1"))
            .expect("the codec's tags are base64url");
        Self {
            key: RandomizedNonceKey::new(&AES_256_GCM, &derived).expect("a 32-byte key"),
        }
    }

    /// `base64url(nonce ‖ ciphertext ‖ tag)` of `plain`, bound to `purpose`.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> String {
        let mut sealed = plain.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(purpose.as_bytes()), &mut sealed)
            .expect("AES-GCM seals");
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The plaintext of a value [`Sealer::seal`] made for `purpose`; `None`
    /// for anything else (garbled, altered, another key or purpose).
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_CHARS {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let s = Sealer::from_server_key(&CursorCodec::new(&[3; 32]));
        let sealed = s.seal("sign-in", b"verifier-123");
        assert!(!sealed.contains("verifier"));
        assert_eq!(
            s.open("sign-in", &sealed).as_deref(),
            Some(&b"verifier-123"[..])
        );
        assert_eq!(s.open("other", &sealed), None);
        let same_key = Sealer::from_server_key(&CursorCodec::new(&[3; 32]));
        assert!(same_key.open("sign-in", &sealed).is_some(), "another task");
        let other = Sealer::from_server_key(&CursorCodec::new(&[4; 32]));
        assert_eq!(other.open("sign-in", &sealed), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        raw[NONCE_LEN] ^= 1;
        assert_eq!(s.open("sign-in", &URL_SAFE_NO_PAD.encode(raw)), None);
        assert_eq!(s.open("sign-in", "!!"), None);
        assert_eq!(s.open("sign-in", &"A".repeat(5000)), None);
    }
}
