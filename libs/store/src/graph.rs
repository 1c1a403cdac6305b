//! The price graph in DynamoDB (`price-graph` table): cost per resource
//! per hour, roll-ups per hour and day, budgets.
//!
//! | pk | sk | row |
//! |---|---|---|
//! | `{tenant}#{account}#res#{yyyy-mm-ddThh}` | `packed#{nnnn}` | the account-hour's resource costs, packed ([`packed`]: every line in one deflated JSON array, split in chunks of ≤ 100 KiB; one item up to ~1,000 resources); read back as [`ResourceHourRow`]s |
//! | `{tenant}#{account}#res#{yyyy-mm-ddThh}` | `{kind}#{resource id}` | [`ResourceHourRow`], one per resource: hours computed before packing (read still; a recompute replaces them by the packed item) |
//! | `{tenant}#hour#{dimension}` | `{yyyy-mm-ddThh}#{account}` | an account's groups of the hour in the dimension, packed ([`rollups::packed_items`]: one item up to ~2,500 groups, then chunks `{yyyy-mm-ddThh}#{account}#{nnnn}`; read back as [`RollupRow`]s) |
//! | `{tenant}#day#{dimension}` | `{yyyy-mm-dd}#{account}` | the same for the day |
//! | `{tenant}#{hour\|day}#{dimension}` | `{period}#{group}#{account}` | [`RollupRow`], one per group: periods computed before packing (read where the account's period has no packed item, [`rollups::resolve`]) |
//! | `{tenant}#{account}#rollups#{yyyy-mm-dd}` | `{yyyy-mm-ddThh}` | the account-hour's roll-ups, every dimension ([`rollups`]): what its day rows are summed from |
//! | `{tenant}#daily-total` | `{yyyy-mm-dd}` | no longer written (the day's total is summed from the `account` day rows when read); rows written before expire |
//! | `{tenant}#budget` | `config` / `crossed#{yyyy-mm}#{percent}` | [`Budget`], crossing markers |
//! | `{tenant}#spike` | `{account}#{yyyy-mm-ddThh}` | spike markers |
//! | `{tenant}#recomputed` | `{account}#{yyyy-mm-ddThh}` | when the latest recompute of an account-hour for a change started (`started_ms`) |
//!
//! Dimensions: `account`, `region`, `family`, `tag:{key}`. Roll-up items
//! keep the account in their key, so recomputing one account's hour
//! replaces exactly that account's items ([`GraphStore::replace_hour`]):
//! an item whose groups differ from the stored ones is put whole (empty
//! where the account's groups vanished), and an unchanged recompute
//! writes nothing (DynamoDB bills a write unit per item however small:
//! one item per dimension instead of one per group, `graph/design.md`). Tenant-wide series sum the accounts when read. Every
//! partition key starts with the tenant. Why the resource costs are
//! packed, and how a reader never mixes two results: `graph/design.md`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use chrono::{DateTime, Duration, Timelike, Utc};
use kopter_runtime::dynamo;
use kopter_schema::{AccountId, Names, Table, TenantId};
use serde::{Deserialize, Serialize};

pub mod packed;
pub mod rollups;

/// What a resource cost in one hour.
#[derive(Debug, Clone, PartialEq)]
pub struct CostLine {
    pub resource_id: Arc<str>,
    /// `instance`, `volume`, `snapshot`.
    pub kind: &'static str,
    pub region: Arc<str>,
    pub hour: DateTime<Utc>,
    /// Instance: running hours; volume / snapshot: GB-hours.
    pub usage: f64,
    pub unit: &'static str,
    pub cost_usd: Option<f64>,
    /// Instances on demand: the same seconds at the 1-yr standard
    /// no-upfront reserved rate.
    pub reserved_usd: Option<f64>,
    /// Why the price is unknown (then `cost_usd` is `None`).
    pub missing: Option<String>,
    /// Which components' prices are unknown when others are known (a
    /// volume's IOPS, say): `cost_usd` holds the known ones only.
    pub missing_part: Option<String>,
    /// `m5` (instance family), `ebs-gp3`, `ebs-snapshot`.
    pub family: Arc<str>,
    /// Instance type or volume type at the end of the hour.
    pub detail: Arc<str>,
    /// `on-demand`, `spot`, … (instances only; empty otherwise).
    pub lifecycle: Arc<str>,
    pub tags: Arc<BTreeMap<String, String>>,
    /// What the amount means when it is not the plain price × usage — an
    /// instance on a Dedicated Host (the host carries the compute charge),
    /// one in a capacity reservation.
    pub note: Option<Arc<str>>,
}

/// `2025-05-20T10`.
pub fn hour_key(hour: DateTime<Utc>) -> String {
    hour.format("%Y-%m-%dT%H").to_string()
}
/// `2025-05-20`.
pub fn day_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}
/// `2025-05`.
pub fn month_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// Cost of one resource in one hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceHourRow {
    pub pk: String,
    pub sk: String,
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    pub resource_id: String,
    pub kind: String,
    pub hour: String,
    pub usage: f64,
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_usd: Option<f64>,
    /// Set when the price is unknown ("price missing"; `cost_usd` absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_missing: Option<String>,
    /// Set when some components' prices are unknown and others known:
    /// `cost_usd` is the known part, this names the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_missing_part: Option<String>,
    pub family: String,
    pub detail: String,
    #[serde(default)]
    pub lifecycle: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// [`CostLine::note`]; absent in rows written before notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub expires_at: i64,
}

/// Cost of one group (account, region, family or tag value) of one
/// account in one hour or day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupRow {
    pub pk: String,
    pub sk: String,
    pub tenant: TenantId,
    pub account: AccountId,
    pub dimension: String,
    /// Hour or day key.
    pub period: String,
    pub group: String,
    pub cost_usd: f64,
    pub reserved_usd: f64,
    /// Resources of the group whose price is unknown (not in `cost_usd`).
    pub price_missing: u64,
    /// Resources of the group billed for some components only (the known
    /// ones are in `cost_usd`).
    #[serde(default)]
    pub price_partial: u64,
    pub resources: u64,
    pub expires_at: i64,
}

/// A tenant's monthly budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub pk: String,
    pub sk: String,
    pub tenant: TenantId,
    pub monthly_usd: f64,
    /// Percentages, ascending (default 50, 80, 100).
    pub thresholds: Vec<u32>,
}

impl Budget {
    pub fn new(tenant: &TenantId, monthly_usd: f64, mut thresholds: Vec<u32>) -> Self {
        thresholds.sort_unstable();
        thresholds.dedup();
        Self {
            pk: format!("{tenant}#budget"),
            sk: "config".into(),
            tenant: tenant.clone(),
            monthly_usd,
            thresholds,
        }
    }
}

/// Dimension names of a roll-up for the configured tag keys.
pub fn dimensions(tag_keys: &[String]) -> Vec<String> {
    let mut d = vec!["account".to_string(), "region".into(), "family".into()];
    d.extend(tag_keys.iter().map(|k| format!("tag:{k}")));
    d
}

/// The group of a line under a dimension ([`rollups::group`]).
pub fn group_of(line: &CostLine, account: &AccountId, dimension: &str) -> String {
    rollups::group(&rollups::Fact::from(line), account, dimension)
}

/// One point of a cost series (summed over accounts).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesPoint {
    pub period: String,
    pub group: String,
    pub cost_usd: f64,
    pub reserved_usd: f64,
    pub price_missing: u64,
    /// Resources billed for some components only ([`RollupRow::price_partial`]).
    pub price_partial: u64,
    pub resources: u64,
}

#[derive(Clone, Debug)]
pub struct GraphStore {
    ddb: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

impl GraphStore {
    pub fn new(ddb: Client, names: &Names) -> Self {
        Self {
            ddb,
            table: names.table(Table::PriceGraph),
        }
    }

    /// Replaces one account's hour: its packed resource costs, its hour
    /// roll-ups, its day roll-ups of that day and the hour's roll-up entry
    /// ([`rollups`]). Writes only what changed: a redelivered or unchanged
    /// recompute writes nothing. Reads are the account's own (the hour's
    /// partition, the day's entries), never the tenant's other accounts'.
    ///
    /// Order and recovery (`graph/design.md`, "Roll-ups"): the entry is
    /// claimed (a lease, conditional on the entry as read) before rows
    /// change and replaced after (conditional on the lease); an unsure or
    /// missing entry of a computed hour makes the next recompute read the
    /// hour's rows themselves; the day's entries are read again at the end
    /// and the day rows rewritten if another hour's recompute overlapped.
    ///
    /// Errors: [`Contended`] when another recompute of the same hour holds
    /// or overlapped it (compute again); DynamoDB's, with context.
    pub async fn replace_hour(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        hour: DateTime<Utc>,
        lines: &[CostLine],
        tag_keys: &[String],
        expires_at: i64,
    ) -> anyhow::Result<()> {
        let hk = hour_key(hour);
        let day = day_key(hour);
        let res_pk = resource_hour_pk(tenant, account, hour);
        let packed = packed::pack(lines, expires_at, packed::CHUNK_BYTES)
            .with_context(|| format!("pack the cost lines of {res_pk}"))?;
        let computed_before = self
            .replace_resource_hours(&res_pk, tenant, account, &hk, &packed, expires_at)
            .await?;

        let new = rollups::Entry {
            parts: rollups::hour_parts(lines.iter().map(rollups::Fact::from), account, tag_keys),
            expires_at,
        };
        let (mut entries, unsure, stored_z) = self.day_entries(tenant, account, &day).await?;
        let stored = entries.get(&hk).cloned();
        let seen_unsure = unsure.get(&hk).cloned();
        let contended = || {
            anyhow::Error::new(Contended {
                account: account.to_string(),
                hour: hk.clone(),
                busy: kopter_runtime::aws::Busy {
                    what: format!("the roll-up entry of {tenant} {account} {hk}"),
                },
            })
        };
        if seen_unsure.as_ref().is_some_and(rollups::is_live_lease) {
            // Another recompute of the hour is at work (its lease is
            // younger than `CLAIM_LEASE`): nothing read or written more.
            return Err(contended());
        }
        let trusted = stored.clone().filter(|_| seen_unsure.is_none());
        // Rows of this hour a recompute may have to delete beyond the old
        // rows: an unsure entry's parts (rows a crashed or concurrent
        // recompute may have written).
        let mut also_old = Vec::new();
        let old = match trusted {
            Some(e) => e,
            None if computed_before || stored.is_some() => {
                // Computed before roll-up entries existed, or the entry is
                // unsure: the hour's rows themselves, from the tenant-wide
                // partitions (once per such hour).
                let mut rows = Vec::new();
                for dim in dimensions(tag_keys) {
                    rows.extend(
                        self.rollups(&format!("{tenant}#hour#{dim}"), &format!("{hk}#"), account)
                            .await?,
                    );
                }
                if let Some(e) = &stored {
                    also_old.push(e.clone());
                }
                rollups::Entry {
                    parts: rollups::parts_of_rows(&rows),
                    expires_at: rows.first().map_or(expires_at, |r| r.expires_at),
                }
            }
            None => rollups::Entry {
                parts: Vec::new(),
                expires_at,
            },
        };
        let sure = also_old.is_empty() && !(stored.is_none() && computed_before);
        let mut mine = None;
        if stored.is_some() && (stored.as_ref() != Some(&new) || seen_unsure.is_some()) {
            // About to write rows of an hour that has an entry: claim it
            // first (`rollups::UNSURE` set to this recompute's lease), and
            // only if it is as read — the same `z` and no mark, or the
            // same mark. A claim that finds the entry changed means
            // another recompute of the hour is at work or was: nothing is
            // written and the caller computes again ([`Contended`]).
            let lease = rollups::new_lease();
            let claimed = match (&seen_unsure, stored_z.get(&hk)) {
                (Some(mark), _) => {
                    self.claim(
                        tenant,
                        account,
                        &day,
                        &hk,
                        &lease,
                        "#u = :seen",
                        mark.clone(),
                    )
                    .await?
                }
                (None, Some(z)) => {
                    self.claim(
                        tenant,
                        account,
                        &day,
                        &hk,
                        &lease,
                        "attribute_not_exists(#u) AND z = :seen",
                        z.clone(),
                    )
                    .await?
                }
                (None, None) => false,
            };
            if !claimed {
                return Err(contended());
            }
            mine = Some(lease);
        }
        // From here on this recompute may hold the entry's lease: any error
        // gives it back as a `contended-…` mark (the entry stays unsure, and
        // the next attempt claims it at once instead of waiting out the
        // lease).
        let work: anyhow::Result<()> = async {
            self.fill_day(tenant, account, hour, tag_keys, expires_at, &mut entries)
                .await?;
            let mut old_days = Vec::new();
            for e in std::iter::once(&old).chain(&also_old) {
                entries.insert(hk.clone(), e.clone());
                old_days.push(rollups::day_rows(tenant, account, &day, &entries));
            }
            entries.insert(hk.clone(), new.clone());
            let new_day = rollups::day_rows(tenant, account, &day, &entries);

            let new_hour = rollups::hour_rows(tenant, account, &hk, &new.parts, expires_at);
            let old_hours: Vec<Vec<RollupRow>> = std::iter::once(&old)
                .chain(&also_old)
                .map(|e| rollups::hour_rows(tenant, account, &hk, &e.parts, e.expires_at))
                .collect();
            if sure {
                let old_hour = old_hours.into_iter().next().unwrap_or_default();
                let old_day = old_days.into_iter().next().unwrap_or_default();
                self.replace_rollups(&new_hour, old_hour).await?;
                self.replace_rollups(&new_day, old_day).await?;
            } else {
                // What is stored is not known exactly (a crash or a
                // concurrent recompute in the middle, or rows from before
                // entries): put every row, delete every candidate the new
                // result lacks.
                self.force_rollups(&new_hour, old_hours.concat()).await?;
                self.force_rollups(&new_day, old_days.concat()).await?;
            }
            let changed = stored.as_ref() != Some(&new) || seen_unsure.is_some() || !sure;
            if !changed {
                // Nothing written: another hour's recompute that read this
                // hour's entry meanwhile read the one that stays.
                return Ok(());
            }
            // The entry, still under a lease (this recompute's, or a new
            // one for an hour without an entry) until the day rows are
            // checked below; only if it is as this recompute left it (its
            // lease, or no entry), else another recompute of the hour
            // overlapped this one (took over a lease that looked
            // abandoned, or computed a new hour at the same time).
            let lease = mine.clone().unwrap_or_else(rollups::new_lease);
            let mut item = rollups::entry_item(tenant, account, &day, &hk, &new)?;
            item.insert(rollups::UNSURE.to_owned(), lease.clone());
            let put = self
                .ddb
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item));
            let put = match &mine {
                Some(held) => put
                    .condition_expression("#u = :mark")
                    .expression_attribute_names("#u", rollups::UNSURE)
                    .expression_attribute_values(":mark", held.clone()),
                None => put.condition_expression("attribute_not_exists(pk)"),
            };
            match put.send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    // Rows of both may be stored: leave the entry unsure (a
                    // mark nobody holds) so that no recompute trusts it.
                    self.mark_contended(tenant, account, &day, &hk, None)
                        .await?;
                    return Err(contended());
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("put the roll-up entry of {tenant} {account} {hk}")));
                }
            }
            mine = Some(lease.clone());
            // Another hour of the day recomputed meanwhile may have written
            // day rows from this hour's old entry, or this recompute's from
            // another hour's old one: read the day's entries again and, while
            // they differ from what the day rows were last written from,
            // write them again from what is stored now. Each writer checks
            // after its own write, so the last one to write sees every entry.
            let mut basis = entries.clone();
            let mut settled = false;
            for _ in 0..DAY_ROW_CHECKS {
                let (fresh, _, _) = self.day_entries(tenant, account, &day).await?;
                if fresh == basis {
                    settled = true;
                    break;
                }
                let mut seen_by_other = fresh.clone();
                seen_by_other.insert(hk.clone(), old.clone());
                let mut candidates = rollups::day_rows(tenant, account, &day, &seen_by_other);
                candidates.extend(rollups::day_rows(tenant, account, &day, &basis));
                let fresh_day = rollups::day_rows(tenant, account, &day, &fresh);
                self.force_rollups(&fresh_day, candidates).await?;
                basis = fresh;
            }
            if !settled {
                anyhow::bail!(
                    "the day rows of {account} {day} kept moving under {DAY_ROW_CHECKS} checks"
                );
            }
            // Done: the lease goes (unless it was taken over meanwhile).
            let released = self
                .ddb
                .update_item()
                .table_name(&self.table)
                .key("pk", s(rollups::entries_pk(tenant, account, &day)))
                .key("sk", s(&hk))
                .update_expression("REMOVE #u")
                .condition_expression("#u = :mark")
                .expression_attribute_names("#u", rollups::UNSURE)
                .expression_attribute_values(":mark", lease)
                .send()
                .await;
            match released {
                Ok(_) => {
                    mine = None;
                    Ok(())
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    mine = None;
                    self.mark_contended(tenant, account, &day, &hk, None)
                        .await?;
                    Err(contended())
                }
                Err(e) => Err(anyhow::Error::new(e)
                    .context(format!("release the roll-up entry of {account} {hk}"))),
            }
        }
        .await;
        if let (Err(e), Some(lease)) = (&work, &mine)
            && e.downcast_ref::<Contended>().is_none()
        {
            // Best effort: if this fails too, the lease runs out.
            if let Err(release) = self
                .mark_contended(tenant, account, &day, &hk, Some(lease.clone()))
                .await
            {
                tracing::warn!(%account, hour = %hk, error = %format!("{release:#}"), "roll-up entry lease not given back");
            }
        }
        work
    }

    /// Sets [`rollups::UNSURE`] of an hour's entry to `lease` if
    /// `condition` (on `#u`, the mark, and `:seen`) holds; false if it
    /// does not (or the entry is gone).
    #[allow(clippy::too_many_arguments)]
    async fn claim(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        day: &str,
        hk: &str,
        lease: &AttributeValue,
        condition: &str,
        seen: AttributeValue,
    ) -> anyhow::Result<bool> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(rollups::entries_pk(tenant, account, day)))
            .key("sk", s(hk))
            .update_expression("SET #u = :lease")
            .condition_expression(format!("attribute_exists(pk) AND {condition}"))
            .expression_attribute_names("#u", rollups::UNSURE)
            .expression_attribute_values(":lease", lease.clone())
            .expression_attribute_values(":seen", seen)
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("claim the roll-up entry of {account} {hk}")))
            }
        }
    }

    /// Marks an hour's entry unsure with a mark nobody holds
    /// (`contended-…`), if the entry exists (one gone meanwhile — TTL —
    /// is left gone: an item of the mark alone would not read) and, with
    /// `only_over`, only if that lease is still its mark (giving back a
    /// lease). Tried up to 4 times under AWS back-pressure: the mark is
    /// what makes the next recompute distrust the entry.
    async fn mark_contended(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        day: &str,
        hk: &str,
        only_over: Option<AttributeValue>,
    ) -> anyhow::Result<()> {
        let retry = dynamo::WriteRetry {
            attempts: 4,
            backoff: std::time::Duration::from_millis(100),
        };
        dynamo::retry_backpressure(
            retry,
            |_| {},
            || async {
                let mut values = HashMap::from([(
                    ":t".to_owned(),
                    AttributeValue::S(format!("contended-{:032x}", rand::random::<u128>())),
                )]);
                let condition = match &only_over {
                    Some(lease) => {
                        values.insert(":lease".to_owned(), lease.clone());
                        "attribute_exists(pk) AND #u = :lease"
                    }
                    None => "attribute_exists(pk)",
                };
                let out = self
                    .ddb
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(rollups::entries_pk(tenant, account, day)))
                    .key("sk", s(hk))
                    .update_expression("SET #u = :t")
                    .condition_expression(condition)
                    .expression_attribute_names("#u", rollups::UNSURE)
                    .set_expression_attribute_values(Some(values))
                    .send()
                    .await;
                match out {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(anyhow::Error::new(e).context(format!(
                        "mark the roll-up entry of {account} {hk} contended"
                    ))),
                }
            },
        )
        .await
    }

    /// The roll-up entries of one account-day (hour key → entry), their
    /// unsure marks and their stored `z` (hour key → attribute).
    async fn day_entries(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        day: &str,
    ) -> anyhow::Result<(
        BTreeMap<String, rollups::Entry>,
        HashMap<String, AttributeValue>,
        HashMap<String, AttributeValue>,
    )> {
        let pk = rollups::entries_pk(tenant, account, day);
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(&pk));
        let mut entries = BTreeMap::new();
        let mut unsure = HashMap::new();
        let mut zs = HashMap::new();
        for item in dynamo::query_items(q, &pk).await? {
            let (hk, e) = rollups::read_entry(&item)?;
            if let Some(mark) = rollups::unsure_mark(&item) {
                unsure.insert(hk.clone(), mark);
            }
            if let Some(z) = item.get("z") {
                zs.insert(hk.clone(), z.clone());
            }
            entries.insert(hk, e);
        }
        Ok((entries, unsure, zs))
    }

    /// On the first recompute of an account-day since roll-up entries
    /// exist (the day has none yet): gives every other ended hour of the
    /// day that holds costs an entry, from its stored resource costs
    /// (grouped by `tag_keys`) — hours computed before entries existed.
    /// At most 23 `Query`s, once per account-day; in steady state the
    /// first recompute of a day is its first hour, and no other hour has
    /// ended. An entry written meanwhile by another recompute is kept
    /// (conditional put) and read back.
    async fn fill_day(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        hour: DateTime<Utc>,
        tag_keys: &[String],
        expires_at: i64,
        entries: &mut BTreeMap<String, rollups::Entry>,
    ) -> anyhow::Result<()> {
        if !entries.is_empty() {
            return Ok(());
        }
        let day = day_key(hour);
        let day_start = hour - Duration::hours(i64::from(hour.hour()));
        let now = Utc::now();
        for h in (0..24).map(|i| day_start + Duration::hours(i)) {
            let hk = hour_key(h);
            if h == hour || h > now {
                continue;
            }
            let rows = self.resource_hours(tenant, account, h).await?;
            if rows.is_empty() {
                continue;
            }
            let entry = rollups::Entry {
                parts: rollups::hour_parts(rows.iter().map(rollups::Fact::from), account, tag_keys),
                expires_at: expires_at + (h - hour).num_seconds(),
            };
            // Unsure: its rows may be a recompute's in flight (or of other
            // tag keys); that hour's next recompute reads them.
            let mut item = rollups::entry_item(tenant, account, &day, &hk, &entry)?;
            item.insert(rollups::UNSURE.to_owned(), AttributeValue::Bool(true));
            let r = self
                .ddb
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match r {
                Ok(_) => {
                    entries.insert(hk, entry);
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    let item = self
                        .ddb
                        .get_item()
                        .table_name(&self.table)
                        .key("pk", s(rollups::entries_pk(tenant, account, &day)))
                        .key("sk", s(&hk))
                        .consistent_read(true)
                        .send()
                        .await
                        .with_context(|| format!("read the roll-up entry of {account} {hk}"))?
                        .item
                        .with_context(|| format!("roll-up entry of {account} {hk} vanished"))?;
                    let (_, e) = rollups::read_entry(&item)?;
                    entries.insert(hk, e);
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("put the roll-up entry of {account} {hk}")));
                }
            }
        }
        Ok(())
    }

    /// The tenant's cost of a day over every account, USD: the sum of its
    /// accounts' day rows (`{tenant}#day#account`, one `Query` of one row
    /// per account); `None` before any hour of the day is computed.
    pub async fn daily_total(&self, tenant: &TenantId, day: &str) -> anyhow::Result<Option<f64>> {
        let rows = self
            .query_rollups(
                &format!("{tenant}#day#account"),
                &format!("{day}#"),
                &format!("{day}#\u{10ffff}"),
            )
            .await?;
        Ok((!rows.is_empty()).then(|| rows.iter().map(|r| r.cost_usd).sum()))
    }

    /// Puts the packed items (one per partition, period and account) whose
    /// groups in `rows` differ from those in `old` (a recompute of an
    /// unchanged hour writes nothing), empty where `old` has groups and
    /// `rows` none. [`Self::force_rollups`] when what is stored is not
    /// known exactly.
    async fn replace_rollups(&self, rows: &[RollupRow], old: Vec<RollupRow>) -> anyhow::Result<()> {
        self.write_rollups(rows, old, false).await
    }

    /// Puts the packed item of every partition, period and account of
    /// `rows` or `old` (candidates: what may be stored), whatever is
    /// stored.
    async fn force_rollups(&self, rows: &[RollupRow], old: Vec<RollupRow>) -> anyhow::Result<()> {
        self.write_rollups(rows, old, true).await
    }

    async fn write_rollups(
        &self,
        rows: &[RollupRow],
        old: Vec<RollupRow>,
        every_row: bool,
    ) -> anyhow::Result<()> {
        // One packed item per partition, period and account: its groups
        // of `rows`, put where they differ from `old`'s (or always, with
        // `every_row`), and put empty where `old` has groups and `rows`
        // none (an empty item also hides rows of before packing).
        type Key = (String, String, AccountId);
        let key = |r: &RollupRow| (r.pk.clone(), r.period.clone(), r.account.clone());
        let mut new: BTreeMap<Key, BTreeMap<&str, &RollupRow>> = BTreeMap::new();
        for r in rows {
            new.entry(key(r)).or_default().insert(&r.group, r);
        }
        let mut before: BTreeMap<Key, BTreeMap<String, RollupRow>> = BTreeMap::new();
        for r in old {
            before
                .entry(key(&r))
                .or_default()
                .insert(r.group.clone(), r);
        }
        let keys: std::collections::BTreeSet<&Key> = new.keys().chain(before.keys()).collect();
        let mut writes = Vec::new();
        for k in keys {
            let now: Vec<&RollupRow> = new
                .get(k)
                .map(|g| g.values().copied().collect())
                .unwrap_or_default();
            let was = before.get(k);
            let same = was.is_some_and(|was| {
                was.len() == now.len() && now.iter().all(|r| was.get(&r.group) == Some(*r))
            });
            if same && !every_row {
                continue;
            }
            let was_rows: Vec<&RollupRow> = was.map(|w| w.values().collect()).unwrap_or_default();
            let Some(any) = now.first().or(was_rows.first()) else {
                continue;
            };
            // At least as long as the rows it replaces: a packed item
            // hides rows of before only while it is there.
            let expires_at = now
                .iter()
                .chain(&was_rows)
                .map(|r| r.expires_at)
                .max()
                .unwrap_or(any.expires_at);
            let (pk, period, account) = k;
            let items = rollups::packed_items(
                &any.tenant,
                account,
                pk,
                &any.dimension,
                period,
                now.iter().copied(),
                expires_at,
            )?;
            // Chunks of a longer result before (past ~2,500 groups) go;
            // readers ignore them meanwhile (the first chunk's count). Which
            // are stored is read where either result is cut in chunks or
            // `old` is only candidates (merged, they may cut differently
            // from what was written): one `Query` of the key's chunks.
            let was_chunks = rollups::chunk_parts(was_rows.iter().copied()).len();
            let stale: Vec<usize> = if every_row || items.len() > 1 || was_chunks > 1 {
                self.stored_chunks(pk, period, account)
                    .await?
                    .into_iter()
                    .filter(|c| *c >= items.len())
                    .collect()
            } else {
                Vec::new()
            };
            for chunk in stale {
                writes.push(
                    WriteRequest::builder()
                        .delete_request(
                            DeleteRequest::builder()
                                .key("pk", s(pk))
                                .key("sk", s(rollups::chunk_sk(period, account, chunk)))
                                .build()?,
                        )
                        .build(),
                );
            }
            for item in items {
                writes.push(
                    WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                        .build(),
                );
            }
        }
        kopter_runtime::dynamo::batch_write(&self.ddb, &self.table, writes, 4).await
    }

    /// The chunk numbers stored beyond the first of an account's packed
    /// roll-up of a period (`{period}#{account}#{nnnn}`), keys only.
    async fn stored_chunks(
        &self,
        pk: &str,
        period: &str,
        account: &AccountId,
    ) -> anyhow::Result<Vec<usize>> {
        let prefix = format!("{}#", rollups::packed_sk(period, account));
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .projection_expression("sk")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":p", s(&prefix));
        let items = dynamo::query_items(q, &format!("{pk} {prefix}")).await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                i.get("sk")?
                    .as_s()
                    .ok()?
                    .strip_prefix(&prefix)?
                    .parse()
                    .ok()
            })
            .collect())
    }

    /// One account's roll-up rows of partition `pk` whose sort key
    /// begins with `prefix` (the partition holds every account's).
    async fn rollups(
        &self,
        pk: &str,
        prefix: &str,
        account: &AccountId,
    ) -> anyhow::Result<Vec<RollupRow>> {
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":p", s(prefix));
        let mut stored = Vec::new();
        for item in dynamo::query_items(q, &format!("{pk} {prefix}")).await? {
            // Other accounts' items are not decoded (nor can a damaged one
            // fail this account's recompute).
            if item.get("account").and_then(|v| v.as_s().ok()) != Some(&account.to_string()) {
                continue;
            }
            stored.push(rollups::read_stored(item)?);
        }
        Ok(rollups::resolve(stored))
    }

    /// The roll-up rows of partition `pk` with sort keys from `lo` to `hi`
    /// (inclusive): packed items' rows, and rows of before packing where
    /// their account's period has no packed item ([`rollups::resolve`]).
    async fn query_rollups(&self, pk: &str, lo: &str, hi: &str) -> anyhow::Result<Vec<RollupRow>> {
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":lo", s(lo))
            .expression_attribute_values(":hi", s(hi));
        let items = dynamo::query_items(q, &format!("{pk} {lo}..{hi}")).await?;
        Ok(rollups::resolve(
            items
                .into_iter()
                .map(rollups::read_stored)
                .collect::<anyhow::Result<Vec<_>>>()?,
        ))
    }

    /// Resource rows of one account's hour, sorted by `sk`: the packed
    /// result ([`packed`]), or per-resource rows as hours computed before
    /// packing hold them.
    pub async fn resource_hours(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        hour: DateTime<Utc>,
    ) -> anyhow::Result<Vec<ResourceHourRow>> {
        let pk = resource_hour_pk(tenant, account, hour);
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(&pk));
        let items = dynamo::query_items(q, &pk).await?;
        account_hour_rows(&pk, items)
    }

    /// Replaces one account-hour's resource costs with `packed`: puts its
    /// chunks and deletes every other item of the partition (chunks of an
    /// earlier, longer result; per-resource rows written before packing)
    /// — unless the stored result is `packed` already (same digest, whole,
    /// nothing else in the partition): then nothing is written. New chunks
    /// go before deletes, so a reader sees the old result or the new one
    /// ([`packed::whole`]). True if the hour had been computed before (the
    /// partition held items).
    async fn replace_resource_hours(
        &self,
        pk: &str,
        tenant: &TenantId,
        account: &AccountId,
        hour_key: &str,
        packed: &packed::PackedHour,
        expires_at: i64,
    ) -> anyhow::Result<bool> {
        // Reads are billed on the whole item either way; the projection
        // only keeps the chunks' bytes off the wire.
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk")
            .projection_expression("pk, sk, parts, digest")
            .expression_attribute_values(":pk", s(pk));
        let stored = dynamo::query_items(q, pk).await?;
        let sk_of =
            |i: &HashMap<String, AttributeValue>| i.get("sk").and_then(|v| v.as_s().ok()).cloned();
        let new: Vec<String> = (0..packed.chunks.len()).map(packed::chunk_sk).collect();
        let unchanged = stored.len() == new.len()
            && stored.iter().all(|i| {
                sk_of(i).is_some_and(|sk| new.contains(&sk))
                    && i.get("digest").and_then(|v| v.as_s().ok()) == Some(&packed.digest)
                    && i.get("parts").and_then(|v| v.as_n().ok()) == Some(&new.len().to_string())
            });
        if unchanged {
            // Nothing stored and nothing to store: an hour without costs.
            return Ok(!stored.is_empty());
        }
        let mut writes = Vec::new();
        for item in packed::chunk_items(pk, tenant, account, hour_key, packed, expires_at) {
            writes.push(
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                    .build(),
            );
        }
        kopter_runtime::dynamo::batch_write(&self.ddb, &self.table, writes, 4)
            .await
            .with_context(|| format!("put the packed cost lines of {pk}"))?;
        let mut deletes = Vec::new();
        for sk in stored.iter().filter_map(sk_of) {
            if !new.contains(&sk) {
                deletes.push(
                    WriteRequest::builder()
                        .delete_request(
                            DeleteRequest::builder()
                                .key("pk", s(pk))
                                .key("sk", s(sk))
                                .build()?,
                        )
                        .build(),
                );
            }
        }
        kopter_runtime::dynamo::batch_write(&self.ddb, &self.table, deletes, 4)
            .await
            .with_context(|| format!("delete stale cost rows of {pk}"))?;
        Ok(!stored.is_empty())
    }

    /// A cost series: `granularity` `hour` or `day`, periods from `from`
    /// to `to` (keys, inclusive), optionally one account; summed over
    /// accounts per period and group.
    pub async fn series(
        &self,
        tenant: &TenantId,
        account: Option<&AccountId>,
        granularity: &str,
        dimension: &str,
        from: &str,
        to: &str,
    ) -> anyhow::Result<Vec<SeriesPoint>> {
        let rows = self
            .query_rollups(
                &format!("{tenant}#{granularity}#{dimension}"),
                &format!("{from}#"),
                &format!("{to}#\u{10ffff}"),
            )
            .await?;
        let mut out: BTreeMap<(String, String), SeriesPoint> = BTreeMap::new();
        for r in rows
            .into_iter()
            .filter(|r| account.is_none_or(|a| r.account == *a))
        {
            let p = out
                .entry((r.period.clone(), r.group.clone()))
                .or_insert_with(|| SeriesPoint {
                    period: r.period.clone(),
                    group: r.group.clone(),
                    ..SeriesPoint::default()
                });
            p.cost_usd += r.cost_usd;
            p.reserved_usd += r.reserved_usd;
            p.price_missing += r.price_missing;
            p.price_partial += r.price_partial;
            p.resources += r.resources;
        }
        Ok(out.into_values().collect())
    }

    /// One account's total for an hour (`None` when never computed).
    pub async fn account_hour_total(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        hour: DateTime<Utc>,
    ) -> anyhow::Result<Option<f64>> {
        let hk = hour_key(hour);
        // The packed item (`{hk}#{account}`) or, for an hour computed
        // before packing, the row (`{hk}#{account}#{account}`).
        let rows = self
            .query_rollups(
                &format!("{tenant}#hour#account"),
                &rollups::packed_sk(&hk, account),
                &format!("{hk}#{account}#{account}"),
            )
            .await?;
        Ok(rows
            .iter()
            .find(|r| r.account == *account && r.group == account.as_str())
            .map(|r| r.cost_usd))
    }

    /// Month-to-date cost of a tenant (every account), from day roll-ups.
    pub async fn month_to_date(
        &self,
        tenant: &TenantId,
        month_start: DateTime<Utc>,
    ) -> anyhow::Result<f64> {
        let m = month_key(month_start);
        let rows = self
            .query_rollups(
                &format!("{tenant}#day#account"),
                &format!("{m}-01#"),
                &format!("{m}-31#\u{10ffff}"),
            )
            .await?;
        // An empty f64 sum is -0.0, shown as "-0.00": nothing spent is 0.
        let spent: f64 = rows.iter().map(|r| r.cost_usd).sum();
        Ok(if spent == 0.0 { 0.0 } else { spent })
    }

    pub async fn put_budget(&self, budget: &Budget) -> anyhow::Result<()> {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(budget)?))
            .send()
            .await
            .context("put budget")?;
        Ok(())
    }

    pub async fn budget(&self, tenant: &TenantId) -> anyhow::Result<Option<Budget>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("{tenant}#budget")))
            .key("sk", s("config"))
            .consistent_read(true)
            .send()
            .await
            .context("get budget")?;
        out.item
            .map(|i| serde_dynamo::from_item(i).context("decode budget"))
            .transpose()
    }

    /// Whether a marker (budget crossing, spike) exists.
    pub async fn marker_exists(&self, pk: &str, sk: &str) -> anyhow::Result<bool> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("get marker {pk} {sk}"))?;
        Ok(out.item.is_some())
    }

    /// When the latest completed recompute of the account-hour for an
    /// inventory change started (Unix ms), if one is remembered.
    pub async fn recomputed_from(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        hour: DateTime<Utc>,
    ) -> anyhow::Result<Option<i64>> {
        let (pk, sk) = recomputed_key(tenant, account, hour);
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(&sk))
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("get {pk} {sk}"))?;
        Ok(out
            .item
            .and_then(|i| i.get("started_ms")?.as_n().ok()?.parse().ok()))
    }

    /// Remembers that a recompute of the account-hour that started at
    /// `started_ms` completed; never moves the mark back (an older
    /// recompute finishing late keeps the newer mark).
    pub async fn mark_recomputed(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        hour: DateTime<Utc>,
        started_ms: i64,
    ) -> anyhow::Result<()> {
        let (pk, sk) = recomputed_key(tenant, account, hour);
        let out = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(&sk))
            .update_expression("SET started_ms = :s, expires_at = :e")
            .condition_expression("attribute_not_exists(started_ms) OR started_ms < :s")
            .expression_attribute_values(":s", AttributeValue::N(started_ms.to_string()))
            .expression_attribute_values(
                ":e",
                AttributeValue::N(marker_expiry(hour, 2).to_string()),
            )
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("put {pk} {sk}"))),
        }
    }

    /// Records `at` as the time of a once-only event (`pk`, `sk`) unless a
    /// time is recorded already, and returns the recorded one. A budget
    /// crossing republished after a crash (or found again in a later
    /// hour) so carries the first time it was seen, and its feed key —
    /// which leads with the event time — stays the same.
    pub async fn first_time(
        &self,
        pk: &str,
        sk: &str,
        at: DateTime<Utc>,
        expires_at: i64,
    ) -> anyhow::Result<DateTime<Utc>> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(
                "SET #at = if_not_exists(#at, :at), expires_at = if_not_exists(expires_at, :exp)",
            )
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", s(at.to_rfc3339()))
            .expression_attribute_values(":exp", AttributeValue::N(expires_at.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .with_context(|| format!("record the first time of {pk} {sk}"))?;
        let stored = out
            .attributes
            .and_then(|mut a| a.remove("at"))
            .and_then(|v| v.as_s().ok().cloned())
            .with_context(|| format!("{pk} {sk} has no time after recording one"))?;
        DateTime::parse_from_rfc3339(&stored)
            .map(|t| t.with_timezone(&Utc))
            .with_context(|| format!("{pk} {sk}: stored time {stored:?}"))
    }

    pub async fn put_marker(&self, pk: &str, sk: &str, expires_at: i64) -> anyhow::Result<()> {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("at", s(Utc::now().to_rfc3339()))
            .item("expires_at", AttributeValue::N(expires_at.to_string()))
            .send()
            .await
            .with_context(|| format!("put marker {pk} {sk}"))?;
        Ok(())
    }
}

/// Rows with a table key.
pub trait HasKey {
    fn key(&self) -> (String, String);
}
impl HasKey for ResourceHourRow {
    fn key(&self) -> (String, String) {
        (self.pk.clone(), self.sk.clone())
    }
}
impl HasKey for RollupRow {
    fn key(&self) -> (String, String) {
        (self.pk.clone(), self.sk.clone())
    }
}

fn recomputed_key(tenant: &TenantId, account: &AccountId, hour: DateTime<Utc>) -> (String, String) {
    (
        format!("{tenant}#recomputed"),
        format!("{account}#{}", hour_key(hour)),
    )
}

/// A recompute of an account-hour met another recompute of the same
/// hour: the hour's roll-up entry holds another's live lease, or changed
/// between this one's read and its claim (then nothing was written but
/// the hour's packed costs), or this one's lease was taken over — or, for
/// an hour without an entry, another put its entry first — before its
/// final put (then what both wrote may be mixed, and the entry is left
/// unsure: the next recompute reads the hour's rows themselves and
/// deletes what its result lacks). Either way the caller computes the
/// hour again from fresh inputs, after a pause: its chain holds
/// [`kopter_runtime::aws::Busy`], which retry loops and the worker treat
/// as back-pressure (class `busy`).
#[derive(Debug, thiserror::Error)]
#[error("another recompute of {account} {hour} overlapped this one; compute the hour again")]
pub struct Contended {
    pub account: String,
    pub hour: String,
    #[source]
    pub busy: kopter_runtime::aws::Busy,
}

/// Times a recompute reads its day's entries again after writing its
/// day rows, rewriting them while the entries moved (another hour of the
/// account-day recomputed meanwhile); then it fails (the caller retries).
const DAY_ROW_CHECKS: usize = 4;

/// TTL epoch seconds for rows of `hour` kept `days` (retention by the
/// hour the rows are about: an hour older than `days` expires at once).
pub fn expiry(hour: DateTime<Utc>, days: u32) -> i64 {
    (hour + Duration::days(i64::from(days))).timestamp()
}

/// TTL epoch seconds for a once-only marker about `hour` (a spike or
/// budget alert sent, a recompute done): kept `days` after `hour` or after
/// now, whichever is later. A marker must outlive the messages that
/// check it; one about an old hour written with [`expiry`] would already
/// be expired, and DynamoDB's TTL sweep (and DynamoDB Local's) deletes
/// such items at any time, so a redelivered message would alert again.
pub fn marker_expiry(hour: DateTime<Utc>, days: u32) -> i64 {
    (hour.max(Utc::now()) + Duration::days(i64::from(days))).timestamp()
}

/// DynamoDB's BatchGetItem limit (keys per call).
pub const BATCH_GET: usize = 100;

/// Partition key of one account's resource rows of an hour.
pub fn resource_hour_pk(tenant: &TenantId, account: &AccountId, hour: DateTime<Utc>) -> String {
    resource_hour_pk_of(tenant, account, &hour_key(hour))
}

/// [`resource_hour_pk`] of an hour key (`2025-05-20T10`).
pub fn resource_hour_pk_of(tenant: &TenantId, account: &AccountId, hour_key: &str) -> String {
    format!("{tenant}#{account}#res#{hour_key}")
}

/// The resource rows of one account-hour partition's items (`pk`): the
/// packed result when there is one (it is the newer: hours are no longer
/// written per resource), else the per-resource rows; sorted by `sk`.
fn account_hour_rows(
    pk: &str,
    items: Vec<HashMap<String, AttributeValue>>,
) -> anyhow::Result<Vec<ResourceHourRow>> {
    let (chunks, rows): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| {
        i.get("sk")
            .and_then(|v| v.as_s().ok())
            .is_some_and(|sk| sk.starts_with(packed::CHUNK_PREFIX))
    });
    if !chunks.is_empty() {
        let chunks = chunks
            .iter()
            .map(packed::stored_chunk)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut out = packed::unpack(chunks)?;
        out.sort_by(|a, b| a.sk.cmp(&b.sk));
        return Ok(out);
    }
    let mut out = rows
        .into_iter()
        .map(|i| serde_dynamo::from_item(i).with_context(|| format!("decode a cost row of {pk}")))
        .collect::<anyhow::Result<Vec<ResourceHourRow>>>()?;
    out.sort_by(|a, b| a.sk.cmp(&b.sk));
    Ok(out)
}

/// Sort key of a resource's row in its hour partition.
pub fn resource_hour_sk(kind: &str, resource_id: &str) -> String {
    format!("{kind}#{resource_id}")
}

impl GraphStore {
    /// Resource-hour rows by key (`(pk, sk)` as [`resource_hour_pk`] and
    /// [`resource_hour_sk`] make them, at most [`BATCH_GET`]). An
    /// account-hour asked for several rows (an inventory page's hour) is
    /// read whole, one `Query`; for the others (a resource's hours) the
    /// first packed chunk and the per-resource row (hours computed before
    /// packing) are fetched in `BatchGetItem`s of 100 keys, then the other
    /// chunks of a result of several. Rows that do not exist are simply
    /// absent; the order of the result is unspecified.
    pub async fn resource_hours_by_key(
        &self,
        keys: &[(String, String)],
    ) -> anyhow::Result<Vec<ResourceHourRow>> {
        anyhow::ensure!(
            keys.len() <= BATCH_GET,
            "{} keys in one BatchGetItem (at most {BATCH_GET})",
            keys.len()
        );
        let mut wanted: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
        for (pk, sk) in keys {
            wanted.entry(pk).or_default().insert(sk);
        }
        let mut by_pk: BTreeMap<String, Vec<HashMap<String, AttributeValue>>> = BTreeMap::new();
        let mut get: Vec<(String, String)> = Vec::new();
        for (pk, sks) in &wanted {
            if sks.len() > 1 {
                let q = self
                    .ddb
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(*pk));
                by_pk.insert(pk.to_string(), dynamo::query_items(q, pk).await?);
            } else {
                get.extend(sks.iter().map(|sk| (pk.to_string(), sk.to_string())));
                get.push((pk.to_string(), packed::chunk_sk(0)));
            }
        }
        let mut items = self.batch_get(&get).await?;
        // A result of several chunks: the rest of them.
        let more: Vec<(String, String)> = items
            .iter()
            .filter(|i| i.get("sk").and_then(|v| v.as_s().ok()) == Some(&packed::chunk_sk(0)))
            .filter_map(|i| {
                let pk = i.get("pk")?.as_s().ok()?;
                let parts: usize = i.get("parts")?.as_n().ok()?.parse().ok()?;
                Some((1..parts).map(|n| (pk.clone(), packed::chunk_sk(n))))
            })
            .flatten()
            .collect();
        items.extend(self.batch_get(&more).await?);
        for i in items {
            let pk = i
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .context("a price-graph item without pk")?
                .clone();
            by_pk.entry(pk).or_default().push(i);
        }
        let mut out = Vec::with_capacity(keys.len());
        for (pk, items) in by_pk {
            let Some(sks) = wanted.get(pk.as_str()) else {
                continue;
            };
            out.extend(
                account_hour_rows(&pk, items)?
                    .into_iter()
                    .filter(|r| sks.contains(r.sk.as_str())),
            );
        }
        Ok(out)
    }

    /// Items by key, [`BATCH_GET`] keys per `BatchGetItem`, plus a retry
    /// of any keys DynamoDB left unprocessed (throttling).
    async fn batch_get(
        &self,
        keys: &[(String, String)],
    ) -> anyhow::Result<Vec<HashMap<String, AttributeValue>>> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(BATCH_GET) {
            let mut pending: Vec<HashMap<String, AttributeValue>> = batch
                .iter()
                .map(|(pk, sk)| {
                    HashMap::from([
                        ("pk".to_owned(), s(pk.clone())),
                        ("sk".to_owned(), s(sk.clone())),
                    ])
                })
                .collect();
            // Unprocessed keys come back under throttling; a few short
            // waits before the caller sees a (retryable) error.
            for attempt in 0..4u32 {
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .build()
                    .context("build BatchGetItem keys")?;
                let res = self
                    .ddb
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .context("batch-get resource cost rows")?;
                out.extend(
                    res.responses
                        .and_then(|mut r| r.remove(&self.table))
                        .unwrap_or_default(),
                );
                pending = res
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
            }
            anyhow::ensure!(
                pending.is_empty(),
                "DynamoDB left {} resource cost keys unprocessed (throttling)",
                pending.len()
            );
        }
        Ok(out)
    }

    /// One page of a cost series of `{tenant}#{granularity}#{dimension}`:
    /// points (one per period and group, each the rows of the accounts
    /// that have the group then), periods from `from` to `to` (keys,
    /// inclusive), in period then group order, after `after` (the period
    /// and group of the last point of the page before), at most `limit`
    /// (1–1000) points; and where the next page starts (the last point's
    /// period and group), `None` after the last.
    ///
    /// A period is read whole: one packed item per account (plus rows of
    /// before packing, [`rollups::resolve`]), in `Query`s of at most
    /// `2 × limit + 1` items; a page that ends inside a period reads it
    /// again from its start (a period of more groups than `limit` is read
    /// once per page). `after` before `from` starts at `from`; after `to`
    /// is the end.
    pub async fn series_page(
        &self,
        tenant: &TenantId,
        granularity: &str,
        dimension: &str,
        (from, to): (&str, &str),
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> anyhow::Result<(Vec<Vec<RollupRow>>, Option<(String, String)>)> {
        let pk = format!("{tenant}#{granularity}#{dimension}");
        let limit = limit.clamp(1, 1000) as usize;
        if after.is_some_and(|(period, _)| period > to) {
            return Ok((Vec::new(), None));
        }
        let after = after.filter(|(period, _)| *period >= from);
        let lo = format!("{}#", after.map_or(from, |(period, _)| period));
        let hi = format!("{to}#\u{10ffff}");
        let mut points: Vec<Vec<RollupRow>> = Vec::new();
        let flush = |items: Vec<rollups::StoredRollup>, points: &mut Vec<Vec<RollupRow>>| {
            let mut groups: BTreeMap<String, Vec<RollupRow>> = BTreeMap::new();
            for r in rollups::resolve(items) {
                let skip = after
                    .is_some_and(|(period, group)| r.period == period && r.group.as_str() <= group);
                if !skip {
                    groups.entry(r.group.clone()).or_default().push(r);
                }
            }
            points.extend(groups.into_values());
        };
        let mut period: Vec<rollups::StoredRollup> = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        let mut more = false;
        'read: loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":lo", s(&lo))
                .expression_attribute_values(":hi", s(&hi))
                .set_exclusive_start_key(start.take())
                .limit((2 * limit + 1).min(1000) as i32)
                .send()
                .await
                .with_context(|| format!("query a page of {pk}"))?;
            for item in out.items.unwrap_or_default() {
                let item = rollups::read_stored(item)?;
                if period.first().is_some_and(|p| p.period != item.period) {
                    flush(std::mem::take(&mut period), &mut points);
                    if points.len() >= limit {
                        // A later period is in hand: there is more.
                        more = true;
                        break 'read;
                    }
                }
                period.push(item);
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                flush(std::mem::take(&mut period), &mut points);
                break;
            }
        }
        if points.len() > limit {
            points.truncate(limit);
            more = true;
        }
        let next = more
            .then(|| {
                points
                    .last()
                    .map(|p| (p[0].period.clone(), p[0].group.clone()))
            })
            .flatten();
        Ok((points, next))
    }

    /// One page of an account's resource rows of an hour, sorted by `sk`,
    /// after `start` (a key `{pk, sk}` of this partition: the last row of
    /// the previous page; DynamoDB's `LastEvaluatedKey` of per-resource
    /// rows had the same shape, so cursors of either kind resume), at most
    /// `limit` rows. The hour is read whole (a packed hour is one or a few
    /// items) and cut here.
    pub async fn resource_hours_page(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        hour: DateTime<Utc>,
        start: Option<&crate::page::PageKey>,
        limit: u32,
    ) -> anyhow::Result<crate::page::Page<ResourceHourRow>> {
        let pk = resource_hour_pk(tenant, account, hour);
        let after = match start {
            Some(start) => {
                let key = crate::page::start_key(start, &["pk", "sk"], ("pk", &pk))?;
                key.get("sk").and_then(|v| v.as_s().ok()).cloned()
            }
            None => None,
        };
        let limit = limit.clamp(1, 1000) as usize;
        let rows = self.resource_hours(tenant, account, hour).await?;
        let mut rest = rows
            .into_iter()
            .filter(|r| after.as_ref().is_none_or(|a| r.sk > *a));
        let items: Vec<ResourceHourRow> = rest.by_ref().take(limit).collect();
        let next = match (rest.next(), items.last()) {
            (Some(_), Some(last)) => Some(crate::page::PageKey(
                serde_json::json!({ "pk": last.pk, "sk": last.sk }),
            )),
            _ => None,
        };
        Ok(crate::page::Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_about_an_old_hour_outlives_now_and_rows_keep_their_hours_retention() {
        let old: DateTime<Utc> = "2025-06-02T10:00:00Z".parse().unwrap();
        let now = Utc::now();
        // Rows: retention counted from their hour (already past here).
        assert_eq!(expiry(old, 30), old.timestamp() + 30 * 86_400);
        // Markers: counted from now for an old hour…
        let m = marker_expiry(old, 2);
        assert!(m >= now.timestamp() + 2 * 86_400, "{m}");
        assert!(m <= Utc::now().timestamp() + 2 * 86_400);
        // …and from the hour for a future one.
        let later = now + Duration::days(10);
        assert_eq!(
            marker_expiry(later, 2),
            (later + Duration::days(2)).timestamp()
        );
    }
}
