//! `kopterctl cost` (a tenant's cost series from the price graph) and
//! `kopterctl budget` (a tenant's monthly budget).

use std::collections::BTreeMap;
use std::process::ExitCode;

use chrono::{Duration, DurationRound, Utc};
use clap::{Args, Subcommand, ValueEnum};
use kopter_runtime::AwsContext;
use kopter_runtime::accounts::AccountStore;
use kopter_schema::{AccountId, Names, TenantId};
use kopter_store::graph::{Budget, GraphStore, SeriesPoint, day_key, hour_key};
use serde::Serialize;

use crate::output::{self, Listing};
use crate::timearg::{self, Bound};

/// The most hours `--by resource` reads (one query per account and hour).
const MAX_RESOURCE_HOURS: i64 = 31 * 24;

/// What the `RESERVED` column means, printed under every cost table.
pub const RESERVED_LEGEND: &str = "RESERVED ALT: what the on-demand instance hours would have cost at the 1-year standard no-upfront Reserved Instance rate (an alternative to compare, not a charge)";

#[derive(Clone, Copy, ValueEnum)]
pub enum Granularity {
    Hour,
    Day,
}

#[derive(Args)]
pub struct CostArgs {
    #[arg(long)]
    tenant: String,
    /// Only this account (12 digits).
    #[arg(long)]
    account: Option<String>,
    /// Start: a date, an RFC 3339 time or a duration back (`7d`)
    /// (default: 7 days ago).
    #[arg(long)]
    from: Option<String>,
    /// End, inclusive: the same forms (a date: through its end; default now).
    #[arg(long)]
    to: Option<String>,
    /// Group by `resource` (each instance, volume, snapshot), `account`,
    /// `region`, `family` or `tag:KEY` (a key of `aggregator.rollup_tags`).
    #[arg(long, default_value = "account")]
    by: String,
    #[arg(long, value_enum, default_value = "day")]
    granularity: Granularity,
    #[command(flatten)]
    format: output::FormatArg,
}

/// One resource's cost in one period (`--by resource`), summed over the
/// period's hours.
#[derive(Debug, Serialize)]
struct ResourceCost {
    period: String,
    account: AccountId,
    region: String,
    kind: String,
    resource_id: String,
    /// Instance or volume type.
    detail: String,
    /// The `Name` tag, if any.
    name: Option<String>,
    cost_usd: f64,
    reserved_usd: f64,
    /// Hours whose price is unknown (not in `cost_usd`), with the reason.
    price_missing_hours: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    price_missing: Option<String>,
}

#[derive(Args)]
pub struct BudgetArgs {
    #[command(subcommand)]
    command: BudgetCommand,
}

#[derive(Subcommand)]
enum BudgetCommand {
    /// Set a tenant's monthly budget (USD) and alert thresholds.
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        monthly_usd: f64,
        /// Percentages of the budget that alert once per month each.
        #[arg(long, value_delimiter = ',', default_value = "50,80,100")]
        thresholds: Vec<u32>,
    },
    /// Show a tenant's budget.
    Show {
        #[arg(long)]
        tenant: String,
    },
}

fn refuse(why: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("kopterctl: {why}");
    Ok(ExitCode::from(2))
}

pub async fn cost(
    aws: &AwsContext,
    names: &Names,
    tags: &[String],
    args: CostArgs,
) -> anyhow::Result<ExitCode> {
    let tenant = match TenantId::new(args.tenant.clone()) {
        Ok(t) => t,
        Err(e) => return refuse(e),
    };
    let account = match args.account.clone().map(AccountId::new).transpose() {
        Ok(a) => a,
        Err(e) => return refuse(e),
    };
    let dims = kopter_store::graph::dimensions(tags);
    if args.by != "resource" && !dims.contains(&args.by) {
        return refuse(format!(
            "--by {:?}: expected resource, {}",
            args.by,
            dims.join(", ")
        ));
    }
    let now = Utc::now();
    let to = match args
        .to
        .as_deref()
        .map(|t| timearg::flag("to", t, Bound::End, now))
    {
        None => now,
        Some(Ok(t)) => t,
        Some(Err(e)) => return refuse(e),
    };
    let from = match args
        .from
        .as_deref()
        .map(|f| timearg::flag("from", f, Bound::Start, now))
    {
        None => to - Duration::days(7),
        Some(Ok(t)) => t,
        Some(Err(e)) => return refuse(e),
    };
    if from > to {
        return refuse(format!("--from {from} is after --to {to}"));
    }
    if args.by == "resource" {
        return by_resource(aws, names, &tenant, account.as_ref(), (from, to), &args).await;
    }
    let (gran, lo, hi) = match args.granularity {
        Granularity::Hour => ("hour", hour_key(from), hour_key(to)),
        Granularity::Day => ("day", day_key(from), day_key(to)),
    };
    let graph = GraphStore::new(aws.dynamodb(), names);
    let points = graph
        .series(&tenant, account.as_ref(), gran, &args.by, &lo, &hi)
        .await?;
    output::print(args.format.get(), &series_table(&points, &args.by), &points)?;
    Ok(ExitCode::SUCCESS)
}

fn series_table(points: &[SeriesPoint], by: &str) -> Listing {
    let by = by.to_uppercase();
    let mut t = Listing::new(&[
        "PERIOD",
        &by,
        "COST USD",
        "RESERVED ALT USD",
        "MISSING",
        "PARTIAL",
    ])
    .right_aligned(&[2, 3, 4, 5]);
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    for p in points {
        t.row(vec![
            p.period.clone(),
            p.group.clone(),
            format!("{:.4}", p.cost_usd),
            format!("{:.4}", p.reserved_usd),
            p.price_missing.to_string(),
            p.price_partial.to_string(),
        ]);
        *totals.entry(p.group.as_str()).or_default() += p.cost_usd;
    }
    for (g, c) in totals {
        t.note(format!("total {g:<32} {c:>12.4} USD"));
    }
    let missing: u64 = points.iter().map(|p| p.price_missing).sum();
    if missing > 0 {
        t.note(format!(
            "{missing} resource-period(s) without a known price are not in the costs (MISSING)"
        ));
    }
    let partial: u64 = points.iter().map(|p| p.price_partial).sum();
    if partial > 0 {
        t.note(format!(
            "{partial} resource-period(s) priced for some components only: the costs hold \
             their known components (PARTIAL; the api's price_missing_part names the rest)"
        ));
    }
    t.note(RESERVED_LEGEND);
    t
}

/// `--by resource`: each resource's cost per hour or day, from the
/// aggregator's resource-hour rows (one query per account and hour).
async fn by_resource(
    aws: &AwsContext,
    names: &Names,
    tenant: &TenantId,
    account: Option<&AccountId>,
    (from, to): (chrono::DateTime<Utc>, chrono::DateTime<Utc>),
    args: &CostArgs,
) -> anyhow::Result<ExitCode> {
    let first = from.duration_trunc(Duration::hours(1))?;
    let last = to.duration_trunc(Duration::hours(1))?;
    let hours = (last - first).num_hours() + 1;
    if hours > MAX_RESOURCE_HOURS {
        return refuse(format!(
            "--by resource reads every hour: {hours} hours from {from} to {to} is more than \
             {MAX_RESOURCE_HOURS}; narrow --from/--to"
        ));
    }
    let accounts: Vec<AccountId> = match account {
        Some(a) => vec![a.clone()],
        None => AccountStore::new(aws.dynamodb(), names)
            .list(Some(tenant))
            .await?
            .into_iter()
            .map(|a| a.account_id)
            .collect(),
    };
    let graph = GraphStore::new(aws.dynamodb(), names);
    let mut costs: BTreeMap<(String, String, String, String), ResourceCost> = BTreeMap::new();
    for a in &accounts {
        for h in 0..hours {
            let hour = first + Duration::hours(h);
            let period = match args.granularity {
                Granularity::Hour => hour_key(hour),
                Granularity::Day => day_key(hour),
            };
            for r in graph.resource_hours(tenant, a, hour).await? {
                let key = (
                    period.clone(),
                    a.to_string(),
                    r.kind.clone(),
                    r.resource_id.clone(),
                );
                let c = costs.entry(key).or_insert_with(|| ResourceCost {
                    period: period.clone(),
                    account: a.clone(),
                    region: r.region.clone(),
                    kind: r.kind.clone(),
                    resource_id: r.resource_id.clone(),
                    detail: r.detail.clone(),
                    name: r.tags.get("Name").cloned(),
                    cost_usd: 0.0,
                    reserved_usd: 0.0,
                    price_missing_hours: 0,
                    price_missing: None,
                });
                c.cost_usd += r.cost_usd.unwrap_or(0.0);
                c.reserved_usd += r.reserved_usd.unwrap_or(0.0);
                if let Some(why) = r.price_missing {
                    c.price_missing_hours += 1;
                    c.price_missing.get_or_insert(why);
                }
            }
        }
    }
    let rows: Vec<ResourceCost> = costs.into_values().collect();
    let mut t = Listing::new(&[
        "PERIOD",
        "ACCOUNT",
        "REGION",
        "KIND",
        "RESOURCE",
        "NAME",
        "DETAIL",
        "COST USD",
        "RESERVED ALT USD",
        "MISSING",
    ])
    .right_aligned(&[7, 8]);
    for r in &rows {
        t.row(vec![
            r.period.clone(),
            r.account.to_string(),
            r.region.clone(),
            r.kind.clone(),
            r.resource_id.clone(),
            r.name.clone().unwrap_or_else(|| "-".into()),
            r.detail.clone(),
            format!("{:.4}", r.cost_usd),
            format!("{:.4}", r.reserved_usd),
            r.price_missing.clone().unwrap_or_default(),
        ]);
    }
    let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
    t.note(format!(
        "{} resource-period(s), total {total:.4} USD (hours {} – {} UTC)",
        rows.len(),
        hour_key(first),
        hour_key(last)
    ));
    t.note(RESERVED_LEGEND);
    output::print(args.format.get(), &t, &rows)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn budget(aws: &AwsContext, names: &Names, args: BudgetArgs) -> anyhow::Result<ExitCode> {
    let graph = GraphStore::new(aws.dynamodb(), names);
    match args.command {
        BudgetCommand::Set {
            tenant,
            monthly_usd,
            thresholds,
        } => {
            let tenant = match TenantId::new(tenant) {
                Ok(t) => t,
                Err(e) => return refuse(e),
            };
            if !(monthly_usd > 0.0 && monthly_usd.is_finite()) {
                return refuse("--monthly-usd must be a positive number");
            }
            if thresholds.is_empty() || thresholds.iter().any(|&t| t == 0 || t > 1000) {
                return refuse("--thresholds must be percentages between 1 and 1000");
            }
            let b = Budget::new(&tenant, monthly_usd, thresholds);
            graph.put_budget(&b).await?;
            println!(
                "budget of {tenant}: {monthly_usd} USD/month, thresholds {:?} %",
                b.thresholds
            );
        }
        BudgetCommand::Show { tenant } => {
            let tenant = match TenantId::new(tenant) {
                Ok(t) => t,
                Err(e) => return refuse(e),
            };
            match graph.budget(&tenant).await? {
                Some(b) => println!(
                    "budget of {tenant}: {} USD/month, thresholds {:?} %",
                    b.monthly_usd, b.thresholds
                ),
                None => println!("{tenant} has no budget"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
