//! In-memory settings: per tenant, channels, a backup policy and accounts.

use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::backup::BackupPolicy;
use kopter_store::channels::{ChannelUpdate, TenantChannels};

use super::MemoryData;
use crate::data::settings::{Account, SettingsData};
use crate::data::{DataError, Page, PageKey, PageRequest};

impl SettingsData for MemoryData {
    fn channels<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> BoxFuture<'a, Result<TenantChannels, DataError>> {
        Box::pin(async move {
            self.record(tenant);
            let s = self.settings.lock().expect("lock");
            Ok(s.channels.get(tenant).cloned().unwrap_or_default())
        })
    }

    fn update_channels<'a>(
        &'a self,
        tenant: &'a TenantId,
        u: &'a ChannelUpdate,
    ) -> BoxFuture<'a, Result<(), DataError>> {
        Box::pin(async move {
            self.record(tenant);
            let mut s = self.settings.lock().expect("lock");
            let c = s.channels.entry(tenant.clone()).or_default();
            if let Some(w) = &u.webhook {
                c.notify_webhook = w.clone();
                c.notify_webhook_failing = None;
            }
            if let Some(v) = u.webhook_min_severity {
                c.notify_webhook_min_severity = Some(v);
            }
            if let Some(e) = &u.email {
                c.notify_email = e.clone();
                c.notify_email_failing = None;
            }
            if let Some(v) = u.email_min_severity {
                c.notify_email_min_severity = Some(v);
            }
            if let Some(d) = u.digest {
                c.notify_digest = Some(d);
            }
            if u.reset {
                c.notify_webhook_failing = None;
                c.notify_email_failing = None;
            }
            Ok(())
        })
    }

    fn backup_policy<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> BoxFuture<'a, Result<BackupPolicy, DataError>> {
        Box::pin(async move {
            self.record(tenant);
            let s = self.settings.lock().expect("lock");
            Ok(s.backup.get(tenant).cloned().unwrap_or_default())
        })
    }

    fn set_backup_policy<'a>(
        &'a self,
        tenant: &'a TenantId,
        policy: &'a BackupPolicy,
    ) -> BoxFuture<'a, Result<(), DataError>> {
        Box::pin(async move {
            self.record(tenant);
            let mut s = self.settings.lock().expect("lock");
            s.backup.insert(tenant.clone(), policy.clone());
            Ok(())
        })
    }

    fn tenant_exists<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Result<bool, DataError>> {
        Box::pin(async move { Ok(self.tenants.as_ref().is_none_or(|t| t.contains(tenant))) })
    }

    fn accounts<'a>(
        &'a self,
        tenant: &'a TenantId,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Account>, DataError>> {
        Box::pin(async move {
            self.record(tenant);
            let s = self.settings.lock().expect("lock");
            let mut mine: Vec<&Account> = s
                .accounts
                .iter()
                .filter(|(t, _)| t == tenant)
                .map(|(_, a)| a)
                .collect();
            mine.sort_by(|a, b| a.account_id.cmp(&b.account_id));
            let after = page
                .after
                .as_ref()
                .and_then(|PageKey(v)| v["account"].as_str().map(str::to_owned));
            let rest: Vec<&Account> = mine
                .into_iter()
                .filter(|a| after.as_deref().is_none_or(|x| a.account_id.as_str() > x))
                .collect();
            let n = (page.limit as usize).min(rest.len());
            let items: Vec<Account> = rest[..n].iter().map(|a| (*a).clone()).collect();
            let next = (n < rest.len()).then(|| {
                PageKey(serde_json::json!({ "account": items.last().expect("n > 0").account_id }))
            });
            Ok(Page { items, next })
        })
    }
}
