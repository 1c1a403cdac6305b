//! The dev issuer's sign-in (local mode only, `api.dev_issuer`): the
//! authorization endpoint (`GET /dev-issuer/authorize`, a page listing the
//! demo tenants with role viewer or admin; `POST` issues a code) and the
//! token endpoint (`POST /dev-issuer/token`: code + PKCE verifier → ID
//! token), so the console's code flow with PKCE runs locally exactly as it
//! runs against Cognito. The codes themselves (sealed, bound, 60 s) are
//! `kopter_dev_issuer::signin`'s.
//!
//! Its only client is the console: `client_id` must be the console's and
//! `redirect_uri` exactly `{public_url}/console/callback`, so a code is
//! never sent anywhere else. Errors about those two are shown on the page
//! (never redirected, RFC 6749 §4.1.2.1); the rest go back to the console
//! as `error=` with the `state`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kopter_dev_issuer::signin::{CODE_TTL, CodeExchange, CodeGrant, CodeLedger};
use kopter_dev_issuer::{DevIssuer, TokenRequest};
use kopter_schema::TenantId;
use oauth2::url::Url;

use crate::ApiState;
use crate::auth::ClaimsConfig;
use crate::console::security::{html_page, message_page};

/// What the dev issuer's sign-in is configured with.
#[derive(Debug, Clone)]
pub struct DevSignInSettings {
    /// `api.public_url`: the only redirect URI is under it.
    pub public_url: String,
    /// The console's client id (the only client).
    pub client_id: String,
    /// Tenants listed on the sign-in page (`api.dev_issuer_tenants`).
    pub tenants: Vec<String>,
    /// Audience and claim names of the ID tokens (the api's own).
    pub claims: ClaimsConfig,
    /// Lifetime of an ID token.
    pub token_ttl: Duration,
}

/// The dev issuer's sign-in: its key, settings and redeemed codes.
pub struct DevSignIn {
    issuer: String,
    key: Arc<DevIssuer>,
    settings: DevSignInSettings,
    redirect_uri: String,
    ledger: CodeLedger,
}

impl std::fmt::Debug for DevSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSignIn")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl DevSignIn {
    /// The sign-in of the dev issuer `issuer` signing with `key`.
    pub fn new(issuer: String, key: Arc<DevIssuer>, settings: DevSignInSettings) -> Self {
        let redirect_uri = format!(
            "{}{}/callback",
            settings.public_url.trim_end_matches('/'),
            crate::console::PREFIX
        );
        Self {
            issuer,
            key,
            settings,
            redirect_uri,
            ledger: CodeLedger::default(),
        }
    }
}

/// The authorization request's parameters, from the query (GET) or the
/// form (POST, echoed as hidden fields).
#[derive(Debug, Default)]
struct AuthorizeParams {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    code_challenge_method: String,
    nonce: Option<String>,
    /// POST only: `"{tenant} {role}"` of the button pressed.
    choice: Option<String>,
    /// POST only: the typed-in tenant and chosen role.
    tenant: Option<String>,
    role: Option<String>,
}

impl AuthorizeParams {
    fn parse(input: &[u8]) -> Self {
        let mut p = Self::default();
        for (k, v) in form_urlencoded::parse(input) {
            let v = v.into_owned();
            match k.as_ref() {
                "response_type" => p.response_type = v,
                "client_id" => p.client_id = v,
                "redirect_uri" => p.redirect_uri = v,
                "state" => p.state = v,
                "code_challenge" => p.code_challenge = v,
                "code_challenge_method" => p.code_challenge_method = v,
                "nonce" if !v.is_empty() => p.nonce = Some(v),
                "choice" => p.choice = Some(v),
                "tenant" if !v.trim().is_empty() => p.tenant = Some(v.trim().to_owned()),
                "role" => p.role = Some(v),
                _ => {}
            }
        }
        p
    }
}

/// Why an authorization request is refused.
enum Refusal {
    /// Shown on the page: the client or redirect URI is not the console's.
    Page(String),
    /// Sent back to the console's callback (`error`, `error_description`).
    Redirect(&'static str, String),
}

impl DevSignIn {
    fn check(&self, p: &AuthorizeParams) -> Result<(), Refusal> {
        if p.client_id != self.settings.client_id {
            return Err(Refusal::Page(format!(
                "unknown client_id {:?}: the dev issuer's only client is the console ({:?})",
                p.client_id, self.settings.client_id
            )));
        }
        if p.redirect_uri != self.redirect_uri {
            return Err(Refusal::Page(format!(
                "redirect_uri {:?} is not the console's callback ({:?})",
                p.redirect_uri, self.redirect_uri
            )));
        }
        if p.response_type != "code" {
            return Err(Refusal::Redirect(
                "unsupported_response_type",
                "only response_type=code".into(),
            ));
        }
        let challenge_ok = p.code_challenge.len() == 43
            && p.code_challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if p.code_challenge_method != "S256" || !challenge_ok {
            return Err(Refusal::Redirect(
                "invalid_request",
                "PKCE is required: code_challenge (base64url SHA-256) with code_challenge_method=S256".into(),
            ));
        }
        Ok(())
    }

    fn refuse(&self, p: &AuthorizeParams, refusal: Refusal) -> Response {
        match refusal {
            Refusal::Page(text) => (
                StatusCode::BAD_REQUEST,
                message_page("Sign-in request refused", &text, None),
            )
                .into_response(),
            Refusal::Redirect(error, description) => {
                let mut to = Url::parse(&self.redirect_uri).expect("checked redirect URI");
                to.query_pairs_mut()
                    .append_pair("error", error)
                    .append_pair("error_description", &description)
                    .append_pair("state", &p.state);
                redirect(to.as_str())
            }
        }
    }
}

fn redirect(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(location).expect("a serialised URL is ASCII"),
        )],
    )
        .into_response()
}

fn not_on() -> Response {
    (
        StatusCode::NOT_FOUND,
        message_page("No sign-in here", "The dev issuer's sign-in is off.", None),
    )
        .into_response()
}

/// `GET /dev-issuer/authorize`: the sign-in page.
pub async fn authorize_page(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let Some(dev) = state.dev_sign_in() else {
        return not_on();
    };
    let p = AuthorizeParams::parse(uri.query().unwrap_or_default().as_bytes());
    if let Err(r) = dev.check(&p) {
        return dev.refuse(&p, r);
    }
    let hidden = [
        ("response_type", p.response_type.as_str()),
        ("client_id", p.client_id.as_str()),
        ("redirect_uri", p.redirect_uri.as_str()),
        ("state", p.state.as_str()),
        ("code_challenge", p.code_challenge.as_str()),
        ("code_challenge_method", p.code_challenge_method.as_str()),
        ("nonce", p.nonce.as_deref().unwrap_or_default()),
    ];
    html_page(
        "Sign in (development issuer)",
        maud::html! {
            h1 { "Sign in to Kopter" }
            p { "Development issuer: choose a tenant and a role. Anyone who can reach this page can sign in as any tenant — it exists only in local mode." }
            form method="post" action={ (kopter_dev_issuer::ISSUER_PATH) (kopter_dev_issuer::AUTHORIZE_PATH) } {
                @for (name, value) in hidden {
                    input type="hidden" name=(name) value=(value);
                }
                table {
                    thead { tr { th scope="col" { "Tenant" } th scope="col" { "Sign in as" } } }
                    tbody {
                        @for t in &dev.settings.tenants {
                            tr {
                                th scope="row" { (t) }
                                td {
                                    button type="submit" name="choice" value={ (t) " admin" } id={ "signin-" (t) "-admin" } { (t) " admin" }
                                    " "
                                    button type="submit" name="choice" value={ (t) " viewer" } id={ "signin-" (t) "-viewer" } { (t) " viewer" }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action={ (kopter_dev_issuer::ISSUER_PATH) (kopter_dev_issuer::AUTHORIZE_PATH) } {
                @for (name, value) in hidden {
                    input type="hidden" name=(name) value=(value);
                }
                h2 { "Another tenant" }
                p {
                    label for="tenant" { "Tenant id" }
                    " "
                    input type="text" id="tenant" name="tenant" required autocomplete="off";
                    " "
                    label for="role" { "Role" }
                    " "
                    select id="role" name="role" {
                        option value="viewer" { "viewer" }
                        option value="admin" { "admin" }
                    }
                    " "
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
    .into_response()
}

/// `POST /dev-issuer/authorize`: the user's choice → a code, back to the
/// console's callback with the `state`.
pub async fn authorize_submit(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let Some(dev) = state.dev_sign_in() else {
        return not_on();
    };
    let p = AuthorizeParams::parse(&body);
    if let Err(r) = dev.check(&p) {
        return dev.refuse(&p, r);
    }
    let (tenant, role) = match (&p.choice, &p.tenant) {
        (Some(choice), _) => match choice.split_once(' ') {
            Some((t, r)) => (t.to_owned(), r.to_owned()),
            None => (choice.clone(), String::new()),
        },
        (None, Some(t)) => (t.clone(), p.role.clone().unwrap_or_default()),
        (None, None) => {
            return (
                StatusCode::BAD_REQUEST,
                message_page("Choose a tenant", "Pick a tenant, or type one in.", None),
            )
                .into_response();
        }
    };
    if let Err(e) = TenantId::new(tenant.clone()) {
        return (
            StatusCode::BAD_REQUEST,
            message_page("Not a tenant id", &format!("{tenant:?}: {e}"), None),
        )
            .into_response();
    }
    let admin = match role.as_str() {
        "admin" => true,
        "viewer" => false,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                message_page(
                    "Unknown role",
                    &format!("{other:?}: the roles are viewer and admin"),
                    None,
                ),
            )
                .into_response();
        }
    };
    let code = dev.key.issue_code(&CodeGrant {
        id: CodeGrant::new_id(),
        client_id: p.client_id.clone(),
        redirect_uri: p.redirect_uri.clone(),
        code_challenge: p.code_challenge.clone(),
        nonce: p.nonce.clone(),
        tenant,
        admin,
        exp: chrono::Utc::now().timestamp() + CODE_TTL.as_secs() as i64,
    });
    let mut to = Url::parse(&dev.redirect_uri).expect("checked redirect URI");
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &p.state);
    redirect(to.as_str())
}

/// `POST /dev-issuer/token` (`application/x-www-form-urlencoded`):
/// `grant_type=authorization_code`, `code`, `redirect_uri`,
/// `code_verifier`, and the client id in the body or in HTTP Basic auth.
/// Answers the ID token (also as `access_token`), or an RFC 6749 §5.2
/// error document.
pub async fn token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(dev) = state.dev_sign_in() else {
        return not_on();
    };
    let mut form = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        if form
            .insert(k.clone().into_owned(), v.into_owned())
            .is_some()
        {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("parameter {k} repeated"),
            );
        }
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "authorization_code" {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code",
        );
    }
    let client_id = basic_client_id(&headers).unwrap_or_else(|| field("client_id").to_owned());
    let exchange = CodeExchange {
        client_id: &client_id,
        redirect_uri: field("redirect_uri"),
        code_verifier: field("code_verifier"),
    };
    let now = chrono::Utc::now().timestamp();
    let grant = match dev
        .key
        .redeem_code(field("code"), &exchange, &dev.ledger, now)
    {
        Ok(g) => g,
        Err(e) => {
            tracing::info!(error = %e, "dev issuer refused a code");
            let status = if e.oauth_error() == "invalid_client" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            };
            return token_error(status, e.oauth_error(), &e.to_string());
        }
    };
    let c = &dev.settings.claims;
    let mut extra = serde_json::Map::new();
    if let Some(n) = &grant.nonce {
        extra.insert("nonce".into(), n.clone().into());
    }
    extra.insert("auth_time".into(), now.into());
    let minted = dev.key.mint_with(
        &TokenRequest {
            tenant: grant.tenant.clone(),
            roles: if grant.admin {
                vec![c.admin_role.clone()]
            } else {
                Vec::new()
            },
            ttl: dev.settings.token_ttl,
            subject: format!(
                "dev-{}-{}",
                grant.tenant,
                if grant.admin { "admin" } else { "viewer" }
            ),
            issuer: dev.issuer.clone(),
            audience: c.audience.clone(),
            tenant_claim: c.tenant_claim.clone(),
            roles_claim: c.roles_claim.clone(),
        },
        extra,
    );
    let id_token = match minted {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "dev issuer could not sign a token");
            return token_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "signing failed",
            );
        }
    };
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(serde_json::json!({
            "access_token": id_token,
            "id_token": id_token,
            "token_type": "Bearer",
            "expires_in": dev.settings.token_ttl.as_secs(),
            "scope": "openid",
        })),
    )
        .into_response()
}

/// The client id of an `Authorization: Basic` header (RFC 6749 §2.3.1:
/// form-urlencoded id, then `:`, then the secret, in base64).
fn basic_client_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let id = decoded.split(':').next()?;
    form_urlencoded::parse(format!("id={id}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({
            "error": error,
            "error_description": description,
        })),
    )
        .into_response()
}
