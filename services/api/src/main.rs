//! `api`: the tenant HTTP API on `api.listen` (default `0.0.0.0:8080`),
//! with `/metrics` `/healthz` `/readyz` on `telemetry.listen` (default
//! `0.0.0.0:9106`). Exit codes: 0 after a drain on SIGTERM/SIGINT, 1 on a
//! failure, 2 on bad configuration.

use std::process::ExitCode;
use std::sync::Arc;

use kopter_runtime::{AwsContext, Config, CredentialCache, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load_api() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("api: {e:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.telemetry);
    let aws = AwsContext::load(&config).await;
    let data = match api_data(&config, &aws) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("api: {e:#}");
            return ExitCode::from(2);
        }
    };
    let state = match api::ApiState::from_config(&config.api, data) {
        Ok(s) => s.with_webhook_policy(kopter_store::webhook_url::AddressPolicy {
            allow_local: config.notifier.webhook_allow_local,
        }),
        Err(e) => {
            eprintln!("api: {e:#}");
            return ExitCode::from(2);
        }
    };
    let shutdown = telemetry::shutdown_on_signals();
    let checks = readiness(&state);
    let result = async {
        telemetry::serve(config.telemetry.listen, checks, shutdown.clone()).await?;
        let router = api::router(state, &config.api.cors_origins);
        let (_, task) = api::serve(config.api.listen, router, shutdown).await?;
        task.await?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

/// The tables behind the endpoints: DynamoDB through `kopter-store`, each
/// tenant's calls signed with its tagged session of `api.tenant_role_arn`
/// when set.
fn api_data(config: &Config, aws: &AwsContext) -> anyhow::Result<Arc<dyn api::data::TenantData>> {
    let credentials = CredentialCache::new(aws.sts(), "api", &config.credentials);
    let db = api::tenant_db::TenantDb::new(
        aws.clone(),
        credentials,
        config.api.tenant_role_arn.clone(),
        config.credentials.cache_capacity,
    );
    Ok(Arc::new(api::dynamo::DynamoData::new(db, config.names())))
}

/// Ready when every issuer's keys could be loaded.
fn readiness(state: &api::ApiState) -> Vec<telemetry::ReadyCheck> {
    let state = state.clone();
    vec![Arc::new(move || {
        let state = state.clone();
        Box::pin(async move {
            for issuer in state.verifier().issuers() {
                if !issuer.is_loaded() {
                    issuer.refresh().await?;
                }
            }
            Ok(())
        }) as kopter_runtime::BoxFuture<'static, anyhow::Result<()>>
    })]
}
