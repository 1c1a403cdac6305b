//! Refreshing prices: a region's offer file (download → stream-parse →
//! rows → write → commit), every region, spot history.
//!
//! A region is skipped without downloading when the index names the
//! version already in force, or when the server answers 304 to the ETag
//! kept from the last download of the same URL. A file that fails to
//! parse, or names no on-demand price of its region, writes nothing; a
//! failure while writing leaves rows under the new version's partition
//! that no reader sees (the pointer still names the previous version) and
//! that a retry overwrites.

use std::convert::Infallible;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use aws_config::SdkConfig;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::TryStreamExt;
use kopter_runtime::config::PricingConfig;
use kopter_runtime::messaging::{Outbox, envelope};
use kopter_runtime::{HandlerError, ServiceContext};
use kopter_schema::messages::{PricesUpdated, RegionOnly, SpotRefresh};
use kopter_schema::{Message, Service};
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::metrics::PricingMetrics;
use crate::offer::{self, Counts, OfferMeta, ParseOptions};
use crate::rows::PriceSet;
use crate::source::{OfferLocation, Sources};
use kopter_store::prices::{Claim, PriceStore, RegionPointer, SpotPoint, StoredCounts};

/// What a region refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionOutcome {
    /// A new version was written; `committed` is false when a newer one
    /// was already in force (it stays in force).
    Ingested {
        version: String,
        counts: StoredCounts,
        committed: bool,
    },
    /// The version in force is current.
    Unchanged { version: String },
}

/// What a spot refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpotSummary {
    pub regions: usize,
    pub points: u64,
}

/// What a `pricing.refresh_spot` message did ([`Ingestor::handle_spot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpotWork {
    /// Refreshed here (one region, or no outbox to split it with).
    Refreshed(SpotSummary),
    /// Split: one message per region queued on the pricing queue.
    FannedOut(Vec<String>),
}

/// The pricing service's work, wired to its stores and sources.
#[derive(Clone)]
pub struct Ingestor {
    pub store: PriceStore,
    pub sources: Sources,
    /// Publishes `prices.updated` and fans out region refreshes.
    pub outbox: Option<Outbox>,
    pub config: PricingConfig,
    /// Kopter's own AWS configuration (spot history is read in Kopter's
    /// account, one client per region).
    pub sdk: SdkConfig,
}

impl Ingestor {
    pub fn new(ctx: &ServiceContext) -> anyhow::Result<Self> {
        let config = ctx.config.pricing.clone();
        let pricing = (config.source == kopter_runtime::config::PriceSource::Api)
            .then(|| pricing_client(&ctx.aws.sdk, &config));
        Ok(Self {
            store: PriceStore::new(ctx.aws.dynamodb(), &ctx.names),
            sources: Sources::new(&config, pricing)?,
            outbox: Some(ctx.outbox.clone()),
            config,
            sdk: ctx.aws.sdk.clone(),
        })
    }

    /// The regions to price: the source's, restricted to
    /// `pricing.regions` when set.
    pub async fn locations(&self) -> anyhow::Result<Vec<OfferLocation>> {
        let mut all = self.sources.list().await?;
        if !self.config.regions.is_empty() {
            all.retain(|l| self.config.regions.contains(&l.region));
        }
        Ok(all)
    }

    /// Every region: queues one `pricing.refresh_region` per region whose
    /// version is not already in force. Returns the regions queued.
    pub async fn refresh_all(&self) -> Result<Vec<String>, HandlerError> {
        let locations = self.locations().await.map_err(HandlerError::retry)?;
        let current: std::collections::HashMap<String, String> = self
            .store
            .regions()
            .await
            .map_err(HandlerError::retry)?
            .into_iter()
            .map(|p| (p.region, p.version))
            .collect();
        let outbox = self.outbox.as_ref().ok_or_else(|| {
            HandlerError::permanent(anyhow!("no outbox to queue region refreshes"))
        })?;
        let mut queued = Vec::new();
        for l in locations {
            if l.version.is_some() && current.get(&l.region) == l.version.as_ref() {
                PricingMetrics::get().refresh("unchanged");
                // Confirmed current: fresh, for the staleness alert.
                PricingMetrics::get().mark_fresh(&l.region);
                continue;
            }
            let msg = Message::PricingRefreshRegion(RegionOnly {
                region: l.region.clone(),
            });
            outbox
                .send(Service::Pricing, &envelope(msg))
                .await
                .map_err(HandlerError::retry)?;
            queued.push(l.region);
        }
        tracing::info!(queued = queued.len(), "price refresh fanned out");
        Ok(queued)
    }

    /// One region, from the source. A region the source does not list is
    /// a permanent failure (the message names it).
    pub async fn refresh_region(&self, region: &str) -> Result<RegionOutcome, HandlerError> {
        let locations = self.locations().await.map_err(HandlerError::retry)?;
        let Some(location) = locations.into_iter().find(|l| l.region == region) else {
            return Err(HandlerError::permanent(anyhow!(
                "region {region:?} is not in the EC2 price list{}",
                if self.config.regions.is_empty() {
                    ""
                } else {
                    " (or not in pricing.regions)"
                }
            )));
        };
        let outcome = self.ingest_location(&location).await;
        PricingMetrics::get().refresh(match &outcome {
            Ok(RegionOutcome::Ingested { .. }) => "ingested",
            Ok(RegionOutcome::Unchanged { .. }) => "unchanged",
            Err(_) => "failed",
        });
        if let Ok(RegionOutcome::Unchanged { .. }) = &outcome {
            PricingMetrics::get().mark_fresh(region);
        }
        outcome.map_err(|e| {
            let e = e.context(format!("refresh prices of {region}"));
            // Downloading the same file again cannot change the stored
            // version: straight to the DLQ, with the reason.
            if e.downcast_ref::<VersionConflict>().is_some() {
                HandlerError::permanent(e)
            } else {
                HandlerError::retry(e)
            }
        })
    }

    /// Downloads, parses and stores one region's file unless unchanged.
    pub async fn ingest_location(&self, location: &OfferLocation) -> anyhow::Result<RegionOutcome> {
        let region = location.region.as_str();
        let current = self.store.current(region).await?;
        if let (Some(cur), Some(v)) = (&current, &location.version)
            && cur.version == *v
        {
            tracing::info!(region, version = %v, "prices unchanged (index names the version in force)");
            return Ok(RegionOutcome::Unchanged { version: v.clone() });
        }
        let url = self.sources.resolve(location).await?;
        let source = location.source();
        let etag = current
            .as_ref()
            .filter(|c| c.source == source)
            .and_then(|c| c.etag.clone());
        let Some(resp) = self.sources.get(&url, etag.as_deref()).await? else {
            let version = current.map(|c| c.version).unwrap_or_default();
            tracing::info!(region, %version, "prices unchanged (304 for the ETag kept)");
            return Ok(RegionOutcome::Unchanged { version });
        };
        let new_etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let started = Instant::now();
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        let reader = SyncIoBridge::new(StreamReader::new(stream));
        let options = ParseOptions {
            region: Some(region.to_string()),
            ..ParseOptions::default()
        };
        let set_region = region.to_string();
        let parsed = tokio::time::timeout(
            self.config.download_timeout,
            tokio::task::spawn_blocking(move || parse_into_set(reader, &options, &set_region)),
        )
        .await
        .map_err(|_| {
            anyhow!("{url}: download and parse took longer than pricing.download_timeout")
        })?
        .context("parser task")?;
        let (meta, counts, set) = parsed.with_context(|| format!("{url} (region {region})"))?;
        PricingMetrics::get().parsed(&counts, started.elapsed().as_secs_f64());
        check_format(&meta, url.as_str(), region);
        if let Some(v) = &location.version
            && *v != meta.version
        {
            tracing::warn!(region, index = %v, file = %meta.version, "offer file version differs from the index's; using the file's");
        }
        self.store_version(region, &meta, set, &source, new_etag)
            .await
            .with_context(|| format!("{url} (region {region})"))
    }

    /// Writes a parsed version's rows, then makes it current (if no version
    /// published later is).
    ///
    /// The version's content (a digest of its rows) is claimed first
    /// (`PriceStore::claim_version`): the same content again is harmless
    /// (rows rewritten, or nothing done when it is the version in force);
    /// other content under a version already stored is refused with a
    /// [`VersionConflict`] — logged and counted — before any row is
    /// written, so the rows that price past hours never change. A file
    /// without a usable `publicationDate` is refused: versions are ordered
    /// by it.
    pub async fn store_version(
        &self,
        region: &str,
        meta: &OfferMeta,
        set: PriceSet,
        source: &str,
        etag: Option<String>,
    ) -> anyhow::Result<RegionOutcome> {
        if meta.version.is_empty() {
            bail!("the offer file has no version");
        }
        if kopter_store::prices::parse_published(&meta.publication_date).is_none() {
            bail!(
                "the offer file's publicationDate {:?} (version {}) is not an RFC 3339 time; versions are ordered by it, so the file is not stored",
                meta.publication_date,
                meta.version
            );
        }
        let foreign = set.foreign;
        let (rows, ebs, counts) = set.into_rows(&meta.version);
        if counts.on_demand == 0 {
            bail!(
                "no on-demand instance price for region {region} in version {} (other regions' prices: {foreign}); previous prices kept",
                meta.version
            );
        }
        let digest = content_digest(&rows, &ebs)?;
        let conflict = |stored: String| {
            PricingMetrics::get().version_conflict();
            let e = VersionConflict {
                region: region.into(),
                version: meta.version.clone(),
                stored_sha256: stored,
                new_sha256: digest.clone(),
            };
            tracing::error!(region, version = %meta.version, stored = %e.stored_sha256, new = %e.new_sha256, source, "offer refused: version already stored with other content");
            e
        };
        // A version stored before claims were kept has none: the digest
        // of its stored rows (read back in key order, as written) is the
        // content to compare with.
        if self
            .store
            .version_claim(region, &meta.version)
            .await?
            .is_none()
            && self
                .store
                .version_record(region, &meta.version)
                .await?
                .is_some()
        {
            let stored = content_digest(
                &self
                    .store
                    .all_instance_prices(region, &meta.version)
                    .await?,
                &self.store.ebs_prices(region, &meta.version).await?,
            )?;
            if stored != digest {
                return Err(conflict(stored).into());
            }
        }
        let claim = self
            .store
            .claim_version(region, &meta.version, &digest)
            .await?;
        if let Claim::Conflict { stored_sha256 } = claim {
            return Err(conflict(stored_sha256).into());
        }
        if let Some(cur) = self.store.current(region).await?
            && cur.version == meta.version
        {
            tracing::info!(region, version = %meta.version, "prices unchanged (the version in force, same content)");
            return Ok(RegionOutcome::Unchanged {
                version: meta.version.clone(),
            });
        }
        let concurrency = self.config.write_concurrency;
        self.store.put_all(&rows, concurrency).await?;
        self.store.put_all(&ebs, concurrency).await?;
        let mut pointer = RegionPointer::new(
            region,
            &meta.version,
            &meta.publication_date,
            source,
            etag,
            counts,
        );
        pointer.content_sha256 = Some(digest);
        let committed = self.store.commit(&pointer).await?;
        let m = PricingMetrics::get();
        m.stored(&counts);
        if committed {
            m.mark_fresh(region);
            if let Some(outbox) = &self.outbox {
                let msg = Message::PricesUpdated(PricesUpdated {
                    region: region.into(),
                    version: meta.version.clone(),
                });
                // The prices are in force whether or not the event goes
                // out; a failure here retries the message, which then
                // finds the version current and skips the download.
                outbox.publish(&envelope(msg)).await?;
            }
        }
        tracing::info!(region, version = %meta.version, on_demand = counts.on_demand, reserved = counts.reserved, ebs = counts.ebs, rows = counts.rows, committed, "prices stored");
        Ok(RegionOutcome::Ingested {
            version: meta.version.clone(),
            counts,
            committed,
        })
    }

    /// Stores a local offer file (`pricing ingest-file` without
    /// `--dry-run`) as region `region`'s prices, which the file must have.
    /// `name` names the file in errors and as the prices' source.
    pub async fn ingest_reader<R: std::io::Read + Send + 'static>(
        &self,
        reader: R,
        name: &str,
        region: &str,
    ) -> anyhow::Result<(RegionOutcome, OfferMeta, Counts)> {
        let options = ParseOptions {
            region: Some(region.to_string()),
            ..ParseOptions::default()
        };
        let r = region.to_string();
        let (meta, counts, set) =
            tokio::task::spawn_blocking(move || parse_into_set(reader, &options, &r))
                .await
                .context("parser task")?
                .with_context(|| format!("{name} (region {region})"))?;
        check_format(&meta, name, region);
        let outcome = self
            .store_version(region, &meta, set, &format!("file:{name}"), None)
            .await
            .with_context(|| format!("{name} (region {region})"))?;
        Ok((outcome, meta, counts))
    }

    /// `pricing.refresh_spot` as the queue delivers it: a message naming
    /// one region is refreshed here; one naming several (or none: see
    /// [`Self::refresh_spot`]) queues one `pricing.refresh_spot` per region
    /// on the pricing queue and does nothing else.
    ///
    /// Why: a region's history is one unit of work (its cursor moves only
    /// once every point is stored), so a message covering every region
    /// redid all of them after any crash or failure in the last, and ran
    /// them one after another. One message per region runs them in
    /// parallel across the worker's slots and redoes only the region that
    /// failed. A fan-out redelivered after a crash queues the regions again;
    /// the writes are idempotent puts, so a region refreshed twice stores
    /// the same rows.
    pub async fn handle_spot(&self, regions: &[String]) -> Result<SpotWork, HandlerError> {
        let regions = self.spot_regions(regions).await?;
        let Some(outbox) = self.outbox.as_ref().filter(|_| regions.len() > 1) else {
            return self.refresh_spot(&regions).await.map(SpotWork::Refreshed);
        };
        for region in &regions {
            let msg = Message::PricingRefreshSpot(SpotRefresh {
                regions: vec![region.clone()],
            });
            outbox
                .send(Service::Pricing, &envelope(msg))
                .await
                .map_err(HandlerError::retry)?;
        }
        tracing::info!(queued = regions.len(), "spot refresh fanned out");
        Ok(SpotWork::FannedOut(regions))
    }

    /// The regions of a spot refresh: `regions`, else `pricing.regions`,
    /// else every region with prices.
    async fn spot_regions(&self, regions: &[String]) -> Result<Vec<String>, HandlerError> {
        Ok(if !regions.is_empty() {
            regions.to_vec()
        } else if !self.config.regions.is_empty() {
            self.config.regions.clone()
        } else {
            self.store
                .regions()
                .await
                .map_err(HandlerError::retry)?
                .into_iter()
                .map(|p| p.region)
                .collect()
        })
    }

    /// Spot price history of `regions` (empty: `pricing.regions`, else
    /// every region with prices), from the newest point kept on, one
    /// region after another in this call.
    pub async fn refresh_spot(&self, regions: &[String]) -> Result<SpotSummary, HandlerError> {
        let regions = self.spot_regions(regions).await?;
        let mut summary = SpotSummary::default();
        let mut failed = Vec::new();
        for region in &regions {
            match self.refresh_spot_region(region).await {
                Ok(n) => {
                    summary.regions += 1;
                    summary.points += n;
                }
                Err(e) => {
                    tracing::warn!(region, error = %format!("{e:#}"), "spot price refresh failed");
                    failed.push(format!("{region}: {e:#}"));
                }
            }
        }
        if failed.is_empty() {
            Ok(summary)
        } else {
            Err(HandlerError::retry(anyhow!(
                "spot refresh failed in {} of {} regions: {}",
                failed.len(),
                regions.len(),
                failed.join("; ")
            )))
        }
    }

    async fn refresh_spot_region(&self, region: &str) -> anyhow::Result<u64> {
        let since = match self.store.spot_cursor(region).await? {
            Some(c) => c.newest,
            None => {
                Utc::now()
                    - ChronoDuration::from_std(self.config.spot_lookback)
                        .unwrap_or(ChronoDuration::days(1))
            }
        };
        let ec2 = ec2_in_region(&self.sdk, region);
        let history: Vec<aws_sdk_ec2::types::SpotPrice> = ec2
            .describe_spot_price_history()
            .start_time(aws_smithy_types::DateTime::from_secs(since.timestamp()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .with_context(|| format!("DescribeSpotPriceHistory in {region}"))?;
        let (points, newest, bad) = spot_points(region, &history);
        if bad > 0 {
            tracing::warn!(
                region,
                bad,
                "spot price entries without type, AZ, time or a numeric price skipped"
            );
        }
        self.store
            .put_all(&points, self.config.write_concurrency)
            .await?;
        if let Some(newest) = newest {
            self.store.set_spot_cursor(region, newest).await?;
        }
        PricingMetrics::get().spot(points.len() as u64);
        Ok(points.len() as u64)
    }
}

/// The offer file `formatVersion` the parser is written for
/// (<https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-an-offer.html>).
pub const FORMAT_VERSION: &str = "v1.0";

/// Logs and counts an offer file of another `formatVersion` (its prices
/// are still read: the fields the parser needs are checked one by one).
pub fn check_format(meta: &OfferMeta, source: &str, region: &str) -> bool {
    if meta.format_version == FORMAT_VERSION {
        return true;
    }
    PricingMetrics::get().unexpected_format();
    tracing::warn!(region, source, format_version = %meta.format_version, expected = FORMAT_VERSION, version = %meta.version, "offer file of an unexpected formatVersion");
    false
}

/// An ingest refused because its version is already stored with other
/// content.
#[derive(Debug, thiserror::Error)]
#[error(
    "version {version} of {region} is already stored with other content (rows SHA-256 {stored_sha256}, this file's {new_sha256}); refused, the stored prices are kept"
)]
pub struct VersionConflict {
    pub region: String,
    pub version: String,
    pub stored_sha256: String,
    pub new_sha256: String,
}

/// SHA-256 (hex) of a version's rows in their stored order: the same file
/// gives the same digest in every process.
pub fn content_digest(
    rows: &[kopter_store::prices::InstancePrices],
    ebs: &[kopter_store::prices::EbsPriceItem],
) -> anyhow::Result<String> {
    use aws_lc_rs::digest::{Context as Digest, SHA256};
    let mut d = Digest::new(&SHA256);
    for r in rows {
        d.update(&serde_json::to_vec(r).context("encode a price row")?);
    }
    for e in ebs {
        d.update(&serde_json::to_vec(e).context("encode an EBS price row")?);
    }
    Ok(d.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Converts DescribeSpotPriceHistory entries into points (deduplicated by
/// key), with the newest time seen and the number of unusable entries.
pub fn spot_points(
    region: &str,
    history: &[aws_sdk_ec2::types::SpotPrice],
) -> (Vec<SpotPoint>, Option<DateTime<Utc>>, u64) {
    let mut points = std::collections::BTreeMap::new();
    let mut newest = None;
    let mut bad = 0;
    for p in history {
        let (Some(t), Some(az), Some(ts), Some(price)) = (
            p.instance_type.as_ref(),
            p.availability_zone.as_deref(),
            p.timestamp,
            p.spot_price.as_deref().and_then(|s| s.parse::<f64>().ok()),
        ) else {
            bad += 1;
            continue;
        };
        let Some(at) = DateTime::<Utc>::from_timestamp(ts.secs(), 0) else {
            bad += 1;
            continue;
        };
        if !price.is_finite() || price < 0.0 {
            bad += 1;
            continue;
        }
        let product = p
            .product_description
            .as_ref()
            .map_or("Linux/UNIX", |d| d.as_str());
        let point = SpotPoint::new(region, t.as_str(), az, product, at, price);
        newest = newest.max(Some(at));
        points.insert((point.pk.clone(), point.sk.clone()), point);
    }
    (points.into_values().collect(), newest, bad)
}

/// Parses an offer file into a [`PriceSet`] of `region`.
pub fn parse_into_set<R: std::io::Read>(
    reader: R,
    options: &ParseOptions,
    region: &str,
) -> Result<(OfferMeta, Counts, PriceSet), offer::OfferError> {
    let mut set = PriceSet::new(region);
    let (meta, counts) = offer::parse_offer_with(reader, options, |p| {
        set.add(p);
        Ok::<(), Infallible>(())
    })?;
    Ok((meta, counts, set))
}

/// An EC2 client of Kopter's own account in `region`.
pub fn ec2_in_region(sdk: &SdkConfig, region: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_string()))
        .interceptor(kopter_runtime::aws::AwsMetrics)
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// The Price List Query API client (its own endpoint and region).
pub fn pricing_client(sdk: &SdkConfig, config: &PricingConfig) -> aws_sdk_pricing::Client {
    let mut b = aws_sdk_pricing::config::Builder::from(sdk)
        .region(aws_config::Region::new(config.api_region.clone()))
        .retry_partition(kopter_runtime::aws::retry_partition("pricing"))
        .interceptor(kopter_runtime::aws::AwsMetrics);
    if let Some(url) = &config.api_endpoint_url {
        b = b.endpoint_url(url);
    }
    aws_sdk_pricing::Client::from_conf(b.build())
}
