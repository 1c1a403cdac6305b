//! The dev issuer's authorization codes (OAuth 2.0 code grant with PKCE,
//! RFC 7636 S256), so the console's sign-in runs locally exactly as it
//! does against Cognito.
//!
//! A code is the [`CodeGrant`] itself, sealed (AES-256-GCM) with a key
//! derived from the issuer's signing key: nothing is stored to issue one,
//! and every process holding the key file can redeem it. It lives
//! [`CODE_TTL`], is bound to the client, the redirect URI, the PKCE
//! challenge and the nonce, and a [`CodeLedger`] refuses a second
//! redemption in the process that redeemed it — single use in practice,
//! since the one redeeming process is the api that holds the verifier.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::DevIssuer;

/// Lifetime of an authorization code.
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// Domain separation of the code key and of the sealed bytes.
const CODE_PURPOSE: &[u8] = b"kopter-dev-issuer-code-v1";

/// Codes longer than this are refused before any work (a grant is small).
const MAX_CODE_CHARS: usize = 2048;

/// What an authorization code grants, and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    /// Random id (base64url of 16 bytes): what the ledger remembers.
    pub id: String,
    /// The client the code was issued to (`client_id`).
    pub client_id: String,
    /// The exact `redirect_uri` of the authorization request.
    pub redirect_uri: String,
    /// The PKCE S256 challenge: base64url(SHA-256(verifier)).
    pub code_challenge: String,
    /// The `nonce` of the authorization request, copied into the ID token.
    pub nonce: Option<String>,
    /// The tenant the user chose.
    pub tenant: String,
    /// Whether the user signs in with the admin role.
    pub admin: bool,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

impl CodeGrant {
    /// A random code id.
    pub fn new_id() -> String {
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id).expect("system randomness");
        URL_SAFE_NO_PAD.encode(id)
    }
}

/// What the token request (`POST /token`) presents with the code.
#[derive(Debug, Clone)]
pub struct CodeExchange<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
}

/// Why a code was not redeemed. Every variant is the OAuth error
/// `invalid_grant` (RFC 6749 §5.2) except [`CodeError::Client`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("the code is not one this issuer made (garbled or altered)")]
    Malformed,
    #[error("the code has expired")]
    Expired,
    #[error("the code has been used already")]
    Replayed,
    #[error("the code was issued to another client")]
    Client,
    #[error("redirect_uri differs from the authorization request's")]
    RedirectUri,
    #[error("code_verifier does not match the code_challenge (S256)")]
    Verifier,
}

impl CodeError {
    /// The OAuth 2.0 error code of the token endpoint's answer.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            Self::Client => "invalid_client",
            _ => "invalid_grant",
        }
    }
}

impl DevIssuer {
    /// Seals `grant` into an authorization code.
    pub fn issue_code(&self, grant: &CodeGrant) -> String {
        let mut sealed = serde_json::to_vec(grant).expect("a grant serialises");
        let nonce = self
            .code_key()
            .seal_in_place_append_tag(Aad::from(CODE_PURPOSE), &mut sealed)
            .expect("AES-GCM seals");
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens `code` and checks it against `exchange` at `now` (Unix
    /// seconds); on success the ledger remembers it, so it opens once.
    pub fn redeem_code(
        &self,
        code: &str,
        exchange: &CodeExchange<'_>,
        ledger: &CodeLedger,
        now: i64,
    ) -> Result<CodeGrant, CodeError> {
        let grant = self.open_code(code)?;
        if grant.exp <= now {
            return Err(CodeError::Expired);
        }
        if grant.client_id != exchange.client_id {
            return Err(CodeError::Client);
        }
        if grant.redirect_uri != exchange.redirect_uri {
            return Err(CodeError::RedirectUri);
        }
        if !s256_matches(exchange.code_verifier, &grant.code_challenge) {
            return Err(CodeError::Verifier);
        }
        if !ledger.first_use(&grant.id, grant.exp, now) {
            return Err(CodeError::Replayed);
        }
        Ok(grant)
    }

    fn open_code(&self, code: &str) -> Result<CodeGrant, CodeError> {
        if code.len() > MAX_CODE_CHARS {
            return Err(CodeError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(code)
            .map_err(|_| CodeError::Malformed)?;
        if raw.len() <= NONCE_LEN {
            return Err(CodeError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CodeError::Malformed)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .code_key()
            .open_in_place(nonce, Aad::from(CODE_PURPOSE), &mut sealed)
            .map_err(|_| CodeError::Malformed)?;
        serde_json::from_slice(plain).map_err(|_| CodeError::Malformed)
    }

    /// AES-256-GCM key = SHA-256(purpose ‖ 0 ‖ the signing key's PKCS#8):
    /// whoever can sign this issuer's tokens can read its codes, nobody
    /// else, and no second key file is needed.
    fn code_key(&self) -> RandomizedNonceKey {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(CODE_PURPOSE);
        ctx.update(&[0]);
        ctx.update(self.encoding.as_bytes());
        RandomizedNonceKey::new(&AES_256_GCM, ctx.finish().as_ref()).expect("a 32-byte key")
    }
}

/// Whether `verifier` (43–128 unreserved characters, RFC 7636 §4.1)
/// hashes to `challenge` under S256. Compared in constant time.
pub fn s256_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let expected = URL_SAFE_NO_PAD.encode(digest.as_ref());
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), challenge.as_bytes())
        .is_ok()
}

/// Code ids redeemed in this process, kept until they expire.
#[derive(Debug, Default)]
pub struct CodeLedger {
    used: Mutex<HashMap<String, i64>>,
}

impl CodeLedger {
    /// Records `id` (valid until `exp`); false if it was recorded already.
    pub fn first_use(&self, id: &str, exp: i64, now: i64) -> bool {
        let mut used = self.used.lock().expect("ledger lock");
        used.retain(|_, e| *e > now);
        used.insert(id.to_owned(), exp).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // RFC 7636 appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn grant(exp: i64) -> CodeGrant {
        CodeGrant {
            id: CodeGrant::new_id(),
            client_id: "kopter".into(),
            redirect_uri: "http://127.0.0.1:8080/console/callback".into(),
            code_challenge: CHALLENGE.into(),
            nonce: Some("n-1".into()),
            tenant: "acme".into(),
            admin: true,
            exp,
        }
    }

    fn exchange<'a>(verifier: &'a str, redirect: &'a str) -> CodeExchange<'a> {
        CodeExchange {
            client_id: "kopter",
            redirect_uri: redirect,
            code_verifier: verifier,
        }
    }

    #[test]
    fn s256_is_rfc_7636() {
        assert!(s256_matches(VERIFIER, CHALLENGE));
        assert!(!s256_matches(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!s256_matches("short", CHALLENGE));
    }

    #[test]
    fn a_code_opens_once_for_its_client_redirect_and_verifier_until_it_expires() {
        let key = DevIssuer::generate().unwrap();
        let ledger = CodeLedger::default();
        let redirect = "http://127.0.0.1:8080/console/callback";
        let g = grant(1_000);
        let code = key.issue_code(&g);
        assert!(!code.contains("acme"), "sealed, not signed");

        let wrong = |e: CodeExchange<'_>, now| key.redeem_code(&code, &e, &ledger, now);
        assert_eq!(
            wrong(exchange(VERIFIER, redirect), 1_000),
            Err(CodeError::Expired)
        );
        assert_eq!(
            wrong(exchange(VERIFIER, "http://127.0.0.1:8080/evil"), 10),
            Err(CodeError::RedirectUri)
        );
        assert_eq!(
            wrong(exchange(&VERIFIER.replace('d', "x"), redirect), 10),
            Err(CodeError::Verifier)
        );
        let other_client = CodeExchange {
            client_id: "other",
            ..exchange(VERIFIER, redirect)
        };
        assert_eq!(wrong(other_client, 10), Err(CodeError::Client));
        // Failed attempts do not spend the code; the first success does.
        assert_eq!(wrong(exchange(VERIFIER, redirect), 10), Ok(g));
        assert_eq!(
            wrong(exchange(VERIFIER, redirect), 11),
            Err(CodeError::Replayed)
        );

        // Altered, foreign-key and garbage codes.
        let mut raw = URL_SAFE_NO_PAD.decode(&code).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(raw);
        let fresh = CodeLedger::default();
        assert_eq!(
            key.redeem_code(&tampered, &exchange(VERIFIER, redirect), &fresh, 10),
            Err(CodeError::Malformed)
        );
        let other_key = DevIssuer::generate().unwrap();
        assert_eq!(
            other_key.redeem_code(&code, &exchange(VERIFIER, redirect), &fresh, 10),
            Err(CodeError::Malformed)
        );
        for junk in ["", "!!", "AAAA"] {
            assert_eq!(
                key.redeem_code(junk, &exchange(VERIFIER, redirect), &fresh, 10),
                Err(CodeError::Malformed)
            );
        }
    }
}
