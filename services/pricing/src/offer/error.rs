//! Why an offer file could not be parsed (further).
//!
//! Every error names the byte offset in the (uncompressed) file where it
//! was noticed, so `tail -c +$((OFFSET + 1)) index.json | head -c 400` shows
//! the spot, and the SKU whenever the problem is inside a product or term.

use std::io;

/// Boxed error returned by a price sink.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure to parse an offer file. Parsing stops at the first one; prices
/// already handed to the sink stay handed.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// The reader failed.
    #[error("read error at byte offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },

    /// The input ended before the document was complete.
    #[error("offer file is truncated: input ends at byte offset {offset}, inside {inside}")]
    Truncated { offset: u64, inside: String },

    /// The bytes are not valid JSON, or a value we read has the wrong JSON
    /// type (e.g. an attribute that is a number instead of a string).
    #[error("invalid JSON at byte offset {offset}{}: {what}", for_sku(sku))]
    InvalidJson {
        offset: u64,
        sku: Option<String>,
        what: String,
    },

    /// Valid JSON, but not an EC2 offer file: the top-level object, the
    /// `products`/`terms` objects or the offer code are not what AWS writes.
    #[error("not an EC2 offer file (at byte offset {offset}): {what}")]
    UnexpectedShape { offset: u64, what: String },

    /// `terms` appears before `products`. AWS always writes products first;
    /// pricing terms needs the products, and buffering terms would make
    /// memory grow with the file, so this is refused rather than handled.
    #[error(
        "`terms` at byte offset {offset} comes before `products`: this parser needs products \
         first (as AWS writes them) and does not buffer terms"
    )]
    TermsBeforeProducts { offset: u64 },

    /// A SKU under `terms` has no entry under `products`.
    #[error("SKU {sku} in terms.{term} (byte offset {offset}) has no product in `products`")]
    UnknownSku {
        offset: u64,
        sku: String,
        term: &'static str,
    },

    /// A price is not a non-negative decimal number.
    #[error("SKU {sku}: price {value:?} at byte offset {offset} is not a number")]
    PriceNotANumber {
        offset: u64,
        sku: String,
        value: String,
    },

    /// A price is in a currency other than USD.
    #[error("SKU {sku}: price at byte offset {offset} is in {currency}, not USD")]
    NotUsd {
        offset: u64,
        sku: String,
        currency: String,
    },

    /// A kept product or term lacks what pricing it needs, or has more
    /// than expected (e.g. an on-demand instance term with two hourly
    /// dimensions, a reserved term without a lease length).
    #[error("SKU {sku} at byte offset {offset}: {what}")]
    UnexpectedPrice {
        offset: u64,
        sku: String,
        what: String,
    },

    /// One product or one SKU's terms are larger than the configured limit;
    /// refusing it keeps memory bounded on a corrupt file.
    #[error(
        "entry at byte offset {offset}{} is larger than the {limit}-byte limit",
        for_sku(sku)
    )]
    EntryTooLarge {
        offset: u64,
        sku: Option<String>,
        limit: usize,
    },

    /// The sink refused a price.
    #[error("price sink failed at byte offset {offset} (SKU {sku}): {source}")]
    Sink {
        offset: u64,
        sku: String,
        source: SinkError,
    },
}

fn for_sku(sku: &Option<String>) -> String {
    match sku {
        Some(s) => format!(" (SKU {s})"),
        None => String::new(),
    }
}

impl OfferError {
    /// Byte offset in the file where the problem was noticed.
    pub fn offset(&self) -> u64 {
        match self {
            Self::Io { offset, .. }
            | Self::Truncated { offset, .. }
            | Self::InvalidJson { offset, .. }
            | Self::UnexpectedShape { offset, .. }
            | Self::TermsBeforeProducts { offset }
            | Self::UnknownSku { offset, .. }
            | Self::PriceNotANumber { offset, .. }
            | Self::NotUsd { offset, .. }
            | Self::UnexpectedPrice { offset, .. }
            | Self::EntryTooLarge { offset, .. }
            | Self::Sink { offset, .. } => *offset,
        }
    }

    /// The SKU the problem is in, when it is inside a product or term.
    pub fn sku(&self) -> Option<&str> {
        match self {
            Self::InvalidJson { sku, .. } | Self::EntryTooLarge { sku, .. } => sku.as_deref(),
            Self::UnknownSku { sku, .. }
            | Self::PriceNotANumber { sku, .. }
            | Self::NotUsd { sku, .. }
            | Self::UnexpectedPrice { sku, .. }
            | Self::Sink { sku, .. } => Some(sku),
            Self::Io { .. }
            | Self::Truncated { .. }
            | Self::UnexpectedShape { .. }
            | Self::TermsBeforeProducts { .. } => None,
        }
    }
}
