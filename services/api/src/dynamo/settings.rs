//! Settings on DynamoDB: the tenant-settings row of the accounts table
//! (channels, through `ChannelStore`; the backup policy, through
//! `BackupStore`) and the tenant's account rows (`AccountStore::page`).

use futures::future::BoxFuture;
use kopter_runtime::accounts::AccountStore;
use kopter_schema::{AccountId, TenantId};
use kopter_store::backup::{BackupPolicy, BackupStore};
use kopter_store::channels::{ChannelStore, ChannelUpdate, TenantChannels};
use kopter_store::tenants::TenantStore;

use super::DynamoData;
use crate::data::settings::{Account, AccountHealth, SettingsData};
use crate::data::{DataError, Page, PageKey, PageRequest, store_error};

impl SettingsData for DynamoData {
    fn channels<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> BoxFuture<'a, Result<TenantChannels, DataError>> {
        Box::pin(async move {
            let store = ChannelStore::new(self.ddb(tenant).await?, &self.names);
            store.get(tenant).await.map_err(store_error)
        })
    }

    fn update_channels<'a>(
        &'a self,
        tenant: &'a TenantId,
        update: &'a ChannelUpdate,
    ) -> BoxFuture<'a, Result<(), DataError>> {
        Box::pin(async move {
            let store = ChannelStore::new(self.ddb(tenant).await?, &self.names);
            store.update(tenant, update).await.map_err(store_error)
        })
    }

    fn backup_policy<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> BoxFuture<'a, Result<BackupPolicy, DataError>> {
        Box::pin(async move {
            let store = BackupStore::new(self.ddb(tenant).await?, &self.names);
            store.policy(tenant).await.map_err(store_error)
        })
    }

    fn set_backup_policy<'a>(
        &'a self,
        tenant: &'a TenantId,
        policy: &'a BackupPolicy,
    ) -> BoxFuture<'a, Result<(), DataError>> {
        Box::pin(async move {
            let store = BackupStore::new(self.ddb(tenant).await?, &self.names);
            store.set_policy(tenant, policy).await.map_err(store_error)
        })
    }

    fn tenant_exists<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Result<bool, DataError>> {
        Box::pin(async move {
            // Tenants are never deleted, so a tenant once seen stays
            // known; unknown ones are read again (a tenant created a
            // moment ago is served at once).
            if self.known_tenants.contains_key(tenant) {
                return Ok(true);
            }
            let store = TenantStore::new(self.ddb(tenant).await?, &self.names);
            let exists = store.get(tenant).await.map_err(store_error)?.is_some();
            if exists {
                self.known_tenants.insert(tenant.clone(), ()).await;
            }
            Ok(exists)
        })
    }

    fn accounts<'a>(
        &'a self,
        tenant: &'a TenantId,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Account>, DataError>> {
        Box::pin(async move {
            let store = AccountStore::new(self.ddb(tenant).await?, &self.names);
            let after = match &page.after {
                Some(PageKey(v)) => Some(
                    v.get("account")
                        .and_then(|a| a.as_str())
                        .and_then(|a| AccountId::new(a).ok())
                        .ok_or_else(|| {
                            DataError::Other(anyhow::anyhow!("account page key: {v}"))
                        })?,
                ),
                None => None,
            };
            let (rows, next) = store
                .page(tenant, after.as_ref(), page.limit)
                .await
                .map_err(store_error)?;
            Ok(Page {
                items: rows.iter().map(account).collect(),
                next: next.map(|a| PageKey(serde_json::json!({ "account": a.to_string() }))),
            })
        })
    }
}

/// The api's view of an account row (the ExternalId stays inside).
pub(crate) fn account(r: &kopter_schema::items::AccountRecord) -> Account {
    Account {
        account_id: r.account_id.to_string(),
        role_arn: r.role_arn.clone(),
        regions: r.regions.clone(),
        onboarded_at: r.onboarded_at,
        health: match (r.health_checked_at, r.healthy) {
            (None, _) => AccountHealth::Unchecked,
            (Some(_), true) => AccountHealth::Ok,
            (Some(_), false) => AccountHealth::Failing,
        },
        paused: r.paused.clone(),
        healthy: r.healthy,
        health_reason: r.health_reason.clone(),
        last_describe_at: r.health_checked_at,
        trail: r.trail.is_some(),
    }
}
