//! Who is calling: bearer tokens (JWT) from trusted OIDC issuers, checked
//! once per request by the [`Principal`] extractor.
//!
//! A handler that takes a [`Principal`] (or an [`Admin`]) cannot run for
//! an unauthenticated request, and the tenant every store call uses comes
//! from that principal — never from a path or query parameter. See
//! `DESIGN.md` for the whole model.
//!
//! Checks, in order: a `Bearer` JWT; algorithm RS256 or ES256 (so `none`
//! and HMAC — including HS256 "signed" with an issuer's public key — are
//! refused before any key is touched); a configured issuer; a `kid` in the
//! issuer's JWKS (refetched on an unknown `kid`, rate-limited); the key's
//! algorithm equals the header's; signature, `exp`, `nbf`, `iss`, `aud`;
//! then the tenant claim (none: 403) and the roles claim.

pub mod jwks;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use kopter_schema::TenantId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::ApiError;
use crate::metrics;

pub use jwks::IssuerKeys;

/// A tenant's user, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Principal {
    /// The tenant every read and write of this request is confined to.
    #[schema(value_type = String)]
    pub tenant: TenantId,
    /// The token's `sub`.
    pub subject: String,
    pub role: Role,
}

/// What a user may do within their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything of the tenant.
    Viewer,
    /// Also changes the tenant's settings (budgets, channels, backups).
    Admin,
}

/// The claims settings of [`Verifier`].
#[derive(Debug, Clone)]
pub struct ClaimsConfig {
    pub audience: String,
    pub tenant_claim: String,
    pub roles_claim: String,
    pub admin_role: String,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    pub leeway_secs: u64,
}

/// Verifies bearer tokens against the trusted issuers.
pub struct Verifier {
    issuers: HashMap<String, Arc<IssuerKeys>>,
    claims: ClaimsConfig,
}

impl Verifier {
    pub fn new(issuers: Vec<Arc<IssuerKeys>>, claims: ClaimsConfig) -> Self {
        Self {
            issuers: issuers
                .into_iter()
                .map(|i| (i.issuer().to_owned(), i))
                .collect(),
            claims,
        }
    }

    /// The trusted issuers (readiness checks their keys).
    pub fn issuers(&self) -> impl Iterator<Item = &Arc<IssuerKeys>> {
        self.issuers.values()
    }

    /// The principal of a valid token; 401 for any token problem, 403 for
    /// a valid token without a usable tenant.
    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            // `alg: none` and other unknown algorithms fail here: the
            // header does not parse into a supported algorithm.
            refuse(
                "malformed",
                format!("the bearer token is not a supported JWT ({e})"),
            )
        })?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(refuse(
                "algorithm",
                format!(
                    "tokens signed with {:?} are not accepted (RS256 or ES256 only)",
                    header.alg
                ),
            ));
        }
        let issuer = jsonwebtoken::dangerous::insecure_decode_claims::<IssuerOnly>(token)
            .map_err(|_| refuse("malformed", "the token's claims are not a JSON object"))?
            .iss
            .ok_or_else(|| refuse("issuer", "the token has no `iss`"))?;
        let keys = self
            .issuers
            .get(&issuer)
            .ok_or_else(|| refuse("issuer", format!("issuer {issuer:?} is not trusted")))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| refuse("unknown_key", "the token's header has no `kid`"))?;
        let key = keys.key(kid).await?.ok_or_else(|| {
            refuse(
                "unknown_key",
                format!("key {kid:?} is not in the JWKS of {issuer:?}"),
            )
        })?;
        if key.algorithm != header.alg {
            return Err(refuse(
                "algorithm",
                format!(
                    "key {kid:?} is for {:?}, the token says {:?}",
                    key.algorithm, header.alg
                ),
            ));
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.key,
            keys.validation(key.algorithm),
        )
        .map_err(|e| {
            let (reason, detail) = match e.kind() {
                ErrorKind::ExpiredSignature => ("expired", "the token has expired".to_owned()),
                ErrorKind::ImmatureSignature => (
                    "not_yet_valid",
                    "the token is not valid yet (nbf)".to_owned(),
                ),
                ErrorKind::InvalidAudience => (
                    "audience",
                    format!("the token is not for audience {:?}", self.claims.audience),
                ),
                ErrorKind::InvalidIssuer => ("issuer", "the token's issuer is wrong".to_owned()),
                ErrorKind::InvalidSignature => {
                    ("signature", "the token's signature is invalid".to_owned())
                }
                ErrorKind::MissingRequiredClaim(c) => {
                    ("claims", format!("the token has no `{c}` claim"))
                }
                _ => ("malformed", format!("the token is invalid ({e})")),
            };
            refuse(reason, detail)
        })?;
        self.principal(&data.claims)
    }

    fn principal(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Principal, ApiError> {
        let c = &self.claims;
        let tenant = match claims.get(&c.tenant_claim) {
            Some(serde_json::Value::String(t)) => TenantId::new(t.clone()).map_err(|e| {
                forbid(
                    "bad_tenant",
                    format!(
                        "the token's `{}` claim is not a tenant id: {e}",
                        c.tenant_claim
                    ),
                )
            })?,
            Some(_) => {
                return Err(forbid(
                    "bad_tenant",
                    format!("the token's `{}` claim is not a string", c.tenant_claim),
                ));
            }
            None => {
                return Err(forbid(
                    "no_tenant",
                    format!(
                        "the token has no `{}` claim: the user belongs to no tenant",
                        c.tenant_claim
                    ),
                ));
            }
        };
        let is_admin = match claims.get(&c.roles_claim) {
            Some(serde_json::Value::Array(roles)) => roles
                .iter()
                .any(|r| r.as_str() == Some(c.admin_role.as_str())),
            Some(serde_json::Value::String(roles)) => {
                roles.split_whitespace().any(|r| r == c.admin_role)
            }
            _ => false,
        };
        Ok(Principal {
            tenant,
            subject: claims
                .get("sub")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_owned(),
            role: if is_admin { Role::Admin } else { Role::Viewer },
        })
    }
}

#[derive(serde::Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

fn refuse(reason: &'static str, detail: impl Into<String>) -> ApiError {
    metrics::api()
        .auth_failures
        .with_label_values(&[reason])
        .inc();
    ApiError::Unauthenticated(detail.into())
}

fn forbid(reason: &'static str, detail: impl Into<String>) -> ApiError {
    metrics::api()
        .auth_failures
        .with_label_values(&[reason])
        .inc();
    ApiError::Forbidden(detail.into())
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let value = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| refuse("missing", "no `Authorization: Bearer <token>` header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                refuse(
                    "missing",
                    "the Authorization header is not `Bearer <token>`",
                )
            })?;
        let principal = state.verifier().verify(token).await?;
        // The rate limit first: a flood of one tenant's requests is refused
        // before any of them costs a DynamoDB read.
        state.limiter().check(&principal.tenant)?;
        require_tenant(state, &principal.tenant).await?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// Refuses (403, `unknown_tenant`) a verified token whose tenant was never
/// created (`kopterctl tenants create`): a valid signature says who the
/// issuer vouches for, not that Kopter holds that tenant, and a typo in
/// an issuer's tenant mapping must not read as an empty tenant.
pub async fn require_tenant(state: &ApiState, tenant: &TenantId) -> Result<(), ApiError> {
    if state.data().tenant_exists(tenant).await? {
        Ok(())
    } else {
        Err(forbid(
            "unknown_tenant",
            format!(
                "the token's tenant \"{tenant}\" does not exist in Kopter; an operator creates it with `kopterctl tenants create {tenant}`"
            ),
        ))
    }
}

/// A principal with the admin role: the extractor of every write. Anyone
/// else gets 403.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let p = Principal::from_request_parts(parts, state).await?;
        if p.role != Role::Admin {
            return Err(forbid(
                "not_admin",
                "this needs the tenant's admin role".to_owned(),
            ));
        }
        Ok(Admin(p))
    }
}
