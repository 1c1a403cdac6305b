//! The console's sign-in in-process, with the api's own dev issuer as the
//! OIDC issuer: the browser's requests go through the router
//! (`tower::ServiceExt::oneshot`, a cookie jar in the test), the api's
//! back-channel calls (discovery, token endpoint) over a real socket to
//! the same router. The whole code flow with PKCE, then each way it must
//! fail: wrong state, replayed / expired / tampered / injected code,
//! wrong verifier or redirect_uri, nonce mismatch, open redirects; cookie
//! flags, sign-out, CSRF, security headers and the rate limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api::auth::jwks::{KeySource, RefreshPolicy};
use api::auth::{ClaimsConfig, IssuerKeys, Verifier};
use api::console::signin::ConsoleSettings;
use api::cursor::CursorCodec;
use api::dev_issuer::DevSignInSettings;
use api::memory::MemoryData;
use api::ratelimit::TenantLimiter;
use api::{ApiParts, ApiState};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kopter_dev_issuer::DevIssuer;
use kopter_dev_issuer::signin::CodeGrant;
use tower::ServiceExt;

const AUD: &str = "kopter";
// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct App {
    router: axum::Router,
    key: Arc<DevIssuer>,
    public_url: String,
    _server: tokio::task::JoinHandle<()>,
}

struct Options {
    cookie_secure: bool,
    per_second: u32,
    burst: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cookie_secure: false,
            per_second: 1000,
            burst: 1000,
        }
    }
}

async fn app_with(o: Options) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}", listener.local_addr().unwrap());
    let iss = kopter_dev_issuer::issuer_url(&public_url);
    let key = Arc::new(DevIssuer::generate().unwrap());
    let claims = ClaimsConfig {
        audience: AUD.into(),
        tenant_claim: "custom:tenant".into(),
        roles_claim: "cognito:groups".into(),
        admin_role: "admin".into(),
        leeway_secs: 0,
    };
    let issuer = Arc::new(IssuerKeys::new(
        iss.clone(),
        AUD,
        0,
        KeySource::Fixed(serde_json::from_value(key.jwks()).unwrap()),
        RefreshPolicy {
            refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
        },
    ));
    let state = ApiState::new(ApiParts {
        verifier: Verifier::new(vec![issuer], claims.clone()),
        limiter: TenantLimiter::new(o.per_second, o.burst),
        cursors: CursorCodec::new(&[9; 32]),
        data: Arc::new(MemoryData::with_prices(Vec::new())),
        dev_issuer: Some((iss.clone(), key.clone())),
        max_query_bytes: 4096,
    })
    .with_dev_sign_in(DevSignInSettings {
        public_url: public_url.clone(),
        client_id: AUD.into(),
        tenants: vec!["acme".into(), "globex".into()],
        claims,
        token_ttl: Duration::from_secs(3600),
    })
    .unwrap()
    .with_console(ConsoleSettings {
        public_url: public_url.clone(),
        issuer: iss,
        client_id: AUD.into(),
        client_secret: None,
        cookie_secure: o.cookie_secure,
    })
    .unwrap();
    let router = api::router(state, &[]);
    let served = router.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, served).await.unwrap();
    });
    App {
        router,
        key,
        public_url,
        _server: server,
    }
}

async fn app() -> App {
    app_with(Options::default()).await
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .unwrap_or_else(|| panic!("no Location: {} {}", self.status, self.body))
            .to_str()
            .unwrap()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

/// A browser: a cookie jar (name → value; Max-Age=0 deletes) over the
/// router.
#[derive(Default, Clone)]
struct Browser {
    jar: HashMap<String, String>,
}

impl Browser {
    async fn send(&mut self, app: &App, req: Request<Body>) -> Resp {
        let resp = app.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let r = Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        for c in r.set_cookies() {
            let (pair, attrs) = c.split_once(';').unwrap_or((&c, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        r
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, app: &App, uri: &str) -> Resp {
        let uri = uri.strip_prefix(&app.public_url).unwrap_or(uri);
        let req = Request::get(uri)
            .header(header::COOKIE, self.cookie_header())
            .body(Body::empty())
            .unwrap();
        self.send(app, req).await
    }

    async fn post_form(&mut self, app: &App, uri: &str, form: &[(&str, &str)]) -> Resp {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = Request::post(uri)
            .header(header::COOKIE, self.cookie_header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(app, req).await
    }

    /// `/console/sign-in?next=` → the dev issuer's authorization URL's
    /// parameters (the flow cookie is now in the jar).
    async fn start(&mut self, app: &App, next: &str) -> HashMap<String, String> {
        let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let r = self
            .get(app, &format!("/console/sign-in?next={next}"))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let to = r.location().to_owned();
        assert!(
            to.starts_with(&format!("{}/dev-issuer/authorize?", app.public_url)),
            "{to}"
        );
        params(&to)
    }

    /// The sign-in page, then the button `choice` → the callback URL.
    async fn choose(&mut self, app: &App, auth: &HashMap<String, String>, choice: &str) -> String {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(auth.iter())
            .finish();
        let page = self
            .get(app, &format!("/dev-issuer/authorize?{query}"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(choice), "{}", page.body);
        let mut form: Vec<(&str, &str)> =
            auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        form.push(("choice", choice));
        let r = self.post_form(app, "/dev-issuer/authorize", &form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let to = r.location().to_owned();
        assert!(
            to.starts_with(&format!("{}/console/callback?", app.public_url)),
            "{to}"
        );
        to
    }

    /// The whole flow for `choice`, starting from `next`; the callback's
    /// answer.
    async fn sign_in(&mut self, app: &App, next: &str, choice: &str) -> Resp {
        let auth = self.start(app, next).await;
        let callback = self.choose(app, &auth, choice).await;
        self.get(app, &callback).await
    }
}

fn params(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, _) = url.split_once('?').unwrap();
    let mut p = params(url);
    p.insert(name.into(), value.into());
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(p.iter())
        .finish();
    format!("{base}?{q}")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A code made with the issuer's key for the flow `auth`, with changes.
fn forged_code(
    app: &App,
    auth: &HashMap<String, String>,
    f: impl FnOnce(&mut CodeGrant),
) -> String {
    let mut g = CodeGrant {
        id: CodeGrant::new_id(),
        client_id: auth["client_id"].clone(),
        redirect_uri: auth["redirect_uri"].clone(),
        code_challenge: auth["code_challenge"].clone(),
        nonce: auth.get("nonce").cloned(),
        tenant: "acme".into(),
        admin: true,
        exp: now() + 60,
    };
    f(&mut g);
    app.key.issue_code(&g)
}

fn callback_url(app: &App, code: &str, state: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", code)
        .append_pair("state", state)
        .finish();
    format!("{}/console/callback?{q}", app.public_url)
}

#[tokio::test]
async fn the_code_flow_with_pkce_signs_in_and_lands_on_next() {
    let app = app().await;
    let mut b = Browser::default();

    // Not signed in: the console sends the browser to sign in, keeping
    // where it was going.
    let r = b.get(&app, "/console").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/console/sign-in?next=%2Fconsole");

    let auth = b.start(&app, "/console/cost?by=region").await;
    assert_eq!(auth["response_type"], "code");
    assert_eq!(auth["client_id"], AUD);
    assert_eq!(
        auth["redirect_uri"],
        format!("{}/console/callback", app.public_url)
    );
    assert_eq!(auth["code_challenge_method"], "S256");
    assert_eq!(auth["code_challenge"].len(), 43);
    assert!(auth["state"].len() >= 16 && auth["nonce"].len() >= 16);
    assert!(auth["scope"].split(' ').any(|s| s == "openid"));
    // The flow cookie: sealed (no verifier, state or next readable),
    // HttpOnly, Lax, /console, 10 minutes.
    let flow = b.jar["kopter_signin"].clone();
    assert!(!flow.contains(&auth["state"]) && !flow.contains("cost"));
    let raw = URL_SAFE_NO_PAD.decode(&flow).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("region"));

    let page_query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(auth.iter())
        .finish();
    let page = b
        .get(&app, &format!("/dev-issuer/authorize?{page_query}"))
        .await;
    for t in ["acme admin", "acme viewer", "globex admin", "globex viewer"] {
        assert!(page.body.contains(t), "{t} missing: {}", page.body);
    }
    assert!(
        page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );

    let callback = b.choose(&app, &auth, "acme admin").await;
    assert_eq!(params(&callback)["state"], auth["state"]);
    let r = b.get(&app, &callback).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/console/cost?by=region");
    let session = r.set_cookie("kopter_session").expect("session cookie");
    let token = b.jar["kopter_session"].clone();
    assert_eq!(token.split('.').count(), 3, "the ID token: {token}");
    assert!(session.contains("; HttpOnly"), "{session}");
    assert!(session.contains("; SameSite=Lax"), "{session}");
    assert!(session.contains("; Path=/console"), "{session}");
    assert!(!session.contains("Secure"), "local mode: {session}");
    let max_age: i64 = session
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (3590..=3600).contains(&max_age),
        "expires with the token: {max_age}"
    );
    // The flow is spent.
    assert!(r.set_cookie("kopter_signin").unwrap().contains("Max-Age=0"));
    assert!(!b.jar.contains_key("kopter_signin"));

    // Signed in as acme admin; the token carries the nonce.
    let r = b.get(&app, "/console").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("acme"), "{}", r.body);
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["nonce"], auth["nonce"].as_str());
    assert_eq!(claims["custom:tenant"], "acme");
    assert_eq!(claims["cognito:groups"][0], "admin");

    // Signing in again while signed in goes straight to next.
    let r = b
        .get(&app, "/console/sign-in?next=%2Fconsole%2Faudit")
        .await;
    assert_eq!(r.location(), "/console/audit");
}

#[tokio::test]
async fn secure_cookies_outside_local_mode() {
    let app = app_with(Options {
        cookie_secure: true,
        ..Options::default()
    })
    .await;
    let mut b = Browser::default();
    let r = b.sign_in(&app, "/console", "globex viewer").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let session = r.set_cookie("kopter_session").unwrap();
    assert!(session.ends_with("; Secure"), "{session}");
}

#[tokio::test]
async fn a_wrong_state_or_a_missing_flow_is_refused() {
    let app = app().await;
    let mut b = Browser::default();
    let auth = b.start(&app, "/console").await;
    let callback = b.choose(&app, &auth, "acme admin").await;

    let wrong = with_param(&callback, "state", "not-the-state");
    let r = b.clone().get(&app, &wrong).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("state"), "{}", r.body);
    assert!(r.set_cookie("kopter_session").is_none());

    // Another browser (no flow cookie) cannot use this callback.
    let r = Browser::default().get(&app, &callback).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("expired or was started in another browser"));
    assert!(r.set_cookie("kopter_session").is_none());

    // A tampered flow cookie is no flow.
    let mut tampered = b.clone();
    let f = tampered.jar.get_mut("kopter_signin").unwrap();
    f.replace_range(20..21, if &f[20..21] == "A" { "B" } else { "A" });
    let r = tampered.get(&app, &callback).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.set_cookie("kopter_session").is_none());

    // The issuer's error comes back with the state: shown, no session.
    let denied = with_param(
        &format!(
            "{}/console/callback?state={}",
            app.public_url, auth["state"]
        ),
        "error",
        "access_denied",
    );
    let r = b.clone().get(&app, &denied).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("access_denied"));

    // The untouched flow still works.
    let r = b.get(&app, &callback).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.set_cookie("kopter_session").is_some());
}

#[tokio::test]
async fn replayed_expired_tampered_and_injected_codes_are_refused() {
    let app = app().await;

    // Replayed: the same callback (code) again with the same flow cookie.
    let mut b = Browser::default();
    let auth = b.start(&app, "/console").await;
    let callback = b.choose(&app, &auth, "acme admin").await;
    let flow = b.jar["kopter_signin"].clone();
    let r = b.get(&app, &callback).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut attacker = Browser::default();
    attacker.jar.insert("kopter_signin".into(), flow);
    let r = attacker.get(&app, &callback).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("invalid_grant"), "{}", r.body);
    assert!(r.body.contains("used already"), "{}", r.body);
    assert!(r.set_cookie("kopter_session").is_none());

    let refused = |b: Browser, url: String, why: &'static str| {
        let app = &app;
        async move {
            let mut b = b;
            let r = b.get(app, &url).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.body);
            assert!(r.body.contains("invalid_grant"), "{why}: {}", r.body);
            assert!(r.body.contains(why), "{why}: {}", r.body);
            assert!(r.set_cookie("kopter_session").is_none(), "{why}");
        }
    };

    // Expired.
    let mut b = Browser::default();
    let auth = b.start(&app, "/console").await;
    let code = forged_code(&app, &auth, |g| g.exp = now() - 1);
    refused(b, callback_url(&app, &code, &auth["state"]), "expired").await;

    // Tampered.
    let mut b = Browser::default();
    let auth = b.start(&app, "/console").await;
    let callback = b.choose(&app, &auth, "acme admin").await;
    let code = params(&callback)["code"].clone();
    let mut raw = URL_SAFE_NO_PAD.decode(&code).unwrap();
    let n = raw.len() - 5;
    raw[n] ^= 0x20;
    let tampered = URL_SAFE_NO_PAD.encode(raw);
    refused(
        b,
        callback_url(&app, &tampered, &auth["state"]),
        "not one this issuer made",
    )
    .await;

    // Injected: a code issued to another sign-in (its PKCE challenge) in
    // this browser's callback — the verifier does not match.
    let mut victim = Browser::default();
    let victim_auth = victim.start(&app, "/console").await;
    let mut other = Browser::default();
    let other_auth = other.start(&app, "/console").await;
    let other_callback = other.choose(&app, &other_auth, "globex admin").await;
    let injected = params(&other_callback)["code"].clone();
    refused(
        victim,
        callback_url(&app, &injected, &victim_auth["state"]),
        "code_verifier does not match",
    )
    .await;
}

#[tokio::test]
async fn the_token_endpoint_checks_verifier_redirect_uri_client_and_replay() {
    let app = app().await;
    let redirect = format!("{}/console/callback", app.public_url);
    let auth: HashMap<String, String> = [
        ("client_id", AUD),
        ("redirect_uri", redirect.as_str()),
        ("code_challenge", CHALLENGE),
        ("nonce", "n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let code = forged_code(&app, &auth, |_| {});
    let mut b = Browser::default();
    let token = |code: &str, verifier: &str, redirect: &str, client: &str| {
        vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("code_verifier".to_owned(), verifier.to_owned()),
            ("redirect_uri".to_owned(), redirect.to_owned()),
            ("client_id".to_owned(), client.to_owned()),
        ]
    };
    let post = |b: &mut Browser, form: Vec<(String, String)>| {
        let form = form.clone();
        let app = &app;
        let mut b = b.clone();
        async move {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let r = b.post_form(app, "/dev-issuer/token", &pairs).await;
            let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            (r.status, doc)
        }
    };
    let wrong_verifier = VERIFIER.replace('d', "e");
    for (form, status, error, why) in [
        (
            token(&code, &wrong_verifier, &redirect, AUD),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code_verifier",
        ),
        (
            token(
                &code,
                VERIFIER,
                &format!("{}/console/evil", app.public_url),
                AUD,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri",
        ),
        (
            token(&code, VERIFIER, &redirect, "other-client"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "another client",
        ),
    ] {
        let (s, doc) = post(&mut b, form).await;
        assert_eq!(s, status, "{why}: {doc}");
        assert_eq!(doc["error"], error, "{why}: {doc}");
        assert!(
            doc["error_description"].as_str().unwrap().contains(why),
            "{why}: {doc}"
        );
    }
    // Failed attempts did not spend it; the right one does, once.
    let (s, doc) = post(&mut b, token(&code, VERIFIER, &redirect, AUD)).await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    assert_eq!(doc["token_type"], "Bearer");
    assert!(doc["id_token"].as_str().unwrap().split('.').count() == 3);
    let (s, doc) = post(&mut b, token(&code, VERIFIER, &redirect, AUD)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(doc["error"], "invalid_grant");
}

#[tokio::test]
async fn the_authorize_page_refuses_foreign_clients_and_redirect_uris_without_redirecting() {
    let app = app().await;
    let mut b = Browser::default();
    let auth = b.start(&app, "/console").await;
    let q = |changes: &[(&str, &str)]| {
        let mut p = auth.clone();
        for (k, v) in changes {
            p.insert((*k).into(), (*v).into());
        }
        let q: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(p.iter())
            .finish();
        format!("/dev-issuer/authorize?{q}")
    };
    for (change, why) in [
        (("redirect_uri", "https://evil.example/cb"), "redirect_uri"),
        (
            (
                "redirect_uri",
                &*format!("{}/console/other", app.public_url),
            ),
            "redirect_uri",
        ),
        (("client_id", "someone-else"), "client_id"),
    ] {
        let r = b.get(&app, &q(&[change])).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}");
        assert!(r.headers.get(header::LOCATION).is_none(), "{why}");
        assert!(r.body.contains(why), "{why}: {}", r.body);
        // The same for a submitted form.
        let mut form: Vec<(&str, &str)> =
            auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        form.retain(|(k, _)| *k != change.0);
        form.push(change);
        form.push(("choice", "acme admin"));
        let r = b.post_form(&app, "/dev-issuer/authorize", &form).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}");
        assert!(r.headers.get(header::LOCATION).is_none(), "{why}");
    }
    // Without PKCE: back to the console with an error and the state.
    let r = b.get(&app, &q(&[("code_challenge_method", "plain")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let back = params(r.location());
    assert_eq!(back["error"], "invalid_request");
    assert_eq!(back["state"], auth["state"]);
}

#[tokio::test]
async fn a_token_with_another_nonce_does_not_sign_in() {
    let app = app().await;
    let mut b = Browser::default();
    let auth = b.start(&app, "/console").await;
    let code = forged_code(&app, &auth, |g| {
        g.nonce = Some("someone-elses-nonce".into())
    });
    let r = b
        .get(&app, &callback_url(&app, &code, &auth["state"]))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("nonce"), "{}", r.body);
    assert!(r.set_cookie("kopter_session").is_none());
    // And none at all.
    let mut b = Browser::default();
    let auth = b.start(&app, "/console").await;
    let code = forged_code(&app, &auth, |g| g.nonce = None);
    let r = b
        .get(&app, &callback_url(&app, &code, &auth["state"]))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[tokio::test]
async fn next_never_leaves_the_console() {
    let app = app().await;
    for bad in [
        "//evil.example/console",
        "/\\evil.example",
        "https://evil.example/console",
        "/console/../v1/accounts",
        "/v1/accounts",
    ] {
        // Through the whole flow…
        let mut b = Browser::default();
        let r = b.sign_in(&app, bad, "acme viewer").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{bad}: {}", r.body);
        assert_eq!(r.location(), "/console", "{bad}");
        // …and when already signed in.
        let q: String = form_urlencoded::byte_serialize(bad.as_bytes()).collect();
        let r = b.get(&app, &format!("/console/sign-in?next={q}")).await;
        assert_eq!(r.location(), "/console", "{bad}");
    }
}

fn csrf_of(token: &str) -> String {
    // The api's CSRF token: HMAC of the session token under the server key
    // (the same key as the app's cursors).
    CursorCodec::new(&[9; 32]).tag("console-csrf", token.as_bytes())
}

#[tokio::test]
async fn sign_out_needs_the_csrf_token_and_clears_the_session() {
    let app = app().await;
    let mut b = Browser::default();
    let r = b.sign_in(&app, "/console", "acme admin").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let mut other = Browser::default();
    other.sign_in(&app, "/console", "acme admin").await;
    let others_csrf = csrf_of(&other.jar["kopter_session"]);

    for form in [
        vec![],
        vec![("csrf_token", "forged")],
        vec![("csrf_token", others_csrf.as_str())],
    ] {
        let r = b.post_form(&app, "/console/sign-out", &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(r.set_cookie("kopter_session").is_none());
        assert!(r.body.contains("Form refused"), "{}", r.body);
    }
    // Any console POST, known route or not, is refused the same way.
    let r = b
        .post_form(&app, "/console/settings/budget", &[("monthly_usd", "1")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The token in a JSON body does not count either.
    let req = Request::post("/console/sign-out")
        .header(header::COOKIE, b.cookie_header())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(
            "{{\"csrf_token\": \"{}\"}}",
            csrf_of(&b.jar["kopter_session"])
        )))
        .unwrap();
    assert_eq!(b.send(&app, req).await.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get(&app, "/console").await.status, StatusCode::OK);

    let csrf = csrf_of(&b.jar["kopter_session"]);
    // The sign-out page's form carries exactly this token.
    let page = b.get(&app, "/console/sign-out").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")),
        "{}",
        page.body
    );
    let r = b
        .post_form(&app, "/console/sign-out", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // The dev issuer has no session of its own to end.
    assert_eq!(r.location(), "/console/signed-out");
    let cleared = r.set_cookie("kopter_session").unwrap();
    assert!(cleared.starts_with("kopter_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0") && cleared.contains("Path=/console"));
    assert!(!b.jar.contains_key("kopter_session"));
    let r = b.get(&app, "/console").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().starts_with("/console/sign-in"));
    let r = b.get(&app, "/console/signed-out").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("signed out"), "{}", r.body);
}

#[tokio::test]
async fn every_console_response_carries_the_security_headers() {
    let app = app().await;
    let mut b = Browser::default();
    b.sign_in(&app, "/console", "acme admin").await;
    for path in [
        "/console",
        "/console/no-such-page",
        "/console/sign-in",
        "/console/signed-out",
    ] {
        let r = b.get(&app, path).await;
        let h = &r.headers;
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert_eq!(
            csp,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            "{path}"
        );
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{path}");
        assert_eq!(h[header::CACHE_CONTROL], "no-store", "{path}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{path}");
    }
    // The JSON api is not the console's business.
    let r = b.get(&app, "/openapi.json").await;
    assert!(r.headers.get(header::CONTENT_SECURITY_POLICY).is_none());
}

#[tokio::test]
async fn console_requests_take_from_the_tenants_rate_limit() {
    let app = app_with(Options {
        per_second: 1,
        burst: 2,
        ..Options::default()
    })
    .await;
    let mut b = Browser::default();
    b.sign_in(&app, "/console", "acme admin").await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(b.get(&app, "/console").await.status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let r = b.get(&app, "/console").await;
    if r.status == StatusCode::TOO_MANY_REQUESTS {
        assert!(r.headers.contains_key(header::RETRY_AFTER));
    }
}
