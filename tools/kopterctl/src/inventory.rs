//! `kopterctl inventory`: a tenant's instances, volumes and snapshots as
//! the describer last saw them.

use std::process::ExitCode;

use clap::Args;
use kopter_runtime::AwsContext;
use kopter_runtime::accounts::{AccountStore, is_region_name};
use kopter_schema::{AccountId, Names, TenantId};
use kopter_store::inventory::{InventoryRow, Resource};

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
    /// Print JSON rows instead of a table.
    #[arg(long)]
    json: bool,
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12} {:<15} {:<9} {:<22} {:<14} {:<20} DETAIL",
        "ACCOUNT", "REGION", "KIND", "ID", "STATE", "LAST SEEN"
    );
    for r in &rows {
        println!(
            "{:<12} {:<15} {:<9} {:<22} {:<14} {:<20} {}",
            r.account,
            r.region,
            r.kind(),
            r.resource_id,
            if r.gone {
                format!("{} (gone)", r.state())
            } else {
                r.state().to_owned()
            },
            r.last_seen.format("%Y-%m-%dT%H:%M:%SZ"),
            detail(r)
        );
    }
    let count = |k| rows.iter().filter(|r| r.kind() == k).count();
    use kopter_store::inventory::ResourceKind::*;
    println!(
        "{} instance(s), {} volume(s), {} snapshot(s), {} host(s)",
        count(Instance),
        count(Volume),
        count(Snapshot),
        count(Host)
    );
    Ok(ExitCode::SUCCESS)
}
