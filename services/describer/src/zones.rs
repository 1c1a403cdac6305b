//! Which zone a resource is in, and so which price list prices it.
//!
//! A Local Zone (`us-west-2-lax-1a`) or Wavelength Zone
//! (`us-east-1-wl1-bos-wlz-1`) belongs to a region (`us-west-2`) but has
//! its own prices: the EC2 Price List publishes them as their own
//! "regions" (`regionCode` `us-west-2-lax-1`, `us-east-1-wl1-bos1`, each
//! with its own file in the region index), and an m5.xlarge there costs
//! more than in the parent region. So each described instance, volume and
//! host carries a [`ZoneInfo`]: the zone's type and the Price List region
//! that prices it.
//!
//! The authority is `DescribeAvailabilityZones` (`ZoneType`, `GroupName`,
//! `ParentZoneName`;
//! <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AvailabilityZone.html>),
//! asked once per account and region and kept for [`ZONES_TTL`]. When it
//! cannot say — the call is refused (a role granted before Kopter read
//! zones), a zone is not in the answer, or the answer has no `ZoneType`
//! (emulators) — the zone's name decides (see [`from_name`]), and each such
//! fallback is counted in `kopter_describer_zone_fallbacks_total{reason}`.
//!
//! What moto 5.2 answers: every zone of a region with `ZoneType`
//! `availability-zone` and no `GroupName` or `ParentZoneName`; it knows no
//! Local or Wavelength Zones (and refuses to launch into one), so on moto
//! everything is priced by its region.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use kopter_runtime::metrics;
use kopter_store::inventory::ZoneInfo;
use prometheus::{IntCounter, IntCounterVec, Opts};

use crate::ec2::{AccountError, classify, is_account_error};

/// How long an account-region's zones are kept: zones are added a few
/// times a year, and an account opts into a Local Zone group before it can
/// launch there; a zone newer than the cached answer is told by its name
/// (counted as `zone-not-listed`) until the answer is renewed.
pub const ZONES_TTL: Duration = Duration::from_secs(6 * 3600);

/// `ZoneType` of an ordinary Availability Zone.
pub const AVAILABILITY_ZONE: &str = "availability-zone";
/// `ZoneType` of a Local Zone.
pub const LOCAL_ZONE: &str = "local-zone";
/// `ZoneType` of a Wavelength Zone.
pub const WAVELENGTH_ZONE: &str = "wavelength-zone";

/// `kopter_describer_zone_fallbacks_total{reason}`: zones (and hosts'
/// tenancy) worked out without EC2's word for it.
pub(crate) fn fallbacks(reason: &str) -> IntCounter {
    static M: LazyLock<IntCounterVec> = LazyLock::new(|| {
        metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_describer_zone_fallbacks_total",
                    "Zones, hosts or tenancies worked out without EC2's answer, by reason \
                     (zones-not-permitted, zone-not-listed, no-zone-type, tenancy-from-host-id, \
                     hosts-not-permitted).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        )
    });
    M.with_label_values(&[reason])
}

/// The zones of one account in one region, by zone name.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    region: String,
    by_name: HashMap<String, ZoneInfo>,
}

impl Zones {
    /// Zones known by name only (nothing from EC2).
    pub fn by_name_only(region: &str) -> Self {
        Self {
            region: region.to_owned(),
            by_name: HashMap::new(),
        }
    }

    /// The zones of a `DescribeAvailabilityZones` answer for `region`.
    pub fn from_answer(region: &str, zones: &[aws_sdk_ec2::types::AvailabilityZone]) -> Self {
        let by_name = zones
            .iter()
            .filter_map(|z| {
                let name = z.zone_name()?;
                let info = match z.zone_type() {
                    Some(t) => classify_zone(region, name, t, z.group_name()),
                    None => {
                        fallbacks("no-zone-type").inc();
                        from_name(region, name)
                    }
                };
                Some((name.to_owned(), info))
            })
            .collect();
        Self {
            region: region.to_owned(),
            by_name,
        }
    }

    /// What prices a resource in zone `name` (empty: nothing known, the
    /// region's prices).
    pub fn info(&self, name: &str) -> ZoneInfo {
        if name.is_empty() {
            return ZoneInfo::default();
        }
        match self.by_name.get(name) {
            Some(z) => z.clone(),
            None => {
                if !self.by_name.is_empty() {
                    fallbacks("zone-not-listed").inc();
                }
                from_name(&self.region, name)
            }
        }
    }
}

/// Reads the account's zones in the region the client is for. A refused
/// call (`UnauthorizedOperation`: the role lacks
/// `ec2:DescribeAvailabilityZones`) gives name-only zones, logged and
/// counted; other failures are the caller's to retry.
pub async fn read(ec2: &aws_sdk_ec2::Client, region: &str) -> Result<Arc<Zones>, AccountError> {
    match ec2
        .describe_availability_zones()
        .all_availability_zones(true)
        .send()
        .await
    {
        Ok(out) => Ok(Arc::new(Zones::from_answer(
            region,
            out.availability_zones(),
        ))),
        Err(e) if is_account_error(e.code().unwrap_or("")) => {
            fallbacks("zones-not-permitted").inc();
            tracing::warn!(
                region,
                code = e.code().unwrap_or(""),
                message = e.message().unwrap_or(""),
                "DescribeAvailabilityZones refused; zones told apart by name"
            );
            Ok(Arc::new(Zones::by_name_only(region)))
        }
        Err(e) => Err(classify("DescribeAvailabilityZones", e)),
    }
}

/// A zone EC2 described: its type decides. A Local Zone is priced under
/// its group (`GroupName`, which for a Local Zone is the Price List
/// `regionCode`: `us-west-2-lax-1`); a Wavelength Zone under its location
/// (see [`wavelength_location`]); an Availability Zone under its region.
pub fn classify_zone(region: &str, name: &str, zone_type: &str, group: Option<&str>) -> ZoneInfo {
    let price_region = match zone_type {
        LOCAL_ZONE => group
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| strip_zone_letter(name).to_owned()),
        WAVELENGTH_ZONE => wavelength_location(name)
            .or_else(|| group.map(str::to_owned))
            .unwrap_or_default(),
        _ => String::new(),
    };
    ZoneInfo {
        zone_type: zone_type.to_owned(),
        price_region: if price_region == region {
            String::new()
        } else {
            price_region
        },
    }
}

/// A zone EC2 did not describe, told by its name: `{region}{letter}` is an
/// Availability Zone; a name with `-wlz-` a Wavelength Zone; any other
/// `{region}-…{letter}` a Local Zone whose group is the name without its
/// letter (`us-west-2-lax-1a` → `us-west-2-lax-1`, the pattern every Local
/// Zone in the 2025 region index follows).
pub fn from_name(region: &str, name: &str) -> ZoneInfo {
    let Some(rest) = name.strip_prefix(region) else {
        return ZoneInfo::default();
    };
    if rest.len() == 1 && rest.bytes().all(|b| b.is_ascii_lowercase()) {
        return ZoneInfo {
            zone_type: AVAILABILITY_ZONE.into(),
            price_region: String::new(),
        };
    }
    if !rest.starts_with('-') {
        return ZoneInfo::default();
    }
    if name.contains("-wlz-") {
        return classify_zone(region, name, WAVELENGTH_ZONE, None);
    }
    classify_zone(region, name, LOCAL_ZONE, None)
}

/// `us-west-2-lax-1a` → `us-west-2-lax-1`.
fn strip_zone_letter(name: &str) -> &str {
    match name.as_bytes().last() {
        Some(b) if b.is_ascii_lowercase() => &name[..name.len() - 1],
        _ => name,
    }
}

/// The Price List location of a Wavelength Zone: `{carrier group}-{city}-wlz-{n}`
/// → `{carrier group}-{city}{n}` (`us-east-1-wl1-bos-wlz-1` →
/// `us-east-1-wl1-bos1`). The zone's `GroupName` names the carrier's group
/// (`us-east-1-wl1`), which spans cities with different prices; the region
/// index lists each city as its own `regionCode` (`us-east-1-wl1-bos1`,
/// `us-east-1-wl1-atl1`, … in the 2025-05 index). The mapping is read off
/// those names, not documented by AWS: a zone it does not fit is priced
/// under its group, and missing prices there are marked, never guessed.
pub fn wavelength_location(name: &str) -> Option<String> {
    let (head, n) = name.rsplit_once("-wlz-")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (group, city) = head.rsplit_once('-')?;
    Some(format!("{group}-{city}{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::AvailabilityZone;

    fn zone(
        name: &str,
        ty: Option<&str>,
        group: Option<&str>,
        parent: Option<&str>,
    ) -> AvailabilityZone {
        let mut b = AvailabilityZone::builder()
            .zone_name(name)
            .region_name("us-west-2");
        if let Some(t) = ty {
            b = b.zone_type(t);
        }
        if let Some(g) = group {
            b = b.group_name(g);
        }
        if let Some(p) = parent {
            b = b.parent_zone_name(p);
        }
        b.build()
    }

    /// The shapes of the API reference's examples: an AZ (whose group is
    /// `us-west-2-zg-1`, not a price region), a Local Zone and a Wavelength
    /// Zone with their parents.
    #[test]
    fn ec2s_answer_decides_the_price_region() {
        let answer = [
            zone(
                "us-west-2a",
                Some("availability-zone"),
                Some("us-west-2-zg-1"),
                None,
            ),
            zone(
                "us-west-2-lax-1a",
                Some("local-zone"),
                Some("us-west-2-lax-1"),
                Some("us-west-2a"),
            ),
            zone(
                "us-west-2-wl1-den-wlz-1",
                Some("wavelength-zone"),
                Some("us-west-2-wl1"),
                Some("us-west-2b"),
            ),
        ];
        let zones = Zones::from_answer("us-west-2", &answer);
        assert_eq!(
            zones.info("us-west-2a").price_region("us-west-2"),
            "us-west-2"
        );
        assert_eq!(zones.info("us-west-2a").zone_type, "availability-zone");
        let lax = zones.info("us-west-2-lax-1a");
        assert_eq!(lax.zone_type, "local-zone");
        assert_eq!(lax.price_region("us-west-2"), "us-west-2-lax-1");
        let den = zones.info("us-west-2-wl1-den-wlz-1");
        assert_eq!(den.zone_type, "wavelength-zone");
        // `us-west-2-wl1-den1` is in the 2025-05 region index.
        assert_eq!(den.price_region("us-west-2"), "us-west-2-wl1-den1");
    }

    /// What moto gives (type `availability-zone`, no group) prices by
    /// region; a zone missing from the answer falls back to its name.
    #[test]
    fn moto_shaped_answers_and_unlisted_zones() {
        let moto = [
            zone("us-west-2a", Some("availability-zone"), None, None),
            zone("us-west-2b", Some("availability-zone"), None, None),
        ];
        let zones = Zones::from_answer("us-west-2", &moto);
        assert_eq!(
            zones.info("us-west-2b"),
            ZoneInfo {
                zone_type: "availability-zone".into(),
                price_region: String::new(),
            }
        );
        let before = fallbacks("zone-not-listed").get();
        let lax = zones.info("us-west-2-lax-1b");
        assert_eq!(lax.zone_type, "local-zone");
        assert_eq!(lax.price_region, "us-west-2-lax-1");
        assert!(fallbacks("zone-not-listed").get() > before);
        // No type at all: the name decides, counted.
        let before = fallbacks("no-zone-type").get();
        let zones = Zones::from_answer("us-west-2", &[zone("us-west-2-phx-2a", None, None, None)]);
        assert_eq!(
            zones.info("us-west-2-phx-2a").price_region,
            "us-west-2-phx-2"
        );
        assert!(fallbacks("no-zone-type").get() > before);
        assert_eq!(zones.info(""), ZoneInfo::default());
    }

    #[test]
    fn names_alone() {
        assert_eq!(
            from_name("us-east-1", "us-east-1c").zone_type,
            "availability-zone"
        );
        assert_eq!(from_name("us-east-1", "us-east-1c").price_region, "");
        assert_eq!(
            from_name("us-east-1", "us-east-1-bos-1a").price_region,
            "us-east-1-bos-1"
        );
        assert_eq!(
            from_name("us-east-1", "us-east-1-wl1-bos-wlz-1").price_region,
            "us-east-1-wl1-bos1"
        );
        // Another region's zone, or not a zone name: nothing known.
        assert_eq!(from_name("us-east-1", "eu-west-1a"), ZoneInfo::default());
        assert_eq!(from_name("us-east-1", "us-east-12"), ZoneInfo::default());
        assert_eq!(wavelength_location("us-east-1-wl1-bos-wlz-x"), None);
    }
}
