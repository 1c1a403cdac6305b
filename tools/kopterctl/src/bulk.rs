//! `kopterctl onboard --from accounts.csv`: many accounts at once.
//!
//! The file is read and checked whole before anything is written: every
//! row's tenant (created), account id (12 digits), role ARN (a
//! `KopterAccess…` role in that account), regions, an account appearing
//! twice, and an account another tenant owns. One bad row refuses the
//! file (exit 2) with a report naming each bad line; then rows are
//! onboarded in file order, each reported (`onboarded` with its
//! ExternalId, or `already onboarded`). A re-run after an interruption
//! onboards only what is left.
//!
//! Columns (a header row; names as below, any order; `regions` separated
//! by `;` or spaces, since `,` separates columns):
//! `tenant,account,role_arn,regions,trail_bucket,trail_prefix,trail_customer_owned`
//! — the last four may be empty or absent.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;

use kopter_runtime::AwsContext;
use kopter_runtime::accounts::{AccountStore, OnboardError, Onboarding};
use kopter_schema::items::TrailSource;
use kopter_schema::{Names, TenantId};
use kopter_store::tenants::TenantStore;
use serde::Deserialize;

use crate::output;

#[derive(Debug, Deserialize)]
struct Row {
    tenant: String,
    account: String,
    role_arn: String,
    #[serde(default)]
    regions: String,
    #[serde(default)]
    trail_bucket: String,
    #[serde(default)]
    trail_prefix: String,
    #[serde(default)]
    trail_customer_owned: String,
}

/// One checked row, ready to write.
struct Planned {
    line: u64,
    req: Onboarding,
    trail: Option<TrailSource>,
}

pub async fn run(aws: &AwsContext, names: &Names, path: &Path) -> anyhow::Result<ExitCode> {
    let mut reader = match csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
    {
        Ok(r) => r,
        Err(e) => return Ok(crate::refuse(format!("--from {}: {e}", path.display()))),
    };
    let tenants = TenantStore::new(aws.dynamodb(), names);
    let accounts = AccountStore::new(aws.dynamodb(), names);
    let mut known_tenants: HashMap<TenantId, bool> = HashMap::new();
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    let mut planned = Vec::new();
    let mut problems: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (i, rec) in reader.deserialize::<Row>().enumerate() {
        // Line numbers as an editor shows them: the header is line 1.
        let line = i as u64 + 2;
        let row = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                problems.entry(line).or_default().push(e.to_string());
                continue;
            }
        };
        let mut bad = |why: String| problems.entry(line).or_default().push(why);
        let regions: Vec<String> = row
            .regions
            .split([';', ' '])
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        let req = match Onboarding::parse(&row.tenant, &row.account, &row.role_arn, &regions) {
            Ok(r) => r,
            Err(e) => {
                bad(e.to_string());
                continue;
            }
        };
        let customer_owned = match row.trail_customer_owned.to_ascii_lowercase().as_str() {
            "" | "false" | "no" => false,
            "true" | "yes" => true,
            other => {
                bad(format!(
                    "trail_customer_owned {other:?}: expected true or false"
                ));
                continue;
            }
        };
        if row.trail_bucket.is_empty() && (!row.trail_prefix.is_empty() || customer_owned) {
            bad("trail_prefix or trail_customer_owned without trail_bucket".into());
            continue;
        }
        if let Some(first) = first_line_of.insert(row.account.clone(), line) {
            bad(format!("account {} is on line {first} too", row.account));
            continue;
        }
        let exists = match known_tenants.get(&req.tenant) {
            Some(e) => *e,
            None => {
                let e = tenants.get(&req.tenant).await?.is_some();
                known_tenants.insert(req.tenant.clone(), e);
                e
            }
        };
        if !exists {
            bad(format!(
                "unknown tenant \"{}\": create it with `kopterctl tenants create {}`",
                req.tenant, req.tenant
            ));
            continue;
        }
        if let Some(owner) = accounts.owner_of(&req.account).await?
            && owner.tenant_id != req.tenant
        {
            bad(format!(
                "account {} is already onboarded by another tenant",
                req.account
            ));
            continue;
        }
        let trail = (!row.trail_bucket.is_empty()).then(|| TrailSource {
            bucket: row.trail_bucket.clone(),
            prefix: row.trail_prefix.clone(),
            customer_owned,
        });
        planned.push(Planned { line, req, trail });
    }
    if !problems.is_empty() {
        for (line, whys) in &problems {
            for why in whys {
                eprintln!("{}:{line}: {why}", path.display());
            }
        }
        return Ok(crate::refuse(format!(
            "{}: {} bad row(s); nothing was onboarded",
            path.display(),
            problems.len()
        )));
    }
    if planned.is_empty() {
        return Ok(crate::refuse(format!("{}: no rows", path.display())));
    }

    let mut table = output::Listing::new(&["LINE", "TENANT", "ACCOUNT", "OUTCOME", "EXTERNAL ID"]);
    let (mut new, mut already) = (0, 0);
    for p in planned {
        let (tenant, account) = (p.req.tenant.clone(), p.req.account.clone());
        let (outcome, external_id) = match accounts.onboard(p.req, p.trail).await {
            Ok(rec) => {
                new += 1;
                ("onboarded", rec.external_id)
            }
            Err(OnboardError::AlreadyOnboarded { .. }) => {
                already += 1;
                let rec = accounts.get(&tenant, &account).await?;
                (
                    "already onboarded",
                    rec.map(|r| r.external_id).unwrap_or_default(),
                )
            }
            // Checked above; a race with another onboarding lands here.
            Err(OnboardError::OwnedByOtherTenant(a)) => {
                anyhow::bail!(
                    "line {}: account {a} was onboarded by another tenant meanwhile",
                    p.line
                )
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("line {}", p.line))),
        };
        table.row(vec![
            p.line.to_string(),
            tenant.to_string(),
            account.to_string(),
            outcome.into(),
            external_id,
        ]);
    }
    table.note(format!(
        "{new} onboarded, {already} already onboarded; next: the customer creates each role (kopterctl onboard prints the policies for one account), then kopterctl accounts verify"
    ));
    print!("{}", table.render_table());
    Ok(ExitCode::SUCCESS)
}
