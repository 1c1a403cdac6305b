//! The borrowed shapes of one product and of one SKU's terms: only the
//! fields pricing needs, as slices of the input buffer, read with the
//! [`Lexer`]; every other field is skipped without being decoded.

use std::borrow::Cow;

use super::lexer::{Lex, Lexer};

/// A kept string value: its raw bytes, borrowed from the input, or decoded
/// (owned) when it had escapes. UTF-8 is checked only when text is needed
/// ([`checked_text`]): most values are compared or parsed as bytes, or
/// interned from a cache of recent strings, and never need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Cow<'a, [u8]>);

impl Str<'_> {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// `bytes` as text if valid UTF-8 without control characters (which JSON
/// forbids raw in strings).
pub(crate) fn checked_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.bytes().any(|c| c < 0x20))
}

/// An entry type: how to read it from a lexer positioned at its value.
pub(crate) trait Entry {
    type Out<'a>;
    fn parse<'a>(lx: &mut Lexer<'a>) -> Lex<Self::Out<'a>>;
}

/// One value of `products`.
#[derive(Default)]
pub(crate) struct Product<'a> {
    pub family: Option<Str<'a>>,
    pub attributes: Attributes<'a>,
}

/// The attributes pricing reads; the thirty-odd others are skipped.
#[derive(Default)]
pub(crate) struct Attributes<'a> {
    pub instance_type: Option<Str<'a>>,
    pub operating_system: Option<Str<'a>>,
    pub tenancy: Option<Str<'a>>,
    pub license_model: Option<Str<'a>>,
    pub pre_installed_sw: Option<Str<'a>>,
    pub capacitystatus: Option<Str<'a>>,
    pub marketoption: Option<Str<'a>>,
    pub operation: Option<Str<'a>>,
    pub usagetype: Option<Str<'a>>,
    pub region_code: Option<Str<'a>>,
    pub volume_api_name: Option<Str<'a>>,
}

pub(crate) struct ProductEntry;

impl Entry for ProductEntry {
    type Out<'a> = Product<'a>;

    fn parse<'a>(lx: &mut Lexer<'a>) -> Lex<Product<'a>> {
        let mut p = Product::default();
        lx.object(|lx, key| match key {
            b"productFamily" => {
                p.family = Some(lx.string()?);
                Ok(())
            }
            b"attributes" => lx.object(|lx, key| {
                let a = &mut p.attributes;
                let slot = match key {
                    b"instanceType" => &mut a.instance_type,
                    b"operatingSystem" => &mut a.operating_system,
                    b"tenancy" => &mut a.tenancy,
                    b"licenseModel" => &mut a.license_model,
                    b"preInstalledSw" => &mut a.pre_installed_sw,
                    b"capacitystatus" => &mut a.capacitystatus,
                    b"marketoption" => &mut a.marketoption,
                    b"operation" => &mut a.operation,
                    b"usagetype" => &mut a.usagetype,
                    b"regionCode" => &mut a.region_code,
                    b"volumeApiName" => &mut a.volume_api_name,
                    _ => return lx.skip_value(),
                };
                *slot = Some(lx.string()?);
                Ok(())
            }),
            _ => lx.skip_value(),
        })?;
        Ok(p)
    }
}

/// One SKU's value under `terms.OnDemand` / `terms.Reserved`: its offer
/// terms (the `"<SKU>.<offerTermCode>"` keys are not needed).
pub(crate) struct Offers<'a>(pub Vec<Offer<'a>>);

pub(crate) struct OffersEntry;

impl Entry for OffersEntry {
    type Out<'a> = Offers<'a>;

    fn parse<'a>(lx: &mut Lexer<'a>) -> Lex<Offers<'a>> {
        let mut offers = Vec::with_capacity(16);
        lx.object(|lx, _| {
            offers.push(offer(lx)?);
            Ok(())
        })?;
        Ok(Offers(offers))
    }
}

/// One offer term.
#[derive(Default)]
pub(crate) struct Offer<'a> {
    pub effective_date: Option<Str<'a>>,
    pub dimensions: Vec<Dimension<'a>>,
    pub term_attributes: TermAttributes<'a>,
}

#[derive(Default)]
pub(crate) struct Dimension<'a> {
    pub unit: Option<Str<'a>>,
    /// `beginRange`: the quantity from which this rate applies (`"0"` for
    /// an untiered price).
    pub begin_range: Option<Str<'a>>,
    /// `endRange`: the quantity up to which it applies (`"Inf"`: no end).
    pub end_range: Option<Str<'a>>,
    /// `pricePerUnit.USD`.
    pub usd: Option<Str<'a>>,
    /// The first other currency in `pricePerUnit` (an error for pricing,
    /// reported with the SKU by the parser).
    pub other_currency: Option<Str<'a>>,
}

#[derive(Default)]
pub(crate) struct TermAttributes<'a> {
    pub lease_contract_length: Option<Str<'a>>,
    pub offering_class: Option<Str<'a>>,
    pub purchase_option: Option<Str<'a>>,
}

fn offer<'a>(lx: &mut Lexer<'a>) -> Lex<Offer<'a>> {
    let mut o = Offer::default();
    lx.object(|lx, key| match key {
        b"effectiveDate" => {
            o.effective_date = Some(lx.string()?);
            Ok(())
        }
        b"priceDimensions" => lx.object(|lx, _| {
            o.dimensions.push(dimension(lx)?);
            Ok(())
        }),
        b"termAttributes" => lx.object(|lx, key| {
            let t = &mut o.term_attributes;
            let slot = match key {
                b"LeaseContractLength" => &mut t.lease_contract_length,
                b"OfferingClass" => &mut t.offering_class,
                b"PurchaseOption" => &mut t.purchase_option,
                _ => return lx.skip_value(),
            };
            *slot = Some(lx.string()?);
            Ok(())
        }),
        _ => lx.skip_value(),
    })?;
    Ok(o)
}

fn dimension<'a>(lx: &mut Lexer<'a>) -> Lex<Dimension<'a>> {
    let mut d = Dimension::default();
    lx.object(|lx, key| match key {
        b"unit" => {
            d.unit = Some(lx.string()?);
            Ok(())
        }
        b"beginRange" => {
            d.begin_range = Some(lx.string()?);
            Ok(())
        }
        b"endRange" => {
            d.end_range = Some(lx.string()?);
            Ok(())
        }
        b"pricePerUnit" => lx.object(|lx, currency| {
            let value = lx.string()?;
            if currency == b"USD" {
                d.usd = Some(value);
            } else if d.other_currency.is_none() {
                d.other_currency = Some(Str(Cow::Borrowed(currency)));
            }
            Ok(())
        }),
        _ => lx.skip_value(),
    })?;
    Ok(d)
}
