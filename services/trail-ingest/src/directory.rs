//! Who owns what: account id → onboarded account, and which trail
//! buckets/prefixes each tenant configured. Loaded from the accounts table
//! and cached; reloaded every `trail.directory_refresh`, and at most every
//! few seconds on a miss so a freshly onboarded account is seen quickly
//! without letting unknown accounts hammer DynamoDB.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kopter_runtime::accounts::AccountStore;
use kopter_schema::items::{AccountRecord, TrailSource};
use kopter_schema::{AccountId, TenantId};
use tokio::sync::RwLock;
use tokio::time::Instant;

const MISS_RELOAD_MIN: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Snapshot {
    by_account: HashMap<AccountId, Arc<AccountRecord>>,
    loaded_at: Option<Instant>,
}

#[derive(Clone)]
pub struct Directory {
    store: Option<AccountStore>,
    refresh: Duration,
    snapshot: Arc<RwLock<Snapshot>>,
}

/// Where a log file may come from for a tenant, and whose role reads it.
#[derive(Debug, Clone)]
pub struct TrailGrant {
    pub tenant: TenantId,
    /// The onboarded account whose trail configuration matched.
    pub configured_by: Arc<AccountRecord>,
    pub source: TrailSource,
}

impl Directory {
    pub fn new(store: AccountStore, refresh: Duration) -> Self {
        Self {
            store: Some(store),
            refresh,
            snapshot: Arc::default(),
        }
    }

    /// A fixed directory (tests, `replay --tenant` without AWS).
    pub fn fixed(accounts: Vec<AccountRecord>) -> Self {
        let by_account = accounts
            .into_iter()
            .map(|a| (a.account_id.clone(), Arc::new(a)))
            .collect();
        Self {
            store: None,
            refresh: Duration::MAX,
            snapshot: Arc::new(RwLock::new(Snapshot {
                by_account,
                loaded_at: Some(Instant::now()),
            })),
        }
    }

    /// The onboarded account with this id, if any.
    pub async fn account(&self, id: &AccountId) -> anyhow::Result<Option<Arc<AccountRecord>>> {
        self.reload_if(|s| match s.loaded_at {
            None => true,
            Some(t) => t.elapsed() > self.refresh,
        })
        .await?;
        if let Some(a) = self.snapshot.read().await.by_account.get(id) {
            return Ok(Some(a.clone()));
        }
        self.reload_if(|s| s.loaded_at.is_none_or(|t| t.elapsed() > MISS_RELOAD_MIN))
            .await?;
        Ok(self.snapshot.read().await.by_account.get(id).cloned())
    }

    /// The trail configuration of `tenant` that covers `bucket` + `prefix`.
    pub async fn grant(&self, tenant: &TenantId, bucket: &str, prefix: &str) -> Option<TrailGrant> {
        let snap = self.snapshot.read().await;
        let norm = |p: &str| p.trim_matches('/').to_owned();
        snap.by_account
            .values()
            .filter(|a| &a.tenant_id == tenant)
            .find_map(|a| {
                let t = a.trail.as_ref()?;
                (t.bucket == bucket && norm(&t.prefix) == norm(prefix)).then(|| TrailGrant {
                    tenant: tenant.clone(),
                    configured_by: a.clone(),
                    source: t.clone(),
                })
            })
    }

    async fn reload_if(&self, stale: impl Fn(&Snapshot) -> bool) -> anyhow::Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        if !stale(&*self.snapshot.read().await) {
            return Ok(());
        }
        let mut snap = self.snapshot.write().await;
        if !stale(&snap) {
            return Ok(());
        }
        let accounts = store.list(None).await?;
        snap.by_account = accounts
            .into_iter()
            .map(|a| (a.account_id.clone(), Arc::new(a)))
            .collect();
        snap.loaded_at = Some(Instant::now());
        Ok(())
    }
}
