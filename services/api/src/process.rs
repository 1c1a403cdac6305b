//! The api inside a process: what the `api` binary and the all-in-one
//! `kopter` both run, so the two cannot drift. [`Api::from_config`] builds
//! everything that can be wrong in the configuration (issuers, cursor key,
//! tenant role) before anything listens; [`Api::serve`] binds `api.listen`
//! and serves until shutdown, letting in-flight requests finish.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use kopter_runtime::telemetry::ReadyCheck;
use kopter_runtime::{AwsContext, BoxFuture, Config, CredentialCache};
use tokio_util::sync::CancellationToken;

use crate::ApiState;
use crate::data::TenantData;
use crate::dynamo::DynamoData;
use crate::tenant_db::TenantDb;

/// A configured api, not yet listening.
pub struct Api {
    listen: SocketAddr,
    router: Router,
    state: ApiState,
}

impl Api {
    /// The api of `config` over DynamoDB at `aws`: each tenant's calls
    /// signed with its tagged session of `api.tenant_role_arn` when set.
    ///
    /// # Errors
    /// A configuration the api cannot serve with: no token issuer, a
    /// missing `api.cursor_key` in env `prod`
    /// ([`Config::validate_api_serving`]), an unreadable dev issuer key
    /// file. Callers treat these as bad configuration (exit 2).
    pub fn from_config(config: &Config, aws: &AwsContext) -> anyhow::Result<Self> {
        config.validate_api_serving()?;
        // Webhook channels (PUT /v1/channels) take the notifier's address
        // policy: what it may deliver to is what a tenant may configure.
        let state = ApiState::from_config(&config.api, data(config, aws))?.with_webhook_policy(
            kopter_store::webhook_url::AddressPolicy {
                allow_local: config.notifier.webhook_allow_local,
            },
        );
        let router = crate::router(state.clone(), &config.api.cors_origins);
        Ok(Self {
            listen: config.api.listen,
            router,
            state,
        })
    }

    /// Ready when every issuer's keys are loaded (a token can be verified);
    /// an issuer not loaded yet is fetched by the check itself.
    pub fn ready_check(&self) -> ReadyCheck {
        let state = self.state.clone();
        Arc::new(move || {
            let state = state.clone();
            Box::pin(async move {
                for issuer in state.verifier().issuers() {
                    if !issuer.is_loaded() {
                        issuer.refresh().await?;
                    }
                }
                Ok(())
            }) as BoxFuture<'static, anyhow::Result<()>>
        })
    }

    /// Binds `api.listen` and serves until `shutdown`; returns the bound
    /// address and the server task, which ends once in-flight requests
    /// have finished.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn serve(
        self,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        crate::serve(self.listen, self.router, shutdown).await
    }
}

/// The tables behind the endpoints: DynamoDB through `kopter-store`.
fn data(config: &Config, aws: &AwsContext) -> Arc<dyn TenantData> {
    let credentials = CredentialCache::new(aws.sts(), "api", &config.credentials);
    let db = TenantDb::new(
        aws.clone(),
        credentials,
        config.api.tenant_role_arn.clone(),
        config.credentials.cache_capacity,
    );
    Arc::new(DynamoData::new(db, config.names()))
}
