//! Tenants as rows of their own: a tenant exists once created
//! (`kopterctl tenants create`, `kopterctl bootstrap` for tenants that
//! already have accounts, the demo), and every reader that takes a tenant
//! from outside — `kopterctl --tenant`, the api's token — refuses one that
//! does not.
//!
//! The row is the tenant-settings row of the accounts table
//! (`pk = {tenant}`, `sk = _tenant`), so it falls under the tenant's
//! leading key like the rest of its settings. Settings are written there
//! with `UpdateItem` too, so the row alone does not make a tenant: the
//! `tenant_created_at` attribute does. Creating sets it with
//! a condition on its absence, so a second create (or a retry after a lost reply)
//! keeps the first date and reports the tenant as existing.

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use kopter_schema::items::{TENANT_SETTINGS_SK, keys};
use kopter_schema::{Names, Table, TenantId};
use serde::Serialize;

/// The attribute whose presence makes a tenant (RFC 3339, UTC).
const CREATED_AT: &str = "tenant_created_at";

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    /// When the tenant was first created.
    pub created_at: DateTime<Utc>,
}

/// What [`TenantStore::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The tenant is new.
    New,
    /// The tenant existed already; nothing changed.
    Existing,
}

/// A tenant named from outside (a flag, a token) that was never created.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown tenant \"{tenant}\" in environment {env}: create it with `kopterctl tenants create {tenant}` (`kopterctl tenants list` shows the tenants)"
)]
pub struct UnknownTenant {
    pub tenant: TenantId,
    pub env: String,
}

/// Reads and creates tenant rows.
#[derive(Clone, Debug)]
pub struct TenantStore {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    env: String,
}

impl TenantStore {
    pub fn new(ddb: aws_sdk_dynamodb::Client, names: &Names) -> Self {
        Self {
            ddb,
            table: names.table(Table::Accounts),
            env: names.env().as_str().to_owned(),
        }
    }

    /// Creates `tenant` unless it exists (idempotent); returns the stored
    /// tenant (with the first creation's date) and whether it was new.
    pub async fn create(&self, tenant: &TenantId) -> anyhow::Result<(Tenant, Created)> {
        let now = Utc::now();
        let put = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(keys::account_pk(tenant)))
            .key("sk", AttributeValue::S(TENANT_SETTINGS_SK.into()))
            .update_expression("SET #c = :now")
            .condition_expression("attribute_not_exists(#c)")
            .expression_attribute_names("#c", CREATED_AT)
            .expression_attribute_values(
                ":now",
                AttributeValue::S(now.to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .send()
            .await;
        match put {
            Ok(_) => Ok((
                Tenant {
                    id: tenant.clone(),
                    created_at: now.trunc_subsecs(3),
                },
                Created::New,
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let existing = self
                    .get(tenant)
                    .await?
                    .with_context(|| format!("tenant {tenant} exists but cannot be read"))?;
                Ok((existing, Created::Existing))
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("create tenant {tenant}"))),
        }
    }

    /// The tenant, if it was created.
    pub async fn get(&self, tenant: &TenantId) -> anyhow::Result<Option<Tenant>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(keys::account_pk(tenant)))
            .key("sk", AttributeValue::S(TENANT_SETTINGS_SK.into()))
            .projection_expression("#c")
            .expression_attribute_names("#c", CREATED_AT)
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("read tenant {tenant}"))?;
        match out
            .item
            .as_ref()
            .and_then(|i| i.get(CREATED_AT))
            .and_then(|v| v.as_s().ok())
        {
            Some(at) => Ok(Some(Tenant {
                id: tenant.clone(),
                created_at: parse_created(tenant, at)?,
            })),
            None => Ok(None),
        }
    }

    /// The tenant, or [`UnknownTenant`] (inside the error) when it was
    /// never created.
    pub async fn require(&self, tenant: &TenantId) -> anyhow::Result<Tenant> {
        match self.get(tenant).await? {
            Some(t) => Ok(t),
            None => Err(UnknownTenant {
                tenant: tenant.clone(),
                env: self.env.clone(),
            }
            .into()),
        }
    }

    /// Every tenant, by id. One Scan of the accounts table (a tenant has
    /// one settings row beside its accounts), filtered to tenant rows.
    pub async fn list(&self) -> anyhow::Result<Vec<Tenant>> {
        let mut pages = self
            .ddb
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :s AND attribute_exists(#c)")
            .expression_attribute_names("#c", CREATED_AT)
            .expression_attribute_values(":s", AttributeValue::S(TENANT_SETTINGS_SK.into()))
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.context("list tenants")?;
            let id = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .context("a tenant row without pk")?;
            let id = TenantId::new(id.clone()).context("a tenant row's pk")?;
            let at = item
                .get(CREATED_AT)
                .and_then(|v| v.as_s().ok())
                .with_context(|| format!("tenant {id}: no {CREATED_AT}"))?;
            let created_at = parse_created(&id, at)?;
            out.push(Tenant { id, created_at });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

fn parse_created(tenant: &TenantId, at: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(at)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("tenant {tenant}: {CREATED_AT} {at:?} is not RFC 3339"))
}
