//! Grouping parsed prices into the rows the store writes.
//!
//! The parser emits prices in the file's order (by SKU), the store wants
//! one row per instance type × tenancy holding every operation's on-demand
//! and reserved rates (a few thousand rows per region instead of ~10⁶
//! single prices, each row a few tens of KB — far under DynamoDB's 400 KB).
//! So prices are collected here until the file is fully parsed: nothing is
//! written for a file that fails to parse. Memory is ~60 bytes per price
//! (strings are the parser's interned `Arc<str>`s); a region's ~10⁶
//! prices fit in ~60 MB.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::offer::{EbsKind, Price};
use kopter_store::prices::{
    EbsPriceItem, InstancePrices, OnDemandEntry, ReservedEntry, StoredCounts, ebs_pk, ebs_sk,
    instance_pk, instance_sk, reserved_key,
};

#[derive(Default)]
struct Group {
    on_demand: Vec<(Arc<str>, OnDemandEntry)>,
    reserved: Vec<(String, ReservedEntry)>,
}

/// Prices of one region, collected for writing.
#[derive(Default)]
pub struct PriceSet {
    groups: HashMap<(Arc<str>, Arc<str>), Group>,
    ebs: Vec<EbsPriceItem>,
    /// Prices that repeated a key already seen (the first one is kept).
    pub duplicates: u64,
    /// Prices of another region than the one being ingested (dropped).
    pub foreign: u64,
    region: String,
    counts: StoredCounts,
}

impl PriceSet {
    pub fn new(region: &str) -> Self {
        Self {
            region: region.into(),
            ..Self::default()
        }
    }

    pub fn add(&mut self, price: Price) {
        match price {
            Price::OnDemand(p) => {
                if *p.key.region != *self.region {
                    self.foreign += 1;
                    return;
                }
                self.counts.on_demand += 1;
                let entry = OnDemandEntry {
                    usd_per_hour: p.usd_per_hour,
                    operating_system: p.key.operating_system.to_string(),
                    license_model: p.key.license_model.to_string(),
                    pre_installed_sw: p.key.pre_installed_sw.to_string(),
                    effective: p.effective.to_string(),
                };
                self.groups
                    .entry((p.key.instance_type.clone(), p.key.tenancy.clone()))
                    .or_default()
                    .on_demand
                    .push((p.key.operation.clone(), entry));
            }
            Price::Reserved(p) => {
                if *p.key.region != *self.region {
                    self.foreign += 1;
                    return;
                }
                self.counts.reserved += 1;
                let key = reserved_key(
                    &p.key.operation,
                    p.lease_years,
                    &p.offering_class,
                    &p.purchase_option,
                );
                let entry = ReservedEntry {
                    effective_hourly_usd: p.effective_hourly_usd,
                    upfront_usd: p.upfront_usd,
                    hourly_usd: p.hourly_usd,
                    effective: p.effective.to_string(),
                };
                self.groups
                    .entry((p.key.instance_type.clone(), p.key.tenancy.clone()))
                    .or_default()
                    .reserved
                    .push((key, entry));
            }
            Price::Ebs(p) => {
                if *p.region != *self.region {
                    self.foreign += 1;
                    return;
                }
                self.counts.ebs += 1;
                let kind = match p.kind {
                    EbsKind::Storage => "storage",
                    EbsKind::Iops => "iops",
                    EbsKind::Throughput => "throughput",
                    EbsKind::Snapshot => "snapshot",
                };
                self.ebs.push(EbsPriceItem {
                    pk: String::new(),
                    sk: ebs_sk(&p.volume_api_name, kind, &p.usage_type, p.begin_range),
                    region: p.region.to_string(),
                    version: String::new(),
                    volume_api_name: p.volume_api_name.to_string(),
                    kind: kind.into(),
                    usage_type: p.usage_type.to_string(),
                    usd_per_unit: p.usd_per_unit,
                    unit: p.unit.to_string(),
                    effective: p.effective.to_string(),
                    begin_range: p.begin_range,
                    end_range: p.end_range,
                });
            }
        }
    }

    /// The rows of this set as version `version`, and what they hold.
    pub fn into_rows(
        mut self,
        version: &str,
    ) -> (Vec<InstancePrices>, Vec<EbsPriceItem>, StoredCounts) {
        let region = self.region.clone();
        let mut rows = Vec::with_capacity(self.groups.len());
        for ((instance_type, tenancy), group) in self.groups {
            let mut on_demand = BTreeMap::new();
            for (op, entry) in group.on_demand {
                match on_demand.entry(op.to_string()) {
                    Entry::Vacant(v) => {
                        v.insert(entry);
                    }
                    Entry::Occupied(_) => self.duplicates += 1,
                }
            }
            let mut reserved = BTreeMap::new();
            for (key, entry) in group.reserved {
                match reserved.entry(key) {
                    Entry::Vacant(v) => {
                        v.insert(entry);
                    }
                    Entry::Occupied(_) => self.duplicates += 1,
                }
            }
            rows.push(InstancePrices {
                pk: instance_pk(&region, version),
                sk: instance_sk(&instance_type, &tenancy),
                region: region.clone(),
                version: version.into(),
                instance_type: instance_type.to_string(),
                tenancy: tenancy.to_string(),
                on_demand,
                reserved,
            });
        }
        rows.sort_by(|a, b| a.sk.cmp(&b.sk));
        let mut ebs = self.ebs;
        for e in &mut ebs {
            e.pk = ebs_pk(&region, version);
            e.version = version.into();
        }
        ebs.sort_by(|a, b| a.sk.cmp(&b.sk));
        ebs.dedup_by(|a, b| a.sk == b.sk);
        let mut counts = self.counts;
        counts.rows = (rows.len() + ebs.len()) as u64;
        (rows, ebs, counts)
    }
}
