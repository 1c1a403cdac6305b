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
    /// An EC2 Dedicated Host (billed per host-hour while allocated).
    Host,
}

impl ResourceKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Instance => "instance",
            ResourceKind::Volume => "volume",
            ResourceKind::Snapshot => "snapshot",
            ResourceKind::Host => "host",
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
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
    /// `InstanceLifecycle`, `on-demand` when EC2 gives none: `on-demand`,
    /// `spot`, `scheduled`, `capacity-block`,
    /// `interruptible-capacity-reservation`.
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
    /// Where the zone sits and which price list prices it (see [`ZoneInfo`]).
    #[serde(flatten)]
    pub zone: ZoneInfo,
    /// `Placement.HostId`: the Dedicated Host the instance runs on, whose
    /// host-hours carry the compute charge; empty when not on a host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_id: String,
    /// `CapacityReservationId`: the On-Demand Capacity Reservation (or
    /// Capacity Block) the instance was launched into; empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub capacity_reservation_id: String,
}

/// The zone of a resource as `DescribeAvailabilityZones` describes it
/// (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AvailabilityZone.html>).
///
/// Both fields are empty in rows written before Kopter read zones, and for
/// an ordinary Availability Zone whose type EC2 did not say: such a
/// resource is priced with its region's prices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct ZoneInfo {
    /// `availability-zone`, `local-zone` or `wavelength-zone` (EC2's
    /// `ZoneType`); empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone_type: String,
    /// The Price List `regionCode` whose rows price the resource when it is
    /// not its region's — a Local Zone's group (`us-west-2-lax-1` for
    /// `us-west-2-lax-1a`) or a Wavelength Zone's location. Empty: the
    /// region's own prices.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub price_region: String,
}

impl ZoneInfo {
    /// The Price List region of a resource in `region` with this zone.
    pub fn price_region<'a>(&'a self, region: &'a str) -> &'a str {
        if self.price_region.is_empty() {
            region
        } else {
            &self.price_region
        }
    }
}

/// An EBS volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
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
    /// Where the zone sits and which price list prices it (see [`ZoneInfo`]).
    #[serde(flatten)]
    pub zone: ZoneInfo,
}

/// An EBS snapshot owned by the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
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

/// An EC2 Dedicated Host as `DescribeHosts` returns it
/// (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Host.html>).
/// On-Demand hosts are billed per host-hour from allocation until release
/// ("per-host billing",
/// <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/dedicated-hosts-overview.html>;
/// "On-Demand billing is stopped and the host goes into released state …
/// Released hosts still appear in a DescribeHosts response",
/// <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ReleaseHosts.html>),
/// whatever runs on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct HostFields {
    /// `available`, `under-assessment`, `permanent-failure`, `released`,
    /// `released-permanent-failure`, `pending`.
    pub state: String,
    /// The instance family the host's price is per (`HostProperties.InstanceFamily`,
    /// else the family of `HostProperties.InstanceType`: `mac1` for `mac1.metal`).
    pub instance_family: String,
    /// `HostProperties.InstanceType` when the host supports one type only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_type: String,
    #[serde(default)]
    pub availability_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "fixed_opt")]
    pub allocation_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "fixed_opt")]
    pub release_time: Option<DateTime<Utc>>,
    /// Instances on the host (`Instances[].InstanceId`), sorted.
    #[serde(default)]
    pub instance_ids: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Where the zone sits and which price list prices it (see [`ZoneInfo`]).
    #[serde(flatten)]
    pub zone: ZoneInfo,
}

impl HostFields {
    /// Whether the host is still allocated (and so billed).
    pub fn allocated(&self) -> bool {
        !self.state.starts_with("released")
    }
}

/// A resource's full state; `kind` is the serde tag, so a row carries
/// `kind` plus the fields of that kind at the top level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Resource {
    Instance(InstanceFields),
    Volume(VolumeFields),
    Snapshot(SnapshotFields),
    Host(HostFields),
}

impl Resource {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Instance(_) => ResourceKind::Instance,
            Resource::Volume(_) => ResourceKind::Volume,
            Resource::Snapshot(_) => ResourceKind::Snapshot,
            Resource::Host(_) => ResourceKind::Host,
        }
    }

    pub fn state(&self) -> &str {
        match self {
            Resource::Instance(i) => &i.state,
            Resource::Volume(v) => &v.state,
            Resource::Snapshot(s) => &s.state,
            Resource::Host(h) => &h.state,
        }
    }

    pub fn set_state(&mut self, state: &str) {
        let s = match self {
            Resource::Instance(i) => &mut i.state,
            Resource::Volume(v) => &mut v.state,
            Resource::Snapshot(s) => &mut s.state,
            Resource::Host(h) => &mut h.state,
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
            zone: ZoneInfo::default(),
            host_id: String::new(),
            capacity_reservation_id: String::new(),
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
            zone: ZoneInfo {
                zone_type: "local-zone".into(),
                price_region: "us-west-2-lax-1".into(),
            },
        });
        let host = Resource::Host(HostFields {
            state: "available".into(),
            instance_family: "mac1".into(),
            instance_type: "mac1.metal".into(),
            availability_zone: "us-east-1a".into(),
            allocation_time: Some(t("2024-01-01T08:00:00Z")),
            release_time: None,
            instance_ids: vec!["i-1".into()],
            tags: BTreeMap::new(),
            zone: ZoneInfo::default(),
        });
        let snapshot = Resource::Snapshot(SnapshotFields {
            state: "completed".into(),
            volume_size_gib: 100,
            start_time: t("2024-01-02T09:00:00Z"),
            volume_id: "vol-1".into(),
            tags: BTreeMap::new(),
        });
        for resource in [instance(), volume, snapshot, host] {
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

    /// Rows written before zones, hosts and reservations were read have
    /// none of those attributes: they still read, as an ordinary zone
    /// priced by its region, not on a host, not in a reservation.
    #[test]
    fn rows_without_the_zone_host_and_reservation_attributes_still_read() {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let s = |v: &str| A::S(v.into());
        let item = std::collections::HashMap::from([
            ("pk".to_string(), s("acme#111122223333")),
            ("sk".to_string(), s("us-west-2#instance#i-1")),
            ("tenant".to_string(), s("acme")),
            ("account".to_string(), s("111122223333")),
            ("region".to_string(), s("us-west-2")),
            ("resource_id".to_string(), s("i-1")),
            ("gone".to_string(), A::Bool(false)),
            ("first_seen".to_string(), s("2024-01-01T10:00:00.000Z")),
            ("last_seen".to_string(), s("2024-01-01T10:00:00.000Z")),
            ("version".to_string(), A::N("1".into())),
            ("kind".to_string(), s("instance")),
            ("state".to_string(), s("running")),
            ("instance_type".to_string(), s("m5.xlarge")),
            ("tenancy".to_string(), s("default")),
            ("lifecycle".to_string(), s("on-demand")),
            ("availability_zone".to_string(), s("us-west-2-lax-1a")),
        ]);
        let row: InventoryRow = serde_dynamo::from_item(item).unwrap();
        let Resource::Instance(i) = &row.resource else {
            panic!("not an instance: {row:?}")
        };
        assert_eq!(i.zone, ZoneInfo::default());
        assert_eq!(i.zone.price_region("us-west-2"), "us-west-2");
        assert_eq!(i.host_id, "");
        assert_eq!(i.capacity_reservation_id, "");
        // And writing it back adds none of them.
        let back: std::collections::HashMap<String, A> = serde_dynamo::to_item(&row).unwrap();
        for absent in [
            "zone_type",
            "price_region",
            "host_id",
            "capacity_reservation_id",
        ] {
            assert!(
                !back.contains_key(absent),
                "{absent} written for an empty value"
            );
        }
    }

    #[test]
    fn a_local_zone_is_priced_under_its_group() {
        let z = ZoneInfo {
            zone_type: "local-zone".into(),
            price_region: "us-west-2-lax-1".into(),
        };
        assert_eq!(z.price_region("us-west-2"), "us-west-2-lax-1");
        let released = HostFields {
            state: "released".into(),
            instance_family: "m5".into(),
            instance_type: String::new(),
            availability_zone: "us-east-1a".into(),
            allocation_time: None,
            release_time: None,
            instance_ids: vec![],
            tags: BTreeMap::new(),
            zone: ZoneInfo::default(),
        };
        assert!(!released.allocated());
        for state in [
            "available",
            "under-assessment",
            "permanent-failure",
            "pending",
        ] {
            let h = HostFields {
                state: state.into(),
                ..released.clone()
            };
            assert!(h.allocated(), "{state}");
        }
    }
}
