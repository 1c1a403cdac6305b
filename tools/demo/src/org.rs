//! The demo's organization tenant: a customer that connects its whole AWS
//! Organization once, as `kopterctl org connect` does, instead of
//! onboarding account by account.
//!
//! On the customer's side the demo does what the customer would: create
//! the organization in the management account, the Organizations
//! read-only role there (`KopterAccess-OrgRead`, trusting Kopter with the
//! tenant's management ExternalId), and member accounts. moto's
//! `CreateAccount` chooses the members' ids, so they are not fixed like
//! the other demo accounts: the demo prints them and writes them into
//! `demo.env` (`KOPTER_DEMO_ORG_ACCOUNTS`). Then Kopter's side runs
//! [`Organizations::connect`], the code behind `kopterctl org connect`,
//! which lists the organization and onboards every active member with
//! the member role. The member roles themselves, which a StackSet
//! deploys on AWS, are made after the connect, when their ids are known.

use anyhow::Context;
use aws_sdk_organizations::types::OrganizationFeatureSet;
use kopter_runtime::org::{
    ConnectRequest, DiscoveryReport, OrgConnection, OrgError, Organizations, management_external_id,
};
use kopter_runtime::{CustomerRole, ServiceContext};
use kopter_schema::{AccountId, TenantId};

/// Name of the management account's Organizations read-only role (the
/// CloudFormation template's default).
pub const MANAGEMENT_ROLE: &str = "KopterAccess-OrgRead";

/// A demo tenant connected through its organization.
#[derive(Debug, Clone)]
pub struct DemoOrg {
    pub tenant: String,
    /// The organization's management account (12 digits).
    pub management: String,
    /// Member accounts the organization should have; moto's
    /// `CreateAccount` picks their ids. An organization that already has
    /// as many is left as it is.
    pub members: usize,
}

impl DemoOrg {
    /// The management role's ARN, as the customer gives it to
    /// `kopterctl org connect --management-role-arn`.
    pub fn management_role_arn(&self) -> String {
        format!("arn:aws:iam::{}:role/{MANAGEMENT_ROLE}", self.management)
    }
}

/// Makes the customer's side (organization, management role, members)
/// and connects it for `org.tenant`, with the member accounts described
/// in `regions`. Returns the connection and what the connect did.
pub async fn connect(
    ctx: &ServiceContext,
    org: &DemoOrg,
    kopter_account: &str,
    regions: &[String],
) -> anyhow::Result<(OrgConnection, DiscoveryReport)> {
    let tenant = TenantId::new(org.tenant.clone())?;
    let management = AccountId::new(org.management.clone())?;
    let role = CustomerRole {
        tenant: tenant.clone(),
        account: management.clone(),
        role_arn: org.management_role_arn(),
        external_id: management_external_id(&tenant, &management),
    };
    crate::estate::create_customer_role(ctx, &role, kopter_account).await?;
    let sdk = ctx
        .credentials
        .sdk_config(&ctx.aws.sdk, &role, "us-east-1")
        .await?;
    let client = aws_sdk_organizations::Client::new(&sdk);
    ensure_organization(&client, org).await?;

    let orgs = Organizations::new(
        ctx.aws.sdk.clone(),
        ctx.credentials.clone(),
        ctx.aws.dynamodb(),
        &ctx.names,
        ctx.outbox.clone(),
    );
    orgs.connect(ConnectRequest {
        tenant,
        management_role_arn: org.management_role_arn(),
        member_role_name: "KopterAccess".into(),
        regions: regions.to_vec(),
    })
    .await
    .map_err(|e| match e {
        OrgError::Refused(why) => anyhow::anyhow!("org connect refused: {why}"),
        OrgError::Aws(e) => e.context("org connect"),
    })
}

/// The organization of the management account with `org.members`
/// members, created where missing (a demo run against a moto that
/// already has it reuses it).
async fn ensure_organization(
    client: &aws_sdk_organizations::Client,
    org: &DemoOrg,
) -> anyhow::Result<()> {
    let exists = match client.describe_organization().send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_aws_organizations_not_in_use_exception()) =>
        {
            false
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "organizations:DescribeOrganization in {}",
                org.management
            )));
        }
    };
    if !exists {
        client
            .create_organization()
            .feature_set(OrganizationFeatureSet::All)
            .send()
            .await
            .with_context(|| format!("organizations:CreateOrganization in {}", org.management))?;
    }
    let mut have = 0;
    let mut pages = client.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.context("organizations:ListAccounts")?;
        have += page
            .accounts()
            .iter()
            .filter(|a| a.id() != Some(org.management.as_str()))
            .count();
    }
    for i in have..org.members {
        client
            .create_account()
            .account_name(format!("{}-member-{}", org.tenant, i + 1))
            .email(format!("aws+member-{}@{}.example.com", i + 1, org.tenant))
            .send()
            .await
            .context("organizations:CreateAccount")?;
    }
    Ok(())
}
