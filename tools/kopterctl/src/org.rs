//! `kopterctl org connect|list|discover`: a customer's AWS Organization
//! (see `kopter_runtime::org`).

use std::process::ExitCode;

use clap::Subcommand;
use kopter_runtime::org::{
    ConnectRequest, OrgError, Organizations, management_external_id, member_external_id,
};
use kopter_runtime::{AwsContext, Config, CredentialCache};
use kopter_schema::TenantId;

use crate::output;

#[derive(Subcommand)]
pub enum OrgCommand {
    /// Read the organization through the management account's role and
    /// onboard every active account with the member role. Nothing is
    /// written unless the role can be assumed and reads the organization.
    Connect {
        #[arg(long)]
        tenant: String,
        /// The Organizations read-only role in the management account
        /// (arn:aws:iam::<management>:role/KopterAccess-OrgRead…).
        #[arg(long)]
        management_role_arn: String,
        /// The role the StackSet deployed in every member account.
        #[arg(long, default_value = "KopterAccess")]
        member_role_name: String,
        /// Regions of the member accounts, comma-separated; default every
        /// enabled region.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
    },
    /// The organizations connected, of one tenant or all.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        format: output::FormatArg,
    },
}

pub async fn run(aws: &AwsContext, config: &Config, cmd: OrgCommand) -> anyhow::Result<ExitCode> {
    let names = config.names();
    let orgs = Organizations::new(
        aws.sdk.clone(),
        CredentialCache::new(aws.sts(), "kopterctl", &config.credentials),
        aws.dynamodb(),
        &names,
        kopter_runtime::messaging::Outbox::new(aws.sqs(), aws.sns(), names.clone()),
    );
    match cmd {
        OrgCommand::Connect {
            tenant,
            management_role_arn,
            member_role_name,
            regions,
        } => {
            let tenant = match TenantId::new(tenant) {
                Ok(t) => t,
                Err(e) => return Ok(crate::refuse(e)),
            };
            let req = ConnectRequest {
                tenant: tenant.clone(),
                management_role_arn,
                member_role_name,
                regions,
            };
            let (conn, r) = match orgs.connect(req).await {
                Ok(x) => x,
                Err(OrgError::Refused(why)) => return Ok(crate::refuse(why)),
                Err(OrgError::Aws(e)) => return Err(e),
            };
            println!(
                "connected organization {} (management account {}) to tenant {tenant}",
                conn.organization_id, conn.management_account
            );
            println!(
                "{} account(s) listed in {} call(s): {} onboarded, {} paused, {} resumed, {} unchanged, {} onboarded by another tenant (left alone)",
                r.listed,
                r.pages,
                r.onboarded.len(),
                r.paused.len(),
                r.resumed.len(),
                r.unchanged,
                r.conflicts.len()
            );
            for a in &r.conflicts {
                println!("  conflict: account {a} is onboarded by another tenant");
            }
            println!(
                "member accounts are assumed as {} with ExternalId {}",
                conn.member_role_arn(&"000000000000".parse().expect("12 digits"))
                    .replace("000000000000", "<account>"),
                member_external_id(&tenant, &conn.management_account)
            );
            println!(
                "the describer re-lists the organization on its org-discovery schedule (`kopterctl tick org-discovery` now)"
            );
        }
        OrgCommand::List { tenant, format } => {
            let tenant = match tenant.map(TenantId::new).transpose() {
                Ok(t) => t,
                Err(e) => return Ok(crate::refuse(e)),
            };
            let mut conns = orgs.connections().await?;
            conns.retain(|c| tenant.as_ref().is_none_or(|t| *t == c.tenant_id));
            conns.sort_by(|a, b| {
                (&a.tenant_id, &a.management_account).cmp(&(&b.tenant_id, &b.management_account))
            });
            let mut table = output::Listing::new(&[
                "TENANT",
                "ORGANIZATION",
                "MANAGEMENT",
                "MANAGEMENT EXTERNAL ID",
                "MEMBER ROLE",
            ]);
            for c in &conns {
                table.row(vec![
                    c.tenant_id.to_string(),
                    c.organization_id.clone(),
                    c.management_account.to_string(),
                    management_external_id(&c.tenant_id, &c.management_account),
                    c.member_role_name.clone(),
                ]);
            }
            table.note(format!("{} organization(s)", conns.len()));
            output::print(format.get(), &table, &conns)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
