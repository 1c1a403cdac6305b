//! Onboarded customer accounts: onboarding, lookup, listing.
//!
//! An account id belongs to at most one tenant. Onboarding first claims the
//! account id in the dedup table (`_system#account-owner#{id}`, conditional
//! on being unclaimed or claimed by the same tenant), then writes the
//! account row (conditional on not existing). Both steps are idempotent, so
//! a crash between them leaves nothing inconsistent: a retry finishes.

use anyhow::Context;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::Utc;
use kopter_schema::items::{AccountRecord, keys};
use kopter_schema::{AccountId, Names, Table, TenantId};
use rand::Rng;

/// Refusals a caller shows to the user as they are.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("{0}")]
    Invalid(String),
    #[error("account {0} is already onboarded by another tenant")]
    OwnedByOtherTenant(AccountId),
    #[error("account {account} is already onboarded under tenant {tenant}")]
    AlreadyOnboarded {
        tenant: TenantId,
        account: AccountId,
    },
    #[error(transparent)]
    Aws(#[from] anyhow::Error),
}

/// A change to an onboarded account (`kopterctl accounts update`); `None`
/// leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    /// Regions to describe; empty: every enabled region.
    pub regions: Option<Vec<String>>,
    /// A new role in the same account.
    pub role_arn: Option<String>,
    /// `Some(None)` removes the CloudTrail source.
    pub trail: Option<Option<kopter_schema::items::TrailSource>>,
}

/// A validated onboarding request.
#[derive(Debug, Clone)]
pub struct Onboarding {
    pub tenant: TenantId,
    pub account: AccountId,
    pub role_arn: String,
    pub regions: Vec<String>,
}

impl Onboarding {
    /// Validates raw CLI/API input, naming each problem.
    pub fn parse(
        tenant: &str,
        account: &str,
        role_arn: &str,
        regions: &[String],
    ) -> Result<Self, OnboardError> {
        let tenant = TenantId::new(tenant).map_err(|e| OnboardError::Invalid(e.to_string()))?;
        let account = AccountId::new(account).map_err(|e| OnboardError::Invalid(e.to_string()))?;
        validate_role_arn(role_arn, &account).map_err(OnboardError::Invalid)?;
        for r in regions {
            if !is_region_name(r) {
                return Err(OnboardError::Invalid(format!(
                    "invalid region {r:?}: expected a name like us-east-1 or ap-southeast-2"
                )));
            }
        }
        Ok(Self {
            tenant,
            account,
            role_arn: role_arn.to_owned(),
            regions: regions.to_vec(),
        })
    }
}

/// `arn:<partition>:iam::<account>:role/[path/]KopterAccess…`
pub fn validate_role_arn(arn: &str, account: &AccountId) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let bad = |why: &str| Err(format!("invalid role ARN {arn:?}: {why}"));
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[3].is_empty() {
        return bad("expected arn:aws:iam::<account-id>:role/<name>");
    }
    if !matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov") {
        return bad("unknown partition");
    }
    if parts[4] != account.as_str() {
        return bad(&format!(
            "the role is in account {:?}, not in account {account}",
            parts[4]
        ));
    }
    let Some(path_and_name) = parts[5].strip_prefix("role/") else {
        return bad("not a role (expected ...:role/<name>)");
    };
    let name = path_and_name.rsplit('/').next().unwrap_or("");
    let valid_chars = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    };
    if name.is_empty() || name.len() > 64 || !valid_chars(name) {
        return bad("role names are 1-64 characters of letters, digits and +=,.@_-");
    }
    if !name.starts_with(Names::customer_role_prefix()) {
        return bad(&format!(
            "the role name must start with {:?}, so Kopter's task roles can be limited to assuming those roles only",
            Names::customer_role_prefix()
        ));
    }
    Ok(())
}

/// `us-east-1`, `ap-southeast-2`, `us-gov-west-1`, `eu-central-2`…
pub fn is_region_name(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// A fresh ExternalId: 160 random bits, hex, with a recognisable prefix.
pub fn new_external_id() -> String {
    let bytes: [u8; 20] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("kopter-{hex}")
}

/// The trust policy the customer attaches to the role.
pub fn trust_policy(kopter_account: &str, external_id: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{kopter_account}:root")},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
        }],
    })
}

#[derive(Clone, Debug)]
pub struct AccountStore {
    ddb: aws_sdk_dynamodb::Client,
    accounts: String,
    dedup: String,
}

impl AccountStore {
    pub fn new(ddb: aws_sdk_dynamodb::Client, names: &Names) -> Self {
        Self {
            ddb,
            accounts: names.table(Table::Accounts),
            dedup: names.table(Table::Dedup),
        }
    }

    /// Registers the account with a new ExternalId and returns the record.
    pub async fn onboard(
        &self,
        req: Onboarding,
        trail: Option<kopter_schema::items::TrailSource>,
    ) -> Result<AccountRecord, OnboardError> {
        self.onboard_with(req, trail, new_external_id(), None).await
    }

    /// Like [`AccountStore::onboard`] with a given ExternalId: an
    /// organization's member accounts share the one their StackSet was
    /// deployed with (see `crate::org`), and carry the management account.
    pub async fn onboard_with(
        &self,
        req: Onboarding,
        trail: Option<kopter_schema::items::TrailSource>,
        external_id: String,
        organization: Option<AccountId>,
    ) -> Result<AccountRecord, OnboardError> {
        let claim = keys::system_dedup("account-owner", req.account.as_str());
        let claimed = self
            .ddb
            .put_item()
            .table_name(&self.dedup)
            .item("pk", AttributeValue::S(claim))
            .item("tenant", AttributeValue::S(req.tenant.to_string()))
            .condition_expression("attribute_not_exists(pk) OR tenant = :t")
            .expression_attribute_values(":t", AttributeValue::S(req.tenant.to_string()))
            .send()
            .await;
        if let Err(err) = claimed {
            if err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception())
            {
                return Err(OnboardError::OwnedByOtherTenant(req.account));
            }
            return Err(OnboardError::Aws(
                anyhow::Error::new(err).context("claim the account id"),
            ));
        }

        let mut record = AccountRecord::new(
            req.tenant.clone(),
            req.account.clone(),
            req.role_arn,
            external_id,
            req.regions,
            Utc::now(),
        );
        record.trail = trail;
        record.organization = organization;
        let item = serde_dynamo::to_item(&record).context("encode account record")?;
        let put = self
            .ddb
            .put_item()
            .table_name(&self.accounts)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(record),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(OnboardError::AlreadyOnboarded {
                    tenant: req.tenant,
                    account: req.account,
                })
            }
            Err(err) => Err(OnboardError::Aws(
                anyhow::Error::new(err).context("store the account record"),
            )),
        }
    }

    /// Applies `change` to an onboarded account (conditional on the row
    /// existing) and returns the stored record. A new role ARN (checked
    /// against the account) makes the health `unchecked` again: nothing
    /// has reached the new role yet.
    pub async fn update(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        change: &AccountChange,
    ) -> Result<AccountRecord, OnboardError> {
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.accounts)
            .key("pk", AttributeValue::S(keys::account_pk(tenant)))
            .key("sk", AttributeValue::S(keys::account_sk(account)))
            .condition_expression("attribute_exists(pk)")
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        if let Some(regions) = &change.regions {
            if let Some(bad) = regions.iter().find(|r| !is_region_name(r)) {
                return Err(OnboardError::Invalid(format!(
                    "invalid region {bad:?}: expected a name like us-east-1 or ap-southeast-2"
                )));
            }
            set.push("regions = :regions");
            req = req.expression_attribute_values(
                ":regions",
                AttributeValue::L(regions.iter().cloned().map(AttributeValue::S).collect()),
            );
        }
        if let Some(arn) = &change.role_arn {
            validate_role_arn(arn, account).map_err(OnboardError::Invalid)?;
            set.push("role_arn = :role");
            remove.push("health_checked_at");
            req = req.expression_attribute_values(":role", AttributeValue::S(arn.clone()));
        }
        match &change.trail {
            None => {}
            Some(None) => remove.push("trail"),
            Some(Some(t)) => {
                set.push("trail = :trail");
                let item =
                    serde_dynamo::to_attribute_value(t).context("encode the trail source")?;
                req = req.expression_attribute_values(":trail", item);
            }
        }
        if set.is_empty() && remove.is_empty() {
            return Err(OnboardError::Invalid(
                "nothing to change: give --regions, --role-arn, --trail-bucket or --no-trail"
                    .into(),
            ));
        }
        let mut expr = String::new();
        if !set.is_empty() {
            expr.push_str(&format!("SET {}", set.join(", ")));
        }
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        match req.update_expression(expr.trim()).send().await {
            Ok(out) => serde_dynamo::from_item(out.attributes.unwrap_or_default())
                .context("decode account record")
                .map_err(OnboardError::Aws),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(OnboardError::Invalid(format!(
                    "account {account} is not onboarded under tenant {tenant} (`kopterctl accounts list --tenant {tenant}`)"
                )))
            }
            Err(err) => Err(OnboardError::Aws(
                anyhow::Error::new(err).context(format!("update account {account}")),
            )),
        }
    }

    /// Removes an account: its row (so the describer stops describing it
    /// and trail-ingest stops filing its CloudTrail files), then its
    /// owner claim (so it can be onboarded again). Idempotent: a retry
    /// after a crash between the two finishes. Returns the removed record,
    /// `None` when the row was already gone. Data rows stay (see
    /// `kopter_store::purge` to delete them).
    pub async fn remove(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> anyhow::Result<Option<AccountRecord>> {
        let out = self
            .ddb
            .delete_item()
            .table_name(&self.accounts)
            .key("pk", AttributeValue::S(keys::account_pk(tenant)))
            .key("sk", AttributeValue::S(keys::account_sk(account)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .with_context(|| format!("delete account {account} of tenant {tenant}"))?;
        let removed = out
            .attributes
            .filter(|a| !a.is_empty())
            .map(serde_dynamo::from_item)
            .transpose()
            .context("decode account record")?;
        // Only this tenant's claim: another tenant's claim on the same id
        // (impossible while this tenant held it, but never assumed) stays.
        let claim = self
            .ddb
            .delete_item()
            .table_name(&self.dedup)
            .key(
                "pk",
                AttributeValue::S(keys::system_dedup("account-owner", account.as_str())),
            )
            .condition_expression("attribute_not_exists(pk) OR tenant = :t")
            .expression_attribute_values(":t", AttributeValue::S(tenant.to_string()))
            .send()
            .await;
        match claim {
            Ok(_) => Ok(removed),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(removed)
            }
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("release the claim on account {account}")))
            }
        }
    }

    /// Pauses (`Some(reason)`: no longer described) or resumes (`None`) an
    /// onboarded account; conditional on the row existing.
    pub async fn set_paused(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        let req = self
            .ddb
            .update_item()
            .table_name(&self.accounts)
            .key("pk", AttributeValue::S(keys::account_pk(tenant)))
            .key("sk", AttributeValue::S(keys::account_sk(account)))
            .condition_expression("attribute_exists(pk)");
        let req = match reason {
            Some(r) => req
                .update_expression("SET paused = :r")
                .expression_attribute_values(":r", AttributeValue::S(r.to_owned())),
            None => req.update_expression("REMOVE paused"),
        };
        req.send()
            .await
            .with_context(|| format!("pause or resume account {account} of tenant {tenant}"))?;
        Ok(())
    }

    /// One account of a tenant (strongly consistent).
    pub async fn get(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> anyhow::Result<Option<AccountRecord>> {
        self.get_with(tenant, account, true).await
    }

    /// [`AccountStore::get`] for a job about an account: an eventually
    /// consistent read (half the read units; a change of the last second
    /// may not show, as if the job had run a second earlier), and a
    /// strongly consistent one when it finds nothing (an account onboarded
    /// just before its first job is not skipped).
    pub async fn get_for_job(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> anyhow::Result<Option<AccountRecord>> {
        match self.get_with(tenant, account, false).await? {
            Some(r) => Ok(Some(r)),
            None => self.get_with(tenant, account, true).await,
        }
    }

    async fn get_with(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        consistent: bool,
    ) -> anyhow::Result<Option<AccountRecord>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.accounts)
            .key("pk", AttributeValue::S(keys::account_pk(tenant)))
            .key("sk", AttributeValue::S(keys::account_sk(account)))
            .consistent_read(consistent)
            .send()
            .await
            .with_context(|| format!("read account {account} of tenant {tenant}"))?;
        out.item
            .map(|i| serde_dynamo::from_item(i).context("decode account record"))
            .transpose()
    }

    /// The tenant that onboarded an account id, if any.
    pub async fn owner_of(&self, account: &AccountId) -> anyhow::Result<Option<AccountRecord>> {
        let out = self
            .ddb
            .query()
            .table_name(&self.accounts)
            .index_name("by-account")
            .key_condition_expression("account_id = :a")
            .expression_attribute_values(":a", AttributeValue::S(account.to_string()))
            .send()
            .await
            .with_context(|| format!("look up the owner of account {account}"))?;
        let mut items = out.items.unwrap_or_default().into_iter();
        let first = items
            .next()
            .map(serde_dynamo::from_item::<_, AccountRecord>)
            .transpose()
            .context("decode account record")?;
        anyhow::ensure!(
            items.next().is_none(),
            "account {account} appears under more than one tenant; refusing to guess"
        );
        Ok(first)
    }

    /// The tenant that holds each of `accounts`' claims (the dedup row
    /// `onboard` writes and `remove` deletes, so exactly the accounts
    /// onboarded now); an account nobody holds is absent. One
    /// consistent `BatchGetItem` per 100 accounts (DynamoDB's limit),
    /// where a lookup per account would make one request each: an
    /// organization discovery checks every new account this way.
    pub async fn owners(
        &self,
        accounts: &[AccountId],
    ) -> anyhow::Result<HashMap<AccountId, TenantId>> {
        let mut out = HashMap::new();
        for chunk in accounts.chunks(100) {
            let keys: Vec<_> = chunk
                .iter()
                .map(|a| {
                    HashMap::from([(
                        "pk".to_owned(),
                        AttributeValue::S(keys::system_dedup("account-owner", a.as_str())),
                    )])
                })
                .collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .context("build the claim lookup")?,
            );
            let mut delay = std::time::Duration::from_millis(50);
            while let Some(req) = request.take() {
                let got = self
                    .ddb
                    .batch_get_item()
                    .request_items(&self.dedup, req)
                    .send()
                    .await
                    .context("look up account owners")?;
                for item in got
                    .responses
                    .unwrap_or_default()
                    .remove(&self.dedup)
                    .unwrap_or_default()
                {
                    let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(tenant))) =
                        (item.get("pk"), item.get("tenant"))
                    else {
                        continue;
                    };
                    let Some(id) = pk.rsplit('#').next() else {
                        continue;
                    };
                    out.insert(AccountId::new(id)?, TenantId::new(tenant.clone())?);
                }
                // Throttled keys come back unprocessed: ask again, backing
                // off as DynamoDB's guidance for BatchGetItem says.
                request = got
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.dedup))
                    .filter(|k| !k.keys.is_empty());
                if request.is_some() {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
        Ok(out)
    }

    /// Every account of one tenant, or of all tenants.
    pub async fn list(&self, tenant: Option<&TenantId>) -> anyhow::Result<Vec<AccountRecord>> {
        let mut out = Vec::new();
        let items: Vec<anyhow::Result<_>> = match tenant {
            Some(t) => self
                .ddb
                .query()
                .table_name(&self.accounts)
                .key_condition_expression("pk = :t")
                .expression_attribute_values(":t", AttributeValue::S(keys::account_pk(t)))
                .into_paginator()
                .items()
                .send()
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .map(|r| r.map_err(anyhow::Error::new))
                .collect(),
            None => self
                .ddb
                .scan()
                .table_name(&self.accounts)
                .into_paginator()
                .items()
                .send()
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .map(|r| r.map_err(anyhow::Error::new))
                .collect(),
        };
        for item in items {
            let item = item.context("list accounts")?;
            // The tenant's settings row (`_tenant`) and its organization
            // connections (`_org#…`) share the partition; account ids are
            // digits, so every `_` key is one of those.
            if item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .is_none_or(|sk| sk.starts_with('_'))
            {
                continue;
            }
            out.push(serde_dynamo::from_item(item).context("decode account record")?);
        }
        out.sort_by(|a: &AccountRecord, b| {
            (&a.tenant_id, &a.account_id).cmp(&(&b.tenant_id, &b.account_id))
        });
        Ok(out)
    }

    /// One page of `tenant`'s accounts in account-id order, after account
    /// `after` (exclusive) or from the first: one Query of at most `limit`
    /// rows (1–1000). The tenant-settings row is outside the key range (an
    /// account id is 12 digits; `_tenant` sorts after them). Returns the
    /// accounts and the last account id when more may follow.
    pub async fn page(
        &self,
        tenant: &TenantId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> anyhow::Result<(Vec<AccountRecord>, Option<AccountId>)> {
        let pk = keys::account_pk(tenant);
        let mut q = self
            .ddb
            .query()
            .table_name(&self.accounts)
            .key_condition_expression("pk = :t AND sk <= :max")
            .expression_attribute_values(":t", AttributeValue::S(pk.clone()))
            .expression_attribute_values(":max", AttributeValue::S("999999999999".into()))
            .limit(limit.clamp(1, 1000) as i32);
        if let Some(a) = after {
            q = q
                .exclusive_start_key("pk", AttributeValue::S(pk.clone()))
                .exclusive_start_key("sk", AttributeValue::S(keys::account_sk(a)));
        }
        let out = q
            .send()
            .await
            .with_context(|| format!("query a page of the accounts of {tenant}"))?;
        let rows = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).context("decode account record"))
            .collect::<anyhow::Result<Vec<AccountRecord>>>()?;
        let more = out.last_evaluated_key.is_some_and(|k| !k.is_empty());
        let next = if more {
            rows.last().map(|r| r.account_id.clone())
        } else {
            None
        };
        Ok((rows, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct() -> AccountId {
        AccountId::new("111122223333").unwrap()
    }

    #[test]
    fn role_arns_are_checked_against_the_account() {
        let a = acct();
        assert!(validate_role_arn("arn:aws:iam::111122223333:role/KopterAccess", &a).is_ok());
        assert!(
            validate_role_arn(
                "arn:aws:iam::111122223333:role/kopter/KopterAccess-prod",
                &a
            )
            .is_ok()
        );
        let cases = [
            (
                "arn:aws:iam::999999999999:role/KopterAccess",
                "not in account",
            ),
            ("arn:aws:iam::111122223333:user/KopterAccess", "not a role"),
            ("arn:aws:s3:::bucket", "expected arn:aws:iam"),
            ("arn:aws:iam::111122223333:role/Admin", "must start with"),
            ("arn:foo:iam::111122223333:role/KopterAccess", "partition"),
            ("KopterAccess", "expected arn:aws:iam"),
        ];
        for (arn, why) in cases {
            let err = validate_role_arn(arn, &a).unwrap_err();
            assert!(err.contains(why), "{arn}: {err}");
        }
    }

    #[test]
    fn regions_are_validated() {
        for ok in [
            "us-east-1",
            "ap-southeast-2",
            "us-gov-west-1",
            "eu-central-2",
        ] {
            assert!(is_region_name(ok), "{ok}");
        }
        for bad in ["us-east", "US-EAST-1", "useast1", "us-east-1a", "-east-1"] {
            assert!(!is_region_name(bad), "{bad}");
        }
        let err = Onboarding::parse(
            "acme",
            "111122223333",
            "arn:aws:iam::111122223333:role/KopterAccess",
            &["moon-1".into()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid region \"moon-1\""));
    }

    #[test]
    fn external_ids_are_long_random_and_allowed_by_sts() {
        let a = new_external_id();
        let b = new_external_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), "kopter-".len() + 40);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn trust_policy_requires_the_external_id() {
        let p = trust_policy("123456789012", "kopter-abc");
        assert_eq!(
            p["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
            "kopter-abc"
        );
        assert_eq!(
            p["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::123456789012:root"
        );
    }
}
