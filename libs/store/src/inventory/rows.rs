//! The rows the describer writes, as the aggregator and `kopterctl` read
//! them: the current inventory and the append-only state history
//! (`ec2-events`). See `DESIGN.md` next to this file for the contract.
//!
//! Both are plain serde structs stored through `serde_dynamo`; key
//! builders live here so that writers and readers agree.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use kopter_schema::items::keys;
use kopter_schema::{AccountId, TenantId};
use serde::{Deserialize, Serialize};

/// What a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Instance,
    Volume,
    Snapshot,
}

impl ResourceKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Instance => "instance",
            ResourceKind::Volume => "volume",
            ResourceKind::Snapshot => "snapshot",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an observed change (the `change` attribute of a history row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// An instance launched after the account was onboarded.
    Launched,
    /// First sight of a resource that existed before the account was
    /// onboarded.
    Discovered,
    StateChanged,
    TypeChanged,
    Terminated,
    /// A volume or snapshot created after the account was onboarded.
    Created,
    /// A volume or snapshot deleted (seen as `deleted`, or vanished).
    Deleted,
    /// A volume's type, size, IOPS or throughput changed.
    Resized,
    /// An instance no longer returned by EC2 (terminated ones vanish about
    /// an hour after termination).
    Gone,
}

impl Change {
    pub const fn as_str(self) -> &'static str {
        match self {
            Change::Launched => "launched",
            Change::Discovered => "discovered",
            Change::StateChanged => "state_changed",
            Change::TypeChanged => "type_changed",
            Change::Terminated => "terminated",
            Change::Created => "created",
            Change::Deleted => "deleted",
            Change::Resized => "resized",
            Change::Gone => "gone",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An EC2 instance as the aggregator prices it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFields {
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down`,
    /// `terminated`.
    pub state: String,
    pub instance_type: String,
    /// e.g. `RunInstances:0002` (Windows); empty when EC2 gives none.
    #[serde(default)]
    pub usage_operation: String,
    /// e.g. `Linux/UNIX`, `Windows`; empty when EC2 gives none.
    #[serde(default)]
    pub platform_details: String,
    /// `default`, `dedicated` or `host`.
    pub tenancy: String,
    /// `on-demand`, `spot`, `scheduled` or `capacity-block`.
    pub lifecycle: String,
    #[serde(default)]
    pub availability_zone: String,
    /// EC2's `LaunchTime`: the last time the instance started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "fixed_opt")]
    pub launch_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub state_transition_reason: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// EBS volumes attached (block device mappings), sorted.
    #[serde(default)]
    pub volume_ids: Vec<String>,
}

/// An EBS volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFields {
    /// `creating`, `available`, `in-use`, `deleting`, `deleted`, `error`.
    pub state: String,
    /// `gp2`, `gp3`, `io1`, `io2`, `st1`, `sc1`, `standard`.
    pub volume_type: String,
    pub size_gib: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i64>,
    /// MiB/s (gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_instance: Option<String>,
    #[serde(default)]
    pub availability_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "fixed_opt")]
    pub create_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An EBS snapshot owned by the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFields {
    /// `pending`, `completed`, `error`, `recoverable`, `recovering`, or
    /// `deleted` (Kopter's, once it vanished).
    pub state: String,
    pub volume_size_gib: i64,
    #[serde(with = "fixed")]
    pub start_time: DateTime<Utc>,
    #[serde(default)]
    pub volume_id: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A resource's full state; `kind` is the serde tag, so a row carries
/// `kind` plus the fields of that kind at the top level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Resource {
    Instance(InstanceFields),
    Volume(VolumeFields),
    Snapshot(SnapshotFields),
}

impl Resource {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Instance(_) => ResourceKind::Instance,
            Resource::Volume(_) => ResourceKind::Volume,
            Resource::Snapshot(_) => ResourceKind::Snapshot,
        }
    }

    pub fn state(&self) -> &str {
        match self {
            Resource::Instance(i) => &i.state,
            Resource::Volume(v) => &v.state,
            Resource::Snapshot(s) => &s.state,
        }
    }

    pub fn set_state(&mut self, state: &str) {
        let s = match self {
            Resource::Instance(i) => &mut i.state,
            Resource::Volume(v) => &mut v.state,
            Resource::Snapshot(s) => &mut s.state,
        };
        *s = state.to_owned();
    }
}

/// One row of the inventory table: a resource as last seen.
///
/// `pk = {tenant}#{account}`, `sk = {region}#{kind}#{resource_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRow {
    pub pk: String,
    pub sk: String,
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    pub resource_id: String,
    /// No longer returned by EC2 (never deleted from the table).
    pub gone: bool,
    #[serde(with = "fixed")]
    pub first_seen: DateTime<Utc>,
    #[serde(with = "fixed")]
    pub last_seen: DateTime<Utc>,
    /// `at` of the newest history row of this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "fixed_opt")]
    pub last_change_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency counter: every write checks and bumps it.
    #[serde(default)]
    pub version: u64,
    /// Sort keys of history rows written but not yet published to
    /// `kopter-events` (the row is its own outbox; see DESIGN.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpublished: Vec<String>,
    #[serde(flatten)]
    pub resource: Resource,
}

impl InventoryRow {
    pub fn kind(&self) -> ResourceKind {
        self.resource.kind()
    }
    pub fn state(&self) -> &str {
        self.resource.state()
    }
}

/// One row of the state history (`ec2-events`): a change and the full
/// state of the resource from `at` on.
///
/// `pk = {tenant}#{account}`, `sk = {at}#{resource_id}#{change}` with `at`
/// as [`fixed_time`]; `resource_key = {tenant}#{resource_id}` (index
/// `by-resource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub pk: String,
    pub sk: String,
    pub resource_key: String,
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    pub resource_id: String,
    /// Same as `kind`.
    pub resource_kind: ResourceKind,
    pub change: Change,
    /// When the state in this row took effect.
    #[serde(with = "fixed")]
    pub at: DateTime<Utc>,
    /// When the describer saw it.
    #[serde(with = "fixed")]
    pub observed_at: DateTime<Utc>,
    #[serde(flatten)]
    pub resource: Resource,
}

/// RFC 3339, UTC, milliseconds, `Z`: fixed width, so strings sort as times.
pub fn fixed_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde for times in rows: [`fixed_time`] strings, so that stored times
/// compare correctly as strings (DynamoDB conditions, sort keys).
pub mod fixed {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::fixed_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// [`fixed`] for optional times (absent when `None`).
pub mod fixed_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::fixed_time(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let raw = Option::<String>::deserialize(d)?;
        raw.map(|raw| {
            DateTime::parse_from_rfc3339(&raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// Now, at the millisecond precision rows keep.
pub fn now_ms() -> DateTime<Utc> {
    use chrono::DurationRound;
    Utc::now()
        .duration_trunc(chrono::Duration::milliseconds(1))
        .expect("now is representable")
}

pub fn inventory_sk(region: &str, kind: ResourceKind, resource_id: &str) -> String {
    format!("{region}#{kind}#{resource_id}")
}

/// Sort-key prefix of one region's rows of one kind (`{region}#{kind}#`).
pub fn inventory_prefix(region: &str, kind: Option<ResourceKind>) -> String {
    match kind {
        Some(k) => format!("{region}#{k}#"),
        None => format!("{region}#"),
    }
}

pub fn event_sk(at: DateTime<Utc>, resource_id: &str, change: Change) -> String {
    format!("{}#{resource_id}#{change}", fixed_time(at))
}

impl EventRow {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenant: &TenantId,
        account: &AccountId,
        region: &str,
        resource_id: &str,
        change: Change,
        at: DateTime<Utc>,
        observed_at: DateTime<Utc>,
        resource: Resource,
    ) -> Self {
        Self {
            pk: keys::tenant_account(tenant, account),
            sk: event_sk(at, resource_id, change),
            resource_key: keys::tenant_resource(tenant, resource_id),
            tenant: tenant.clone(),
            account: account.clone(),
            region: region.to_owned(),
            resource_id: resource_id.to_owned(),
            resource_kind: resource.kind(),
            change,
            at,
            observed_at,
            resource,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn instance() -> Resource {
        Resource::Instance(InstanceFields {
            state: "running".into(),
            instance_type: "m5.large".into(),
            usage_operation: "RunInstances".into(),
            platform_details: "Linux/UNIX".into(),
            tenancy: "default".into(),
            lifecycle: "spot".into(),
            availability_zone: "eu-west-1a".into(),
            launch_time: Some(t("2024-01-01T10:00:00Z")),
            state_transition_reason: String::new(),
            tags: BTreeMap::from([("Name".into(), "web".into())]),
            volume_ids: vec!["vol-1".into()],
        })
    }

    #[test]
    fn sort_keys_are_fixed_width_and_order_by_time() {
        let a = event_sk(t("2024-01-01T10:00:00Z"), "i-1", Change::Launched);
        let b = event_sk(t("2024-01-01T10:00:00.5Z"), "i-0", Change::StateChanged);
        assert_eq!(a, "2024-01-01T10:00:00.000Z#i-1#launched");
        assert_eq!(b, "2024-01-01T10:00:00.500Z#i-0#state_changed");
        assert!(a < b);
        assert_eq!(
            inventory_sk("eu-west-1", ResourceKind::Volume, "vol-1"),
            "eu-west-1#volume#vol-1"
        );
    }

    #[test]
    fn event_rows_round_trip_through_dynamodb_items() {
        let tenant = TenantId::new("acme").unwrap();
        let account = AccountId::new("111122223333").unwrap();
        let row = EventRow::new(
            &tenant,
            &account,
            "eu-west-1",
            "i-1",
            Change::Launched,
            t("2024-01-01T10:00:00Z"),
            t("2024-01-01T10:05:00Z"),
            instance(),
        );
        let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&row).unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), "acme#111122223333");
        assert_eq!(item["resource_key"].as_s().unwrap(), "acme#i-1");
        assert_eq!(item["kind"].as_s().unwrap(), "instance");
        assert_eq!(item["resource_kind"].as_s().unwrap(), "instance");
        assert_eq!(item["change"].as_s().unwrap(), "launched");
        assert_eq!(item["instance_type"].as_s().unwrap(), "m5.large");
        assert_eq!(item["lifecycle"].as_s().unwrap(), "spot");
        assert!(item["tags"].as_m().unwrap().contains_key("Name"));
        let back: EventRow = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back, row);
    }

    #[test]
    fn inventory_rows_round_trip_for_every_kind() {
        let tenant = TenantId::new("acme").unwrap();
        let account = AccountId::new("111122223333").unwrap();
        let volume = Resource::Volume(VolumeFields {
            state: "in-use".into(),
            volume_type: "gp3".into(),
            size_gib: 100,
            iops: Some(3000),
            throughput: Some(125),
            attached_instance: Some("i-1".into()),
            availability_zone: "eu-west-1a".into(),
            create_time: Some(t("2024-01-01T09:00:00Z")),
            tags: BTreeMap::new(),
        });
        let snapshot = Resource::Snapshot(SnapshotFields {
            state: "completed".into(),
            volume_size_gib: 100,
            start_time: t("2024-01-02T09:00:00Z"),
            volume_id: "vol-1".into(),
            tags: BTreeMap::new(),
        });
        for resource in [instance(), volume, snapshot] {
            let row = InventoryRow {
                pk: keys::tenant_account(&tenant, &account),
                sk: inventory_sk("eu-west-1", resource.kind(), "x-1"),
                tenant: tenant.clone(),
                account: account.clone(),
                region: "eu-west-1".into(),
                resource_id: "x-1".into(),
                gone: false,
                first_seen: t("2024-01-01T10:00:00Z"),
                last_seen: t("2024-01-01T11:00:00Z"),
                last_change_at: None,
                version: 3,
                unpublished: vec![],
                resource,
            };
            let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
                serde_dynamo::to_item(&row).unwrap();
            assert_eq!(item["kind"].as_s().unwrap(), row.kind().as_str());
            assert!(item.contains_key("state"));
            let back: InventoryRow = serde_dynamo::from_item(item).unwrap();
            assert_eq!(back, row);
        }
    }
}
