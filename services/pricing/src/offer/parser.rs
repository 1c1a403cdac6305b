//! The offer file's shape: the top-level object, `products`, `terms`, and
//! turning each kept SKU's terms into [`Price`]s.
//!
//! The walk is a hand-written descent over the *outer* objects (top level →
//! `products`/`terms` → term type → SKU), the only parts that grow with the
//! file; each entry below that (one product, one SKU's offers) is small and
//! is parsed whole, in place (`entries.rs`), or skipped.

use std::io::Read;
use std::sync::Arc;

use super::catalog::{Catalog, EbsIds, InstanceIds, Known};
use super::entries::{Dimension, Offer, Offers, OffersEntry, Product, ProductEntry, Str};
use super::error::{OfferError, SinkError};
use super::input::{Fault, Input, Span};
use kopter_store::platform;

use super::{
    Counts, EbsKind, EbsPrice, OfferMeta, OnDemandPrice, ParseOptions, Price, ReservedPrice, Usd,
};

/// Hours in a lease year, as AWS amortizes upfront fees.
pub const HOURS_PER_YEAR: f64 = 8760.0;

/// EBS volume types priced (`volumeApiName` of "Storage" products).
const EBS_VOLUMES: &[&str] = &["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum TermKind {
    OnDemand,
    Reserved,
}

impl TermKind {
    fn name(self) -> &'static str {
        match self {
            Self::OnDemand => "OnDemand",
            Self::Reserved => "Reserved",
        }
    }
}

/// Turns a byte-level fault into an [`OfferError`], naming where it was.
fn fault(f: Fault, inside: impl FnOnce() -> String, sku: Option<&str>) -> OfferError {
    match f {
        Fault::Io { offset, source } => OfferError::Io { offset, source },
        Fault::Eof { offset } => OfferError::Truncated {
            offset,
            inside: inside(),
        },
        Fault::Syntax { offset, what } => OfferError::InvalidJson {
            offset,
            sku: sku.map(Into::into),
            what,
        },
        Fault::TooLarge { offset, limit } => OfferError::EntryTooLarge {
            offset,
            sku: sku.map(Into::into),
            limit,
        },
    }
}

pub(crate) struct Parser<'o, R, F> {
    input: Input<R>,
    catalog: Catalog,
    counts: Counts,
    meta: OfferMeta,
    region: Option<&'o str>,
    sink: F,
    /// The current key (reused buffer).
    key: String,
    seen_products: bool,
    seen_terms: bool,
}

impl<'o, R, E, F> Parser<'o, R, F>
where
    R: Read,
    E: Into<SinkError>,
    F: FnMut(Price) -> Result<(), E>,
{
    pub fn new(reader: R, options: &'o ParseOptions, sink: F) -> Self {
        Self {
            input: Input::new(reader, options.chunk_bytes, options.max_entry_bytes),
            catalog: Catalog::default(),
            counts: Counts::default(),
            meta: OfferMeta::default(),
            region: options.region.as_deref(),
            sink,
            key: String::new(),
            seen_products: false,
            seen_terms: false,
        }
    }

    /// Moves to the next key of the object being walked (whose `{` was
    /// consumed): reads it into `self.key`, consumes the `:` and returns
    /// the key's offset; `None` after the closing `}`.
    fn next_key(&mut self, first: &mut bool) -> Result<Option<u64>, Fault> {
        let b = self.input.peek_some()?;
        if b == b'}' && *first {
            self.input.bump();
            return Ok(None);
        }
        if !*first {
            match b {
                b',' => self.input.bump(),
                b'}' => {
                    self.input.bump();
                    return Ok(None);
                }
                _ => return Err(self.input.unexpected(b, "',' or '}'")),
            }
        }
        *first = false;
        self.input.peek_some()?;
        let at = self.input.offset();
        self.input.read_string(&mut self.key)?;
        self.input.expect(b':', "':'")?;
        Ok(Some(at))
    }

    /// Consumes the `{` that must open the value of `what`.
    fn open_object(&mut self, what: &str) -> Result<(), OfferError> {
        let b = self
            .input
            .peek_some()
            .map_err(|f| fault(f, || what.to_owned(), None))?;
        if b != b'{' {
            return Err(OfferError::UnexpectedShape {
                offset: self.input.offset(),
                what: format!("{what} is not an object"),
            });
        }
        self.input.bump();
        Ok(())
    }

    pub fn run(mut self) -> Result<(OfferMeta, Counts), OfferError> {
        let top = || "the top-level object".to_owned();
        match self.input.peek().map_err(|f| fault(f, top, None))? {
            None => {
                return Err(OfferError::UnexpectedShape {
                    offset: 0,
                    what: "the input is empty".into(),
                });
            }
            Some(b'{') => self.input.bump(),
            Some(_) => {
                return Err(OfferError::UnexpectedShape {
                    offset: self.input.offset(),
                    what: "the document is not a JSON object".into(),
                });
            }
        }
        let mut first = true;
        while let Some(at) = self.next_key(&mut first).map_err(|f| fault(f, top, None))? {
            match self.key.as_str() {
                "formatVersion" | "offerCode" | "version" | "publicationDate" => {
                    let field = std::mem::take(&mut self.key);
                    let value = self.string_value(&field)?;
                    match field.as_str() {
                        "formatVersion" => self.meta.format_version = value,
                        "offerCode" => {
                            if value != "AmazonEC2" {
                                return Err(OfferError::UnexpectedShape {
                                    offset: at,
                                    what: format!("offerCode is {value:?}, not \"AmazonEC2\""),
                                });
                            }
                            self.meta.offer_code = value;
                        }
                        "version" => self.meta.version = value,
                        _ => self.meta.publication_date = value,
                    }
                    self.key = field;
                }
                "products" => self.products()?,
                "terms" => {
                    if !self.seen_products {
                        return Err(OfferError::TermsBeforeProducts { offset: at });
                    }
                    self.terms()?;
                }
                _ => self.input.skip_value().map_err(|f| fault(f, top, None))?,
            }
        }
        if self
            .input
            .peek()
            .map_err(|f| fault(f, top, None))?
            .is_some()
        {
            return Err(OfferError::InvalidJson {
                offset: self.input.offset(),
                sku: None,
                what: "data after the end of the document".into(),
            });
        }
        let end = self.input.offset();
        if !self.seen_products {
            return Err(OfferError::UnexpectedShape {
                offset: end,
                what: "no `products` object".into(),
            });
        }
        if !self.seen_terms {
            return Err(OfferError::UnexpectedShape {
                offset: end,
                what: "no `terms` object".into(),
            });
        }
        self.counts.bytes = self.input.bytes_read();
        Ok((self.meta, self.counts))
    }

    fn string_value(&mut self, field: &str) -> Result<String, OfferError> {
        let inside = || format!("the value of {field}");
        let b = self.input.peek_some().map_err(|f| fault(f, inside, None))?;
        if b != b'"' {
            return Err(OfferError::UnexpectedShape {
                offset: self.input.offset(),
                what: format!("{field} is not a string"),
            });
        }
        let mut value = String::new();
        self.input
            .read_string(&mut value)
            .map_err(|f| fault(f, inside, None))?;
        Ok(value)
    }

    fn products(&mut self) -> Result<(), OfferError> {
        self.open_object("`products`")?;
        let ctx = || "the products object".to_owned();
        let mut first = true;
        while self
            .next_key(&mut first)
            .map_err(|f| fault(f, ctx, None))?
            .is_some()
        {
            let Self {
                input,
                catalog,
                counts,
                region,
                key,
                ..
            } = self;
            let at = input.offset();
            input
                .with_entry::<ProductEntry, _>(|product, span| {
                    record_product(catalog, counts, *region, key, &product, span)
                })
                .map_err(|f| {
                    fault(
                        f,
                        || format!("product {key} (which starts near byte offset {at})"),
                        Some(key),
                    )
                })??;
        }
        self.seen_products = true;
        Ok(())
    }

    fn terms(&mut self) -> Result<(), OfferError> {
        self.open_object("`terms`")?;
        let ctx = || "the terms object".to_owned();
        let mut first = true;
        while self
            .next_key(&mut first)
            .map_err(|f| fault(f, ctx, None))?
            .is_some()
        {
            match self.key.as_str() {
                "OnDemand" => self.term_type(TermKind::OnDemand)?,
                "Reserved" => self.term_type(TermKind::Reserved)?,
                _ => {
                    self.input.skip_value().map_err(|f| fault(f, ctx, None))?;
                    self.counts.skipped_term_types += 1;
                }
            }
        }
        self.seen_terms = true;
        Ok(())
    }

    fn term_type(&mut self, kind: TermKind) -> Result<(), OfferError> {
        self.open_object(&format!("`terms.{}`", kind.name()))?;
        let ctx = || format!("terms.{}", kind.name());
        let mut first = true;
        while let Some(at) = self.next_key(&mut first).map_err(|f| fault(f, ctx, None))? {
            let Self {
                input,
                catalog,
                counts,
                sink,
                key,
                ..
            } = self;
            let inside = || {
                format!(
                    "terms.{} of SKU {key} (which starts near byte offset {at})",
                    kind.name()
                )
            };
            match catalog.lookup(key) {
                Known::Unknown => {
                    return Err(OfferError::UnknownSku {
                        offset: at,
                        sku: key.clone(),
                        term: kind.name(),
                    });
                }
                Known::Skipped => {
                    input
                        .skip_value()
                        .map_err(|f| fault(f, inside, Some(key)))?;
                    counts.skipped_terms += 1;
                }
                Known::Ebs(_) if kind == TermKind::Reserved => {
                    input
                        .skip_value()
                        .map_err(|f| fault(f, inside, Some(key)))?;
                    counts.skipped_terms += 1;
                }
                known => {
                    input
                        .with_entry::<OffersEntry, _>(|offers, span| {
                            emit(catalog, counts, sink, kind, key, known, &offers, span)
                        })
                        .map_err(|f| fault(f, inside, Some(key)))??;
                }
            }
        }
        Ok(())
    }
}

fn attr<'s>(value: &'s Option<Str<'_>>) -> Option<&'s [u8]> {
    value.as_ref().map(Str::bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The error for a kept string that is not valid text.
fn not_text(span: Span<'_>, sku: &str, bytes: &[u8]) -> OfferError {
    OfferError::InvalidJson {
        offset: span.offset_of(bytes),
        sku: Some(sku.to_owned()),
        what: "string is not valid UTF-8 (or has a control character)".into(),
    }
}

enum Class {
    Instance,
    /// An On-Demand `Dedicated Host` product: priced per host-hour, stored
    /// like an instance under the family and tenancy
    /// [`platform::HOST_PRICE_TENANCY`].
    Host,
    Ebs(EbsKind),
    Skip,
}

fn classify(family: &[u8], product: &Product<'_>) -> Class {
    let a = &product.attributes;
    match family {
        b"Compute Instance" | b"Compute Instance (bare metal)" => {
            // Files before 2019 have no capacitystatus: all were "Used".
            let used = attr(&a.capacitystatus).is_none_or(|c| c == b"Used");
            let on_demand_market = attr(&a.marketoption).is_none_or(|m| m == b"OnDemand");
            if used && on_demand_market {
                Class::Instance
            } else {
                Class::Skip
            }
        }
        b"Storage" => match attr(&a.volume_api_name) {
            Some(v) if EBS_VOLUMES.iter().any(|e| e.as_bytes() == v) => {
                Class::Ebs(EbsKind::Storage)
            }
            _ => Class::Skip,
        },
        // Provisioned IOPS are family `System Operation`; gp3 provisioned
        // throughput is its own family, `Provisioned Throughput` (usage
        // type `EBS:VolumeP-Throughput.gp3`, unit `GiBps-mo`). Older
        // files and mirrors have put throughput under `System Operation`
        // too, so the usage type decides the kind in both families.
        b"System Operation" | b"Provisioned Throughput" => {
            let usage = attr(&a.usagetype).unwrap_or(b"");
            let kind = if contains(usage, b"EBS:VolumeP-IOPS") {
                EbsKind::Iops
            } else if contains(usage, b"EBS:VolumeP-Throughput") {
                EbsKind::Throughput
            } else {
                return Class::Skip;
            };
            if ebs_volume_name(a).is_empty() {
                Class::Skip
            } else {
                Class::Ebs(kind)
            }
        }
        b"Dedicated Host" => {
            // `HostUsage:{family}` is the On-Demand host; reserved hosts
            // (`ReservedHostUsage:…`, tenancy `Reserved`) are their own
            // products, left out like other reservations.
            let usage = attr(&a.usagetype).unwrap_or(b"");
            if contains(usage, b"HostUsage:") && !contains(usage, b"ReservedHostUsage") {
                Class::Host
            } else {
                Class::Skip
            }
        }
        b"Storage Snapshot" => {
            if attr(&a.usagetype).is_some_and(|u| contains(u, b"EBS:Snapshot")) {
                Class::Ebs(EbsKind::Snapshot)
            } else {
                Class::Skip
            }
        }
        _ => Class::Skip,
    }
}

/// The volume type of a provisioned IOPS / throughput product:
/// `volumeApiName`, else what its usage type names after the last
/// `VolumeP-IOPS.` / `VolumeP-Throughput.` (`piops` is io1's name there,
/// a `.tierN` suffix is dropped); empty when neither says.
fn ebs_volume_name<'p>(a: &'p super::entries::Attributes<'_>) -> &'p [u8] {
    if let Some(v) = attr(&a.volume_api_name).filter(|v| !v.is_empty()) {
        return v;
    }
    let usage = attr(&a.usagetype).unwrap_or(b"");
    let rest = [b"VolumeP-IOPS.".as_slice(), b"VolumeP-Throughput."]
        .iter()
        .find_map(|p| memchr::memmem::rfind(usage, p).map(|i| &usage[i + p.len()..]))
        .unwrap_or(b"");
    let name = rest.split(|&b| b == b'.').next().unwrap_or(b"");
    if name == b"piops" { b"io1" } else { name }
}

/// Classifies one product and records what terms will need.
fn record_product(
    catalog: &mut Catalog,
    counts: &mut Counts,
    region_filter: Option<&str>,
    sku: &str,
    product: &Product<'_>,
    span: Span<'_>,
) -> Result<(), OfferError> {
    counts.products += 1;
    let family = attr(&product.family).unwrap_or(b"");
    let class = classify(family, product);
    if matches!(class, Class::Skip) {
        catalog.add_skipped(sku);
        counts.skipped_products += 1;
        return Ok(());
    }
    let a = &product.attributes;
    let missing = |what: &str| OfferError::UnexpectedPrice {
        offset: span.offset(),
        sku: sku.to_owned(),
        what: format!("{} product has no {what} attribute", lossy(family)),
    };
    let region = match (attr(&a.region_code), region_filter) {
        (Some(r), Some(wanted)) if r != wanted.as_bytes() => {
            catalog.add_skipped(sku);
            counts.skipped_products += 1;
            counts.other_region_products += 1;
            return Ok(());
        }
        (Some(r), _) => r,
        (None, Some(wanted)) => wanted.as_bytes(),
        (None, None) => return Err(missing("regionCode (and no region was given)")),
    };
    let strings = &mut catalog.strings;
    let mut text = |bytes: &[u8]| {
        strings
            .intern(bytes)
            .ok_or_else(|| not_text(span, sku, bytes))
    };
    let added = match class {
        Class::Instance => {
            let need = |v, name| attr(v).ok_or_else(|| missing(name));
            let ids = InstanceIds {
                instance_type: text(need(&a.instance_type, "instanceType")?)?,
                operating_system: text(need(&a.operating_system, "operatingSystem")?)?,
                tenancy: text(need(&a.tenancy, "tenancy")?)?,
                operation: text(need(&a.operation, "operation")?)?,
                license_model: text(attr(&a.license_model).unwrap_or(b"NA"))?,
                pre_installed_sw: text(attr(&a.pre_installed_sw).unwrap_or(b"NA"))?,
                region: text(region)?,
            };
            counts.instance_products += 1;
            catalog.add_instance(sku, ids)
        }
        Class::Host => {
            let ids = InstanceIds {
                instance_type: text(
                    attr(&a.instance_type).ok_or_else(|| missing("instanceType"))?,
                )?,
                operating_system: text(attr(&a.operating_system).unwrap_or(b"NA"))?,
                tenancy: text(platform::HOST_PRICE_TENANCY.as_bytes())?,
                operation: text(attr(&a.operation).unwrap_or(b"RunInstances"))?,
                license_model: text(attr(&a.license_model).unwrap_or(b"NA"))?,
                pre_installed_sw: text(attr(&a.pre_installed_sw).unwrap_or(b"NA"))?,
                region: text(region)?,
            };
            counts.instance_products += 1;
            catalog.add_instance(sku, ids)
        }
        Class::Ebs(kind) => {
            let volume = match kind {
                EbsKind::Snapshot => b"snapshot".as_slice(),
                EbsKind::Storage => attr(&a.volume_api_name).unwrap_or(b""),
                EbsKind::Iops | EbsKind::Throughput => ebs_volume_name(a),
            };
            let ids = EbsIds {
                region: text(region)?,
                volume_api_name: text(volume)?,
                usage_type: text(attr(&a.usagetype).unwrap_or(b""))?,
                kind,
            };
            counts.ebs_products += 1;
            catalog.add_ebs(sku, ids)
        }
        Class::Skip => true,
    };
    if added {
        Ok(())
    } else {
        Err(OfferError::UnexpectedPrice {
            offset: span.offset(),
            sku: sku.to_owned(),
            what: "the SKU appears twice in `products`".into(),
        })
    }
}

/// The USD amount of one price dimension.
fn usd(d: &Dimension<'_>, sku: &str, span: Span<'_>) -> Result<Usd, OfferError> {
    if let Some(c) = &d.other_currency {
        return Err(OfferError::NotUsd {
            offset: span.offset_of(c.bytes()),
            sku: sku.to_owned(),
            currency: lossy(c.bytes()),
        });
    }
    let Some(text) = &d.usd else {
        return Err(OfferError::UnexpectedPrice {
            offset: span.offset(),
            sku: sku.to_owned(),
            what: "a price dimension has no pricePerUnit.USD".into(),
        });
    };
    Usd::parse_bytes(text.bytes()).ok_or_else(|| OfferError::PriceNotANumber {
        offset: span.offset_of(text.bytes()),
        sku: sku.to_owned(),
        value: lossy(text.bytes()),
    })
}

/// A dimension's `beginRange`/`endRange` as (begin, end); absent begin is
/// 0, absent or `"Inf"` end is `None`. A range that is not a pair of
/// non-negative numbers with begin < end is refused: pricing a tier from
/// it would bill the wrong quantity.
fn range(d: &Dimension<'_>, sku: &str, span: Span<'_>) -> Result<(f64, Option<f64>), OfferError> {
    let number = |s: &Str<'_>, what: &str| {
        std::str::from_utf8(s.bytes())
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| OfferError::UnexpectedPrice {
                offset: span.offset_of(s.bytes()),
                sku: sku.to_owned(),
                what: format!("{what} {:?} is not a non-negative number", lossy(s.bytes())),
            })
    };
    let begin = match &d.begin_range {
        Some(b) => number(b, "beginRange")?,
        None => 0.0,
    };
    let end = match &d.end_range {
        Some(e) if e.bytes() == b"Inf" => None,
        Some(e) => Some(number(e, "endRange")?),
        None => None,
    };
    if end.is_some_and(|e| e <= begin) {
        return Err(OfferError::UnexpectedPrice {
            offset: span.offset(),
            sku: sku.to_owned(),
            what: format!("price dimension range {begin}..{end:?} is empty"),
        });
    }
    Ok((begin, end))
}

/// `"1yr"` → 1, `"3yr"` → 3.
fn lease_years(text: &[u8]) -> Option<u8> {
    match text.strip_suffix(b"yr")? {
        [d @ b'1'..=b'9'] => Some(d - b'0'),
        [t @ b'1'..=b'9', d @ b'0'..=b'9'] => Some((t - b'0') * 10 + (d - b'0')),
        _ => None,
    }
}

/// Builds the prices of one kept SKU's offers (fully parsed, so nothing is
/// emitted twice if the entry had to be re-read) and hands them to the sink.
#[allow(clippy::too_many_arguments)]
fn emit<E, F>(
    catalog: &mut Catalog,
    counts: &mut Counts,
    sink: &mut F,
    kind: TermKind,
    sku: &str,
    known: Known,
    offers: &Offers<'_>,
    span: Span<'_>,
) -> Result<(), OfferError>
where
    E: Into<SinkError>,
    F: FnMut(Price) -> Result<(), E>,
{
    if offers.0.is_empty() {
        return Ok(());
    }
    let sku_arc: Arc<str> = Arc::from(sku);
    let bad = |what: String| OfferError::UnexpectedPrice {
        offset: span.offset(),
        sku: sku.to_owned(),
        what,
    };
    let mut send = |price: Price| {
        sink(price).map_err(|e| OfferError::Sink {
            offset: span.offset(),
            sku: sku.to_owned(),
            source: e.into(),
        })
    };
    let strings = |catalog: &mut Catalog, bytes: &[u8]| {
        catalog
            .strings
            .intern_arc(bytes)
            .ok_or_else(|| not_text(span, sku, bytes))
    };
    for offer in &offers.0 {
        let Offer {
            effective_date,
            dimensions: dims,
            term_attributes,
        } = offer;
        let effective = strings(catalog, attr(effective_date).unwrap_or(b""))?;
        match (kind, known) {
            (TermKind::OnDemand, Known::Instance(idx)) => {
                let [d] = dims.as_slice() else {
                    return Err(bad(format!(
                        "on-demand term has {} price dimensions, expected 1",
                        dims.len()
                    )));
                };
                let unit = attr(&d.unit).unwrap_or(b"");
                if unit != b"Hrs" {
                    return Err(bad(format!(
                        "on-demand instance price is per {:?}, not per \"Hrs\"",
                        lossy(unit)
                    )));
                }
                let price = usd(d, sku, span)?;
                send(Price::OnDemand(OnDemandPrice {
                    sku: sku_arc.clone(),
                    key: catalog.instance_key(idx),
                    usd_per_hour: price.to_f64(),
                    usd_per_hour_exact: price,
                    effective,
                }))?;
                counts.on_demand += 1;
            }
            (TermKind::Reserved, Known::Instance(idx)) => {
                let t = term_attributes;
                let lease = attr(&t.lease_contract_length).unwrap_or(b"");
                let years = lease_years(lease).ok_or_else(|| {
                    bad(format!("reserved term has lease length {:?}", lossy(lease)))
                })?;
                let class = attr(&t.offering_class)
                    .ok_or_else(|| bad("reserved term has no OfferingClass".into()))?;
                let option = attr(&t.purchase_option)
                    .ok_or_else(|| bad("reserved term has no PurchaseOption".into()))?;
                let (mut upfront, mut hourly) = (None, None);
                for d in dims {
                    let slot = match attr(&d.unit).unwrap_or(b"") {
                        b"Quantity" => &mut upfront,
                        b"Hrs" => &mut hourly,
                        other => {
                            return Err(bad(format!(
                                "reserved term has a price dimension per {:?}",
                                lossy(other)
                            )));
                        }
                    };
                    if slot.is_some() {
                        return Err(bad("reserved term has two dimensions of one unit".into()));
                    }
                    *slot = Some(usd(d, sku, span)?);
                }
                if upfront.is_none() && hourly.is_none() {
                    return Err(bad("reserved term has no price dimensions".into()));
                }
                let upfront = upfront.unwrap_or(Usd::ZERO);
                let hourly = hourly.unwrap_or(Usd::ZERO);
                let (upfront_usd, hourly_usd) = (upfront.to_f64(), hourly.to_f64());
                send(Price::Reserved(ReservedPrice {
                    sku: sku_arc.clone(),
                    key: catalog.instance_key(idx),
                    lease_years: years,
                    offering_class: strings(catalog, class)?,
                    purchase_option: strings(catalog, option)?,
                    upfront_usd,
                    hourly_usd,
                    effective_hourly_usd: hourly_usd
                        + upfront_usd / (f64::from(years) * HOURS_PER_YEAR),
                    upfront_exact: upfront,
                    hourly_exact: hourly,
                    effective,
                }))?;
                counts.reserved += 1;
            }
            (TermKind::OnDemand, Known::Ebs(idx)) => {
                let ids = catalog.ebs(idx);
                for d in dims {
                    let price = usd(d, sku, span)?;
                    let (begin_range, end_range) = range(d, sku, span)?;
                    send(Price::Ebs(EbsPrice {
                        sku: sku_arc.clone(),
                        region: catalog.strings.get(ids.region),
                        volume_api_name: catalog.strings.get(ids.volume_api_name),
                        kind: ids.kind,
                        usage_type: catalog.strings.get(ids.usage_type),
                        usd_per_unit: price.to_f64(),
                        usd_per_unit_exact: price,
                        unit: strings(catalog, attr(&d.unit).unwrap_or(b""))?,
                        effective: effective.clone(),
                        begin_range,
                        end_range,
                    }))?;
                    counts.ebs += 1;
                }
            }
            // Reserved EBS terms are skipped before parsing; nothing else
            // reaches here.
            _ => {}
        }
    }
    Ok(())
}
