//! DynamoDB side of the describer: inventory reads and writes, the state
//! history, account health.
//!
//! A changed resource is one `TransactWriteItems`: its history rows (plain
//! puts of deterministic keys) and its inventory row (conditional on the
//! version read), so a crash leaves both or neither, and two describes of
//! one region racing each other cannot both win: the loser fails and is
//! retried against the new state.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use kopter_runtime::accounts::AccountStore;
use kopter_runtime::dynamo;
use kopter_schema::items::keys;
use kopter_schema::{AccountId, Names, Table, TenantId};

use super::rows::{EventRow, InventoryRow, ResourceKind, fixed_time, inventory_prefix};

/// One write to the inventory table.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Nothing changed: only `last_seen` moves.
    Touch { sk: String },
    /// The row changes; `events` are appended to the history in the same
    /// transaction. `expected_version` is `None` for a new row.
    Put {
        row: Box<InventoryRow>,
        expected_version: Option<u64>,
        events: Vec<EventRow>,
    },
}

/// A write lost an optimistic-concurrency race.
#[derive(Debug, thiserror::Error)]
#[error("inventory row {sk} changed while it was being described; retry")]
pub struct Conflict {
    pub sk: String,
}

#[derive(Clone, Debug)]
pub struct InventoryStore {
    ddb: aws_sdk_dynamodb::Client,
    inventory: String,
    events: String,
    accounts: String,
    /// Where the region digests live ([`RegionDigest`]).
    dedup: String,
}

/// What the describer last reconciled a region's inventory with (issue 23):
/// the digest of a whole-region describe that found the inventory already
/// holding what it observed, so the next describe that observes the same
/// can skip reading the region's inventory (a `Query` of every row, each
/// sweep).
///
/// One item of the dedup table per account-region,
/// `{tenant}#describe-digest#{account}#{region}`. Every describe that
/// writes a changed row (whole-region or targeted) brackets its writes with
/// [`InventoryStore::begin_region_write`] (bumps `generation`, adds its
/// token to `writers`, extends the `busy_until` lease) and
/// [`InventoryStore::end_region_write`] (bumps it again, removes its
/// token). A digest counts only while its `digest_generation` equals the
/// item's `generation` and no writer's lease is live; it is stored only by
/// a describe that wrote no changed row, and only if the item is still
/// the one read before its inventory read (same `epoch`: an item deleted
/// by TTL and made again is another; same `generation`) and no writer is
/// at work (no token, or every lease run out). So a digest never stands
/// for an inventory that a write it did not see changed, even if that
/// writer died mid-way (its token blocks stores until its lease, long
/// after its writes, and its first bump outlives it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegionDigest {
    /// Hex SHA-256 of the describe's result (the describer's
    /// `observed_digest`); `None` when only a generation is stored.
    pub digest: Option<String>,
    /// The digest stands until then: the oldest `last_seen` of the
    /// region's observed rows plus the describer's touch interval, so the
    /// rows are still touched on time.
    pub valid_until: Option<DateTime<Utc>>,
    pub digest_generation: Option<u64>,
    /// 0 when the item does not exist.
    pub generation: u64,
    /// Random, set when the item is made: tells an item made again after
    /// a TTL deletion (its generation restarts) from the one read.
    pub epoch: Option<String>,
    /// Writers at work (their tokens; a dead writer's stays until its
    /// lease has run out and a digest replaces the item).
    pub writers: usize,
    /// The latest writer's lease (Unix ms).
    pub busy_until_ms: Option<i64>,
}

impl RegionDigest {
    /// Whether a writer may be at work at `at` (a token, and a lease not
    /// run out).
    pub fn busy(&self, at: DateTime<Utc>) -> bool {
        self.writers > 0
            && self
                .busy_until_ms
                .is_some_and(|b| b >= at.timestamp_millis())
    }

    /// Whether `digest` observed at `at` matches a stored, current digest.
    pub fn holds(&self, digest: &str, at: DateTime<Utc>) -> bool {
        self.digest.as_deref() == Some(digest)
            && self.digest_generation == Some(self.generation)
            && self.valid_until.is_some_and(|v| at < v)
            && !self.busy(at)
    }
}

/// Days a region digest item outlives its `valid_until` (TTL).
const DIGEST_KEEP_DAYS: i64 = 7;

/// How long a writer's lease blocks digests: far longer than a region's
/// writes take, so a writer that died mid-way has long stopped writing
/// when it runs out. Against the storer's clock: task clocks (Amazon Time
/// Sync) agree far better than that.
pub const REGION_WRITE_LEASE: chrono::Duration = chrono::Duration::minutes(15);

fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn digest_key(tenant: &TenantId, account: &AccountId, region: &str) -> String {
    keys::tenant_dedup(tenant, "describe-digest", &format!("{account}#{region}"))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

impl InventoryStore {
    pub fn new(ddb: aws_sdk_dynamodb::Client, names: &Names) -> Self {
        Self {
            ddb,
            inventory: names.table(Table::Inventory),
            events: names.table(Table::Ec2Events),
            accounts: names.table(Table::Accounts),
            dedup: names.table(Table::Dedup),
        }
    }

    /// The region's digest item (strongly consistent `GetItem`);
    /// generation 0 and no digest when there is none.
    pub async fn region_digest(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        region: &str,
    ) -> anyhow::Result<RegionDigest> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.dedup)
            .key("pk", s(digest_key(tenant, account, region)))
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("read the describe digest of {tenant}/{account} {region}"))?;
        let item = out.item.unwrap_or_default();
        let num = |k: &str| -> Option<u64> {
            match item.get(k) {
                Some(AttributeValue::N(n)) => n.parse().ok(),
                _ => None,
            }
        };
        Ok(RegionDigest {
            digest: match item.get("digest") {
                Some(AttributeValue::S(d)) => Some(d.clone()),
                _ => None,
            },
            valid_until: match item.get("valid_until") {
                Some(AttributeValue::S(t)) => DateTime::parse_from_rfc3339(t)
                    .ok()
                    .map(|t| t.with_timezone(&Utc)),
                _ => None,
            },
            digest_generation: num("digest_generation"),
            generation: num("generation").unwrap_or(0),
            epoch: match item.get("epoch") {
                Some(AttributeValue::S(e)) => Some(e.clone()),
                _ => None,
            },
            writers: match item.get("writers") {
                Some(AttributeValue::Ss(w)) => w.len(),
                _ => 0,
            },
            busy_until_ms: match item.get("busy_until") {
                Some(AttributeValue::N(n)) => n.parse().ok(),
                _ => None,
            },
        })
    }

    /// Stores a whole-region describe's digest (one that wrote no changed
    /// row), unless the region's generation moved since `read` was read or
    /// a writer's lease is live: `Ok(false)` then, and the next describe
    /// reads the inventory. `(digest, valid_until)`: what to store;
    /// `now`: the lease's clock.
    pub async fn put_region_digest(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        region: &str,
        (digest, valid_until): (&str, DateTime<Utc>),
        read: &RegionDigest,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let g = read.generation.to_string();
        let epoch = read.epoch.clone().unwrap_or_else(random_token);
        let mut req = self
            .ddb
            .put_item()
            .table_name(&self.dedup)
            .item("pk", s(digest_key(tenant, account, region)))
            .item("digest", s(digest))
            .item("valid_until", s(fixed_time(valid_until)))
            .item("digest_generation", AttributeValue::N(g.clone()))
            .item("generation", AttributeValue::N(g.clone()))
            .item("epoch", s(epoch.clone()))
            .item(
                "expires_at",
                AttributeValue::N(
                    (valid_until + chrono::Duration::days(DIGEST_KEEP_DAYS))
                        .timestamp()
                        .to_string(),
                ),
            );
        // The item read, still: same epoch (or none then and none now) and
        // generation; and no writer at work.
        let same = match &read.epoch {
            Some(_) => "epoch = :e AND generation = :g",
            None => {
                "attribute_not_exists(epoch) AND (attribute_not_exists(generation) OR generation = :g)"
            }
        };
        if read.epoch.is_some() {
            req = req.expression_attribute_values(":e", s(epoch));
        }
        req = req
            .condition_expression(format!(
                "{same} AND (attribute_not_exists(writers) OR busy_until < :now)"
            ))
            .expression_attribute_values(":g", AttributeValue::N(g))
            .expression_attribute_values(
                ":now",
                AttributeValue::N(now.timestamp_millis().to_string()),
            );
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "store the describe digest of {tenant}/{account} {region}"
            ))),
        }
    }

    /// Before a describe writes changed rows of a region: bumps its
    /// generation, adds this writer's token to `writers` and extends the
    /// lease to [`REGION_WRITE_LEASE`] from `now` (never shortens a later
    /// one), so no digest read or stored before stands and none is stored
    /// while the writes may still land. Returns the token for
    /// [`InventoryStore::end_region_write`]. Idempotent under retries (a
    /// set and a bump more).
    pub async fn begin_region_write(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        region: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let me = random_token();
        let until = (now + REGION_WRITE_LEASE).timestamp_millis();
        let ctx = || format!("begin writing the inventory of {tenant}/{account} {region}");
        let extended = self
            .bump_region(
                tenant,
                account,
                region,
                "ADD generation :one, writers :me SET epoch = if_not_exists(epoch, :ne), expires_at = :exp, busy_until = :until",
                &me,
                Some(until),
            )
            .await;
        match extended {
            Ok(()) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // Another writer's lease runs longer: keep it.
                self.bump_region(
                    tenant,
                    account,
                    region,
                    "ADD generation :one, writers :me SET epoch = if_not_exists(epoch, :ne), expires_at = :exp",
                    &me,
                    None,
                )
                .await
                .with_context(ctx)?;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(ctx())),
        }
        Ok(me)
    }

    /// After those writes (whether they all succeeded or not): bumps the
    /// generation again and removes this writer's token (`me`, from
    /// [`InventoryStore::begin_region_write`]), so a describe that read the
    /// region between the two bumps does not store its digest. Other
    /// writers' tokens and the lease stay.
    pub async fn end_region_write(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        region: &str,
        me: &str,
    ) -> anyhow::Result<()> {
        self.bump_region(
            tenant,
            account,
            region,
            "ADD generation :one DELETE writers :me SET epoch = if_not_exists(epoch, :ne), expires_at = :exp",
            me,
            None,
        )
        .await
        .with_context(|| format!("end writing the inventory of {tenant}/{account} {region}"))
    }

    /// One `UpdateItem` of the region's digest item; with `until_ms`, only
    /// if the lease stored is not later.
    async fn bump_region(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        region: &str,
        update: &str,
        me: &str,
        until_ms: Option<i64>,
    ) -> Result<
        (),
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        >,
    > {
        let expires = Utc::now() + chrono::Duration::days(DIGEST_KEEP_DAYS);
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.dedup)
            .key("pk", s(digest_key(tenant, account, region)))
            .update_expression(update)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":me", AttributeValue::Ss(vec![me.to_owned()]))
            .expression_attribute_values(":ne", s(random_token()))
            .expression_attribute_values(
                ":exp",
                AttributeValue::N(expires.timestamp().to_string()),
            );
        if let Some(u) = until_ms {
            req = req
                .condition_expression("attribute_not_exists(busy_until) OR busy_until < :until")
                .expression_attribute_values(":until", AttributeValue::N(u.to_string()));
        }
        req.send().await?;
        Ok(())
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.ddb
    }

    /// Inventory rows of an account, optionally of one region (and kind),
    /// keyed by sort key. Strongly consistent: the diff must see the last
    /// write.
    pub async fn inventory(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        region: Option<&str>,
        kind: Option<ResourceKind>,
    ) -> anyhow::Result<HashMap<String, InventoryRow>> {
        let mut q = self
            .ddb
            .query()
            .table_name(&self.inventory)
            .consistent_read(true)
            .expression_attribute_values(":pk", s(keys::tenant_account(tenant, account)));
        q = match region {
            Some(r) => q
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(inventory_prefix(r, kind))),
            None => q.key_condition_expression("pk = :pk"),
        };
        let rows: Vec<InventoryRow> =
            dynamo::query_all(q, &format!("the inventory of {tenant}/{account}")).await?;
        Ok(rows.into_iter().map(|r| (r.sk.clone(), r)).collect())
    }

    /// Applies one write of a diff.
    pub async fn apply(
        &self,
        write: &Write,
        observed_at: DateTime<Utc>,
        pk: &str,
    ) -> anyhow::Result<()> {
        match write {
            Write::Touch { sk } => {
                let res = self
                    .ddb
                    .update_item()
                    .table_name(&self.inventory)
                    .key("pk", s(pk))
                    .key("sk", s(sk.clone()))
                    .update_expression("SET last_seen = :o")
                    .condition_expression("attribute_exists(pk) AND last_seen < :o")
                    .expression_attribute_values(":o", s(fixed_time(observed_at)))
                    .send()
                    .await;
                match res {
                    Ok(_) => Ok(()),
                    // A later describe already moved it on: fine.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(anyhow::Error::new(e).context(format!("touch {sk}"))),
                }
            }
            Write::Put {
                row,
                expected_version,
                events,
            } => {
                let mut items = Vec::with_capacity(events.len() + 1);
                for e in events {
                    let item = serde_dynamo::to_item(e).context("encode a history row")?;
                    items.push(
                        TransactWriteItem::builder()
                            .put(
                                Put::builder()
                                    .table_name(&self.events)
                                    .set_item(Some(item))
                                    .build()
                                    .expect("table and item are set"),
                            )
                            .build(),
                    );
                }
                let item =
                    serde_dynamo::to_item(row.as_ref()).context("encode an inventory row")?;
                let mut put = Put::builder()
                    .table_name(&self.inventory)
                    .set_item(Some(item));
                put = match expected_version {
                    None => put.condition_expression("attribute_not_exists(pk)"),
                    Some(v) => put
                        .condition_expression("version = :v")
                        .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
                };
                items.push(
                    TransactWriteItem::builder()
                        .put(put.build().expect("table and item are set"))
                        .build(),
                );
                let res = self
                    .ddb
                    .transact_write_items()
                    .set_transact_items(Some(items))
                    .send()
                    .await;
                match res {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_transaction_canceled_exception()) =>
                    {
                        Err(
                            anyhow::Error::new(Conflict { sk: row.sk.clone() }).context(format!(
                                "{}",
                                aws_smithy_types::error::display::DisplayErrorContext(&e)
                            )),
                        )
                    }
                    Err(e) => Err(anyhow::Error::new(e).context(format!("write {}", row.sk))),
                }
            }
        }
    }

    /// History rows by key (to republish ones a crash left unpublished).
    pub async fn event(&self, pk: &str, sk: &str) -> anyhow::Result<Option<EventRow>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.events)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("read history row {sk}"))?;
        out.item
            .map(|i| serde_dynamo::from_item(i).context("decode a history row"))
            .transpose()
    }

    /// Marks an inventory row's history as published, unless it changed
    /// since (then the newer writer owns the list).
    pub async fn mark_published(&self, row: &InventoryRow) -> anyhow::Result<()> {
        let res = self
            .ddb
            .update_item()
            .table_name(&self.inventory)
            .key("pk", s(row.pk.clone()))
            .key("sk", s(row.sk.clone()))
            .update_expression("REMOVE unpublished")
            .condition_expression("version = :v")
            .expression_attribute_values(":v", AttributeValue::N(row.version.to_string()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("mark {} published", row.sk))),
        }
    }

    /// Every history row of an account (oldest first); for tests and tools.
    pub async fn history(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> anyhow::Result<Vec<EventRow>> {
        let q = self
            .ddb
            .query()
            .table_name(&self.events)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::tenant_account(tenant, account)));
        dynamo::query_all(q, &format!("the history of {tenant}/{account}")).await
    }

    /// Records the account's health. Returns whether the stored health
    /// changed (healthy flag or reason), so callers publish only
    /// transitions.
    pub async fn set_health(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        healthy: bool,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.accounts)
            .key("pk", s(keys::account_pk(tenant)))
            .key("sk", s(keys::account_sk(account)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":h", AttributeValue::Bool(healthy))
            .expression_attribute_values(":t", s(at.to_rfc3339()));
        req = match reason {
            Some(r) => req
                .update_expression("SET healthy = :h, health_reason = :r, health_checked_at = :t")
                .expression_attribute_values(":r", s(r)),
            None => req
                .update_expression("SET healthy = :h, health_checked_at = :t REMOVE health_reason"),
        };
        req.send()
            .await
            .with_context(|| format!("record the health of account {account}"))?;
        Ok(())
    }
}

/// Every account of a tenant, or one: for `kopterctl inventory`.
pub async fn accounts_of(
    accounts: &AccountStore,
    tenant: &TenantId,
    account: Option<&AccountId>,
) -> anyhow::Result<Vec<AccountId>> {
    Ok(match account {
        Some(a) => vec![a.clone()],
        None => accounts
            .list(Some(tenant))
            .await?
            .into_iter()
            .map(|a| a.account_id)
            .collect(),
    })
}

/// Inventory rows of a tenant (optionally one account / region), sorted by
/// account then sort key.
pub async fn inventory_rows(
    store: &InventoryStore,
    accounts: &AccountStore,
    tenant: &TenantId,
    account: Option<&AccountId>,
    region: Option<&str>,
) -> anyhow::Result<Vec<InventoryRow>> {
    let ids = accounts_of(accounts, tenant, account).await?;
    let jobs: Vec<_> = ids
        .iter()
        .map(|a| store.inventory(tenant, a, region, None))
        .collect();
    let per_account: Vec<HashMap<String, InventoryRow>> = futures::stream::iter(jobs)
        .buffered(8)
        .try_collect()
        .await?;
    let mut rows: Vec<InventoryRow> = per_account
        .into_iter()
        .flat_map(|m| m.into_values())
        .collect();
    rows.sort_by(|a, b| (&a.account, &a.sk).cmp(&(&b.account, &b.sk)));
    Ok(rows)
}

/// Narrows a page of one account's inventory (`GET /v1/inventory`).
/// `region` (with `kind`) becomes a sort-key prefix; the rest a filter
/// expression, so a page may hold fewer rows than its limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct InventoryPageFilter<'a> {
    pub region: Option<&'a str>,
    pub kind: Option<ResourceKind>,
    pub state: Option<&'a str>,
    /// A tag key, and the value it must have (`None`: any value).
    pub tag: Option<(&'a str, Option<&'a str>)>,
}

impl InventoryStore {
    /// One page (one `Query`, eventually consistent) of an account's
    /// inventory rows in sort-key order (region, kind, id), after `start`
    /// (a previous page's `next`, checked to be of this partition).
    pub async fn inventory_page(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        filter: InventoryPageFilter<'_>,
        start: Option<&crate::page::PageKey>,
        limit: u32,
    ) -> anyhow::Result<crate::page::Page<InventoryRow>> {
        let pk = keys::tenant_account(tenant, account);
        let mut q = self
            .ddb
            .query()
            .table_name(&self.inventory)
            .limit(limit.clamp(1, 1000) as i32)
            .expression_attribute_values(":pk", s(pk.clone()));
        q = match filter.region {
            Some(r) => q
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(inventory_prefix(r, filter.kind))),
            None => q.key_condition_expression("pk = :pk"),
        };
        let mut conditions = Vec::new();
        if let (None, Some(kind)) = (filter.region, filter.kind) {
            conditions.push("#kind = :kind");
            q = q
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":kind", s(kind.as_str()));
        }
        if let Some(state) = filter.state {
            // `state` is a DynamoDB reserved word.
            conditions.push("#state = :state");
            q = q
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":state", s(state));
        }
        if let Some((key, value)) = filter.tag {
            q = q
                .expression_attribute_names("#tags", "tags")
                .expression_attribute_names("#tk", key);
            match value {
                Some(v) => {
                    conditions.push("#tags.#tk = :tv");
                    q = q.expression_attribute_values(":tv", s(v));
                }
                None => conditions.push("attribute_exists(#tags.#tk)"),
            }
        }
        if !conditions.is_empty() {
            q = q.filter_expression(conditions.join(" AND "));
        }
        if let Some(start) = start {
            q = q.set_exclusive_start_key(Some(crate::page::start_key(
                start,
                &["pk", "sk"],
                ("pk", &pk),
            )?));
        }
        let out = q
            .send()
            .await
            .with_context(|| format!("query a page of the inventory of {tenant}/{account}"))?;
        crate::page::page_of(out.items, out.last_evaluated_key, "an inventory row")
    }

    /// One inventory row by its key (strongly consistent).
    pub async fn inventory_row(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        region: &str,
        kind: ResourceKind,
        resource_id: &str,
    ) -> anyhow::Result<Option<InventoryRow>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.inventory)
            .key("pk", s(keys::tenant_account(tenant, account)))
            .key(
                "sk",
                s(super::rows::inventory_sk(region, kind, resource_id)),
            )
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("get the inventory row of {resource_id}"))?;
        out.item
            .map(|i| serde_dynamo::from_item(i).context("decode an inventory row"))
            .transpose()
    }

    /// The newest history row of a resource of `tenant` (index
    /// `by-resource`): which account, region and kind it belongs to.
    /// `None` for an id the tenant has never had.
    pub async fn latest_event(
        &self,
        tenant: &TenantId,
        resource_id: &str,
    ) -> anyhow::Result<Option<EventRow>> {
        let out = self
            .ddb
            .query()
            .table_name(&self.events)
            .index_name(BY_RESOURCE)
            .key_condition_expression("resource_key = :rk")
            .expression_attribute_values(":rk", s(keys::tenant_resource(tenant, resource_id)))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .with_context(|| format!("find resource {resource_id}"))?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|i| serde_dynamo::from_item(i).context("decode a history row"))
            .transpose()
    }

    /// One page (one `Query` of index `by-resource`) of a resource's
    /// history, oldest first, after `start`.
    pub async fn resource_history_page(
        &self,
        tenant: &TenantId,
        resource_id: &str,
        start: Option<&crate::page::PageKey>,
        limit: u32,
    ) -> anyhow::Result<crate::page::Page<EventRow>> {
        let rk = keys::tenant_resource(tenant, resource_id);
        let mut q = self
            .ddb
            .query()
            .table_name(&self.events)
            .index_name(BY_RESOURCE)
            .key_condition_expression("resource_key = :rk")
            .expression_attribute_values(":rk", s(rk.clone()))
            .limit(limit.clamp(1, 1000) as i32);
        if let Some(start) = start {
            // An index's LastEvaluatedKey holds the index key and the
            // table key.
            q = q.set_exclusive_start_key(Some(crate::page::start_key(
                start,
                &["resource_key", "pk", "sk"],
                ("resource_key", &rk),
            )?));
        }
        let out = q
            .send()
            .await
            .with_context(|| format!("query the history of {resource_id}"))?;
        crate::page::page_of(out.items, out.last_evaluated_key, "a history row")
    }
}

/// The `ec2-events` index keyed by `{tenant}#{resource id}`.
pub const BY_RESOURCE: &str = "by-resource";

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn a_digest_holds_only_current_unexpired_and_unleased() {
        let at: DateTime<Utc> = "2024-03-01T12:00:00Z".parse().unwrap();
        let ok = RegionDigest {
            digest: Some("abc".into()),
            valid_until: Some(at + chrono::Duration::hours(1)),
            digest_generation: Some(4),
            generation: 4,
            epoch: Some("e".into()),
            writers: 0,
            busy_until_ms: None,
        };
        assert!(ok.holds("abc", at));
        assert!(!ok.holds("abd", at), "another observation");
        assert!(!ok.holds("abc", at + chrono::Duration::hours(1)), "expired");
        let moved = RegionDigest {
            generation: 5,
            ..ok.clone()
        };
        assert!(!moved.holds("abc", at), "a write since");
        let leased = RegionDigest {
            writers: 1,
            busy_until_ms: Some(at.timestamp_millis() + 1),
            ..ok.clone()
        };
        assert!(!leased.holds("abc", at), "a writer's live lease");
        let lapsed = RegionDigest {
            busy_until_ms: Some(at.timestamp_millis() - 1),
            ..leased.clone()
        };
        assert!(lapsed.holds("abc", at), "a dead writer's lease ran out");
        let ended = RegionDigest {
            writers: 0,
            ..leased.clone()
        };
        assert!(ended.holds("abc", at), "no writer at work");
        assert!(!RegionDigest::default().holds("abc", at), "none stored");
    }
}
