//! `kopterctl cost` (a tenant's cost series from the price graph) and
//! `kopterctl budget` (a tenant's monthly budget).

use std::collections::BTreeMap;
use std::process::ExitCode;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::{Args, Subcommand, ValueEnum};
use kopter_runtime::AwsContext;
use kopter_schema::{AccountId, Names, TenantId};
use kopter_store::graph::{Budget, GraphStore, SeriesPoint, day_key, hour_key};

#[derive(Clone, Copy, ValueEnum)]
pub enum Granularity {
    Hour,
    Day,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args)]
pub struct CostArgs {
    #[arg(long)]
    tenant: String,
    /// Only this account (12 digits).
    #[arg(long)]
    account: Option<String>,
    /// Start: RFC 3339 time or date (default: 7 days ago).
    #[arg(long)]
    from: Option<String>,
    /// End, inclusive: RFC 3339 time or date (default: now).
    #[arg(long)]
    to: Option<String>,
    /// Group by `account`, `region`, `family` or `tag:KEY` (a key of
    /// `aggregator.rollup_tags`).
    #[arg(long, default_value = "account")]
    by: String,
    #[arg(long, value_enum, default_value = "day")]
    granularity: Granularity,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
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

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))
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
    let tenant = match TenantId::new(args.tenant) {
        Ok(t) => t,
        Err(e) => return refuse(e),
    };
    let account = match args.account.map(AccountId::new).transpose() {
        Ok(a) => a,
        Err(e) => return refuse(e),
    };
    let dims = kopter_store::graph::dimensions(tags);
    if !dims.contains(&args.by) {
        return refuse(format!(
            "--by {:?}: expected one of {}",
            args.by,
            dims.join(", ")
        ));
    }
    let to = match args.to.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or_else(Utc::now),
        Err(e) => return refuse(e),
    };
    let from = match args.from.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(to - Duration::days(7)),
        Err(e) => return refuse(e),
    };
    if from > to {
        return refuse("--from is after --to");
    }
    let (gran, lo, hi) = match args.granularity {
        Granularity::Hour => ("hour", hour_key(from), hour_key(to)),
        Granularity::Day => ("day", day_key(from), day_key(to)),
    };
    let graph = GraphStore::new(aws.dynamodb(), names);
    let points = graph
        .series(&tenant, account.as_ref(), gran, &args.by, &lo, &hi)
        .await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&points)?),
        Format::Table => print_table(&points, &args.by),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(points: &[SeriesPoint], by: &str) {
    println!(
        "{:<14} {:<24} {:>12} {:>12} {:>8} {:>8}",
        "PERIOD",
        by.to_uppercase(),
        "COST USD",
        "RESERVED",
        "MISSING",
        "PARTIAL"
    );
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    for p in points {
        println!(
            "{:<14} {:<24} {:>12.4} {:>12.4} {:>8} {:>8}",
            p.period, p.group, p.cost_usd, p.reserved_usd, p.price_missing, p.price_partial
        );
        *totals.entry(p.group.as_str()).or_default() += p.cost_usd;
    }
    let missing: u64 = points.iter().map(|p| p.price_missing).sum();
    let partial: u64 = points.iter().map(|p| p.price_partial).sum();
    for (g, c) in totals {
        println!("total {g:<32} {c:>12.4}");
    }
    if missing > 0 {
        println!("{missing} resource-period(s) without a known price are not in the costs");
    }
    if partial > 0 {
        println!(
            "{partial} resource-period(s) priced for some components only: the costs hold \
             their known components (see `/v1/resources/{{id}}/cost` price_missing_part)"
        );
    }
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
