//! Reading what the engine needs from DynamoDB: resource timelines from
//! the describer's tables and prices from the pricing service's.
//!
//! Timelines for `[from, to)` of one account take a bounded number of
//! reads whatever the account's age: its inventory (current state of
//! every resource, with `last_change_at`), its history rows since `from`,
//! and — only for resources that changed since `from`, and were not first
//! seen since — the one history row in force at `from` (index
//! `by-resource`). A resource unchanged since before `from` was in its
//! inventory state the whole window. [`AccountHistory`] holds the first
//! two reads, so an aggregate message's costs and waste rules share them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use kopter_runtime::dynamo;
use kopter_schema::items::keys;
use kopter_schema::{AccountId, Names, Table, TenantId};
use kopter_store::inventory::{Change, EventRow, InventoryRow, Resource, fixed_time};
use kopter_store::platform;
use kopter_store::prices::{EbsPriceItem, InstancePrices, PriceStore, VersionRecord};

use crate::engine::{MemoryBook, Timeline, hour_of};

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

#[derive(Clone, Debug)]
pub struct HistoryReader {
    ddb: Client,
    inventory: kopter_store::inventory::InventoryStore,
    events_table: String,
}

impl HistoryReader {
    pub fn new(ddb: Client, names: &Names) -> Self {
        Self {
            inventory: kopter_store::inventory::InventoryStore::new(ddb.clone(), names),
            events_table: names.table(Table::Ec2Events),
            ddb,
        }
    }

    /// The account's inventory and its history rows since `since`: two
    /// strongly consistent reads, from which [`HistoryReader::timelines_of`]
    /// builds the timelines of any window starting at or after `since`.
    /// An aggregate message reads it once per account for its costs and
    /// its waste rules (issue 23: the inventory was read twice an
    /// account-hour).
    pub async fn history(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        since: DateTime<Utc>,
    ) -> anyhow::Result<AccountHistory> {
        let inventory = self
            .inventory
            .inventory(tenant, account, None, None)
            .await?;
        let events = self.events_since(tenant, account, since).await?;
        Ok(AccountHistory {
            tenant: tenant.clone(),
            account: account.clone(),
            since,
            inventory,
            events,
        })
    }

    /// Every resource of the account that may have existed in
    /// `[from, to)`, with its states from before `from` to `to`, from a
    /// read [`AccountHistory`]; only the states in force at `from` of resources
    /// that changed since are read (one small `Query` each), and not even
    /// those for a resource whose first row since `from` is a first sight
    /// (nothing priced was before it).
    ///
    /// Errors if `from` is before the history's `since` (its rows would
    /// be missing), or on a failed read.
    pub async fn timelines_of(
        &self,
        history: &AccountHistory,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<Vec<Timeline>> {
        anyhow::ensure!(
            from >= history.since,
            "timelines of {}/{} from {from}: the history read starts at {}",
            history.tenant,
            history.account,
            history.since
        );
        let (tenant, account) = (&history.tenant, &history.account);
        let inventory = &history.inventory;
        let from_sk = fixed_time(from);
        let changed = history
            .events
            .iter()
            .filter(|e| e.sk.as_str() >= from_sk.as_str())
            .cloned();
        let mut by_resource: HashMap<String, Vec<EventRow>> = HashMap::new();
        for e in changed {
            by_resource
                .entry(e.resource_id.clone())
                .or_default()
                .push(e);
        }
        let before = from - Duration::seconds(1);
        let mut out = Vec::with_capacity(inventory.len());
        let mut seen = HashSet::new();
        for row in inventory.values() {
            seen.insert(row.resource_id.clone());
            match by_resource.remove(&row.resource_id) {
                None => {
                    // Unchanged since before `from`: its inventory state
                    // held the whole window (skip what ended before it).
                    if row.gone
                        && row.last_change_at.is_some_and(|t| t < from)
                        && !alive(&row.resource)
                    {
                        continue;
                    }
                    // Dated by its last change when that is known: the
                    // waste rules tell since when a state holds.
                    let at = row.last_change_at.filter(|t| *t < from).unwrap_or(before);
                    out.push(Timeline {
                        region: row.region.clone(),
                        resource_id: row.resource_id.clone(),
                        states: vec![(at, row.resource.clone())],
                    });
                }
                Some(events) => {
                    let initial = if opens_with_first_sight(&events) {
                        None
                    } else {
                        self.state_before(tenant, account, &row.resource_id, from)
                            .await?
                    };
                    out.push(timeline(&row.region, &row.resource_id, initial, events, to));
                }
            }
        }
        // History rows of resources without an inventory row (should not
        // happen; priced from their history all the same).
        for (id, events) in by_resource {
            if seen.contains(&id) {
                continue;
            }
            let region = events[0].region.clone();
            let initial = if opens_with_first_sight(&events) {
                None
            } else {
                self.state_before(tenant, account, &id, from).await?
            };
            out.push(timeline(&region, &id, initial, events, to));
        }
        out.sort_by(|a, b| a.resource_id.cmp(&b.resource_id));
        Ok(out)
    }

    async fn events_since(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        from: DateTime<Utc>,
    ) -> anyhow::Result<Vec<EventRow>> {
        let q = self
            .ddb
            .query()
            .table_name(&self.events_table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND sk >= :from")
            .expression_attribute_values(":pk", s(keys::tenant_account(tenant, account)))
            .expression_attribute_values(":from", s(fixed_time(from)));
        dynamo::query_all(
            q,
            &format!("the history of {tenant}/{account} since {from}"),
        )
        .await
    }

    /// The history row of a resource in force just before `from`: the
    /// newest of its rows before `from`, read newest first a small page at
    /// a time (a resource's history grows without end; the first row of
    /// this account is nearly always on the first page).
    async fn state_before(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        resource_id: &str,
        from: DateTime<Utc>,
    ) -> anyhow::Result<Option<EventRow>> {
        let pk = keys::tenant_account(tenant, account);
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.events_table)
                .index_name("by-resource")
                .key_condition_expression("resource_key = :r AND sk < :from")
                .expression_attribute_values(":r", s(keys::tenant_resource(tenant, resource_id)))
                .expression_attribute_values(":from", s(fixed_time(from)))
                .scan_index_forward(false)
                .limit(STATE_BEFORE_PAGE)
                .set_exclusive_start_key(start)
                .send()
                .await
                .with_context(|| format!("read the state of {resource_id} before {from}"))?;
            for item in out.items.unwrap_or_default() {
                let row: EventRow =
                    serde_dynamo::from_item(item).context("decode a history row")?;
                // Another account's resource of the same id (the index is
                // per tenant): not this one's.
                if row.pk == pk {
                    return Ok(Some(row));
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(None),
            }
        }
    }
}

/// An account's inventory (by sort key) and its history rows since
/// `since` (in sort-key order), read by [`HistoryReader::history`].
#[derive(Debug, Clone)]
pub struct AccountHistory {
    pub tenant: TenantId,
    pub account: AccountId,
    pub since: DateTime<Utc>,
    pub inventory: HashMap<String, InventoryRow>,
    pub events: Vec<EventRow>,
}

/// Whether a resource's first history row in a window (`events`, of one
/// resource) is a first sight: the describer writes `launched`,
/// `discovered` or `created` only for a resource it has no live inventory
/// row of, so what was in force before it is nothing, or a gone row's
/// state (`terminated`, `deleted`, `released`): nothing priced either way.
/// A first sight later in the window says nothing of the window's start.
fn opens_with_first_sight(events: &[EventRow]) -> bool {
    events
        .iter()
        .min_by(|a, b| a.sk.cmp(&b.sk))
        .is_some_and(|e| {
            matches!(
                e.change,
                Change::Launched | Change::Discovered | Change::Created
            )
        })
}

/// Rows per page when looking for the state before a window.
const STATE_BEFORE_PAGE: i32 = 4;

fn alive(r: &Resource) -> bool {
    match r {
        Resource::Instance(i) => i.state != "terminated",
        Resource::Volume(v) => v.state != "deleted",
        Resource::Snapshot(s) => s.state != "deleted",
        Resource::Host(h) => h.allocated(),
    }
}

fn timeline(
    region: &str,
    id: &str,
    initial: Option<EventRow>,
    mut events: Vec<EventRow>,
    to: DateTime<Utc>,
) -> Timeline {
    events.sort_by(|a, b| a.sk.cmp(&b.sk));
    let mut states = Vec::with_capacity(events.len() + 1);
    if let Some(i) = initial {
        states.push((i.at, i.resource));
    }
    states.extend(
        events
            .into_iter()
            .filter(|e| e.at < to)
            .map(|e| (e.at, e.resource)),
    );
    Timeline {
        region: region.into(),
        resource_id: id.into(),
        states,
    }
}

/// (instance type, tenancy) priced on demand; (instance type, AZ, spot
/// product description) spot.
type Needs = (HashSet<(String, String)>, HashSet<(String, String, String)>);

/// Rows of committed price versions, kept across account-hours: a
/// committed version's rows never change (pricing refuses to re-ingest a
/// stored version with different content, issue 17), so they are read
/// from DynamoDB once per process instead of once per account-hour — the
/// largest share of the aggregator's reads (issue 23). A type a version
/// has no row for is remembered as `None` too. Bounded: past
/// [`PriceRows::MAX_ENTRIES`] entries it starts over.
#[derive(Debug, Default)]
pub struct PriceRows {
    ebs: Mutex<HashMap<VersionKey, Arc<Vec<EbsPriceItem>>>>,
    instances: Mutex<HashMap<InstanceKey, Option<InstancePrices>>>,
}

/// (region, version).
type VersionKey = (String, String);
/// (region, version, instance type, tenancy).
type InstanceKey = (String, String, String, String);

impl PriceRows {
    /// Instance rows kept at most (a region's version has a few thousand
    /// types × tenancies; this holds several regions' worth of what an
    /// estate runs).
    pub const MAX_ENTRIES: usize = 50_000;

    async fn ebs(
        &self,
        prices: &PriceStore,
        region: &str,
        version: &str,
    ) -> anyhow::Result<Arc<Vec<EbsPriceItem>>> {
        let key = (region.to_owned(), version.to_owned());
        if let Some(hit) = self.ebs.lock().expect("price rows lock").get(&key) {
            return Ok(hit.clone());
        }
        let rows = Arc::new(prices.ebs_prices(region, version).await?);
        let mut ebs = self.ebs.lock().expect("price rows lock");
        if ebs.len() >= Self::MAX_ENTRIES {
            ebs.clear();
        }
        ebs.insert(key, rows.clone());
        Ok(rows)
    }

    async fn instance(
        &self,
        prices: &PriceStore,
        region: &str,
        version: &str,
        instance_type: &str,
        tenancy: &str,
    ) -> anyhow::Result<Option<InstancePrices>> {
        let key = (
            region.to_owned(),
            version.to_owned(),
            instance_type.to_owned(),
            tenancy.to_owned(),
        );
        if let Some(hit) = self.instances.lock().expect("price rows lock").get(&key) {
            return Ok(hit.clone());
        }
        let row = prices
            .instance_prices(region, version, instance_type, tenancy)
            .await?;
        let mut instances = self.instances.lock().expect("price rows lock");
        if instances.len() >= Self::MAX_ENTRIES {
            instances.clear();
        }
        instances.insert(key, row.clone());
        Ok(row)
    }
}

/// The committed versions of each region, read once per aggregation
/// message and shared by its accounts (a version committed meanwhile is
/// seen by the next message; the hour it applies to is recomputed then).
#[derive(Debug, Default)]
pub struct VersionLists(tokio::sync::Mutex<HashMap<String, Arc<Vec<VersionRecord>>>>);

impl VersionLists {
    async fn get(
        &self,
        prices: &PriceStore,
        region: &str,
    ) -> anyhow::Result<Arc<Vec<VersionRecord>>> {
        // Held across the read so concurrent accounts wait for one query.
        let mut lists = self.0.lock().await;
        if let Some(v) = lists.get(region) {
            return Ok(v.clone());
        }
        let v = Arc::new(prices.versions(region).await?);
        lists.insert(region.to_owned(), v.clone());
        Ok(v)
    }
}

/// Loads the prices `timelines` need for `[from, to)` into memory: price
/// rows through `rows` (kept across calls), version lists through
/// `versions` (kept for one message).
pub async fn load_book(
    prices: &PriceStore,
    rows: &PriceRows,
    versions: &VersionLists,
    timelines: &[Timeline],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<MemoryBook> {
    let mut book = MemoryBook::default();
    // What each region needs: instance type × tenancy, spot type × AZ.
    // On-demand and host rates come from the Price List region (a Local
    // Zone's group); spot history from the region whose API reported it.
    let mut needs: BTreeMap<String, Needs> = BTreeMap::new();
    for t in timelines {
        let price_region = crate::engine::price_region(t).to_owned();
        needs.entry(t.region.clone()).or_default();
        for (_, r) in &t.states {
            match r {
                Resource::Instance(i) if i.lifecycle == "spot" => {
                    let need = needs.entry(t.region.clone()).or_default();
                    for product in crate::engine::spot_products(&i.platform_details) {
                        need.1.insert((
                            i.instance_type.clone(),
                            i.availability_zone.clone(),
                            product,
                        ));
                    }
                }
                Resource::Instance(i) => {
                    if let Some(tenancy) = platform::offer_tenancy(&i.tenancy) {
                        needs
                            .entry(price_region.clone())
                            .or_default()
                            .0
                            .insert((i.instance_type.clone(), tenancy.to_string()));
                    }
                }
                Resource::Host(h) => {
                    needs.entry(price_region.clone()).or_default().0.insert((
                        h.instance_family.clone(),
                        platform::HOST_PRICE_TENANCY.to_string(),
                    ));
                }
                Resource::Volume(_) | Resource::Snapshot(_) => {
                    needs.entry(price_region.clone()).or_default();
                }
            }
        }
    }
    for (region, (instances, spots)) in needs {
        let list = versions.get(prices, &region).await?;
        // Versions in force at some hour of the window.
        let mut in_force = HashSet::new();
        let mut h = hour_of(from);
        while h < to {
            if let Some(v) = kopter_store::prices::version_at(&list, h) {
                in_force.insert(v.version.clone());
            }
            h += Duration::hours(1);
        }
        for v in &in_force {
            book.ebs.insert(
                (region.clone(), v.clone()),
                rows.ebs(prices, &region, v).await?.as_ref().clone(),
            );
            for (ty, tenancy) in &instances {
                if let Some(p) = rows.instance(prices, &region, v, ty, tenancy).await? {
                    book.instances
                        .insert((region.clone(), v.clone(), ty.clone(), tenancy.clone()), p);
                }
            }
        }
        // Only the window's points (and the one in force at its start):
        // the kept spot history grows without end.
        for (ty, az, product) in spots {
            let window = prices
                .spot_window(&region, &ty, &az, &product, hour_of(from), to)
                .await?;
            let points = book.spot.entry((region.clone(), ty, az)).or_default();
            points.extend(window);
            points.sort_by_key(|p| p.at);
        }
        book.versions.insert(region, list.as_ref().clone());
    }
    Ok(book)
}
