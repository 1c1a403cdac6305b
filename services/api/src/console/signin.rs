//! Sign-in, callback and sign-out of the console: the OIDC authorization
//! code flow with PKCE (S256), `state` and `nonce`, against
//! `api.console_issuer` (Cognito on AWS, the dev issuer locally). See
//! `DESIGN.md` ("Sign-in").
//!
//! The flow keeps nothing on the server: `GET /sign-in` seals the PKCE
//! verifier, `state`, `nonce`, where to go next and an expiry into the
//! short-lived [`FLOW_COOKIE`] (AES-GCM under the server key), so the
//! callback may land on any api task. `GET /callback` checks `state`,
//! exchanges the code with the verifier at the token endpoint, verifies the
//! ID token with the api's [`Verifier`](crate::auth::Verifier), its issuer
//! and the `nonce`, then sets the session cookie to the ID token. `next`
//! is only ever a path under `/console` ([`safe_next`]).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Router, http::Uri};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::url::Url;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::PREFIX;
use super::security::{html_page, message_page};
use super::session::{SESSION_COOKIE, cookie_value};
use crate::ApiState;
use crate::cursor::CursorCodec;
use crate::seal::Sealer;

/// Cookie that carries the sealed state of a sign-in in progress.
pub const FLOW_COOKIE: &str = "kopter_signin";

/// How long a started sign-in may take (the flow cookie's lifetime).
pub const FLOW_TTL: Duration = Duration::from_secs(600);

/// AAD of the sealed flow cookie.
const FLOW_PURPOSE: &str = "console-sign-in-v1";

/// How long a fetched discovery document is used.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// `GET /sign-in`, `GET /callback`, `GET`/`POST /sign-out`,
/// `GET /signed-out` (relative to [`super::PREFIX`]).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/sign-in", get(sign_in))
        .route("/callback", get(callback))
        .route("/sign-out", get(sign_out_page).post(sign_out))
        .route("/signed-out", get(signed_out))
}

/// What the console's sign-in is configured with (`api.console_*`).
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// Where browsers reach the api (`api.public_url`); the callback is
    /// `{public_url}/console/callback`.
    pub public_url: String,
    /// The issuer users sign in with, exactly as its tokens' `iss`.
    pub issuer: String,
    /// The console's OAuth client id (also the ID token's `aud`).
    pub client_id: String,
    /// The client secret, for issuers whose client has one.
    pub client_secret: Option<String>,
    /// Whether cookies carry `Secure`.
    pub cookie_secure: bool,
}

/// The console's sign-in: settings, the issuer's endpoints (discovered,
/// cached [`DISCOVERY_TTL`]) and the sealer of the flow cookie.
pub struct ConsoleAuth {
    settings: ConsoleSettings,
    redirect_uri: RedirectUrl,
    signed_out_url: String,
    http: reqwest::Client,
    sealer: Sealer,
    discovered: tokio::sync::Mutex<Option<(Instant, Arc<Endpoints>)>>,
    /// Origins the console's forms may end up at (the logout endpoint's),
    /// for the CSP's `form-action`; known once discovery has run.
    form_origins: RwLock<Vec<String>>,
}

/// The issuer's endpoints the flow uses.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: AuthUrl,
    pub token: TokenUrl,
    /// Where sign-out sends the browser: the discovery document's
    /// `end_session_endpoint` (RP-initiated logout), else Cognito's
    /// `/logout` beside its `/oauth2/authorize`, else none.
    pub logout: Option<Logout>,
}

/// An issuer's logout endpoint and its parameter names.
#[derive(Debug, Clone)]
pub enum Logout {
    /// OpenID RP-initiated logout: `client_id`, `post_logout_redirect_uri`.
    EndSession(Url),
    /// Cognito's hosted UI: `client_id`, `logout_uri`.
    Cognito(Url),
}

impl std::fmt::Debug for ConsoleAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleAuth")
            .field("issuer", &self.settings.issuer)
            .field("client_id", &self.settings.client_id)
            .finish()
    }
}

/// Why sign-in could not go on; each answers an HTML page.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(
        "this sign-in has expired or was started in another browser or tab; please sign in again"
    )]
    NoFlow,
    #[error("the sign-in's state does not match this browser's; please sign in again")]
    State,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the identity provider's answer is not acceptable: {0}")]
    BadToken(String),
    #[error("the identity provider could not be reached: {0:#}")]
    Unreachable(anyhow::Error),
}

impl SignInError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NoFlow | Self::State | Self::Refused(_) => StatusCode::BAD_REQUEST,
            Self::BadToken(_) => StatusCode::FORBIDDEN,
            Self::Unreachable(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for SignInError {
    fn into_response(self) -> Response {
        tracing::info!(error = %self, "console sign-in failed");
        let page = message_page(
            "Sign-in failed",
            &self.to_string(),
            Some((&format!("{PREFIX}/sign-in?next={PREFIX}"), "Sign in again")),
        );
        (self.status(), page).into_response()
    }
}

/// The token response with the OIDC `id_token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdTokenFields {
    #[serde(default)]
    id_token: Option<String>,
}

impl oauth2::ExtraTokenFields for IdTokenFields {}

type OidcClient = oauth2::Client<
    BasicErrorResponse,
    StandardTokenResponse<IdTokenFields, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The sealed content of [`FLOW_COOKIE`].
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    state: String,
    verifier: String,
    nonce: String,
    next: String,
    /// Unix seconds.
    exp: i64,
}

impl ConsoleAuth {
    /// The sign-in of `settings`; the flow cookie is sealed with a key
    /// derived from `cursors`' server key.
    ///
    /// # Errors
    /// `public_url` does not make a valid callback URL; the HTTP client
    /// cannot be built.
    pub fn new(settings: ConsoleSettings, cursors: &CursorCodec) -> anyhow::Result<Self> {
        let base = settings.public_url.trim_end_matches('/');
        let redirect_uri = RedirectUrl::new(format!("{base}{PREFIX}/callback"))
            .context("api.public_url: not a URL the callback can be under")?;
        let http = reqwest::Client::builder()
            // The token endpoint answers directly; following a redirect
            // would send the code elsewhere (and invites SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .context("build the sign-in HTTP client")?;
        Ok(Self {
            signed_out_url: format!("{base}{PREFIX}/signed-out"),
            redirect_uri,
            http,
            sealer: Sealer::from_server_key(cursors),
            discovered: tokio::sync::Mutex::new(None),
            form_origins: RwLock::new(Vec::new()),
            settings,
        })
    }

    /// The issuer users sign in with.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Whether the console's cookies carry `Secure`.
    pub fn cookie_secure(&self) -> bool {
        self.settings.cookie_secure
    }

    /// Origins besides the api's own that a console form may lead to (the
    /// issuer's logout endpoint), for the CSP's `form-action`.
    pub fn form_action_origins(&self) -> Vec<String> {
        self.form_origins.read().expect("origins lock").clone()
    }

    /// The issuer's endpoints from its discovery document
    /// (`{issuer}/.well-known/openid-configuration`), cached; a stale copy
    /// is used while the issuer cannot be reached.
    ///
    /// # Errors
    /// No copy yet and the document cannot be fetched, is not JSON, names
    /// another issuer or lacks an endpoint.
    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, SignInError> {
        let mut cached = self.discovered.lock().await;
        if let Some((at, e)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(e.clone());
        }
        match self.discover().await {
            Ok(e) => {
                let e = Arc::new(e);
                *self.form_origins.write().expect("origins lock") =
                    e.logout.iter().map(|l| origin(l.url())).collect();
                *cached = Some((Instant::now(), e.clone()));
                Ok(e)
            }
            Err(err) => match cached.as_ref() {
                Some((_, e)) => {
                    tracing::warn!(error = %format!("{err:#}"), "issuer discovery failed; using the cached endpoints");
                    Ok(e.clone())
                }
                None => Err(SignInError::Unreachable(err)),
            },
        }
    }

    async fn discover(&self) -> anyhow::Result<Endpoints> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            authorization_endpoint: String,
            token_endpoint: String,
            end_session_endpoint: Option<String>,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let doc: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .with_context(|| format!("{url}: not an OpenID discovery document"))?;
        // OpenID Connect Discovery §4.3: the document's issuer must be the
        // one it was fetched for.
        anyhow::ensure!(
            doc.issuer == self.settings.issuer,
            "{url} names issuer {:?}, not {:?}",
            doc.issuer,
            self.settings.issuer
        );
        let authorization =
            AuthUrl::new(doc.authorization_endpoint).context("authorization_endpoint")?;
        let token = TokenUrl::new(doc.token_endpoint).context("token_endpoint")?;
        let logout = match doc.end_session_endpoint {
            Some(u) => Some(Logout::EndSession(
                Url::parse(&u).context("end_session_endpoint")?,
            )),
            None => cognito_logout(authorization.url()),
        };
        Ok(Endpoints {
            authorization,
            token,
            logout,
        })
    }

    fn client(&self, endpoints: &Endpoints) -> OidcClient {
        let client = oauth2::Client::new(ClientId::new(self.settings.client_id.clone()))
            .set_auth_uri(endpoints.authorization.clone())
            .set_token_uri(endpoints.token.clone())
            .set_redirect_uri(self.redirect_uri.clone());
        match &self.settings.client_secret {
            Some(s) => client.set_client_secret(ClientSecret::new(s.clone())),
            None => client,
        }
    }

    /// Where sign-out sends the browser.
    fn logout_url(&self, endpoints: &Endpoints) -> String {
        let mut url = match &endpoints.logout {
            Some(Logout::EndSession(u)) => {
                let mut u = u.clone();
                u.query_pairs_mut()
                    .append_pair("client_id", &self.settings.client_id)
                    .append_pair("post_logout_redirect_uri", &self.signed_out_url);
                u
            }
            Some(Logout::Cognito(u)) => {
                let mut u = u.clone();
                u.query_pairs_mut()
                    .append_pair("client_id", &self.settings.client_id)
                    .append_pair("logout_uri", &self.signed_out_url);
                u
            }
            None => return format!("{PREFIX}/signed-out"),
        };
        url.set_fragment(None);
        url.into()
    }
}

impl Logout {
    fn url(&self) -> &Url {
        match self {
            Self::EndSession(u) | Self::Cognito(u) => u,
        }
    }
}

/// Cognito's discovery document has no `end_session_endpoint`; its
/// hosted UI logs out at `/logout` beside `/oauth2/authorize`
/// (<https://docs.aws.amazon.com/cognito/latest/developerguide/logout-endpoint.html>).
fn cognito_logout(authorization: &Url) -> Option<Logout> {
    if !authorization.path().ends_with("/oauth2/authorize") {
        return None;
    }
    let mut u = authorization.clone();
    u.set_path("/logout");
    u.set_query(None);
    Some(Logout::Cognito(u))
}

/// `scheme://host[:port]` of `url`.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// `next` if it is a path under `/console` that a browser resolves under
/// `/console`, else `/console`: no scheme, no `//host`, no backslash (some
/// browsers read `/\host` as `//host`), no control characters, no
/// `.`/`..` segments (plain or percent-encoded).
pub fn safe_next(next: Option<&str>) -> String {
    let Some(n) = next else {
        return PREFIX.to_owned();
    };
    let path = n.split(['?', '#']).next().unwrap_or_default();
    let under = path == PREFIX || path.starts_with(&format!("{PREFIX}/"));
    let clean = n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && !path.split('/').any(|seg| {
            let seg = seg.to_ascii_lowercase().replace("%2e", ".");
            seg == "." || seg == ".."
        })
        && !path.contains("//");
    if under && clean {
        n.to_owned()
    } else {
        PREFIX.to_owned()
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/console.
fn cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={PREFIX}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("cookie values are base64url or JWT characters")
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(location).expect("an ASCII URL"),
        )],
    )
        .into_response()
}

fn not_configured() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        message_page(
            "Sign-in is not configured",
            "This api has no issuer for the console (api.console_issuer, api.issuers or api.dev_issuer).",
            None,
        ),
    )
        .into_response()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `GET /console/sign-in?next=`: to the issuer's authorization endpoint,
/// with the flow sealed in [`FLOW_COOKIE`]. Already signed in: straight to
/// `next`.
async fn sign_in(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let next = safe_next(query_param(&uri, "next").as_deref());
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE)
        && state.verifier().verify(&token).await.is_ok()
    {
        return see_other(&next);
    }
    let Some(auth) = state.console() else {
        return not_configured();
    };
    let endpoints = match auth.endpoints().await {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = CsrfToken::new_random();
    let (url, csrf_state) = auth
        .client(&endpoints)
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("openid".into()))
        .add_extra_param("nonce", nonce.secret())
        .set_pkce_challenge(challenge)
        .url();
    let flow = Flow {
        state: csrf_state.secret().clone(),
        verifier: verifier.secret().clone(),
        nonce: nonce.secret().clone(),
        next,
        exp: now() + FLOW_TTL.as_secs() as i64,
    };
    let sealed = auth.sealer.seal(
        FLOW_PURPOSE,
        &serde_json::to_vec(&flow).expect("the flow serialises"),
    );
    let mut resp = see_other(url.as_str());
    resp.headers_mut().append(
        header::SET_COOKIE,
        cookie(
            FLOW_COOKIE,
            &sealed,
            FLOW_TTL.as_secs() as i64,
            auth.cookie_secure(),
        ),
    );
    resp
}

/// `GET /console/callback?code=&state=` (or `?error=`): the code for an
/// ID token, checked, in the session cookie; then to the flow's `next`.
async fn callback(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let Some(auth) = state.console() else {
        return not_configured();
    };
    match complete(&state, auth, &uri, &headers).await {
        Ok((token, max_age, next)) => {
            let secure = auth.cookie_secure();
            let mut resp = see_other(&next);
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                cookie(SESSION_COOKIE, &token, max_age, secure),
            );
            h.append(header::SET_COOKIE, cookie(FLOW_COOKIE, "", 0, secure));
            resp
        }
        Err(e) => {
            // A failed flow is spent: the next attempt starts afresh.
            let mut resp = e.into_response();
            resp.headers_mut().append(
                header::SET_COOKIE,
                cookie(FLOW_COOKIE, "", 0, auth.cookie_secure()),
            );
            resp
        }
    }
}

/// The callback's checks, in order: a flow of this browser, not expired;
/// `state`; no error from the issuer; the code exchange (with the PKCE
/// verifier); the ID token (signature, `iss`, `aud`, `exp`, tenant by the
/// api's verifier; the console's issuer; the flow's `nonce`). Returns the
/// token, its remaining lifetime in seconds and where to go.
async fn complete(
    state: &ApiState,
    auth: &ConsoleAuth,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(String, i64, String), SignInError> {
    let flow: Flow = cookie_value(headers, FLOW_COOKIE)
        .and_then(|c| auth.sealer.open(FLOW_PURPOSE, &c))
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .ok_or(SignInError::NoFlow)?;
    if flow.exp <= now() {
        return Err(SignInError::NoFlow);
    }
    let returned = query_param(uri, "state").unwrap_or_default();
    if !equal(&returned, &flow.state) {
        return Err(SignInError::State);
    }
    if let Some(error) = query_param(uri, "error") {
        let detail = query_param(uri, "error_description").unwrap_or_default();
        return Err(SignInError::Refused(
            format!("{error} {detail}").trim().to_owned(),
        ));
    }
    let code = query_param(uri, "code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| SignInError::Refused("the callback carries no code".into()))?;
    let endpoints = auth.endpoints().await?;
    let response = auth
        .client(&endpoints)
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier))
        .request_async(&auth.http)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => SignInError::Refused(format!(
                "the token endpoint answered {}{}",
                r.error(),
                r.error_description()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )),
            other => SignInError::Unreachable(anyhow::anyhow!("token endpoint: {other}")),
        })?;
    let token = response.extra_fields().id_token.clone().ok_or_else(|| {
        SignInError::BadToken(
            "the token response has no id_token (is the openid scope allowed?)".into(),
        )
    })?;
    let principal = state
        .verifier()
        .verify(&token)
        .await
        .map_err(|e| SignInError::BadToken(e.to_string()))?;
    // The verifier checked the signature of exactly these bytes, so
    // reading the claims without checking again is safe.
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<IdClaims>(&token)
        .map_err(|e| SignInError::BadToken(format!("claims: {e}")))?;
    if claims.iss != auth.settings.issuer {
        return Err(SignInError::BadToken(format!(
            "the ID token is from {:?}, not the console's issuer",
            claims.iss
        )));
    }
    if !claims
        .nonce
        .as_deref()
        .is_some_and(|n| equal(n, &flow.nonce))
    {
        return Err(SignInError::BadToken(
            "the ID token's nonce is not this sign-in's".into(),
        ));
    }
    let max_age = claims.exp - now();
    if max_age <= 0 {
        return Err(SignInError::BadToken("the ID token has expired".into()));
    }
    tracing::info!(tenant = %principal.tenant, role = ?principal.role, "console sign-in");
    Ok((token, max_age, flow.next))
}

#[derive(Deserialize)]
struct IdClaims {
    iss: String,
    exp: i64,
    nonce: Option<String>,
}

fn equal(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// `POST /console/sign-out` (its CSRF token is checked by
/// `security::csrf_guard` before this runs): the session cookie cleared,
/// then the issuer's logout, which returns to `/console/signed-out`.
async fn sign_out(State(state): State<ApiState>) -> Response {
    let Some(auth) = state.console() else {
        let mut resp = see_other(&format!("{PREFIX}/signed-out"));
        resp.headers_mut()
            .append(header::SET_COOKIE, cookie(SESSION_COOKIE, "", 0, false));
        return resp;
    };
    let to = match auth.endpoints().await {
        Ok(e) => auth.logout_url(&e),
        // The issuer's session outlives ours then; the cookie is gone
        // either way.
        Err(_) => format!("{PREFIX}/signed-out"),
    };
    let mut resp = see_other(&to);
    resp.headers_mut().append(
        header::SET_COOKIE,
        cookie(SESSION_COOKIE, "", 0, auth.cookie_secure()),
    );
    resp
}

/// `GET /console/sign-out`: a page with the sign-out button (the same
/// form as the page header's), for a link or a bookmark; sign-out itself
/// is a `POST` so that no link elsewhere can end a session.
async fn sign_out_page(session: super::session::ConsoleSession) -> Html<String> {
    html_page(
        "Sign out",
        maud::html! {
            h1 { "Sign out" }
            p { "Signed in to tenant " strong { (session.principal.tenant.as_str()) } "." }
            form method="post" action={ (PREFIX) "/sign-out" } {
                input type="hidden" name=(super::session::CSRF_FIELD) value=(session.csrf_token());
                button type="submit" id="sign-out" { "Sign out" }
            }
        },
    )
}

/// `GET /console/signed-out`: where the issuer's logout returns.
async fn signed_out() -> Html<String> {
    html_page(
        "Signed out",
        maud::html! {
            h1 { "You are signed out" }
            p { a href={ (PREFIX) "/sign-in?next=" (PREFIX) } { "Sign in again" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_under_the_console() {
        for ok in [
            "/console",
            "/console/",
            "/console/resources/i-0abc?from=2026-01-01T00:00:00Z",
            "/console/cost?by=region#chart",
        ] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/console",
            "/console/../v1/accounts",
            "/console/%2e%2e/v1",
            "/console//evil.example",
            "/consoleevil",
            "/console/\r\nSet-Cookie: x=1",
            "javascript:alert(1)",
            "",
            "/v1/accounts",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/console");
    }

    #[test]
    fn cognito_logs_out_beside_its_authorize_endpoint() {
        let auth =
            Url::parse("https://kopter.auth.eu-west-1.amazoncognito.com/oauth2/authorize").unwrap();
        match cognito_logout(&auth) {
            Some(Logout::Cognito(u)) => assert_eq!(
                u.as_str(),
                "https://kopter.auth.eu-west-1.amazoncognito.com/logout"
            ),
            other => panic!("{other:?}"),
        }
        let dev = Url::parse("http://127.0.0.1:8080/dev-issuer/authorize").unwrap();
        assert!(cognito_logout(&dev).is_none());
    }
}
