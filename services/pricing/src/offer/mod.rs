//! A streaming parser of the AWS Price List bulk **EC2 offer file**.
//!
//! One region's `index.json` is about half a gigabyte of pretty-printed
//! JSON and the all-regions file several gigabytes; the usual tools load it
//! whole (a few gigabytes of heap for one region). This parser reads it in
//! fixed-size chunks into one reused buffer and emits each price through a
//! sink as soon as its term is read, so memory does not grow with the
//! file's bytes — only with the number of *products* kept, a few tens of
//! bytes each (see `catalog.rs`).
//!
//! The file is `{…metadata…, "products": {SKU: product}, "terms":
//! {"OnDemand": {SKU: {offer…}}, "Reserved": {SKU: {offer…}}}}`. Terms
//! refer to products by SKU, and AWS writes products first: the parser
//! remembers what it needs of each product (its [`InstanceKey`] or EBS
//! volume type), then prices terms as they stream by. A file whose `terms`
//! come first is refused ([`OfferError::TermsBeforeProducts`]) rather than
//! buffered.
//!
//! Layers (each module's doc says why it is built that way):
//! * `input`: chunked buffer, keys, skipping unwanted values without
//!   buffering them, parsing wanted ones in place;
//! * `lexer`, `entries`: reading one product / one SKU's terms into
//!   borrowed structs;
//! * `catalog`: SKU → what pricing needs, interned;
//! * `parser`: the file's outer shape, classification, price building;
//! * [`usd`]: exact decimal prices.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pricing::offer::{Price, parse_offer};
//! let file = std::fs::File::open("index.json")?;
//! let (meta, counts) = parse_offer(file, |price| {
//!     if let Price::OnDemand(p) = price {
//!         println!("{} {} {}", p.key.instance_type, p.key.operation, p.usd_per_hour);
//!     }
//!     Ok::<(), std::convert::Infallible>(())
//! })?;
//! println!("{} {}: {} on-demand prices", meta.offer_code, meta.version, counts.on_demand);
//! # Ok(()) }
//! ```

mod catalog;
mod entries;
mod error;
mod input;
mod lexer;
mod parser;
pub use kopter_store::platform;
pub mod usd;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod zone_host_tests;

use std::io::Read;
use std::sync::Arc;

pub use error::{OfferError, SinkError};
pub use parser::HOURS_PER_YEAR;
pub use usd::Usd;

/// The offer file's metadata (empty strings for fields it lacks).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OfferMeta {
    pub format_version: String,
    /// Always `AmazonEC2` (anything else is refused).
    pub offer_code: String,
    /// e.g. `20250523232744`.
    pub version: String,
    pub publication_date: String,
}

/// One price read from the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Price {
    OnDemand(OnDemandPrice),
    Reserved(ReservedPrice),
    Ebs(EbsPrice),
}

impl Price {
    pub fn sku(&self) -> &str {
        match self {
            Self::OnDemand(p) => &p.sku,
            Self::Reserved(p) => &p.sku,
            Self::Ebs(p) => &p.sku,
        }
    }
}

/// What identifies an instance's price: the product attributes that
/// DescribeInstances can be mapped onto (see [`platform`]).
///
/// Strings are interned: every price of the same product shares them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceKey {
    /// `regionCode`, e.g. `us-east-1`.
    pub region: Arc<str>,
    /// e.g. `m5.large`.
    pub instance_type: Arc<str>,
    /// `Linux`, `Windows`, `RHEL`, `SUSE`, `Red Hat Enterprise Linux with HA`, …
    pub operating_system: Arc<str>,
    /// `Shared`, `Dedicated` or `Host` (Placement.Tenancy default/dedicated/host).
    pub tenancy: Arc<str>,
    /// `No License required` or `Bring your own license`.
    pub license_model: Arc<str>,
    /// `NA`, `SQL Std`, `SQL Web`, `SQL Ent`.
    pub pre_installed_sw: Arc<str>,
    /// `RunInstances`, `RunInstances:0002`, …: equals DescribeInstances'
    /// `UsageOperation`.
    pub operation: Arc<str>,
}

/// The on-demand hourly price of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct OnDemandPrice {
    pub sku: Arc<str>,
    pub key: InstanceKey,
    pub usd_per_hour: f64,
    /// The same price, exact (its `Display` is the file's text, trimmed).
    pub usd_per_hour_exact: Usd,
    /// The term's `effectiveDate`.
    pub effective: Arc<str>,
}

/// One reserved-instance offering of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct ReservedPrice {
    pub sku: Arc<str>,
    pub key: InstanceKey,
    /// 1 or 3.
    pub lease_years: u8,
    /// `standard` or `convertible`.
    pub offering_class: Arc<str>,
    /// `No Upfront`, `Partial Upfront` or `All Upfront`.
    pub purchase_option: Arc<str>,
    pub upfront_usd: f64,
    pub hourly_usd: f64,
    /// `hourly_usd + upfront_usd / (lease_years × 8760)`.
    pub effective_hourly_usd: f64,
    pub upfront_exact: Usd,
    pub hourly_exact: Usd,
    pub effective: Arc<str>,
}

/// What an EBS price is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum EbsKind {
    /// Volume storage, per GB-month.
    Storage,
    /// Provisioned IOPS (gp3 above the baseline, io1, io2), per IOPS-month.
    Iops,
    /// Provisioned throughput (gp3), per GiBps-month.
    Throughput,
    /// Snapshot storage, per GB-month.
    Snapshot,
}

/// An on-demand EBS price: one price dimension of an EBS product.
///
/// Tiers come in two shapes, both kept: a product whose dimensions each
/// cover a range of the quantity (`beginRange`/`endRange`, one price per
/// dimension), and tiers published as separate products (io2 IOPS:
/// `EBS:VolumeP-IOPS.io2`, `….io2.tier2`, `….io2.tier3`, told apart by
/// `usage_type`, each with the range `0`–`Inf`; where their boundaries
/// come from is [`kopter_store::prices::tier_range`]). Field meanings:
/// <https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-an-offer.html>.
#[derive(Debug, Clone, PartialEq)]
pub struct EbsPrice {
    pub sku: Arc<str>,
    pub region: Arc<str>,
    /// `gp3`, `io2`, … or `snapshot`.
    pub volume_api_name: Arc<str>,
    pub kind: EbsKind,
    /// e.g. `EBS:VolumeUsage.gp3`, `USE2-EBS:VolumeP-IOPS.io2.tier2`.
    pub usage_type: Arc<str>,
    pub usd_per_unit: f64,
    pub usd_per_unit_exact: Usd,
    /// e.g. `GB-Mo`, `IOPS-Mo`, `GiBps-mo`.
    pub unit: Arc<str>,
    pub effective: Arc<str>,
    /// `beginRange`, in `unit`s: the first quantity this rate applies to
    /// (0 when the file gives none).
    pub begin_range: f64,
    /// `endRange`, in `unit`s: where the next rate takes over; `None` for
    /// `"Inf"` (or no `endRange`).
    pub end_range: Option<f64>,
}

/// What one parse saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Bytes read.
    pub bytes: u64,
    /// Entries of `products`.
    pub products: u64,
    /// Products kept as instances (On-Demand `Dedicated Host` products
    /// included: they are stored like instances, see `DESIGN.md`).
    pub instance_products: u64,
    /// Products kept as EBS storage/IOPS/throughput/snapshots.
    pub ebs_products: u64,
    /// Products skipped (other families, capacity reservations and blocks,
    /// other regions…).
    pub skipped_products: u64,
    /// Of `skipped_products`, those skipped for being in another region
    /// than [`ParseOptions::region`].
    pub other_region_products: u64,
    pub on_demand: u64,
    pub reserved: u64,
    pub ebs: u64,
    /// SKU entries under `terms` not priced (their product was skipped, or
    /// reserved terms of EBS products).
    pub skipped_terms: u64,
    /// Term types other than `OnDemand` and `Reserved`, skipped whole.
    pub skipped_term_types: u64,
}

/// Tuning and filtering; [`Default`] suits real files.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Bytes read at a time (default 1 MiB).
    pub chunk_bytes: usize,
    /// Largest single product or SKU's terms accepted (default 16 MiB; real
    /// entries are a few kilobytes). Bounds memory on a corrupt file.
    pub max_entry_bytes: usize,
    /// Keep only products of this region (`regionCode`); also the region of
    /// products that have no `regionCode` (files before 2020).
    pub region: Option<String>,
}

/// Default [`ParseOptions::chunk_bytes`].
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// Default [`ParseOptions::max_entry_bytes`].
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 16 << 20;

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            region: None,
        }
    }
}

/// Parses an EC2 offer file, handing each price to `sink` as it is read.
///
/// Returns the file's metadata and counts. The first error stops the
/// parse; prices already sunk stay sunk. See [`parse_offer_with`].
pub fn parse_offer<R, E, F>(reader: R, sink: F) -> Result<(OfferMeta, Counts), OfferError>
where
    R: Read,
    E: Into<SinkError>,
    F: FnMut(Price) -> Result<(), E>,
{
    parse_offer_with(reader, &ParseOptions::default(), sink)
}

/// [`parse_offer`] with options.
pub fn parse_offer_with<R, E, F>(
    reader: R,
    options: &ParseOptions,
    sink: F,
) -> Result<(OfferMeta, Counts), OfferError>
where
    R: Read,
    E: Into<SinkError>,
    F: FnMut(Price) -> Result<(), E>,
{
    parser::Parser::new(reader, options, sink).run()
}
