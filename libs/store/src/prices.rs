//! Prices in DynamoDB (the `prices` table): versioned on-demand, reserved
//! and EBS prices per region, and spot price history.
//!
//! Key layout (all rows share the table's `pk`/`sk`):
//!
//! | pk | sk | row |
//! |---|---|---|
//! | `regions` | `{region}` | [`RegionPointer`]: the version in force now |
//! | `versions#{region}` | `{version}` | [`VersionRecord`]: every version fully ingested |
//! | `ec2#{region}#{version}` | `{instance_type}#{tenancy}` | [`InstancePrices`] |
//! | `ebs#{region}#{version}` | [`ebs_sk`]: `{volume}#{kind}#{usage_type}[#{beginRange}]` | [`EbsPriceItem`] |
//! | `spot#{region}#{instance_type}` | `{az}#{product}#{timestamp}` | [`SpotPoint`] |
//! | `spot-cursor` | `{region}` | [`SpotCursor`]: newest spot point fetched |
//! | `claims#{region}` | `{version}` | [`VersionClaim`]: the content a version was first stored with |
//!
//! **Visibility.** A version's price rows are written under their own
//! partition (`…#{version}`) first; only when every row is written are the
//! version record and then the region pointer put ([`PriceStore::commit`]).
//! Readers go through the pointer or the version records, so a half-written
//! version is never seen and a failed ingest leaves the previous one in
//! force. Re-writing a version writes the same keys (idempotent).
//!
//! **Order of versions** is their file's `publicationDate` (a time), never
//! the `version` string: AWS writes versions as `yyyymmddhhmmss`, but a
//! mirror or an operator's file may not, and a string that sorts high must
//! not become current over newer prices. The pointer's conditional put
//! compares [`RegionPointer::published_unix`].
//!
//! **Price in force at a past hour.** [`version_at`] picks, among the
//! committed versions of a region, the newest one published at or before
//! the hour; hours before the oldest version kept use the oldest one.
//!
//! **One content per version.** Before a version's rows are written, its
//! content digest is claimed ([`PriceStore::claim_version`]); a second
//! ingest of the same version with other content is refused before it can
//! overwrite rows that price past hours.

use std::collections::BTreeMap;

use anyhow::Context;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, SecondsFormat, Utc};
use kopter_runtime::dynamo;
use kopter_schema::{Names, Table};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// `pk` of the region pointers.
pub const REGIONS_PK: &str = "regions";
/// `pk` of the spot cursors.
pub const SPOT_CURSOR_PK: &str = "spot-cursor";

/// What one region ingest wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCounts {
    pub on_demand: u64,
    pub reserved: u64,
    pub ebs: u64,
    /// Rows written (instance type × tenancy rows + EBS rows).
    pub rows: u64,
}

/// The version of a region's prices in force now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionPointer {
    pub pk: String,
    pub sk: String,
    pub region: String,
    pub version: String,
    /// The offer file's `publicationDate`.
    pub publication_date: String,
    /// Where the file came from (URL, or Price List API ARN).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub ingested_at: DateTime<Utc>,
    pub counts: StoredCounts,
    /// `publication_date` as Unix seconds: what orders versions (the
    /// pointer's conditional put compares it). Absent in rows written
    /// before it was kept, and when the date does not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_unix: Option<i64>,
    /// SHA-256 (hex) of the version's rows, as claimed
    /// ([`PriceStore::claim_version`]); absent in older rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
}

/// A version fully ingested (same fields as the pointer; kept for history).
pub type VersionRecord = RegionPointer;

impl RegionPointer {
    pub fn new(
        region: &str,
        version: &str,
        publication_date: &str,
        source: &str,
        etag: Option<String>,
        counts: StoredCounts,
    ) -> Self {
        Self {
            pk: REGIONS_PK.into(),
            sk: region.into(),
            region: region.into(),
            version: version.into(),
            publication_date: publication_date.into(),
            source: source.into(),
            etag,
            ingested_at: Utc::now(),
            counts,
            published_unix: parse_published(publication_date).map(|d| d.timestamp()),
            content_sha256: None,
        }
    }

    /// When this version was published (`None` if the file's date does not
    /// parse).
    pub fn published(&self) -> Option<DateTime<Utc>> {
        parse_published(&self.publication_date)
    }
}

/// An offer file's `publicationDate` (RFC 3339, e.g.
/// `2025-05-23T23:27:44Z`) as a time; `None` if it is not one.
pub fn parse_published(publication_date: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(publication_date)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// `pk` of a region's version claims.
pub fn claims_pk(region: &str) -> String {
    format!("claims#{region}")
}

/// The content a version was first stored with (its rows' digest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionClaim {
    pub pk: String,
    pub sk: String,
    pub region: String,
    pub version: String,
    /// SHA-256 (hex) of the version's rows.
    pub content_sha256: String,
    pub claimed_at: DateTime<Utc>,
}

/// What [`PriceStore::claim_version`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First ingest of the version: its content is now the claimed one.
    New,
    /// The version was claimed with this same content (a retry or a
    /// re-ingest of the same file): writing its rows again is harmless.
    Same,
    /// The version was claimed with other content (its digest here).
    Conflict { stored_sha256: String },
}

/// On-demand price of one operation (OS × license × software) of an
/// instance type × tenancy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnDemandEntry {
    pub usd_per_hour: f64,
    pub operating_system: String,
    pub license_model: String,
    pub pre_installed_sw: String,
    /// The term's `effectiveDate`.
    pub effective: String,
}

/// One reserved offering's rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedEntry {
    /// Hourly rate plus the upfront fee amortised over the term.
    pub effective_hourly_usd: f64,
    pub upfront_usd: f64,
    pub hourly_usd: f64,
    pub effective: String,
}

/// Every price of one instance type × tenancy in one region and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstancePrices {
    pub pk: String,
    pub sk: String,
    pub region: String,
    pub version: String,
    pub instance_type: String,
    /// The offer's tenancy: `Shared`, `Dedicated` or `Host`.
    pub tenancy: String,
    /// Keyed by `operation` (= DescribeInstances' `UsageOperation`).
    pub on_demand: BTreeMap<String, OnDemandEntry>,
    /// Keyed by [`reserved_key`].
    #[serde(default)]
    pub reserved: BTreeMap<String, ReservedEntry>,
}

/// Key of a reserved offering in [`InstancePrices::reserved`]:
/// `{operation}|{years}yr|{class}|{purchase option}`, e.g.
/// `RunInstances|1yr|standard|No Upfront`.
pub fn reserved_key(operation: &str, years: u8, class: &str, option: &str) -> String {
    format!("{operation}|{years}yr|{class}|{option}")
}

pub fn instance_pk(region: &str, version: &str) -> String {
    format!("ec2#{region}#{version}")
}
pub fn instance_sk(instance_type: &str, tenancy: &str) -> String {
    format!("{instance_type}#{tenancy}")
}
pub fn ebs_pk(region: &str, version: &str) -> String {
    format!("ebs#{region}#{version}")
}
pub fn versions_pk(region: &str) -> String {
    format!("versions#{region}")
}
pub fn spot_pk(region: &str, instance_type: &str) -> String {
    format!("spot#{region}#{instance_type}")
}
/// `at` as a fixed-width sort key component (UTC, seconds).
pub fn spot_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An EBS price (storage, IOPS, throughput or snapshot storage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EbsPriceItem {
    pub pk: String,
    pub sk: String,
    pub region: String,
    pub version: String,
    /// `gp3`, `io2`, … or `snapshot`.
    pub volume_api_name: String,
    /// `storage`, `iops`, `throughput` or `snapshot`.
    pub kind: String,
    pub usage_type: String,
    pub usd_per_unit: f64,
    /// `GB-Mo`, `IOPS-Mo`, `GiBps-mo`.
    pub unit: String,
    pub effective: String,
    /// The price dimension's `beginRange` in `unit`s (rows written before
    /// ranges were kept read 0).
    #[serde(default)]
    pub begin_range: f64,
    /// Its `endRange`; `None` for `"Inf"` (and in rows written before
    /// ranges were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_range: Option<f64>,
}

impl EbsPriceItem {
    /// The quantity range `[begin, end)` (in `unit`s, end `None` = no end)
    /// this price applies to: the file's `beginRange`/`endRange` when they
    /// say more than `0`–`Inf`, else the tier the usage type names
    /// ([`tier_range`]), else everything.
    pub fn applies_to(&self) -> (f64, Option<f64>) {
        if self.begin_range > 0.0 || self.end_range.is_some() {
            (self.begin_range, self.end_range)
        } else {
            tier_range(&self.usage_type).unwrap_or((0.0, None))
        }
    }
}

/// The range of a tier that AWS publishes as a product of its own, whose
/// price dimension reads `0`–`Inf`, by usage type (any region prefix):
/// io2 provisioned IOPS per volume, `EBS:VolumeP-IOPS.io2` up to 32,000,
/// `….io2.tier2` 32,001–64,000, `….io2.tier3` above 64,000
/// (<https://aws.amazon.com/ebs/pricing/>, "Provisioned IOPS SSD (io2)";
/// the usage types as the Cost and Usage Report names them). `None`:
/// not a known tier product.
pub fn tier_range(usage_type: &str) -> Option<(f64, Option<f64>)> {
    let name = usage_type
        .rsplit_once("EBS:")
        .map_or(usage_type, |(_, n)| n);
    match name {
        "VolumeP-IOPS.io2" => Some((0.0, Some(32_000.0))),
        "VolumeP-IOPS.io2.tier2" => Some((32_000.0, Some(64_000.0))),
        "VolumeP-IOPS.io2.tier3" => Some((64_000.0, None)),
        _ => None,
    }
}

/// Sort key of an EBS price row: `{volume}#{kind}#{usage_type}`, and
/// `#{beginRange}` for a dimension that starts above 0 (a product with
/// several tiers in its own dimensions), so tiers never overwrite each
/// other and untiered rows keep their key.
pub fn ebs_sk(volume_api_name: &str, kind: &str, usage_type: &str, begin_range: f64) -> String {
    if begin_range > 0.0 {
        format!("{volume_api_name}#{kind}#{usage_type}#{begin_range}")
    } else {
        format!("{volume_api_name}#{kind}#{usage_type}")
    }
}

/// One spot price observation (a price change as AWS reports it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpotPoint {
    pub pk: String,
    pub sk: String,
    pub region: String,
    pub instance_type: String,
    pub availability_zone: String,
    /// e.g. `Linux/UNIX`, `Windows (Amazon VPC)`.
    pub product_description: String,
    pub at: DateTime<Utc>,
    pub usd_per_hour: f64,
}

impl SpotPoint {
    pub fn new(
        region: &str,
        instance_type: &str,
        availability_zone: &str,
        product_description: &str,
        at: DateTime<Utc>,
        usd_per_hour: f64,
    ) -> Self {
        Self {
            pk: spot_pk(region, instance_type),
            sk: format!(
                "{availability_zone}#{product_description}#{}",
                spot_time(at)
            ),
            region: region.into(),
            instance_type: instance_type.into(),
            availability_zone: availability_zone.into(),
            product_description: product_description.into(),
            at,
            usd_per_hour,
        }
    }
}

/// The newest spot point fetched for a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpotCursor {
    pub pk: String,
    pub sk: String,
    pub newest: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Rows of the `prices` table.
#[derive(Clone, Debug)]
pub struct PriceStore {
    ddb: Client,
    table: String,
}

impl PriceStore {
    pub fn new(ddb: Client, names: &Names) -> Self {
        Self {
            ddb,
            table: names.table(Table::Prices),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Puts rows in batches of 25, `concurrency` batches in flight,
    /// retrying unprocessed items with backoff. Puts are idempotent.
    pub async fn put_all<T: Serialize>(
        &self,
        rows: &[T],
        concurrency: usize,
    ) -> anyhow::Result<()> {
        let mut requests = Vec::with_capacity(rows.len());
        for row in rows {
            let item = serde_dynamo::to_item(row).context("encode price row")?;
            requests.push(
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                    .build(),
            );
        }
        kopter_runtime::dynamo::batch_write(&self.ddb, &self.table, requests, concurrency).await
    }

    /// Makes a fully written version the one in force: puts its version
    /// record, then the region pointer — unless the pointer already names a
    /// version published later (an older ingest finishing late never rolls
    /// prices back). Returns whether the pointer now names this version.
    /// A pointer without `published_unix` is refused: it cannot be ordered.
    pub async fn commit(&self, pointer: &RegionPointer) -> anyhow::Result<bool> {
        let Some(published) = pointer.published_unix else {
            anyhow::bail!(
                "version {} of {} has no usable publicationDate ({:?}): it cannot be ordered among the region's versions",
                pointer.version,
                pointer.region,
                pointer.publication_date
            );
        };
        let mut record = pointer.clone();
        record.pk = versions_pk(&pointer.region);
        record.sk = pointer.version.clone();
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(&record)?))
            .send()
            .await
            .with_context(|| format!("put version record {} {}", record.region, record.version))?;
        let put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(pointer)?))
            // Newer by publication time; a pointer written before
            // `published_unix` was kept is compared by version string, as
            // it was then.
            .condition_expression(
                "attribute_not_exists(pk) OR published_unix <= :p \
                 OR (attribute_not_exists(published_unix) AND version <= :v)",
            )
            .expression_attribute_values(":p", AttributeValue::N(published.to_string()))
            .expression_attribute_values(":v", AttributeValue::S(pointer.version.clone()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(anyhow::Error::new(e))
                .with_context(|| format!("put region pointer {}", pointer.region)),
        }
    }

    /// Claims `version` of `region` for the content whose digest is
    /// `sha256`, before its rows are written: a conditional put that
    /// succeeds for the first claim and for the same content again, and
    /// reports the stored digest when the version was claimed with other
    /// content.
    pub async fn claim_version(
        &self,
        region: &str,
        version: &str,
        sha256: &str,
    ) -> anyhow::Result<Claim> {
        let claim = VersionClaim {
            pk: claims_pk(region),
            sk: version.into(),
            region: region.into(),
            version: version.into(),
            content_sha256: sha256.into(),
            claimed_at: Utc::now(),
        };
        if let Some(existing) = self.get::<VersionClaim>(&claim.pk, version).await? {
            return Ok(if existing.content_sha256 == sha256 {
                Claim::Same
            } else {
                Claim::Conflict {
                    stored_sha256: existing.content_sha256,
                }
            });
        }
        let put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(&claim)?))
            .condition_expression("attribute_not_exists(pk) OR content_sha256 = :d")
            .expression_attribute_values(":d", AttributeValue::S(sha256.into()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::New),
            // Claimed by a concurrent ingest between the read and the put.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                let stored = self
                    .get::<VersionClaim>(&claim.pk, version)
                    .await?
                    .map(|c| c.content_sha256)
                    .unwrap_or_default();
                Ok(Claim::Conflict {
                    stored_sha256: stored,
                })
            }
            Err(e) => Err(anyhow::Error::new(e))
                .with_context(|| format!("claim version {version} of {region}")),
        }
    }

    /// The claim of a version, if it was claimed.
    pub async fn version_claim(
        &self,
        region: &str,
        version: &str,
    ) -> anyhow::Result<Option<VersionClaim>> {
        self.get(&claims_pk(region), version).await
    }

    /// The record of one fully ingested version.
    pub async fn version_record(
        &self,
        region: &str,
        version: &str,
    ) -> anyhow::Result<Option<VersionRecord>> {
        self.get(&versions_pk(region), version).await
    }

    /// The version of `region` in force now.
    pub async fn current(&self, region: &str) -> anyhow::Result<Option<RegionPointer>> {
        self.get(REGIONS_PK, region).await
    }

    /// Every region with prices, and its version in force.
    pub async fn regions(&self) -> anyhow::Result<Vec<RegionPointer>> {
        self.query_pk(REGIONS_PK).await
    }

    /// Every version of `region` fully ingested, oldest first.
    pub async fn versions(&self, region: &str) -> anyhow::Result<Vec<VersionRecord>> {
        self.query_pk(&versions_pk(region)).await
    }

    /// One instance type × tenancy's prices in a version.
    pub async fn instance_prices(
        &self,
        region: &str,
        version: &str,
        instance_type: &str,
        tenancy: &str,
    ) -> anyhow::Result<Option<InstancePrices>> {
        self.get(
            &instance_pk(region, version),
            &instance_sk(instance_type, tenancy),
        )
        .await
    }

    /// Every instance price row of a version (tests and tools; a real
    /// region has a few thousand rows).
    pub async fn all_instance_prices(
        &self,
        region: &str,
        version: &str,
    ) -> anyhow::Result<Vec<InstancePrices>> {
        self.query_pk(&instance_pk(region, version)).await
    }

    /// One page of a version's instance price rows (instance type ×
    /// tenancy, in sort-key order) after row `after` (its sort key) or
    /// from the first, whose sort key starts with `sk_prefix` (`m5.` for a
    /// family, `m5.large#` for one type). One DynamoDB query of at most
    /// `limit` rows; `more` says whether rows may follow.
    pub async fn instance_prices_page(
        &self,
        region: &str,
        version: &str,
        after: Option<&str>,
        sk_prefix: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<(Vec<InstancePrices>, bool)> {
        let pk = instance_pk(region, version);
        let mut q = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression(if sk_prefix.is_some() {
                "pk = :pk AND begins_with(sk, :prefix)"
            } else {
                "pk = :pk"
            })
            .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
            .limit(limit.clamp(1, 1000) as i32)
            .consistent_read(true);
        if let Some(prefix) = sk_prefix {
            q = q.expression_attribute_values(":prefix", AttributeValue::S(prefix.into()));
        }
        if let Some(sk) = after {
            q = q
                .exclusive_start_key("pk", AttributeValue::S(pk.clone()))
                .exclusive_start_key("sk", AttributeValue::S(sk.into()));
        }
        let out = q
            .send()
            .await
            .with_context(|| format!("query a page of {pk} in {}", self.table))?;
        let rows = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).context("decode an instance price row"))
            .collect::<anyhow::Result<Vec<InstancePrices>>>()?;
        let more = out.last_evaluated_key.is_some_and(|k| !k.is_empty());
        Ok((rows, more))
    }

    /// The EBS prices of a version.
    pub async fn ebs_prices(
        &self,
        region: &str,
        version: &str,
    ) -> anyhow::Result<Vec<EbsPriceItem>> {
        self.query_pk(&ebs_pk(region, version)).await
    }

    /// The spot price in force at `at`: the newest point at or before it
    /// for this instance type, AZ and product description.
    pub async fn spot_price_at(
        &self,
        region: &str,
        instance_type: &str,
        availability_zone: &str,
        product_description: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Option<SpotPoint>> {
        let prefix = format!("{availability_zone}#{product_description}#");
        let out = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", AttributeValue::S(spot_pk(region, instance_type)))
            .expression_attribute_values(":lo", AttributeValue::S(prefix.clone()))
            .expression_attribute_values(
                ":hi",
                AttributeValue::S(format!("{prefix}{}", spot_time(at))),
            )
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .with_context(|| {
                format!("query spot prices of {instance_type} in {availability_zone}")
            })?;
        match out.items.unwrap_or_default().into_iter().next() {
            Some(item) => Ok(Some(serde_dynamo::from_item(item)?)),
            None => Ok(None),
        }
    }

    /// The spot points of (type, AZ, product) that price `[from, to)`: the
    /// one in force at `from` and every change before `to`, oldest first.
    /// Two bounded queries however long the kept history is.
    pub async fn spot_window(
        &self,
        region: &str,
        instance_type: &str,
        availability_zone: &str,
        product_description: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SpotPoint>> {
        let mut points: Vec<SpotPoint> = self
            .spot_price_at(
                region,
                instance_type,
                availability_zone,
                product_description,
                from,
            )
            .await?
            .into_iter()
            .collect();
        let prefix = format!("{availability_zone}#{product_description}#");
        let pk = spot_pk(region, instance_type);
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
            .expression_attribute_values(
                ":lo",
                AttributeValue::S(format!("{prefix}{}", spot_time(from))),
            )
            .expression_attribute_values(
                ":hi",
                AttributeValue::S(format!("{prefix}{}", spot_time(to))),
            );
        let window: Vec<SpotPoint> =
            dynamo::query_all(q, &format!("{pk} in {}", self.table)).await?;
        for p in window {
            // The point in force at `from` may also fall in the range.
            if p.at < to && points.first().is_none_or(|first| first.sk != p.sk) {
                points.push(p);
            }
        }
        points.sort_by_key(|p| p.at);
        Ok(points)
    }

    /// Every spot point of an instance type in a region (tests and tools).
    pub async fn spot_history(
        &self,
        region: &str,
        instance_type: &str,
    ) -> anyhow::Result<Vec<SpotPoint>> {
        self.query_pk(&spot_pk(region, instance_type)).await
    }

    pub async fn spot_cursor(&self, region: &str) -> anyhow::Result<Option<SpotCursor>> {
        self.get(SPOT_CURSOR_PK, region).await
    }

    pub async fn set_spot_cursor(&self, region: &str, newest: DateTime<Utc>) -> anyhow::Result<()> {
        let cursor = SpotCursor {
            pk: SPOT_CURSOR_PK.into(),
            sk: region.into(),
            newest,
            updated_at: Utc::now(),
        };
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(&cursor)?))
            .send()
            .await
            .with_context(|| format!("put spot cursor of {region}"))?;
        Ok(())
    }

    async fn get<T: DeserializeOwned>(&self, pk: &str, sk: &str) -> anyhow::Result<Option<T>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("get {pk} / {sk} from {}", self.table))?;
        match out.item {
            Some(item) => Ok(Some(
                serde_dynamo::from_item(item).with_context(|| format!("decode {pk} / {sk}"))?,
            )),
            None => Ok(None),
        }
    }

    async fn query_pk<T: DeserializeOwned>(&self, pk: &str) -> anyhow::Result<Vec<T>> {
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
            .consistent_read(true);
        dynamo::query_all(q, &format!("{pk} in {}", self.table)).await
    }
}

/// The version in force at `at`: the newest of `versions` by publication
/// time published at or before it; before the oldest one, the oldest one
/// (prices older than what Kopter has seen are unknown, and the oldest
/// known is the best estimate). The `version` string only breaks ties of
/// one publication time. Versions whose publication date does not parse
/// cannot be placed in time and are used only when no version can (rows
/// from before dates were checked).
pub fn version_at(versions: &[VersionRecord], at: DateTime<Utc>) -> Option<&VersionRecord> {
    let sorted = by_publication(versions);
    sorted
        .iter()
        .rev()
        .find(|(p, _)| p.is_some_and(|p| p <= at))
        .or_else(|| sorted.first())
        .map(|(_, v)| *v)
}

/// `versions` with their publication times, oldest first (ties by
/// version string); undated ones only when none is dated.
pub fn by_publication(versions: &[VersionRecord]) -> Vec<(Option<DateTime<Utc>>, &VersionRecord)> {
    let mut sorted: Vec<_> = versions.iter().map(|v| (v.published(), v)).collect();
    if sorted.iter().any(|(p, _)| p.is_some()) {
        sorted.retain(|(p, _)| p.is_some());
    }
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.version.cmp(&b.1.version)));
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: &str, published: &str) -> VersionRecord {
        RegionPointer::new(
            "eu-west-1",
            version,
            published,
            "x",
            None,
            StoredCounts::default(),
        )
    }

    #[test]
    fn version_at_picks_the_one_published_before() {
        let v = vec![
            record("20250601000000", "2025-06-01T00:00:00Z"),
            record("20250501000000", "2025-05-01T00:00:00Z"),
            record("20250515000000", "2025-05-15T12:00:00Z"),
        ];
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            version_at(&v, at("2025-05-20T00:00:00Z")).unwrap().version,
            "20250515000000"
        );
        assert_eq!(
            version_at(&v, at("2025-05-15T12:00:00Z")).unwrap().version,
            "20250515000000"
        );
        assert_eq!(
            version_at(&v, at("2025-05-15T11:59:59Z")).unwrap().version,
            "20250501000000"
        );
        assert_eq!(
            version_at(&v, at("2026-01-01T00:00:00Z")).unwrap().version,
            "20250601000000"
        );
        // Before the oldest: the oldest.
        assert_eq!(
            version_at(&v, at("2024-01-01T00:00:00Z")).unwrap().version,
            "20250501000000"
        );
        assert!(version_at(&[], at("2024-01-01T00:00:00Z")).is_none());
    }

    #[test]
    fn ebs_rows_apply_the_file_range_else_the_tier_their_usage_type_names() {
        let row = |usage: &str, begin: f64, end: Option<f64>| EbsPriceItem {
            pk: String::new(),
            sk: ebs_sk("io2", "iops", usage, begin),
            region: "us-east-2".into(),
            version: "v".into(),
            volume_api_name: "io2".into(),
            kind: "iops".into(),
            usage_type: usage.into(),
            usd_per_unit: 0.065,
            unit: "IOPS-Mo".into(),
            effective: String::new(),
            begin_range: begin,
            end_range: end,
        };
        // Tier products (0–Inf in the file), any region prefix.
        assert_eq!(
            row("EBS:VolumeP-IOPS.io2", 0.0, None).applies_to(),
            (0.0, Some(32_000.0))
        );
        assert_eq!(
            row("USE2-EBS:VolumeP-IOPS.io2.tier2", 0.0, None).applies_to(),
            (32_000.0, Some(64_000.0))
        );
        assert_eq!(
            row("EBS:VolumeP-IOPS.io2.tier3", 0.0, None).applies_to(),
            (64_000.0, None)
        );
        // Untiered: everything. The file's own range wins.
        assert_eq!(
            row("EBS:VolumeP-IOPS.piops", 0.0, None).applies_to(),
            (0.0, None)
        );
        let ranged = row("USE2-EBS:VolumeP-IOPS.io2", 32_000.0, Some(64_000.0));
        assert_eq!(ranged.applies_to(), (32_000.0, Some(64_000.0)));
        // Tiers of one product have their own keys; untiered keys are as
        // before.
        assert_eq!(ranged.sk, "io2#iops#USE2-EBS:VolumeP-IOPS.io2#32000");
        assert_eq!(
            row("EBS:VolumeP-IOPS.io2", 0.0, None).sk,
            "io2#iops#EBS:VolumeP-IOPS.io2"
        );
        // Rows written before ranges were kept still read.
        let old: EbsPriceItem = serde_json::from_value(serde_json::json!({
            "pk": "ebs#us-east-1#v", "sk": "gp3#storage#EBS:VolumeUsage.gp3",
            "region": "us-east-1", "version": "v", "volume_api_name": "gp3",
            "kind": "storage", "usage_type": "EBS:VolumeUsage.gp3",
            "usd_per_unit": 0.08, "unit": "GB-Mo", "effective": ""
        }))
        .unwrap();
        assert_eq!(old.applies_to(), (0.0, None));
    }

    #[test]
    fn versions_are_ordered_by_publication_time_not_by_version_string() {
        // The case: a reprice published 2025-08-03 under a
        // version that sorts before AWS's timestamps.
        let v = vec![
            record("20250801000000", "2025-08-01T00:00:00Z"),
            record("0801-reprice", "2025-08-03T00:00:00Z"),
            record("zz-undated", "not a date"),
        ];
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            version_at(&v, at("2025-08-05T00:00:00Z")).unwrap().version,
            "0801-reprice"
        );
        assert_eq!(
            version_at(&v, at("2025-08-02T00:00:00Z")).unwrap().version,
            "20250801000000"
        );
        // Undated versions are never chosen while dated ones exist…
        assert_eq!(
            version_at(&v, at("2025-07-01T00:00:00Z")).unwrap().version,
            "20250801000000"
        );
        // …and are the fallback when none is dated.
        assert_eq!(
            version_at(&v[2..], at("2025-08-05T00:00:00Z"))
                .unwrap()
                .version,
            "zz-undated"
        );
        assert_eq!(v[1].published_unix, Some(1_754_179_200));
        assert_eq!(v[2].published_unix, None);
    }

    #[test]
    fn keys_sort_spot_points_by_time() {
        let a = SpotPoint::new(
            "us-east-1",
            "m5.large",
            "us-east-1a",
            "Linux/UNIX",
            "2025-01-02T03:04:05Z".parse().unwrap(),
            0.03,
        );
        let b = SpotPoint::new(
            "us-east-1",
            "m5.large",
            "us-east-1a",
            "Linux/UNIX",
            "2025-01-10T00:00:00Z".parse().unwrap(),
            0.04,
        );
        assert_eq!(a.pk, "spot#us-east-1#m5.large");
        assert_eq!(a.sk, "us-east-1a#Linux/UNIX#2025-01-02T03:04:05Z");
        assert!(a.sk < b.sk);
        assert_eq!(
            reserved_key("RunInstances:0002", 3, "convertible", "All Upfront"),
            "RunInstances:0002|3yr|convertible|All Upfront"
        );
    }
}
