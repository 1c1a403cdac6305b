//! `kopterctl inventory`: a tenant's instances, volumes and snapshots as
//! the describer last saw them, each with its `Name` tag and what it cost
//! in the newest hour the aggregator has computed for its account (the
//! current hour, else the one before: the aggregate tick runs hourly).

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use chrono::{Duration, DurationRound, Utc};
use clap::Args;
use kopter_runtime::AwsContext;
use kopter_runtime::accounts::{AccountStore, is_region_name};
use kopter_schema::{AccountId, Names, TenantId};
use kopter_store::graph::{GraphStore, ResourceHourRow, hour_key};
use kopter_store::inventory::{InventoryRow, Resource};
use serde::Serialize;

use crate::output::{self, Listing};

/// One row as `inventory` lists it: the stored row plus its name and cost.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    row: &'a InventoryRow,
    /// The `Name` tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// The hour of `cost_usd` (`2026-11-30T14`), if the aggregator has
    /// computed one for the account.
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_hour: Option<String>,
    /// USD in `cost_hour`; absent when the price is missing (see
    /// `price_missing`) or the resource had no cost row that hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price_missing: Option<String>,
}

fn tags(r: &Resource) -> &BTreeMap<String, String> {
    match r {
        Resource::Instance(i) => &i.tags,
        Resource::Volume(v) => &v.tags,
        Resource::Snapshot(s) => &s.tags,
        Resource::Host(h) => &h.tags,
    }
}

/// Each account's newest computed hour (current, else previous) and its
/// resource rows by resource id.
async fn last_hour_costs(
    graph: &GraphStore,
    tenant: &TenantId,
    accounts: impl IntoIterator<Item = &AccountId>,
) -> anyhow::Result<HashMap<AccountId, (String, HashMap<String, ResourceHourRow>)>> {
    let current = Utc::now().duration_trunc(Duration::hours(1))?;
    let mut out = HashMap::new();
    for a in accounts {
        for hour in [current, current - Duration::hours(1)] {
            let rows = graph.resource_hours(tenant, a, hour).await?;
            if !rows.is_empty() {
                let by_id = rows
                    .into_iter()
                    .map(|r| (r.resource_id.clone(), r))
                    .collect();
                out.insert(a.clone(), (hour_key(hour), by_id));
                break;
            }
        }
    }
    Ok(out)
}

#[derive(Args)]
pub struct InventoryArgs {
    #[arg(long)]
    tenant: String,
    /// Only this account (12 digits).
    #[arg(long)]
    account: Option<String>,
    /// Only this region.
    #[arg(long)]
    region: Option<String>,
    /// Include resources that are gone (terminated and vanished, deleted).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    format: output::FormatArg,
}

fn detail(row: &InventoryRow) -> String {
    match &row.resource {
        Resource::Instance(i) => format!(
            "{} {} {} {}",
            i.instance_type,
            i.lifecycle,
            if i.platform_details.is_empty() {
                "-"
            } else {
                &i.platform_details
            },
            i.availability_zone
        ),
        Resource::Volume(v) => format!(
            "{} {} GiB {}",
            v.volume_type,
            v.size_gib,
            v.attached_instance.as_deref().unwrap_or("-")
        ),
        Resource::Snapshot(s) => format!("{} GiB of {}", s.volume_size_gib, s.volume_id),
        Resource::Host(h) => format!(
            "{} {} instance(s) {}",
            if h.instance_type.is_empty() {
                &h.instance_family
            } else {
                &h.instance_type
            },
            h.instance_ids.len(),
            h.availability_zone
        ),
    }
}

pub async fn run(aws: &AwsContext, names: &Names, args: InventoryArgs) -> anyhow::Result<ExitCode> {
    let refuse = |why: String| {
        eprintln!("kopterctl: {why}");
        Ok(ExitCode::from(2))
    };
    let tenant = match TenantId::new(args.tenant) {
        Ok(t) => t,
        Err(e) => return refuse(e.to_string()),
    };
    let account = match args.account.map(AccountId::new).transpose() {
        Ok(a) => a,
        Err(e) => return refuse(e.to_string()),
    };
    if let Some(r) = &args.region
        && !is_region_name(r)
    {
        return refuse(format!("invalid region {r:?}"));
    }
    let store = kopter_store::inventory::InventoryStore::new(aws.dynamodb(), names);
    let accounts = AccountStore::new(aws.dynamodb(), names);
    let mut rows = kopter_store::inventory::inventory_rows(
        &store,
        &accounts,
        &tenant,
        account.as_ref(),
        args.region.as_deref(),
    )
    .await?;
    rows.retain(|r| args.all || !r.gone);
    let accounts: std::collections::BTreeSet<&AccountId> =
        rows.iter().map(|r| &r.account).collect();
    let costs = last_hour_costs(&GraphStore::new(aws.dynamodb(), names), &tenant, accounts).await?;
    let listed: Vec<Listed> = rows
        .iter()
        .map(|row| {
            let (hour, cost) = match costs.get(&row.account) {
                Some((hour, by_id)) => (Some(hour.clone()), by_id.get(&row.resource_id)),
                None => (None, None),
            };
            Listed {
                row,
                name: tags(&row.resource).get("Name").map(String::as_str),
                cost_hour: hour,
                cost_usd: cost.and_then(|c| c.cost_usd),
                price_missing: cost.and_then(|c| c.price_missing.clone()),
            }
        })
        .collect();
    let mut t = Listing::new(&[
        "ACCOUNT",
        "REGION",
        "KIND",
        "ID",
        "NAME",
        "STATE",
        "LAST SEEN",
        "COST/H USD",
        "DETAIL",
    ])
    .right_aligned(&[7]);
    for l in &listed {
        let r = l.row;
        t.row(vec![
            r.account.to_string(),
            r.region.clone(),
            r.kind().to_string(),
            r.resource_id.clone(),
            l.name.unwrap_or("-").to_owned(),
            if r.gone {
                format!("{} (gone)", r.state())
            } else {
                r.state().to_owned()
            },
            r.last_seen.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            match (l.cost_usd, &l.price_missing) {
                (Some(c), _) => format!("{c:.4}"),
                (None, Some(_)) => "missing".into(),
                (None, None) => "-".into(),
            },
            detail(r),
        ]);
    }
    let count = |k| rows.iter().filter(|r| r.kind() == k).count();
    use kopter_store::inventory::ResourceKind::*;
    t.note(format!(
        "{} instance(s), {} volume(s), {} snapshot(s), {} host(s)",
        count(Instance),
        count(Volume),
        count(Snapshot),
        count(Host)
    ));
    let mut hours: Vec<&str> = costs.values().map(|(h, _)| h.as_str()).collect();
    hours.sort_unstable();
    hours.dedup();
    t.note(if hours.is_empty() {
        "COST/H USD: no hour computed yet (the aggregator's hourly tick)".to_string()
    } else {
        format!(
            "COST/H USD: the newest computed hour ({} UTC); \"missing\": no price known; \
             \"-\": no cost row that hour",
            hours.join(", ")
        )
    });
    output::print(args.format.get(), &t, &listed)?;
    Ok(ExitCode::SUCCESS)
}
