//! DynamoDB clients per tenant.
//!
//! With `api.tenant_role_arn` set (AWS), a tenant's client signs with
//! credentials of `sts:AssumeRole` into that role with the session tag
//! `kopter-tenant=<tenant>`; the role's policy (Terraform
//! `tenant-read-policy`) lets the session touch only partition keys that
//! start with that tenant — isolation enforced by IAM as well as by code.
//! Sessions come from the runtime's credential cache (one per tenant,
//! refreshed before expiry); clients are cached per tenant too. Without a
//! role (local development) every tenant shares the process's client.

use kopter_runtime::{AwsContext, CredentialCache, TaggedRole};
use kopter_schema::TenantId;

use crate::data::DataError;

/// The DynamoDB client of each tenant (see the module doc).
#[derive(Clone)]
pub struct TenantDb {
    aws: AwsContext,
    credentials: CredentialCache,
    role_arn: Option<String>,
    shared: aws_sdk_dynamodb::Client,
    clients: moka::future::Cache<TenantId, aws_sdk_dynamodb::Client>,
}

impl TenantDb {
    /// Clients at `aws`'s DynamoDB endpoint; with `role_arn`, each signs
    /// with the tenant's tagged session of that role (from `credentials`),
    /// without, with the process's own credentials. `capacity`: tenants
    /// whose clients are kept.
    pub fn new(
        aws: AwsContext,
        credentials: CredentialCache,
        role_arn: Option<String>,
        capacity: u64,
    ) -> Self {
        Self {
            shared: aws.dynamodb(),
            aws,
            credentials,
            role_arn,
            clients: moka::future::Cache::new(capacity),
        }
    }

    /// The DynamoDB client `tenant`'s requests use.
    pub async fn client(&self, tenant: &TenantId) -> Result<aws_sdk_dynamodb::Client, DataError> {
        let Some(arn) = &self.role_arn else {
            return Ok(self.shared.clone());
        };
        self.clients
            .try_get_with_by_ref(tenant, async {
                let role = TaggedRole::tenant_access(arn, tenant);
                let sdk = self
                    .credentials
                    .tagged_sdk_config(&self.aws.sdk, &role)
                    .await?;
                Ok::<_, kopter_runtime::AssumeRoleError>(self.aws.dynamodb_with(&sdk))
            })
            .await
            .map_err(|e| match e.as_ref() {
                // A refused AssumeRole is a deployment error, not the
                // caller's; a transient one is worth a retry.
                kopter_runtime::AssumeRoleError::Denied { .. } => {
                    DataError::Other(anyhow::anyhow!("tenant access role refused: {e}"))
                }
                _ => DataError::Unavailable(format!("tenant credentials: {e}")),
            })
    }
}
