//! Cross-account credentials: AssumeRole (always with the account's
//! ExternalId) cached per customer account.
//!
//! - One cache entry per (account, role, ExternalId), bounded in count and
//!   evicted when idle, so thousands of accounts cost kilobytes each.
//! - Credentials are reused until `refresh_before_expiry` before they
//!   expire; concurrent callers for one account share one STS call.
//! - Clients for a customer account are derived from the process's
//!   `SdkConfig` (same HTTP client and pool) with a provider that reads this
//!   cache, so a long-lived client refreshes by itself.
//! - Denials (wrong ExternalId, missing trust, no such role) are
//!   [`AssumeRoleError::Denied`], which callers treat as permanent: record
//!   the account as unhealthy, do not retry.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::error::ProvideErrorMetadata;
use kopter_schema::{AccountId, TenantId};
use tokio::sync::Mutex;

use crate::config::CredentialsConfig;
use crate::metrics;

/// What Kopter needs to enter a customer account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerRole {
    pub tenant: TenantId,
    pub account: AccountId,
    pub role_arn: String,
    pub external_id: String,
}

impl From<&kopter_schema::items::AccountRecord> for CustomerRole {
    fn from(a: &kopter_schema::items::AccountRecord) -> Self {
        Self {
            tenant: a.tenant_id.clone(),
            account: a.account_id.clone(),
            role_arn: a.role_arn.clone(),
            external_id: a.external_id.clone(),
        }
    }
}

/// A role of Kopter's own account assumed on behalf of one tenant, with
/// session tags (the api's tenant-access role: `kopter-tenant=<tenant>`, on
/// which the role's `dynamodb:LeadingKeys` condition is written). No
/// ExternalId: the role trusts Kopter's account, not a customer's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaggedRole {
    pub tenant: TenantId,
    pub role_arn: String,
    /// `(key, value)` session tags, in order.
    pub tags: Vec<(String, String)>,
}

impl TaggedRole {
    /// The tenant-access role for `tenant`, tagged `kopter-tenant=<tenant>`.
    pub fn tenant_access(role_arn: &str, tenant: &TenantId) -> Self {
        Self {
            tenant: tenant.clone(),
            role_arn: role_arn.to_owned(),
            tags: vec![(TENANT_TAG.to_owned(), tenant.to_string())],
        }
    }

    /// The 12-digit account of the role ARN (`""` if it has none).
    fn account(&self) -> AccountId {
        let id = self.role_arn.split(':').nth(4).unwrap_or_default();
        AccountId::new(id).unwrap_or_else(|_| AccountId::new("000000000000").expect("valid id"))
    }
}

/// Session tag carrying the tenant id of a tenant-access session; the
/// tenant-read policy's `${aws:PrincipalTag/kopter-tenant}`.
pub const TENANT_TAG: &str = "kopter-tenant";

#[derive(Debug, thiserror::Error)]
pub enum AssumeRoleError {
    /// The customer's side refuses us: permanent until they fix the role.
    #[error("account {account}: assuming {role_arn} was refused ({code}): {message}")]
    Denied {
        account: AccountId,
        role_arn: String,
        code: String,
        message: String,
    },
    /// STS unreachable, throttling, Kopter's own credentials: retry later.
    #[error("account {account}: could not assume {role_arn}: {message}")]
    Transient {
        account: AccountId,
        role_arn: String,
        message: String,
        /// The STS error, when there is one: kept in the chain so
        /// `aws::classify` sees throttling, 5xx and connection failures
        /// (back-pressure) behind a failed AssumeRole.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

impl AssumeRoleError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Denied { .. })
    }
}

/// STS error codes that mean "the customer's role will not let us in".
const DENIAL_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "NoSuchEntity",
    "MalformedPolicyDocument",
    "PackedPolicyTooLarge",
    "RegionDisabledException",
    "ValidationError",
];

#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<Inner>,
}

struct Inner {
    sts: aws_sdk_sts::Client,
    service: String,
    session_duration: Duration,
    refresh_before: Duration,
    sessions: moka::future::Cache<CustomerRole, Arc<Mutex<Option<Credentials>>>>,
    tagged: moka::future::Cache<TaggedRole, Arc<Mutex<Option<Credentials>>>>,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("service", &self.inner.service)
            .field("entries", &self.inner.sessions.entry_count())
            .finish()
    }
}

impl CredentialCache {
    pub fn new(sts: aws_sdk_sts::Client, service: &str, config: &CredentialsConfig) -> Self {
        let sessions = moka::future::Cache::builder()
            .max_capacity(config.cache_capacity)
            // An account not touched for a whole session length has expired
            // credentials anyway; drop it to keep memory per account small.
            .time_to_idle(config.session_duration)
            .build();
        let tagged = moka::future::Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_idle(config.session_duration)
            .build();
        Self {
            inner: Arc::new(Inner {
                sts,
                service: service.to_owned(),
                session_duration: config.session_duration,
                refresh_before: config.refresh_before_expiry,
                sessions,
                tagged,
            }),
        }
    }

    /// Cached accounts (approximate).
    pub fn len(&self) -> u64 {
        self.inner.sessions.entry_count() + self.inner.tagged.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Valid credentials for the role, from cache or a fresh AssumeRole.
    pub async fn credentials(&self, role: &CustomerRole) -> Result<Credentials, AssumeRoleError> {
        let slot = self
            .inner
            .sessions
            .get_with_by_ref(role, async { Arc::new(Mutex::new(None)) })
            .await;
        // Holding the slot's lock while calling STS makes concurrent callers
        // for one account wait for a single AssumeRole.
        let mut current = slot.lock().await;
        if let Some(creds) = current.as_ref()
            && self.fresh(creds)
        {
            return Ok(creds.clone());
        }
        let creds = self.assume(role).await?;
        *current = Some(creds.clone());
        Ok(creds)
    }

    /// An `SdkConfig` for a customer account and region, sharing the base
    /// config's HTTP client, whose credentials come from this cache. Assumes
    /// the role up front so denials surface here as a typed error.
    pub async fn sdk_config(
        &self,
        base: &SdkConfig,
        role: &CustomerRole,
        region: &str,
    ) -> Result<SdkConfig, AssumeRoleError> {
        self.credentials(role).await?;
        let provider = AccountProvider {
            cache: self.clone(),
            role: role.clone(),
        };
        Ok(base
            .to_builder()
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build())
    }

    /// Valid credentials for a tagged session of a role in Kopter's own
    /// account, cached per (tenant, role, tags) like customer sessions.
    pub async fn tagged_credentials(
        &self,
        role: &TaggedRole,
    ) -> Result<Credentials, AssumeRoleError> {
        let slot = self
            .inner
            .tagged
            .get_with_by_ref(role, async { Arc::new(Mutex::new(None)) })
            .await;
        let mut current = slot.lock().await;
        if let Some(creds) = current.as_ref()
            && self.fresh(creds)
        {
            return Ok(creds.clone());
        }
        let mut request = self
            .inner
            .sts
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(session_name(&self.inner.service, &role.tenant))
            .duration_seconds(self.inner.session_duration.as_secs() as i32);
        for (key, value) in &role.tags {
            request = request.tags(
                aws_sdk_sts::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
                    .expect("key and value set"),
            );
        }
        let creds = self.finish(request.send().await, role.account(), &role.role_arn)?;
        *current = Some(creds.clone());
        Ok(creds)
    }

    /// An `SdkConfig` (sharing the base config's HTTP client) whose
    /// credentials are the tagged session's, refreshed from this cache.
    /// Assumes the role up front so a denial surfaces here.
    pub async fn tagged_sdk_config(
        &self,
        base: &SdkConfig,
        role: &TaggedRole,
    ) -> Result<SdkConfig, AssumeRoleError> {
        self.tagged_credentials(role).await?;
        let provider = TaggedProvider {
            cache: self.clone(),
            role: role.clone(),
        };
        Ok(base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build())
    }

    fn fresh(&self, creds: &Credentials) -> bool {
        match creds.expiry() {
            Some(expiry) => SystemTime::now() + self.inner.refresh_before < expiry,
            None => true,
        }
    }

    async fn assume(&self, role: &CustomerRole) -> Result<Credentials, AssumeRoleError> {
        let session_name = session_name(&self.inner.service, &role.tenant);
        let result = self
            .inner
            .sts
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(&session_name)
            .external_id(&role.external_id)
            .duration_seconds(self.inner.session_duration.as_secs() as i32)
            .send()
            .await;
        self.finish(result, role.account.clone(), &role.role_arn)
    }

    /// Classifies an AssumeRole answer (denial vs transient) and counts it.
    fn finish(
        &self,
        result: Result<
            aws_sdk_sts::operation::assume_role::AssumeRoleOutput,
            aws_sdk_sts::error::SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError>,
        >,
        account: AccountId,
        role_arn: &str,
    ) -> Result<Credentials, AssumeRoleError> {
        let m = metrics::runtime();
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                let code = err.code().unwrap_or("").to_owned();
                let message = err.message().map(str::to_owned).unwrap_or_else(|| {
                    format!(
                        "{}",
                        aws_smithy_types::error::display::DisplayErrorContext(&err)
                    )
                });
                if DENIAL_CODES.contains(&code.as_str()) {
                    m.assume_role.with_label_values(&["denied"]).inc();
                    return Err(AssumeRoleError::Denied {
                        account,
                        role_arn: role_arn.to_owned(),
                        code,
                        message,
                    });
                }
                m.assume_role.with_label_values(&["error"]).inc();
                return Err(AssumeRoleError::Transient {
                    account,
                    role_arn: role_arn.to_owned(),
                    message,
                    source: Some(Box::new(err)),
                });
            }
        };
        let Some(c) = out.credentials else {
            m.assume_role.with_label_values(&["error"]).inc();
            return Err(AssumeRoleError::Transient {
                account,
                role_arn: role_arn.to_owned(),
                message: "AssumeRole returned no credentials".into(),
                source: None,
            });
        };
        m.assume_role.with_label_values(&["ok"]).inc();
        let expiry = SystemTime::try_from(c.expiration).ok();
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            expiry,
            "kopter-assume-role",
        ))
    }
}

/// `kopter-{service}-{tenant}`, within STS's 64 characters of `[\w+=,.@-]`
/// (service and tenant names only use `[a-z0-9-]`).
pub fn session_name(service: &str, tenant: &TenantId) -> String {
    let mut name = format!("kopter-{service}-{tenant}");
    name.truncate(64);
    name
}

#[derive(Debug, Clone)]
struct AccountProvider {
    cache: CredentialCache,
    role: CustomerRole,
}

impl ProvideCredentials for AccountProvider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.cache
                .credentials(&self.role)
                .await
                .map_err(provider::error::CredentialsError::provider_error)
        })
    }
}

#[derive(Debug, Clone)]
struct TaggedProvider {
    cache: CredentialCache,
    role: TaggedRole,
}

impl ProvideCredentials for TaggedProvider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.cache
                .tagged_credentials(&self.role)
                .await
                .map_err(provider::error::CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_name_service_and_tenant_within_limits() {
        let t = TenantId::new("acme").unwrap();
        assert_eq!(session_name("describer", &t), "kopter-describer-acme");
        let long = TenantId::new("a".repeat(64)).unwrap();
        assert_eq!(session_name("trail-ingest", &long).len(), 64);
    }
}
