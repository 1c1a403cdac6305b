//! Deleting every row of one removed account (`kopterctl accounts remove
//! --purge`), table by table, in bounded batches.
//!
//! Which rows belong to an account, by table (keys in `DESIGN.md`):
//! - inventory, ec2-events, ec2-snapshots: partition `{tenant}#{account}`;
//! - price-graph: the account's resource-hour partitions
//!   `{tenant}#{account}#res#{hour}` and roll-up entries
//!   `{tenant}#{account}#rollups#{day}`;
//! - audit-log and notifications: rows of the tenant's partitions whose
//!   `account` attribute is the account.
//!
//! The tenant's rollups (cost per hour/day by region, tag, …) mix the
//! account with the tenant's other accounts and stay as they are; the
//! account-owner claim goes with `AccountStore::remove`. Every candidate
//! is matched on the tenant's own key prefix first (`{tenant}` or
//! `{tenant}#…`, never a prefix of another tenant's id), so a purge cannot
//! reach another tenant's rows.
//!
//! One `Scan` page (≤ 1 MB, keys only) at a time, deleted in
//! `BatchWriteItem`s of 25 with unprocessed items retried; the progress
//! callback sees every batch. A purge that stops half-way (crash, Ctrl-C)
//! is resumed by running it again: it deletes only what is left.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use kopter_schema::items::keys;
use kopter_schema::{AccountId, Names, Table, TenantId};

/// The tables a purge walks, in order: the ones with per-account rows.
pub const PURGED: [Table; 6] = [
    Table::Inventory,
    Table::Ec2Events,
    Table::Snapshots,
    Table::PriceGraph,
    Table::AuditLog,
    Table::Notifications,
];

/// Rows per `BatchWriteItem` (DynamoDB's limit).
const BATCH: usize = 25;

/// Deletes the account's rows from every table in [`PURGED`]; calls
/// `progress(table, deleted_so_far_in_table)` after each batch. Returns
/// the rows deleted per table.
pub async fn purge_account(
    ddb: &aws_sdk_dynamodb::Client,
    names: &Names,
    tenant: &TenantId,
    account: &AccountId,
    mut progress: impl FnMut(Table, usize),
) -> anyhow::Result<Vec<(Table, usize)>> {
    let mut out = Vec::new();
    for table in PURGED {
        let name = names.table(table);
        let mut deleted = 0;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = ddb
                .scan()
                .table_name(&name)
                .projection_expression("pk, sk")
                .filter_expression(
                    "begins_with(pk, :ta) OR ((pk = :t OR begins_with(pk, :th)) AND account = :a)",
                )
                .expression_attribute_values(
                    ":ta",
                    AttributeValue::S(format!("{}#", keys::tenant_account(tenant, account))),
                )
                .expression_attribute_values(":t", AttributeValue::S(tenant.to_string()))
                .expression_attribute_values(":th", AttributeValue::S(format!("{tenant}#")))
                .expression_attribute_values(":a", AttributeValue::S(account.to_string()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .with_context(|| format!("scan {name} for the rows of account {account}"))?;
            let keys_of_page: Vec<HashMap<String, AttributeValue>> = page
                .items
                .unwrap_or_default()
                .into_iter()
                .filter(|i| i.contains_key("pk") && i.contains_key("sk"))
                .collect();
            // `begins_with(pk, "{tenant}#{account}#")` leaves out the
            // partition `{tenant}#{account}` itself (inventory, events,
            // snapshots): it is queried directly below, not scanned for.
            for chunk in keys_of_page.chunks(BATCH) {
                delete_batch(ddb, &name, chunk.to_vec()).await?;
                deleted += chunk.len();
                progress(table, deleted);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        deleted += delete_partition(ddb, &name, &keys::tenant_account(tenant, account), |n| {
            progress(table, deleted + n)
        })
        .await?;
        out.push((table, deleted));
    }
    Ok(out)
}

/// Deletes every row of one partition, a page of keys at a time.
async fn delete_partition(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<usize> {
    let mut deleted = 0;
    loop {
        // Deleted rows leave the partition, so each round reads from its
        // start again: no cursor to lose, and a re-run resumes for free.
        let page = ddb
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .projection_expression("pk, sk")
            .limit(500)
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("read partition {pk} of {table}"))?;
        let items = page.items.unwrap_or_default();
        if items.is_empty() {
            return Ok(deleted);
        }
        for chunk in items.chunks(BATCH) {
            delete_batch(ddb, table, chunk.to_vec()).await?;
            deleted += chunk.len();
            progress(deleted);
        }
    }
}

/// One `BatchWriteItem` of deletes (at most 25 keys); unprocessed items
/// are retried with a growing pause (throttling), and an error after ten
/// rounds says so. Also the audit log's repack (`audit::AuditStore::repack_day`).
pub(crate) async fn delete_batch(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: Vec<HashMap<String, AttributeValue>>,
) -> anyhow::Result<()> {
    let mut pending: Vec<WriteRequest> = keys
        .into_iter()
        .map(|k| {
            let del = DeleteRequest::builder()
                .set_key(Some(k))
                .build()
                .expect("the key is set");
            WriteRequest::builder().delete_request(del).build()
        })
        .collect();
    for round in 0..10u32 {
        let out = ddb
            .batch_write_item()
            .request_items(table, pending)
            .send()
            .await
            .with_context(|| format!("delete a batch of rows from {table}"))?;
        pending = out
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default();
        if pending.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(round.min(5)))).await;
    }
    anyhow::bail!(
        "{table}: {} rows still unprocessed after 10 rounds of BatchWriteItem (throttled); run the purge again",
        pending.len()
    )
}
