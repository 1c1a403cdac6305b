//! [`crate::data::TenantData`] on the tables, through `kopter-store`. Every
//! call builds its store on the tenant's DynamoDB client ([`TenantDb`]:
//! with `api.tenant_role_arn`, a session of the tenant-access role tagged
//! with that tenant, which IAM confines to the tenant's partitions), and
//! passes the tenant of the verified token — the only tenant any key is
//! built from. One module per area, like `data`.

mod audit;
mod cost;
mod inventory;
mod prices;
mod settings;
mod waste;

use kopter_schema::{Names, TenantId};

use crate::data::DataError;
use crate::tenant_db::TenantDb;

/// The DynamoDB implementation of every data trait.
#[derive(Clone)]
pub struct DynamoData {
    db: TenantDb,
    names: Names,
    /// Tenants known to exist (see `SettingsData::tenant_exists`).
    known_tenants: moka::future::Cache<TenantId, ()>,
}

impl DynamoData {
    /// Tables named by `names`, read with `db`'s per-tenant clients.
    pub fn new(db: TenantDb, names: Names) -> Self {
        Self {
            db,
            names,
            known_tenants: moka::future::Cache::new(100_000),
        }
    }

    /// The DynamoDB client `tenant`'s calls use.
    async fn ddb(&self, tenant: &TenantId) -> Result<aws_sdk_dynamodb::Client, DataError> {
        self.db.client(tenant).await
    }
}
