//! Opaque pagination cursors.
//!
//! A cursor is `base64url(mac ‖ payload)`: the payload is the store's page
//! key (DynamoDB's `LastEvaluatedKey` as JSON), the MAC is HMAC-SHA256
//! (aws-lc-rs) with `api.cursor_key` over a version tag, the tenant, the
//! endpoint, the canonical query and the payload. A client can read its
//! own page key but cannot change it, and a cursor minted for one tenant,
//! endpoint or filter set does not open for another: any mismatch is a 400
//! naming `cursor`, the same answer as for garbage, so it reveals nothing.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kopter_schema::TenantId;

use crate::data::PageKey;
use crate::error::ApiError;

const VERSION: &[u8] = b"kopter-cursor-v1";
const MAC_LEN: usize = 32;
/// Longer cursors are refused before any work (page keys are small).
const MAX_CURSOR_CHARS: usize = 4096;

/// What a cursor is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub tenant: &'a TenantId,
    /// The route template (`/v1/prices`).
    pub endpoint: &'a str,
    /// The endpoint's filters, canonically encoded (sorted, without
    /// `limit`, `cursor`, `format`).
    pub query: &'a str,
}

/// Mints and opens cursors with one key.
pub struct CursorCodec {
    key: hmac::Key,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec")
    }
}

impl CursorCodec {
    /// A codec with `key` (at least 32 bytes; configuration checks it).
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// HMAC-SHA256 of `data` under the same server key, domain-separated by
    /// `purpose` (e.g. `"console-csrf"`), as base64url without padding.
    /// Used for values that must survive a restart and be identical on every
    /// api task (the console's CSRF tokens) without a second secret.
    pub fn tag(&self, purpose: &str, data: &[u8]) -> String {
        let mut msg = Vec::with_capacity(purpose.len() + 1 + data.len());
        msg.extend_from_slice(purpose.as_bytes());
        msg.push(0);
        msg.extend_from_slice(data);
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, &msg).as_ref())
    }

    /// A codec with a random key (cursors die with the process).
    pub fn random() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        Self {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system randomness"),
        }
    }

    pub fn seal(&self, scope: Scope<'_>, page: &PageKey) -> String {
        let payload = serde_json::to_vec(&page.0).expect("JSON value serialises");
        let tag = hmac::sign(&self.key, &signed_bytes(scope, &payload));
        let mut out = Vec::with_capacity(MAC_LEN + payload.len());
        out.extend_from_slice(tag.as_ref());
        out.extend_from_slice(&payload);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, scope: Scope<'_>, cursor: &str) -> Result<PageKey, ApiError> {
        let refuse = || {
            ApiError::bad_parameter(
                "cursor",
                "not a cursor of this query: pass back `next_cursor` unchanged, with the same filters",
            )
        };
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(refuse());
        }
        let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refuse())?;
        if raw.len() <= MAC_LEN {
            return Err(refuse());
        }
        let (tag, payload) = raw.split_at(MAC_LEN);
        hmac::verify(&self.key, &signed_bytes(scope, payload), tag).map_err(|_| refuse())?;
        serde_json::from_slice(payload)
            .map(PageKey)
            .map_err(|_| refuse())
    }
}

/// Length-prefixed fields, so no two scopes serialise alike.
fn signed_bytes(scope: Scope<'_>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + scope.query.len() + payload.len());
    for part in [
        VERSION,
        scope.tenant.as_str().as_bytes(),
        scope.endpoint.as_bytes(),
        scope.query.as_bytes(),
        payload,
    ] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope<'a>(tenant: &'a TenantId, query: &'a str) -> Scope<'a> {
        Scope {
            tenant,
            endpoint: "/v1/prices",
            query,
        }
    }

    #[test]
    fn cursors_open_only_in_their_scope_and_key() {
        let codec = CursorCodec::new(&[7; 32]);
        let acme = TenantId::new("acme").unwrap();
        let globex = TenantId::new("globex").unwrap();
        let key = PageKey(serde_json::json!({"pk": "acme#x", "sk": "1"}));
        let c = codec.seal(scope(&acme, "region=eu-west-1"), &key);
        assert_eq!(
            codec.open(scope(&acme, "region=eu-west-1"), &c).unwrap(),
            key
        );
        for (s, what) in [
            (scope(&globex, "region=eu-west-1"), "other tenant"),
            (scope(&acme, "region=us-east-1"), "other query"),
            (
                Scope {
                    endpoint: "/v1/audit/aws",
                    ..scope(&acme, "region=eu-west-1")
                },
                "other endpoint",
            ),
        ] {
            let err = codec.open(s, &c).unwrap_err();
            assert!(
                matches!(err, ApiError::BadParameter { ref name, .. } if name == "cursor"),
                "{what}"
            );
        }
        let other_key = CursorCodec::new(&[8; 32]);
        assert!(
            other_key
                .open(scope(&acme, "region=eu-west-1"), &c)
                .is_err()
        );
        // A changed payload with the old MAC.
        let mut raw = URL_SAFE_NO_PAD.decode(&c).unwrap();
        let last = raw.len() - 3;
        raw[last] ^= 1;
        let forged = URL_SAFE_NO_PAD.encode(raw);
        assert!(
            codec
                .open(scope(&acme, "region=eu-west-1"), &forged)
                .is_err()
        );
        assert!(codec.open(scope(&acme, "region=eu-west-1"), "!!").is_err());
        assert!(
            codec
                .open(scope(&acme, "region=eu-west-1"), &"A".repeat(5000))
                .is_err()
        );
    }
}
