//! describer: every onboarded account × enabled region's EC2/EBS
//! inventory, its state history, and scheduled EBS backups. See `DESIGN.md`
//! next to this file; the rows other services read are in [`rows`] (and
//! [`backup::SnapshotRow`]).

pub mod backup;
pub mod describe;
pub mod diff;
pub mod ec2;
pub mod zones;

use std::sync::Arc;

use kopter_runtime::{BoxFuture, Delivery, Handler, HandlerError, ServiceContext, decode_for};
use kopter_schema::messages::AccountRegion;
use kopter_schema::{Message, Service};

pub use describe::{AccountAccess, AssumedRoles, Describer, Settings, SweepKind};

/// The service's queue handler.
pub struct DescriberHandler(pub Describer);

impl Handler for DescriberHandler {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let env = decode_for(Service::Describer, delivery)?;
            let d = &self.0;
            let job = env.message.kind();
            let result = match &env.message {
                Message::DescribeSweep(_) => d.sweep(SweepKind::Describe).await.map(|r| {
                    tracing::info!(
                        accounts = r.accounts,
                        jobs = r.jobs,
                        denied = r.denied,
                        transient = r.transient,
                        "describe sweep fanned out"
                    );
                }),
                Message::BackupSweep(_) => d.sweep(SweepKind::Backup).await.map(|r| {
                    tracing::info!(
                        accounts = r.accounts,
                        jobs = r.jobs,
                        denied = r.denied,
                        transient = r.transient,
                        "backup sweep fanned out"
                    );
                }),
                Message::OrgDiscovery(_) => d.discover_organizations().await,
                Message::DescribeAccount(t) => d.describe(t, None).await.map(|r| {
                    tracing::info!(tenant = %t.tenant, account = %t.account, region = %t.region,
                        observed = r.observed, written = r.written, changes = r.events.len(),
                        denied = r.denied.as_deref(), skipped = r.skipped.as_deref(), "described");
                }),
                Message::DescribeTargeted(t) => {
                    let target = AccountRegion {
                        tenant: t.tenant.clone(),
                        account: t.account.clone(),
                        region: t.region.clone(),
                    };
                    d.describe(&target, Some(t)).await.map(|r| {
                        tracing::info!(tenant = %t.tenant, account = %t.account, region = %t.region,
                            observed = r.observed, written = r.written, changes = r.events.len(),
                            denied = r.denied.as_deref(), "targeted describe");
                    })
                }
                Message::BackupRun(t) => d.backup(t).await.map(|r| {
                    tracing::info!(tenant = %t.tenant, account = %t.account, region = %t.region,
                        volumes = r.volumes, created = r.created.len(), already = r.already,
                        deleted = r.deleted.len(), denied = r.denied.as_deref(),
                        skipped = r.skipped.as_deref(), "backup run");
                }),
                other => Err(HandlerError::permanent(anyhow::anyhow!(
                    "message {}: the describer does not handle {:?}",
                    delivery.message_id,
                    other.kind()
                ))),
            };
            let outcome = match &result {
                Ok(()) => "ok",
                Err(e) if e.is_permanent() => "permanent",
                Err(_) => "retry",
            };
            describe::m().jobs.with_label_values(&[job, outcome]).inc();
            result.map_err(|e| match e {
                HandlerError::Retry(e) => HandlerError::Retry(
                    e.context(format!("message {} ({job})", delivery.message_id)),
                ),
                HandlerError::Permanent(e) => HandlerError::Permanent(
                    e.context(format!("message {} ({job})", delivery.message_id)),
                ),
            })
        })
    }
}

/// A describer wired to the process's AWS clients and config.
pub fn describer(ctx: &ServiceContext) -> Describer {
    describer_with(
        ctx,
        Arc::new(AssumedRoles {
            base: ctx.aws.sdk.clone(),
            credentials: ctx.credentials.clone(),
        }),
    )
}

/// The service's queue handler, as `main` runs it (the all-in-one `kopter`
/// process builds every service's handler this way).
pub fn handler(ctx: &ServiceContext) -> anyhow::Result<Arc<dyn Handler>> {
    Ok(Arc::new(DescriberHandler(describer(ctx))))
}

/// Like [`describer`], entering accounts through `access` (tests).
pub fn describer_with(ctx: &ServiceContext, access: Arc<dyn AccountAccess>) -> Describer {
    let d = &ctx.config.describer;
    Describer {
        orgs: kopter_runtime::org::Organizations::new(
            ctx.aws.sdk.clone(),
            ctx.credentials.clone(),
            ctx.aws.dynamodb(),
            &ctx.names,
            ctx.outbox.clone(),
        ),
        store: kopter_store::inventory::InventoryStore::new(ctx.aws.dynamodb(), &ctx.names),
        backups: kopter_store::backup::BackupStore::new(ctx.aws.dynamodb(), &ctx.names),
        accounts: ctx.accounts.clone(),
        access,
        outbox: ctx.outbox.clone(),
        sqs: ctx.aws.sqs(),
        settings: Settings {
            home_region: ctx
                .aws
                .sdk
                .region()
                .map_or("us-east-1".to_owned(), |r| r.to_string()),
            account_concurrency: d.account_concurrency,
            sweep_concurrency: d.sweep_concurrency,
            write_concurrency: d.write_concurrency,
        },
        permits: describe::permit_cache(),
        zones: describe::zone_cache(),
    }
}
