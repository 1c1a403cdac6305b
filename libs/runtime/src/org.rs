//! AWS Organizations: connect a customer's organization once
//! (`kopterctl org connect`) and keep its accounts onboarded (the
//! describer's `describe.org_discovery` tick). See `org.md` beside this
//! file for the model.
//!
//! A connection is a row of the accounts table in the tenant's partition
//! (`sk = _org#{management account}`). Discovery assumes the management
//! role (its own ExternalId), lists the organization's accounts
//! (`organizations:ListAccounts`, 20 per page, AWS's maximum), and compares
//! them with the tenant's accounts (one paginated Query; the owners of
//! new accounts in one `BatchGetItem` per 100): a new ACTIVE
//! account is onboarded with the member role, an onboarded one that is
//! SUSPENDED / PENDING_CLOSURE or no longer listed is paused, a paused one
//! that is ACTIVE again is resumed. Each change is published as an
//! `account.org_change` event (the tenant's feed) before it is written,
//! so a crash repeats a change rather than losing its notice.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_organizations::error::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kopter_schema::items::keys;
use kopter_schema::messages::{OrgAccountChanged, OrgChange};
use kopter_schema::{AccountId, Envelope, Message, Names, Table, TenantId};
use serde::{Deserialize, Serialize};

use crate::accounts::{AccountStore, OnboardError, Onboarding, is_region_name, validate_role_arn};
use crate::credentials::{AssumeRoleError, CredentialCache, CustomerRole};
use crate::messaging::{Outbox, PUBLISH_BATCH_MAX, envelope};

/// Sort-key prefix of connections in the accounts table.
pub const ORG_SK_PREFIX: &str = "_org#";

/// `ListAccounts`' largest page (the API refuses more).
const PAGE: i32 = 20;

/// One connected organization of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgConnection {
    pub pk: String,
    pub sk: String,
    pub tenant_id: TenantId,
    pub management_account: AccountId,
    pub management_role_arn: String,
    /// Name of the role in every member account (`KopterAccess`).
    pub member_role_name: String,
    /// Regions of onboarded members; empty: every enabled region.
    #[serde(default)]
    pub regions: Vec<String>,
    pub organization_id: String,
    pub connected_at: DateTime<Utc>,
}

impl OrgConnection {
    /// The member role of `account`.
    pub fn member_role_arn(&self, account: &AccountId) -> String {
        let partition = self.management_role_arn.split(':').nth(1).unwrap_or("aws");
        format!(
            "arn:{partition}:iam::{account}:role/{}",
            self.member_role_name
        )
    }

    fn management_role(&self) -> CustomerRole {
        CustomerRole {
            tenant: self.tenant_id.clone(),
            account: self.management_account.clone(),
            role_arn: self.management_role_arn.clone(),
            external_id: management_external_id(&self.tenant_id, &self.management_account),
        }
    }
}

/// The ExternalId of a tenant's management role. Derived, not random:
/// the customer must put it into the role's trust before the first
/// `org connect`, which writes nothing until that role answers. It is
/// unique per tenant and organization and always chosen by Kopter, which
/// is what the ExternalId guards (a tenant cannot make Kopter send another
/// tenant's value).
pub fn management_external_id(tenant: &TenantId, management: &AccountId) -> String {
    format!("kopter-{tenant}-org-{management}")
}

/// The ExternalId every member role of the organization trusts: one
/// value, because a StackSet deploys one template with one parameter to
/// every account.
pub fn member_external_id(tenant: &TenantId, management: &AccountId) -> String {
    format!("kopter-{tenant}-members-{management}")
}

/// A connect request as given (`kopterctl org connect`).
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub tenant: TenantId,
    pub management_role_arn: String,
    pub member_role_name: String,
    pub regions: Vec<String>,
}

/// Why a connect or a discovery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    /// Bad input or a customer-side refusal: shown as is, nothing written.
    #[error("{0}")]
    Refused(String),
    /// Transient (AWS unreachable, throttled): try again.
    #[error(transparent)]
    Aws(#[from] anyhow::Error),
}

/// What one discovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveryReport {
    /// Accounts listed (the management account included).
    pub listed: usize,
    /// `ListAccounts` calls made.
    pub pages: usize,
    pub onboarded: Vec<AccountId>,
    pub paused: Vec<AccountId>,
    pub resumed: Vec<AccountId>,
    /// Active accounts onboarded by another tenant: left alone.
    pub conflicts: Vec<AccountId>,
    /// Accounts already as they should be.
    pub unchanged: usize,
}

/// Connections, discovery and the clients they need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Organizations {
    base: SdkConfig,
    credentials: CredentialCache,
    accounts: AccountStore,
    outbox: Outbox,
    ddb: aws_sdk_dynamodb::Client,
    table: String,
}

impl Organizations {
    pub fn new(
        base: SdkConfig,
        credentials: CredentialCache,
        ddb: aws_sdk_dynamodb::Client,
        names: &Names,
        outbox: Outbox,
    ) -> Self {
        Self {
            base,
            credentials,
            accounts: AccountStore::new(ddb.clone(), names),
            outbox,
            table: names.table(Table::Accounts),
            ddb,
        }
    }

    /// Validates the request, reads the organization through the
    /// management role, and only then stores the connection and onboards
    /// its accounts. Every refusal (a role ARN that is not a Kopter role,
    /// a role outside the organization's management account, a role that
    /// cannot be assumed or cannot read Organizations, an account not in
    /// an organization) happens before anything is written.
    pub async fn connect(
        &self,
        req: ConnectRequest,
    ) -> Result<(OrgConnection, DiscoveryReport), OrgError> {
        let management = role_account(&req.management_role_arn)?;
        validate_role_arn(&req.management_role_arn, &management)
            .map_err(|e| OrgError::Refused(format!("--management-role-arn: {e}")))?;
        let probe = AccountId::new("000000000000").expect("12 digits");
        validate_role_arn(
            &format!("arn:aws:iam::{probe}:role/{}", req.member_role_name),
            &probe,
        )
        .map_err(|e| OrgError::Refused(format!("--member-role-name: {e}")))?;
        if let Some(r) = req.regions.iter().find(|r| !is_region_name(r)) {
            return Err(OrgError::Refused(format!(
                "invalid region {r:?}: expected a name like us-east-1"
            )));
        }
        let mut conn = OrgConnection {
            pk: keys::account_pk(&req.tenant),
            sk: format!("{ORG_SK_PREFIX}{management}"),
            tenant_id: req.tenant,
            management_account: management,
            management_role_arn: req.management_role_arn,
            member_role_name: req.member_role_name,
            regions: req.regions,
            organization_id: String::new(),
            connected_at: Utc::now(),
        };
        let client = self.client(&conn).await?;
        let org = client
            .describe_organization()
            .send()
            .await
            .map_err(|e| org_refusal(&conn, "DescribeOrganization", &e))?;
        let org = org
            .organization
            .context("DescribeOrganization: no organization")?;
        let master = org.master_account_id.clone().unwrap_or_default();
        if master != conn.management_account.as_str() {
            return Err(OrgError::Refused(format!(
                "the role {} is in account {}, but organization {} is managed by account {master}: give the Organizations read-only role of the management account",
                conn.management_role_arn,
                conn.management_account,
                org.id.as_deref().unwrap_or("?")
            )));
        }
        conn.organization_id = org.id.unwrap_or_default();
        // The first listing is made before anything is written, so a role
        // without organizations:ListAccounts is refused here.
        let (listed, pages) = list_accounts(&client, &conn).await?;
        if let Some(existing) = self.get(&conn.tenant_id, &conn.management_account).await? {
            conn.connected_at = existing.connected_at;
        }
        let item = serde_dynamo::to_item(&conn).context("encode the organization connection")?;
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .context("store the organization connection")?;
        let mut report = self.apply(&conn, listed).await?;
        report.pages = pages;
        Ok((conn, report))
    }

    /// Lists the organization again and applies the differences.
    pub async fn discover(&self, conn: &OrgConnection) -> Result<DiscoveryReport, OrgError> {
        let client = self.client(conn).await?;
        let (listed, pages) = list_accounts(&client, conn).await?;
        let mut report = self.apply(conn, listed).await?;
        report.pages = pages;
        Ok(report)
    }

    /// Every account of the organization with its state (`ACTIVE`,
    /// `SUSPENDED`, …), and the `ListAccounts` calls it took (20 accounts
    /// a call, the API's maximum).
    pub async fn list(
        &self,
        conn: &OrgConnection,
    ) -> Result<(Vec<(AccountId, String)>, usize), OrgError> {
        let client = self.client(conn).await?;
        list_accounts(&client, conn).await
    }

    /// Every connection of every tenant (one filtered Scan of the
    /// accounts table).
    pub async fn connections(&self) -> anyhow::Result<Vec<OrgConnection>> {
        let mut pages = self
            .ddb
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(sk, :p)")
            .expression_attribute_values(":p", AttributeValue::S(ORG_SK_PREFIX.into()))
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.context("list organization connections")?;
            out.push(serde_dynamo::from_item(item).context("decode an organization connection")?);
        }
        Ok(out)
    }

    /// A tenant's connection of one organization.
    pub async fn get(
        &self,
        tenant: &TenantId,
        management: &AccountId,
    ) -> anyhow::Result<Option<OrgConnection>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(keys::account_pk(tenant)))
            .key(
                "sk",
                AttributeValue::S(format!("{ORG_SK_PREFIX}{management}")),
            )
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("read the organization of {management} for {tenant}"))?;
        out.item
            .map(|i| serde_dynamo::from_item(i).context("decode an organization connection"))
            .transpose()
    }

    async fn client(
        &self,
        conn: &OrgConnection,
    ) -> Result<aws_sdk_organizations::Client, OrgError> {
        // Organizations is a global service whose endpoint is in us-east-1.
        let sdk = self
            .credentials
            .sdk_config(&self.base, &conn.management_role(), "us-east-1")
            .await
            .map_err(|e| match e {
                AssumeRoleError::Denied { .. } => OrgError::Refused(format!(
                    "{e}; the role's trust must allow Kopter with ExternalId {}",
                    management_external_id(&conn.tenant_id, &conn.management_account)
                )),
                other => OrgError::Aws(anyhow::Error::new(other)),
            })?;
        Ok(aws_sdk_organizations::Client::new(&sdk))
    }

    /// Compares the listing with the tenant's accounts and makes the
    /// changes (see the module doc).
    async fn apply(
        &self,
        conn: &OrgConnection,
        listed: Vec<(AccountId, String)>,
    ) -> Result<DiscoveryReport, OrgError> {
        let tenant = &conn.tenant_id;
        let mine: HashMap<AccountId, kopter_schema::items::AccountRecord> = self
            .accounts
            .list(Some(tenant))
            .await?
            .into_iter()
            .map(|a| (a.account_id.clone(), a))
            .collect();
        let mut report = DiscoveryReport {
            listed: listed.len(),
            ..Default::default()
        };
        // Who holds each new active account, in one request per 100
        // (5,000 new accounts: 50 reads, not 5,000).
        let new: Vec<AccountId> = listed
            .iter()
            .filter(|(a, status)| {
                status == "ACTIVE" && *a != conn.management_account && !mine.contains_key(a)
            })
            .map(|(a, _)| a.clone())
            .collect();
        let owners = self.accounts.owners(&new).await?;
        let mut seen = HashSet::new();
        let mut joins = Vec::new();
        for (account, status) in listed {
            seen.insert(account.clone());
            // The management account is not a StackSet target (service-
            // managed StackSets skip it), so it has no member role.
            if account == conn.management_account {
                continue;
            }
            let active = status == "ACTIVE";
            match (mine.get(&account), active) {
                (None, true) => {
                    let req = Onboarding::parse(
                        tenant.as_str(),
                        account.as_str(),
                        &conn.member_role_arn(&account),
                        &conn.regions,
                    )
                    .map_err(|e| OrgError::Refused(e.to_string()))?;
                    if owners.get(&account).is_some_and(|owner| owner != tenant) {
                        tracing::warn!(%tenant, %account, "organization account onboarded by another tenant; left alone");
                        report.conflicts.push(account);
                        continue;
                    }
                    joins.push((account, status, req));
                }
                (None, false) => report.unchanged += 1,
                (Some(rec), true)
                    if rec.paused.is_some()
                        && rec.organization.as_ref() == Some(&conn.management_account) =>
                {
                    self.post(conn, &account, OrgChange::Resumed, &status)
                        .await?;
                    self.accounts.set_paused(tenant, &account, None).await?;
                    report.resumed.push(account);
                }
                (Some(rec), false) if rec.paused.is_none() => {
                    self.post(conn, &account, OrgChange::Paused, &status)
                        .await?;
                    self.accounts
                        .set_paused(
                            tenant,
                            &account,
                            Some(&format!(
                                "{status} in organization {}",
                                conn.organization_id
                            )),
                        )
                        .await?;
                    report.paused.push(account);
                }
                (Some(_), _) => report.unchanged += 1,
            }
        }
        // New members, ten to a batch: one PublishBatch of their feed
        // notices, then their conditional writes at once, two batches in
        // flight. A first discovery of 5,000 accounts one by one would be
        // bound by round trips (and 5,000 Publish calls), not AWS's limits.
        let batches: Vec<Vec<_>> = joins.chunks(PUBLISH_BATCH_MAX).map(<[_]>::to_vec).collect();
        let mut onboarding = futures::stream::iter(batches)
            .map(|batch| async move {
                let notices: Vec<Envelope> = batch
                    .iter()
                    .map(|(account, status, _)| notice(conn, account, OrgChange::Onboarded, status))
                    .collect();
                self.outbox.publish_batch(&notices).await?;
                let outcomes = futures::future::join_all(batch.into_iter().map(
                    |(account, _, req)| async move {
                        let outcome = self
                            .accounts
                            .onboard_with(
                                req,
                                None,
                                member_external_id(&conn.tenant_id, &conn.management_account),
                                Some(conn.management_account.clone()),
                            )
                            .await;
                        (account, outcome)
                    },
                ))
                .await;
                Ok::<_, OrgError>(outcomes)
            })
            .buffer_unordered(BATCHES_IN_FLIGHT);
        while let Some(batch) = onboarding.next().await {
            for (account, outcome) in batch? {
                match outcome {
                    Ok(_) | Err(OnboardError::AlreadyOnboarded { .. }) => {
                        report.onboarded.push(account)
                    }
                    Err(OnboardError::OwnedByOtherTenant(a)) => report.conflicts.push(a),
                    Err(OnboardError::Invalid(e)) => return Err(OrgError::Refused(e)),
                    Err(OnboardError::Aws(e)) => return Err(OrgError::Aws(e)),
                }
            }
        }
        drop(onboarding);
        report.onboarded.sort();
        report.conflicts.sort();
        // Members that left the organization (or were closed and are no
        // longer listed) stop being described too.
        for rec in mine.values() {
            if rec.organization.as_ref() == Some(&conn.management_account)
                && rec.paused.is_none()
                && !seen.contains(&rec.account_id)
            {
                self.post(conn, &rec.account_id, OrgChange::Paused, "GONE")
                    .await?;
                self.accounts
                    .set_paused(
                        tenant,
                        &rec.account_id,
                        Some(&format!(
                            "no longer in organization {}",
                            conn.organization_id
                        )),
                    )
                    .await?;
                report.paused.push(rec.account_id.clone());
            }
        }
        Ok(report)
    }

    async fn post(
        &self,
        conn: &OrgConnection,
        account: &AccountId,
        change: OrgChange,
        status: &str,
    ) -> anyhow::Result<()> {
        self.outbox
            .publish(&notice(conn, account, change, status))
            .await
    }
}

/// The tenant's feed notice of one member account's change.
fn notice(conn: &OrgConnection, account: &AccountId, change: OrgChange, status: &str) -> Envelope {
    envelope(Message::OrgAccountChanged(OrgAccountChanged {
        tenant: conn.tenant_id.clone(),
        account: account.clone(),
        management_account: conn.management_account.clone(),
        change,
        status: status.to_owned(),
        at: Utc::now(),
    }))
}

/// Batches of new member accounts ([`PUBLISH_BATCH_MAX`] each) onboarded
/// at once by one discovery.
const BATCHES_IN_FLIGHT: usize = 2;

/// Every account of the organization with its status, in as few calls
/// as the API allows (20 accounts per page); and the number of calls.
async fn list_accounts(
    client: &aws_sdk_organizations::Client,
    conn: &OrgConnection,
) -> Result<(Vec<(AccountId, String)>, usize), OrgError> {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_accounts()
            .max_results(PAGE)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| org_refusal(conn, "ListAccounts", &e))?;
        pages += 1;
        for a in page.accounts() {
            let Some(id) = a.id() else { continue };
            let id = AccountId::new(id).map_err(|e| OrgError::Aws(e.into()))?;
            // `State` replaces the deprecated `Status` (2025); either says
            // ACTIVE for an account that works.
            let status = a
                .state()
                .map(|s| s.as_str().to_owned())
                .or_else(|| a.status().map(|s| s.as_str().to_owned()))
                .unwrap_or_default();
            out.push((id, status));
        }
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok((out, pages)),
        }
    }
}

/// An Organizations error as a refusal (the customer's side) or transient.
fn org_refusal<E, R>(
    conn: &OrgConnection,
    op: &str,
    e: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> OrgError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = e.code().unwrap_or_default().to_owned();
    let msg = e.message().unwrap_or_default().to_owned();
    match code.as_str() {
        "AWSOrganizationsNotInUseException" => OrgError::Refused(format!(
            "account {} is not in an AWS Organization ({op}: {code}): give the role of the organization's management account",
            conn.management_account
        )),
        "AccessDeniedException" | "AccessDenied" | "AccessDeniedForDependencyException" => {
            OrgError::Refused(format!(
                "the role {} cannot read the organization ({op}: {code}: {msg}): attach the Organizations read-only policy (deploy/cloudformation)",
                conn.management_role_arn
            ))
        }
        _ => OrgError::Aws(anyhow::anyhow!(
            "{op} through {}: {}",
            conn.management_role_arn,
            aws_smithy_types::error::display::DisplayErrorContext(e)
        )),
    }
}

/// The account of a role ARN (`arn:aws:iam::<account>:role/…`).
fn role_account(arn: &str) -> Result<AccountId, OrgError> {
    arn.split(':')
        .nth(4)
        .and_then(|a| AccountId::new(a).ok())
        .ok_or_else(|| {
            OrgError::Refused(format!(
                "--management-role-arn {arn:?}: expected arn:aws:iam::<12-digit account>:role/<name>"
            ))
        })
}
