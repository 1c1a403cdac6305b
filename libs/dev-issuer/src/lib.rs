//! Kopter's development OIDC issuer: one ES256 signing key in a local file,
//! its JWKS, and tokens signed with it.
//!
//! The api serves this issuer (`{api.public_url}/dev-issuer`: discovery
//! document and JWKS) only when `api.dev_issuer` is on, which configuration
//! validation refuses in `env = "prod"`; `kopterctl token` mints tokens
//! with the same key file. The key file is created on first use by
//! whichever of the two comes first (mode 0600, created atomically, so two
//! processes starting together agree on one key).
//!
//! The api also serves its sign-in (authorization code flow with PKCE,
//! [`signin`]): a page listing the demo tenants, codes sealed with a key
//! derived from the signing key, and a token endpoint, so the web
//! console signs in locally exactly as it does against Cognito.
//!
//! This is not an identity provider: whoever can read the key file can
//! sign in as any tenant. It exists so a local install can be used and
//! tested end to end without Cognito.

pub mod signin;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

/// Path of the authorization endpoint under the issuer (the sign-in page).
pub const AUTHORIZE_PATH: &str = "/authorize";

/// Path of the token endpoint under the issuer.
pub const TOKEN_PATH: &str = "/token";

/// Path of the dev issuer under an API's public URL.
pub const ISSUER_PATH: &str = "/dev-issuer";

/// The dev issuer's `iss` for an API reachable at `public_url`.
pub fn issuer_url(public_url: &str) -> String {
    format!("{}{ISSUER_PATH}", public_url.trim_end_matches('/'))
}

/// The dev issuer's signing key.
pub struct DevIssuer {
    kid: String,
    encoding: EncodingKey,
    /// Uncompressed P-256 point: `0x04 || x (32 bytes) || y (32 bytes)`.
    public: Vec<u8>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer").field("kid", &self.kid).finish()
    }
}

/// The key file's content.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    /// Key id published in the JWKS and set in every token's header.
    kid: String,
    /// PKCS#8 v1 DER of the P-256 private key, base64.
    pkcs8: String,
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The tenant id, put in `tenant_claim`.
    pub tenant: String,
    /// Roles (groups), put in `roles_claim` as a list.
    pub roles: Vec<String>,
    /// Lifetime from now.
    pub ttl: Duration,
    /// `sub`.
    pub subject: String,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Claim name of the tenant (the api's `api.tenant_claim`).
    pub tenant_claim: String,
    /// Claim name of the roles (the api's `api.roles_claim`).
    pub roles_claim: String,
}

impl DevIssuer {
    /// A fresh key that lives only in this process (tests).
    pub fn generate() -> anyhow::Result<Self> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("generate a P-256 key"))?;
        Self::from_pkcs8(pkcs8.as_ref(), None)
    }

    /// The key in `path`, created (with its directory) if there is none.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => return Self::parse(&bytes, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        }
        let key = Self::generate()?;
        let file = KeyFile {
            kid: key.kid.clone(),
            pkcs8: STANDARD.encode(key.pkcs8_der()?),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        // Written whole to a private temporary file, then linked into place:
        // the link fails if another process got there first, and then its
        // key is the one everybody uses.
        let tmp = tmp_path(path);
        {
            let mut f = private_file(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(&file)?)?;
            f.sync_all()?;
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::parse(&std::fs::read(path)?, path)
            }
            Err(e) => Err(e).with_context(|| format!("create {}", path.display())),
        }
    }

    fn parse(bytes: &[u8], path: &Path) -> anyhow::Result<Self> {
        let file: KeyFile = serde_json::from_slice(bytes)
            .with_context(|| format!("{}: not a dev issuer key file", path.display()))?;
        let der = STANDARD
            .decode(file.pkcs8.trim())
            .with_context(|| format!("{}: pkcs8 is not base64", path.display()))?;
        Self::from_pkcs8(&der, Some(file.kid))
            .with_context(|| format!("{}: not a P-256 key", path.display()))
    }

    fn from_pkcs8(der: &[u8], kid: Option<String>) -> anyhow::Result<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|e| anyhow::anyhow!("P-256 PKCS#8 key rejected: {e}"))?;
        let public = pair.public_key().as_ref().to_vec();
        if public.len() != 65 || public[0] != 4 {
            bail!("unexpected public key encoding");
        }
        let kid = kid.unwrap_or_else(|| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public);
            format!("dev-{}", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]))
        });
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ec_der(der),
            public,
        })
    }

    fn pkcs8_der(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self.encoding.as_bytes().to_vec())
    }

    /// The signing key (tests sign unusual claim sets with it).
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`kty: EC`, `crv: P-256`, `alg: ES256`).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&self.public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&self.public[33..65]),
        })
    }

    /// The JWKS document (`{"keys": [jwk]}`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk()] })
    }

    /// The OpenID discovery document of `issuer` (whose JWKS is at
    /// `{issuer}/jwks.json`, sign-in page at `{issuer}/authorize`, token
    /// endpoint at `{issuer}/token`). Only the code flow with PKCE S256 is
    /// offered; there is no `end_session_endpoint` (no session to end).
    pub fn discovery(issuer: &str) -> serde_json::Value {
        serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks.json"),
            "authorization_endpoint": format!("{issuer}{AUTHORIZE_PATH}"),
            "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
            "id_token_signing_alg_values_supported": ["ES256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid"],
        })
    }

    /// A signed token (ES256) for `request`, valid from now for its ttl.
    pub fn mint(&self, request: &TokenRequest) -> anyhow::Result<String> {
        self.mint_with(request, serde_json::Map::new())
    }

    /// [`DevIssuer::mint`] with `extra` claims (an ID token's `nonce`);
    /// the standard and tenant claims win over `extra`'s of the same name.
    pub fn mint_with(
        &self,
        request: &TokenRequest,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(request.ttl.as_secs()).context("ttl too long")?;
        if ttl == 0 {
            bail!("ttl must be at least 1s");
        }
        let mut claims = extra;
        claims.insert("iss".into(), request.issuer.clone().into());
        claims.insert("aud".into(), request.audience.clone().into());
        claims.insert("sub".into(), request.subject.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), (now + ttl).into());
        claims.insert(request.tenant_claim.clone(), request.tenant.clone().into());
        claims.insert(
            request.roles_claim.clone(),
            serde_json::Value::from(request.roles.clone()),
        );
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).context("sign the token")
    }
}

/// Default location of the key file relative to the working directory.
pub fn default_key_file() -> PathBuf {
    PathBuf::from(".run/dev-issuer-key.json")
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

#[cfg(unix)]
fn private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("create {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key.json");
        let a = DevIssuer::load_or_create(&path).unwrap();
        let b = DevIssuer::load_or_create(&path).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.jwk(), b.jwk());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not json").unwrap();
        let err = DevIssuer::load_or_create(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a dev issuer key file"),
            "{err:#}"
        );
    }

    #[test]
    fn minted_tokens_verify_with_the_published_jwk() {
        let key = DevIssuer::generate().unwrap();
        let token = key
            .mint(&TokenRequest {
                tenant: "acme".into(),
                roles: vec!["admin".into()],
                ttl: Duration::from_secs(60),
                subject: "dev".into(),
                issuer: issuer_url("http://127.0.0.1:8080/"),
                audience: "kopter".into(),
                tenant_claim: "custom:tenant".into(),
                roles_claim: "cognito:groups".into(),
            })
            .unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk()).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_audience(&["kopter"]);
        v.set_issuer(&["http://127.0.0.1:8080/dev-issuer"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims["custom:tenant"], "acme");
        assert_eq!(data.claims["cognito:groups"][0], "admin");
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
    }
}
