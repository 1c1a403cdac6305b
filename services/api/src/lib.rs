//! Kopter's tenant HTTP API (`services/api`): read (and a few admin
//! writes of) one tenant's data, with OIDC bearer tokens, an OpenAPI 3.1
//! document generated with the routes, problem+json errors, sealed
//! pagination cursors, CSV/NDJSON exports and a per-tenant rate limit.
//! See `DESIGN.md` for the auth and isolation model.

pub mod auth;
pub mod body;
pub mod console;
pub mod cursor;
pub mod data;
pub mod dev_issuer;
pub mod docs;
pub mod dynamo;
pub mod error;
pub mod list;
pub mod memory;
pub mod metrics;
pub mod process;
pub mod ratelimit;
pub mod routes;
pub mod seal;
pub mod tenant_db;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use kopter_dev_issuer::DevIssuer;
use kopter_runtime::config::ApiConfig;
use kopter_store::webhook_url::AddressPolicy;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::jwks::{KeySource, RefreshPolicy};
use crate::auth::{ClaimsConfig, IssuerKeys, Verifier};
use crate::console::signin::{ConsoleAuth, ConsoleSettings};
use crate::cursor::CursorCodec;
use crate::data::TenantData;
use crate::error::ApiError;
use crate::ratelimit::TenantLimiter;

/// Lifetime of the ID tokens the dev issuer's sign-in issues (a console
/// session; Cognito's default ID token lifetime is the same).
pub const DEV_ID_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Shared state of every request. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: Verifier,
    limiter: TenantLimiter,
    cursors: Arc<CursorCodec>,
    data: Arc<dyn TenantData>,
    dev_issuer: Option<(String, Arc<DevIssuer>)>,
    max_query_bytes: usize,
    webhook_policy: AddressPolicy,
    console: Option<Arc<ConsoleAuth>>,
    dev_sign_in: Option<Arc<dev_issuer::DevSignIn>>,
}

/// What an [`ApiState`] is made of (tests build it by hand).
pub struct ApiParts {
    pub verifier: Verifier,
    pub limiter: TenantLimiter,
    pub cursors: CursorCodec,
    pub data: Arc<dyn TenantData>,
    /// The dev issuer's `iss` and key, served under `/dev-issuer`.
    pub dev_issuer: Option<(String, Arc<DevIssuer>)>,
    pub max_query_bytes: usize,
}

impl ApiState {
    pub fn new(parts: ApiParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                verifier: parts.verifier,
                limiter: parts.limiter,
                cursors: Arc::new(parts.cursors),
                data: parts.data,
                dev_issuer: parts.dev_issuer,
                max_query_bytes: parts.max_query_bytes,
                webhook_policy: AddressPolicy::default(),
                console: None,
                dev_sign_in: None,
            }),
        }
    }

    /// The state configured by `api.*`, over `data`. Refuses a
    /// configuration without any token issuer.
    pub fn from_config(config: &ApiConfig, data: Arc<dyn TenantData>) -> anyhow::Result<Self> {
        let claims = ClaimsConfig {
            audience: config.audience.clone(),
            tenant_claim: config.tenant_claim.clone(),
            roles_claim: config.roles_claim.clone(),
            admin_role: config.admin_role.clone(),
            leeway_secs: config.leeway.as_secs(),
        };
        let policy = RefreshPolicy {
            refresh_interval: config.jwks_refresh_interval,
            max_age: config.jwks_max_age,
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .context("build the JWKS HTTP client")?;
        let mut issuers: Vec<Arc<IssuerKeys>> = config
            .issuers
            .iter()
            .map(|iss| {
                Arc::new(IssuerKeys::new(
                    iss.clone(),
                    &claims.audience,
                    claims.leeway_secs,
                    KeySource::Discovery(http.clone()),
                    policy,
                ))
            })
            .collect();
        let dev_issuer = if config.dev_issuer {
            let key = Arc::new(DevIssuer::load_or_create(&config.dev_issuer_key_file)?);
            let iss = kopter_dev_issuer::issuer_url(&config.public_url);
            let set = serde_json::from_value(key.jwks()).context("dev issuer JWKS")?;
            issuers.push(Arc::new(IssuerKeys::new(
                iss.clone(),
                &claims.audience,
                claims.leeway_secs,
                KeySource::Fixed(set),
                policy,
            )));
            tracing::warn!(issuer = %iss, "the development token issuer is on");
            Some((iss, key))
        } else {
            None
        };
        if issuers.is_empty() {
            anyhow::bail!("no token issuer: set api.issuers (or api.dev_issuer for local use)");
        }
        let cursors = match &config.cursor_key {
            Some(k) => CursorCodec::new(
                &base64::engine::general_purpose::STANDARD
                    .decode(k.trim())
                    .context("api.cursor_key")?,
            ),
            None => {
                tracing::warn!("api.cursor_key unset: cursors are valid in this process only");
                CursorCodec::random()
            }
        };
        let mut state = Self::new(ApiParts {
            verifier: Verifier::new(issuers, claims.clone()),
            limiter: TenantLimiter::new(config.rate_limit_per_second, config.rate_limit_burst),
            cursors,
            data,
            dev_issuer,
            max_query_bytes: config.max_query_bytes,
        });
        if config.dev_issuer {
            state = state.with_dev_sign_in(dev_issuer::DevSignInSettings {
                public_url: config.public_url.clone(),
                client_id: config.console_client_id().to_owned(),
                tenants: config.dev_issuer_tenants.clone(),
                claims,
                token_ttl: DEV_ID_TOKEN_TTL,
            })?;
        }
        match config.console_issuer() {
            Some(issuer) => {
                state = state.with_console(ConsoleSettings {
                    public_url: config.public_url.clone(),
                    issuer,
                    client_id: config.console_client_id().to_owned(),
                    client_secret: config.console_client_secret.clone(),
                    cookie_secure: config.console_cookie_secure(),
                })?;
            }
            None => {
                tracing::warn!("no console issuer (api.console_issuer): console sign-in is off")
            }
        }
        Ok(state)
    }

    /// The console's sign-in with `settings` (the flow cookie sealed under
    /// this state's server key).
    ///
    /// # Errors
    /// See [`ConsoleAuth::new`].
    pub fn with_console(mut self, settings: ConsoleSettings) -> anyhow::Result<Self> {
        let auth = ConsoleAuth::new(settings, &self.inner.cursors)?;
        Arc::get_mut(&mut self.inner)
            .expect("set before the state is shared")
            .console = Some(Arc::new(auth));
        Ok(self)
    }

    /// The dev issuer's sign-in endpoints (`/dev-issuer/authorize`,
    /// `/dev-issuer/token`).
    ///
    /// # Errors
    /// The state has no dev issuer ([`ApiParts::dev_issuer`]).
    pub fn with_dev_sign_in(
        mut self,
        settings: dev_issuer::DevSignInSettings,
    ) -> anyhow::Result<Self> {
        let inner = Arc::get_mut(&mut self.inner).expect("set before the state is shared");
        let (iss, key) = inner
            .dev_issuer
            .clone()
            .context("the dev issuer's sign-in needs the dev issuer")?;
        inner.dev_sign_in = Some(Arc::new(dev_issuer::DevSignIn::new(iss, key, settings)));
        Ok(self)
    }

    /// The console's sign-in, when an issuer is configured for it.
    pub fn console(&self) -> Option<&ConsoleAuth> {
        self.inner.console.as_deref()
    }

    /// The dev issuer's sign-in, when the dev issuer is on.
    pub fn dev_sign_in(&self) -> Option<&dev_issuer::DevSignIn> {
        self.inner.dev_sign_in.as_deref()
    }

    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }
    pub fn limiter(&self) -> &TenantLimiter {
        &self.inner.limiter
    }
    pub fn cursors(&self) -> Arc<CursorCodec> {
        self.inner.cursors.clone()
    }
    pub fn data(&self) -> Arc<dyn TenantData> {
        self.inner.data.clone()
    }

    /// Which webhook URLs `PUT /v1/channels` accepts: the notifier's
    /// `notifier.webhook_allow_local` (strict unless set), so the api never
    /// stores a URL the notifier would refuse to deliver to.
    pub fn with_webhook_policy(mut self, policy: AddressPolicy) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("set before the state is shared")
            .webhook_policy = policy;
        self
    }

    pub fn webhook_policy(&self) -> AddressPolicy {
        self.inner.webhook_policy
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kopter API",
        description = "One tenant's inventory, cost, audit log and notifications. The tenant is the bearer token's; errors are RFC 9457 problem documents."
    ),
    modifiers(&BearerScheme),
    components(schemas(
        error::Problem,
        list::Format,
        data::cost::Granularity,
        data::inventory::KindParam
    ))
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An OIDC token (RS256/ES256) of a configured issuer and audience, with the tenant claim",
                    ))
                    .build(),
            ),
        );
    }
}

/// The routes with their OpenAPI operations, registered together.
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::me::get))
        .routes(routes!(routes::prices::list))
        .routes(routes!(routes::inventory::list))
        .routes(routes!(routes::inventory::get))
        .routes(routes!(routes::inventory::history))
        .routes(routes!(routes::cost::series))
        .routes(routes!(routes::cost::resource))
        .routes(routes!(routes::cost::get_budget, routes::cost::put_budget))
        .routes(routes!(routes::waste::list))
        .routes(routes!(
            routes::settings::get_channels,
            routes::settings::put_channels
        ))
        .routes(routes!(
            routes::settings::get_backup_policy,
            routes::settings::put_backup_policy
        ))
        .routes(routes!(routes::settings::accounts))
        .routes(routes!(routes::audit::list))
        .routes(routes!(routes::audit::get))
        .routes(routes!(routes::audit::findings))
        .routes(routes!(routes::notifications::list))
        .routes(routes!(routes::notifications::mark_read))
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The whole HTTP application: API routes, `/openapi.json`, `/docs`, the
/// dev issuer (when on), problem+json fallbacks, metrics, the query length
/// limit and CORS.
pub fn router(state: ApiState, cors_origins: &[String]) -> Router {
    let (api, spec) = api_routes().split_for_parts();
    let spec_json = serde_json::to_value(&spec).expect("OpenAPI serialises");
    let spec_bytes: Arc<[u8]> = serde_json::to_vec(&spec_json).expect("JSON").into();
    let docs_html: Arc<str> = docs::render(&spec_json).into();
    let mut app = api
        .route(
            "/openapi.json",
            get(move || {
                let b = spec_bytes.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], b.to_vec()) }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let h = docs_html.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                        h.to_string(),
                    )
                }
            }),
        );
    if let Some((iss, key)) = &state.inner.dev_issuer {
        let discovery = DevIssuer::discovery(iss);
        let jwks = key.jwks();
        app = app
            .route(
                &format!(
                    "{}/.well-known/openid-configuration",
                    kopter_dev_issuer::ISSUER_PATH
                ),
                get(move || {
                    let d = discovery.clone();
                    async move { axum::Json(d) }
                }),
            )
            .route(
                &format!("{}/jwks.json", kopter_dev_issuer::ISSUER_PATH),
                get(move || {
                    let j = jwks.clone();
                    async move { axum::Json(j) }
                }),
            );
    }
    if state.dev_sign_in().is_some() {
        use kopter_dev_issuer::{AUTHORIZE_PATH, ISSUER_PATH, TOKEN_PATH};
        app = app
            .route(
                &format!("{ISSUER_PATH}{AUTHORIZE_PATH}"),
                get(dev_issuer::authorize_page).post(dev_issuer::authorize_submit),
            )
            .route(
                &format!("{ISSUER_PATH}{TOKEN_PATH}"),
                axum::routing::post(dev_issuer::token),
            );
    }
    // `/` and `/console/` (a typed or bookmarked trailing slash, which
    // `nest` does not match) lead to the overview.
    let to_console = || async { axum::response::Redirect::to(console::PREFIX) };
    let app = app
        .nest(console::PREFIX, console::routes())
        .route("/", get(to_console))
        .route(&format!("{}/", console::PREFIX), get(to_console));
    let mut app = app
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            console::security::csrf_guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            console::security::headers,
        ))
        .layer(middleware::from_fn(track))
        .layer(middleware::from_fn_with_state(state.clone(), limit_query))
        .with_state(state);
    if !cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::PUT, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
                .expose_headers([header::RETRY_AFTER])
                .max_age(std::time::Duration::from_secs(600)),
        );
    }
    app
}

/// Refuses a query string over `api.max_query_bytes` before any extractor
/// or auth work (414, problem+json).
async fn limit_query(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let len = req.uri().query().map_or(0, str::len);
    if len > state.inner.max_query_bytes {
        return ApiError::QueryTooLong {
            len,
            max: state.inner.max_query_bytes,
        }
        .into_response();
    }
    next.run(req).await
}

/// Counts requests by route template, method and status class, and times
/// them to the response head.
async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let m = metrics::api();
    m.duration
        .with_label_values(&[route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    let class = format!("{}xx", response.status().as_u16() / 100);
    m.requests
        .with_label_values(&[route.as_str(), method.as_str(), class.as_str()])
        .inc();
    response
}

/// Binds `api.listen` and serves `router` until `shutdown` (in-flight
/// requests finish). Returns the bound address and the server task.
pub async fn serve(
    listen: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind the API to {listen}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "API server failed");
        }
    });
    tracing::info!(%addr, "serving the API");
    Ok((addr, task))
}
