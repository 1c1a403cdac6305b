//! One issuer's signing keys: fetched from its OIDC discovery document's
//! `jwks_uri`, cached, refetched when a token names an unknown `kid` (key
//! rotation) or the set is older than `max_age` — but at most once per
//! `refresh_interval`, so made-up `kid`s cannot make the API hammer the
//! issuer. Concurrent callers share one fetch.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::Mutex;

use crate::error::ApiError;
use crate::metrics;

/// A usable verification key.
pub struct VerifyingKey {
    /// The only algorithm this key verifies.
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// Where an issuer's keys come from.
pub enum KeySource {
    /// `{issuer}/.well-known/openid-configuration` → `jwks_uri`.
    Discovery(reqwest::Client),
    /// A fixed set (the in-process dev issuer; tests).
    Fixed(JwkSet),
}

/// Refresh limits of an issuer's key cache.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Least time between two fetches.
    pub refresh_interval: Duration,
    /// Keys older than this are refetched before use.
    pub max_age: Duration,
}

/// The keys of one trusted issuer.
pub struct IssuerKeys {
    issuer: String,
    source: KeySource,
    policy: RefreshPolicy,
    loaded: RwLock<Loaded>,
    /// When the last fetch started; held during a fetch (single flight).
    last_fetch: Mutex<Option<Instant>>,
    rs256: Validation,
    es256: Validation,
}

#[derive(Default)]
struct Loaded {
    keys: HashMap<String, Arc<VerifyingKey>>,
    at: Option<Instant>,
}

impl IssuerKeys {
    pub fn new(
        issuer: impl Into<String>,
        audience: &str,
        leeway_secs: u64,
        source: KeySource,
        policy: RefreshPolicy,
    ) -> Self {
        let issuer = issuer.into();
        let validation = |alg| {
            let mut v = Validation::new(alg);
            v.set_issuer(&[&issuer]);
            v.set_audience(&[audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
            v.validate_nbf = true;
            v.leeway = leeway_secs;
            v
        };
        let (rs256, es256) = (validation(Algorithm::RS256), validation(Algorithm::ES256));
        let loaded = match &source {
            KeySource::Fixed(set) => Loaded {
                keys: usable_keys(set),
                at: Some(Instant::now()),
            },
            KeySource::Discovery(_) => Loaded::default(),
        };
        Self {
            issuer,
            source,
            policy,
            loaded: RwLock::new(loaded),
            last_fetch: Mutex::new(None),
            rs256,
            es256,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The validation rules of tokens signed with `alg` by this issuer.
    pub fn validation(&self, alg: Algorithm) -> &Validation {
        match alg {
            Algorithm::ES256 => &self.es256,
            _ => &self.rs256,
        }
    }

    /// The key `kid`, refetching the set (rate-limited) when the key is
    /// unknown or the set is stale. `Ok(None)`: no such key even after a
    /// refetch. `Err`: the issuer could not be reached and no keys are
    /// cached (503).
    pub async fn key(&self, kid: &str) -> Result<Option<Arc<VerifyingKey>>, ApiError> {
        let (found, stale) = self.lookup(kid);
        if let Some(k) = &found
            && !stale
        {
            return Ok(Some(k.clone()));
        }
        if let Err(e) = self.refresh().await {
            let has_keys = !self.loaded.read().expect("lock").keys.is_empty();
            tracing::warn!(issuer = %self.issuer, error = %format!("{e:#}"), "JWKS fetch failed");
            if !has_keys {
                return Err(ApiError::Unavailable(format!(
                    "the keys of issuer {:?} cannot be fetched",
                    self.issuer
                )));
            }
        }
        Ok(self.lookup(kid).0)
    }

    /// Fetches the keys now unless a fetch ran within the refresh interval.
    /// Also the readiness probe (the first fetch).
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let KeySource::Discovery(http) = &self.source else {
            return Ok(());
        };
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.policy.refresh_interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let result = fetch(http, &self.issuer).await;
        metrics::api()
            .jwks_fetches
            .with_label_values(&[if result.is_ok() { "ok" } else { "error" }])
            .inc();
        let set = result?;
        let keys = usable_keys(&set);
        tracing::info!(issuer = %self.issuer, keys = keys.len(), "loaded the issuer's JWKS");
        *self.loaded.write().expect("lock") = Loaded {
            keys,
            at: Some(Instant::now()),
        };
        Ok(())
    }

    /// Whether keys were loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.read().expect("lock").at.is_some()
    }

    fn lookup(&self, kid: &str) -> (Option<Arc<VerifyingKey>>, bool) {
        let loaded = self.loaded.read().expect("lock");
        let stale = matches!(self.source, KeySource::Discovery(_))
            && loaded.at.is_none_or(|t| t.elapsed() > self.policy.max_age);
        (loaded.keys.get(kid).cloned(), stale)
    }
}

async fn fetch(http: &reqwest::Client, issuer: &str) -> anyhow::Result<JwkSet> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery: Discovery = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: not a discovery document: {e}"))?;
    // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer
    // it was fetched for, or its keys are not this issuer's.
    if discovery.issuer != issuer {
        anyhow::bail!(
            "{url} names issuer {:?}, expected {issuer:?}",
            discovery.issuer
        );
    }
    http.get(&discovery.jwks_uri)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| anyhow::anyhow!("GET {}: {e}", discovery.jwks_uri))?
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("{}: not a JWKS: {e}", discovery.jwks_uri))
}

/// The RSA and P-256 signing keys of a set, by `kid`, each with the one
/// algorithm it may verify. Keys without `kid`, encryption keys, other
/// curves and symmetric keys are skipped: a symmetric "key" in a JWKS is
/// exactly what an HS256 confusion attack would need.
fn usable_keys(set: &JwkSet) -> HashMap<String, Arc<VerifyingKey>> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                return None;
            }
            let algorithm = algorithm_of(jwk)?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((kid, Arc::new(VerifyingKey { algorithm, key })))
        })
        .collect()
}

fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Some(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Some(by_type),
        Some(_) => None,
    }
}
