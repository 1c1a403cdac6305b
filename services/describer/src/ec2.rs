//! Reading a customer account's EC2 estate, and telling which errors are
//! the account's fault (permanent until the customer fixes something) from
//! which are worth retrying.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, Tag};
use chrono::{DateTime, Utc};
use kopter_runtime::AssumeRoleError;

use kopter_store::inventory::{
    HostFields, InstanceFields, Resource, SnapshotFields, VolumeFields, ZoneInfo,
};

use crate::zones::Zones;

/// EC2 error codes that mean "this account (or region) will not let us
/// in": the role lacks permissions, the region is disabled, the account is
/// suspended. Retrying cannot help until the customer acts.
const ACCOUNT_ERROR_CODES: &[&str] = &[
    "AuthFailure",
    "UnauthorizedOperation",
    "OptInRequired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "Blocked",
    "PendingVerification",
    "AccessDenied",
    "AccessDeniedException",
    "AccountDisabled",
];

/// Why describing (or backing up) an account failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The account refuses us (role, ExternalId, permissions, disabled
    /// region): mark it unhealthy, do not retry.
    #[error("{0}")]
    Denied(String),
    /// Anything else (throttling beyond the retry budget, network, our own
    /// DynamoDB): retry the message.
    #[error("{0:#}")]
    Transient(anyhow::Error),
}

impl From<AssumeRoleError> for AccountError {
    fn from(e: AssumeRoleError) -> Self {
        if e.is_permanent() {
            AccountError::Denied(e.to_string())
        } else {
            AccountError::Transient(e.into())
        }
    }
}

impl From<anyhow::Error> for AccountError {
    fn from(e: anyhow::Error) -> Self {
        AccountError::Transient(e)
    }
}

/// Classifies an EC2 SDK error. A transient error keeps the `SdkError`
/// itself in its chain (with `what` as context), so the worker's
/// `aws::classify` can tell throttling, 5xx and connection failures —
/// back-pressure, retried in-process without spending a receive — from
/// other failures.
pub fn classify<E, R>(what: &str, err: SdkError<E, R>) -> AccountError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = err.code().unwrap_or("").to_owned();
    if is_account_error(&code) {
        let message = err.message().unwrap_or("").to_owned();
        return AccountError::Denied(format!("{what}: {code}: {message}"));
    }
    AccountError::Transient(anyhow::Error::new(err).context(what.to_owned()))
}

pub fn is_account_error(code: &str) -> bool {
    ACCOUNT_ERROR_CODES.contains(&code)
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

fn tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect()
}

fn id_filter(name: &str, ids: &BTreeSet<String>) -> Option<Filter> {
    (!ids.is_empty()).then(|| {
        Filter::builder()
            .name(name)
            .set_values(Some(ids.iter().cloned().collect()))
            .build()
    })
}

/// Regions enabled in the account (`opt-in-not-required` or `opted-in`).
pub async fn enabled_regions(ec2: &aws_sdk_ec2::Client) -> Result<Vec<String>, AccountError> {
    let out = ec2
        .describe_regions()
        .all_regions(true)
        .send()
        .await
        .map_err(|e| classify("DescribeRegions", e))?;
    let mut regions: Vec<String> = out
        .regions()
        .iter()
        .filter(|r| {
            r.opt_in_status()
                .is_none_or(|s| s == "opt-in-not-required" || s == "opted-in")
        })
        .filter_map(|r| r.region_name().map(str::to_owned))
        .collect();
    regions.sort();
    regions.dedup();
    Ok(regions)
}

/// Instances, all or those with the given ids (a filter rather than
/// `InstanceIds`, so an id that no longer exists is simply absent instead
/// of failing the whole call).
pub async fn instances(
    ec2: &aws_sdk_ec2::Client,
    only: Option<&BTreeSet<String>>,
    zones: &Zones,
) -> Result<Vec<(String, Resource)>, AccountError> {
    let mut req = ec2.describe_instances();
    match only {
        Some(ids) if ids.is_empty() => return Ok(vec![]),
        Some(ids) => req = req.set_filters(id_filter("instance-id", ids).map(|f| vec![f])),
        None => req = req.max_results(1000),
    }
    let pages: Vec<_> = req
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify("DescribeInstances", e))?;
    let mut out = Vec::new();
    for page in pages {
        for r in page.reservations() {
            for i in r.instances() {
                let Some(id) = i.instance_id() else { continue };
                let mut fields = instance_fields(i);
                fields.zone = zones.info(&fields.availability_zone);
                out.push((id.to_owned(), Resource::Instance(fields)));
            }
        }
    }
    Ok(out)
}

/// `PlatformDetails`, which EC2 always returns. Emulators (moto) omit it
/// and give only the legacy `Platform` (`windows` or absent): then
/// `Windows` or `Linux/UNIX`, so the instance can still be priced. (EC2
/// sends `windows` in lower case, which the SDK's enum keeps as
/// `Unknown("windows")`, so the text is compared.)
fn platform_details(i: &aws_sdk_ec2::types::Instance) -> String {
    let windows = i
        .platform()
        .is_some_and(|p| p.as_str().eq_ignore_ascii_case("windows"));
    match i.platform_details() {
        Some(d) => d.to_owned(),
        None if windows => "Windows".to_owned(),
        None if i.usage_operation().is_none() => "Linux/UNIX".to_owned(),
        None => String::new(),
    }
}

/// An instance as EC2 describes it; its [`ZoneInfo`] is left empty (the
/// caller knows the account's zones).
pub fn instance_fields(i: &aws_sdk_ec2::types::Instance) -> InstanceFields {
    let host_id = i
        .placement()
        .and_then(|p| p.host_id())
        .unwrap_or("")
        .to_owned();
    let mut volume_ids: Vec<String> = i
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs()?.volume_id().map(str::to_owned))
        .collect();
    volume_ids.sort();
    InstanceFields {
        state: i
            .state()
            .and_then(|s| s.name())
            .map_or("unknown", |n| n.as_str())
            .to_owned(),
        instance_type: i
            .instance_type()
            .map_or("unknown", |t| t.as_str())
            .to_owned(),
        usage_operation: i.usage_operation().unwrap_or("").to_owned(),
        platform_details: platform_details(i),
        tenancy: tenancy(i, &host_id),
        lifecycle: i
            .instance_lifecycle()
            .map_or("on-demand", |l| l.as_str())
            .to_owned(),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or("")
            .to_owned(),
        launch_time: time(i.launch_time()),
        state_transition_reason: i.state_transition_reason().unwrap_or("").to_owned(),
        tags: tags(i.tags()),
        volume_ids,
        zone: ZoneInfo::default(),
        capacity_reservation_id: i.capacity_reservation_id().unwrap_or("").to_owned(),
        host_id,
    }
}

/// `Placement.Tenancy`, except that an instance with a `HostId` is on a
/// Dedicated Host whatever the tenancy says: EC2 gives `host` for those,
/// moto always answers `default` (it ignores `Placement.Tenancy`) but
/// keeps the `HostId`.
fn tenancy(i: &aws_sdk_ec2::types::Instance, host_id: &str) -> String {
    let given = i
        .placement()
        .and_then(|p| p.tenancy())
        .map_or("default", |t| t.as_str());
    if !host_id.is_empty() && given != "host" {
        crate::zones::fallbacks("tenancy-from-host-id").inc();
        return "host".to_owned();
    }
    given.to_owned()
}

pub async fn volumes(
    ec2: &aws_sdk_ec2::Client,
    only: Option<&BTreeSet<String>>,
    zones: &Zones,
) -> Result<Vec<(String, Resource)>, AccountError> {
    let mut req = ec2.describe_volumes();
    match only {
        Some(ids) if ids.is_empty() => return Ok(vec![]),
        Some(ids) => req = req.set_filters(id_filter("volume-id", ids).map(|f| vec![f])),
        None => req = req.max_results(500),
    }
    let pages: Vec<_> = req
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify("DescribeVolumes", e))?;
    let mut out = Vec::new();
    for page in pages {
        for v in page.volumes() {
            let Some(id) = v.volume_id() else { continue };
            let fields = VolumeFields {
                state: v.state().map_or("unknown", |s| s.as_str()).to_owned(),
                volume_type: v.volume_type().map_or("unknown", |t| t.as_str()).to_owned(),
                size_gib: i64::from(v.size().unwrap_or(0)),
                iops: v.iops().map(i64::from),
                throughput: v.throughput().map(i64::from),
                attached_instance: v
                    .attachments()
                    .iter()
                    .find_map(|a| a.instance_id().map(str::to_owned)),
                availability_zone: v.availability_zone().unwrap_or("").to_owned(),
                create_time: time(v.create_time()),
                tags: tags(v.tags()),
                zone: zones.info(v.availability_zone().unwrap_or("")),
            };
            out.push((id.to_owned(), Resource::Volume(fields)));
        }
    }
    Ok(out)
}

/// Snapshots owned by the account itself: `OwnerIds=self`, and an
/// `owner-id` filter with the account's id, because not every endpoint
/// honours `self` — moto ignores it and answers every region with its
/// ~1,300 public snapshots of other owners, a 1–2 s response to parse on
/// each attempt, which made a describe job slow enough under throttling
/// to be caught by crashes again and again. The owner is checked here
/// too.
pub async fn snapshots(
    ec2: &aws_sdk_ec2::Client,
    owner: &str,
    only: Option<&BTreeSet<String>>,
) -> Result<Vec<(String, Resource)>, AccountError> {
    let owner_filter = Some(Filter::builder().name("owner-id").values(owner).build());
    let mut req = ec2
        .describe_snapshots()
        .owner_ids("self")
        .set_filters(Some(owner_filter.clone().into_iter().collect()));
    match only {
        Some(ids) if ids.is_empty() => return Ok(vec![]),
        Some(ids) => {
            req = req.set_filters(Some(
                [owner_filter, id_filter("snapshot-id", ids)]
                    .into_iter()
                    .flatten()
                    .collect(),
            ))
        }
        None => req = req.max_results(1000),
    }
    let pages: Vec<_> = req
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify("DescribeSnapshots", e))?;
    let mut out = Vec::new();
    for page in pages {
        for s in page.snapshots() {
            let Some(id) = s.snapshot_id() else { continue };
            if s.owner_id().is_some_and(|o| o != owner) {
                continue;
            }
            out.push((id.to_owned(), Resource::Snapshot(snapshot_fields(s))));
        }
    }
    Ok(out)
}

/// Dedicated Hosts of the account in the region (released ones too: EC2
/// keeps returning them for a while, with their release time).
///
/// A role without `ec2:DescribeHosts` (granted before Kopter read hosts)
/// is not a refusal of the whole account: hosts are left unread (`None`,
/// logged and counted) and everything else is still described.
pub async fn hosts(
    ec2: &aws_sdk_ec2::Client,
    zones: &Zones,
) -> Result<Option<Vec<(String, Resource)>>, AccountError> {
    let pages: Result<Vec<_>, _> = ec2
        .describe_hosts()
        .max_results(500)
        .into_paginator()
        .send()
        .try_collect()
        .await;
    let pages = match pages {
        Ok(p) => p,
        Err(e) if is_account_error(e.code().unwrap_or("")) => {
            crate::zones::fallbacks("hosts-not-permitted").inc();
            tracing::warn!(
                code = e.code().unwrap_or(""),
                message = e.message().unwrap_or(""),
                "DescribeHosts refused (the role predates ec2:DescribeHosts); Dedicated Hosts not read"
            );
            return Ok(None);
        }
        Err(e) => return Err(classify("DescribeHosts", e)),
    };
    let mut out = Vec::new();
    for page in pages {
        for h in page.hosts() {
            let Some(id) = h.host_id() else { continue };
            let mut fields = host_fields(h);
            fields.zone = zones.info(&fields.availability_zone);
            out.push((id.to_owned(), Resource::Host(fields)));
        }
    }
    Ok(Some(out))
}

/// A host as EC2 describes it (`HostProperties` gives the family the host
/// is priced by: `InstanceFamily`, else the family of `InstanceType`).
pub fn host_fields(h: &aws_sdk_ec2::types::Host) -> HostFields {
    let props = h.host_properties();
    let instance_type = props
        .and_then(|p| p.instance_type())
        .unwrap_or("")
        .to_owned();
    let instance_family = props
        .and_then(|p| p.instance_family())
        .filter(|f| !f.is_empty())
        .map_or_else(
            || {
                instance_type
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            },
            str::to_owned,
        );
    let mut instance_ids: Vec<String> = h
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    instance_ids.sort();
    HostFields {
        state: h.state().map_or("unknown", |s| s.as_str()).to_owned(),
        instance_family,
        instance_type,
        availability_zone: h.availability_zone().unwrap_or("").to_owned(),
        allocation_time: time(h.allocation_time()),
        release_time: time(h.release_time()),
        instance_ids,
        tags: tags(h.tags()),
        zone: ZoneInfo::default(),
    }
}

pub fn snapshot_fields(s: &aws_sdk_ec2::types::Snapshot) -> SnapshotFields {
    SnapshotFields {
        state: s.state().map_or("unknown", |st| st.as_str()).to_owned(),
        volume_size_gib: i64::from(s.volume_size().unwrap_or(0)),
        start_time: time(s.start_time()).unwrap_or(DateTime::UNIX_EPOCH),
        volume_id: s.volume_id().unwrap_or("").to_owned(),
        tags: tags(s.tags()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_details_falls_back_to_the_legacy_platform() {
        use aws_sdk_ec2::types::{Instance, PlatformValues};
        let given = Instance::builder()
            .platform_details("Red Hat Enterprise Linux")
            .build();
        assert_eq!(platform_details(&given), "Red Hat Enterprise Linux");
        let win = Instance::builder()
            .platform(PlatformValues::from("windows"))
            .build();
        assert_eq!(platform_details(&win), "Windows");
        assert_eq!(platform_details(&Instance::builder().build()), "Linux/UNIX");
        let op_only = Instance::builder()
            .usage_operation("RunInstances:0010")
            .build();
        assert_eq!(platform_details(&op_only), "");
    }

    /// `CapacityReservationId` and `InstanceLifecycle` as DescribeInstances
    /// gives them (`Instance`,
    /// <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Instance.html>):
    /// a Capacity Block instance, one in an On-Demand Capacity Reservation
    /// (no lifecycle: on-demand), and a lifecycle value the SDK does not
    /// name yet, kept as given.
    #[test]
    fn capacity_reservation_and_lifecycle_are_read() {
        use aws_sdk_ec2::types::{Instance, InstanceLifecycleType};
        let block = instance_fields(
            &Instance::builder()
                .instance_lifecycle(InstanceLifecycleType::CapacityBlock)
                .capacity_reservation_id("cr-0fedcba9876543210")
                .build(),
        );
        assert_eq!(block.lifecycle, "capacity-block");
        assert_eq!(block.capacity_reservation_id, "cr-0fedcba9876543210");
        let odcr = instance_fields(
            &Instance::builder()
                .capacity_reservation_id("cr-0123456789abcdef0")
                .build(),
        );
        assert_eq!(odcr.lifecycle, "on-demand");
        assert_eq!(odcr.capacity_reservation_id, "cr-0123456789abcdef0");
        let plain = instance_fields(&Instance::builder().build());
        assert_eq!(
            (
                plain.lifecycle.as_str(),
                plain.capacity_reservation_id.as_str()
            ),
            ("on-demand", "")
        );
        let newer = instance_fields(
            &Instance::builder()
                .instance_lifecycle(InstanceLifecycleType::from(
                    "interruptible-capacity-reservation",
                ))
                .build(),
        );
        assert_eq!(newer.lifecycle, "interruptible-capacity-reservation");
    }

    #[test]
    fn account_errors_are_the_customers_side() {
        for c in ["AuthFailure", "UnauthorizedOperation", "OptInRequired"] {
            assert!(is_account_error(c), "{c}");
        }
        for c in ["RequestLimitExceeded", "InternalError", "Unavailable", ""] {
            assert!(!is_account_error(c), "{c}");
        }
    }

    #[test]
    fn assume_role_denials_are_permanent() {
        let account = kopter_schema::AccountId::new("111122223333").unwrap();
        let denied = AccountError::from(AssumeRoleError::Denied {
            account: account.clone(),
            role_arn: "arn:aws:iam::111122223333:role/KopterAccess".into(),
            code: "AccessDenied".into(),
            message: "not authorized".into(),
        });
        assert!(matches!(denied, AccountError::Denied(ref m) if m.contains("AccessDenied")));
        let transient = AccountError::from(AssumeRoleError::Transient {
            account,
            role_arn: "arn".into(),
            message: "timeout".into(),
            source: None,
        });
        assert!(matches!(transient, AccountError::Transient(_)));
    }
}
