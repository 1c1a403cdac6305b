//! `kopterctl waste`: a tenant's waste findings (idle and forgotten
//! resources with what they cost since and a month), and its thresholds.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kopter_runtime::AwsContext;
use kopter_schema::{Names, TenantId};
use kopter_store::waste::{Rule, Status, Summary, Thresholds, WasteStore};

use crate::output::{self, Listing};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WasteArgs {
    #[command(subcommand)]
    command: Option<WasteCommand>,
    /// Required for the listing.
    #[arg(long)]
    tenant: Option<String>,
    /// Also list resolved findings (kept 90 days).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    format: output::FormatArg,
}

#[derive(Subcommand)]
enum WasteCommand {
    /// Show or change a tenant's thresholds (no change flag: show).
    Thresholds {
        #[arg(long)]
        tenant: String,
        /// Hours a volume must be unattached (default 24).
        #[arg(long)]
        unattached_hours: Option<u32>,
        /// Days an instance must be stopped before its volumes count
        /// (default 7).
        #[arg(long)]
        stopped_days: Option<u32>,
        /// Days an orphan snapshot must be old (default 30).
        #[arg(long)]
        orphan_snapshot_days: Option<u32>,
        /// Snapshot retention in days, or `off` (default off).
        #[arg(long)]
        snapshot_retention_days: Option<String>,
        /// Rules to turn off (comma-separated; `none` turns all on).
        #[arg(long, value_delimiter = ',')]
        disable: Option<Vec<String>>,
    },
}

fn refuse(why: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("kopterctl: {why}");
    Ok(ExitCode::from(2))
}

pub async fn run(aws: &AwsContext, names: &Names, args: WasteArgs) -> anyhow::Result<ExitCode> {
    let store = WasteStore::new(aws.dynamodb(), names);
    if let Some(WasteCommand::Thresholds {
        tenant,
        unattached_hours,
        stopped_days,
        orphan_snapshot_days,
        snapshot_retention_days,
        disable,
    }) = args.command
    {
        let tenant = match TenantId::new(tenant) {
            Ok(t) => t,
            Err(e) => return refuse(e),
        };
        let mut t = store.thresholds(&tenant).await?;
        let before = t.clone();
        if let Some(h) = unattached_hours {
            t.unattached_volume_hours = h;
        }
        if let Some(d) = stopped_days {
            t.stopped_instance_days = d;
        }
        if let Some(d) = orphan_snapshot_days {
            t.orphan_snapshot_days = d;
        }
        if let Some(r) = snapshot_retention_days {
            t.snapshot_retention_days = match r.as_str() {
                "off" => None,
                n => match n.parse::<u32>() {
                    Ok(d) if d > 0 => Some(d),
                    _ => {
                        return refuse(format!(
                            "--snapshot-retention-days {n:?}: a positive number of days or `off`"
                        ));
                    }
                },
            };
        }
        if let Some(rules) = disable {
            t.disabled.clear();
            for r in rules.iter().filter(|r| r.as_str() != "none") {
                match Rule::ALL.iter().find(|x| x.as_str() == r) {
                    Some(rule) => t.disabled.push(*rule),
                    None => {
                        return refuse(format!(
                            "--disable {r:?}: not a rule (one of {})",
                            Rule::ALL.map(Rule::as_str).join(", ")
                        ));
                    }
                }
            }
        }
        if t != before {
            store.put_thresholds(&tenant, &t).await?;
        }
        print_thresholds(&tenant, &t);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(tenant) = args.tenant else {
        return refuse("--tenant is required");
    };
    let tenant = match TenantId::new(tenant) {
        Ok(t) => t,
        Err(e) => return refuse(e),
    };
    let mut rows = store.findings(&tenant).await?;
    let summary = Summary::of(&rows);
    if !args.all {
        rows.retain(|r| r.status == Status::Open);
    }
    // Largest monthly amount first; unknown amounts last.
    rows.sort_by(|a, b| {
        let m = |r: &kopter_store::waste::FindingRow| r.finding.monthly_usd.unwrap_or(-1.0);
        m(b).total_cmp(&m(a)).then(a.sk.cmp(&b.sk))
    });
    let mut table = Listing::new(&[
        "ACCOUNT",
        "REGION",
        "RESOURCE",
        "RULE",
        "SINCE",
        "SINCE USD",
        "USD/MONTH",
        "STATUS",
        "ACTION",
    ])
    .right_aligned(&[5, 6]);
    for r in &rows {
        let f = &r.finding;
        table.row(vec![
            f.account.to_string(),
            f.region.clone(),
            f.resource_id.clone(),
            f.rule.to_string(),
            f.since.format("%Y-%m-%d %H:%M").to_string(),
            if f.unpriced_hours > 0 {
                format!("{:.2}+{}h?", f.accrued_usd, f.unpriced_hours)
            } else {
                format!("{:.2}", f.accrued_usd)
            },
            f.monthly_usd
                .map_or_else(|| "?".into(), |m| format!("{m:.2}")),
            match r.status {
                Status::Open => "open".into(),
                Status::Resolved => format!(
                    "resolved ({})",
                    r.resolution.as_deref().unwrap_or("resolved")
                ),
            },
            f.action.clone(),
        ]);
    }
    table.note(format!("{tenant}: {}", summary.line()));
    if rows.iter().any(|r| r.finding.unpriced_hours > 0) {
        table.note("+Nh?: hours without a price since, not counted in SINCE USD");
    }
    table.note("USD/MONTH: the current hourly price × 730 h (a cheaper equivalent: the saving)");
    output::print(args.format.get(), &table, &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn print_thresholds(tenant: &TenantId, t: &Thresholds) {
    println!("waste thresholds of {tenant}:");
    println!("  unattached volume       {} h", t.unattached_volume_hours);
    println!("  stopped instance        {} d", t.stopped_instance_days);
    println!("  orphan snapshot         {} d", t.orphan_snapshot_days);
    println!(
        "  snapshot retention      {}",
        t.snapshot_retention_days
            .map_or_else(|| "off".to_string(), |d| format!("{d} d"))
    );
    println!(
        "  rules off               {}",
        if t.disabled.is_empty() {
            "none".to_string()
        } else {
            t.disabled
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
}
