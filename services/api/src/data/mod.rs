//! The seam between the HTTP layer and the tables: what every endpoint
//! reads or writes, always for one tenant — the verified token's — passed
//! as the first argument of every call. One trait per area, each in its
//! own module; [`TenantData`] is all of them. [`crate::dynamo`] implements
//! them on `kopter-store` with tenant-scoped DynamoDB credentials;
//! [`crate::memory`] is an in-memory fake for the HTTP layer's tests and
//! the benchmark.

pub mod audit;
pub mod cost;
pub mod inventory;
pub mod prices;
pub mod settings;
pub mod waste;

pub use kopter_store::page::{Page, PageKey, PageRequest};
pub use prices::{Price, PriceData, PriceFilter};

use kopter_store::graph::packed::IncompleteHour;

use crate::error::ApiError;

/// Why a data call failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Transient (throttling, DynamoDB or STS unreachable): 503.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<DataError> for ApiError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Unavailable(m) => ApiError::Unavailable(m),
            DataError::Other(e) => ApiError::Internal(e),
        }
    }
}

/// Everything the endpoints read and write: every area's trait. Each
/// method takes the tenant of the verified token first; an implementation
/// confines itself to it.
pub trait TenantData:
    prices::PriceData
    + audit::AuditData
    + inventory::InventoryData
    + cost::CostData
    + settings::SettingsData
    + waste::WasteData
    + Send
    + Sync
    + 'static
{
}

impl<T> TenantData for T where
    T: prices::PriceData
        + audit::AuditData
        + inventory::InventoryData
        + cost::CostData
        + settings::SettingsData
        + waste::WasteData
        + Send
        + Sync
        + 'static
{
}

/// A store error as a [`DataError`]: AWS back-pressure or an unreachable
/// endpoint ([`kopter_runtime::aws::classify_anyhow`]) and a cost hour
/// read while it is rewritten ([`IncompleteHour`]) are `Unavailable` (503,
/// worth a retry), anything else internal.
pub fn store_error(e: anyhow::Error) -> DataError {
    if let Some(hour) = e.downcast_ref::<IncompleteHour>() {
        return DataError::Unavailable(format!(
            "the cost of that hour is being recomputed; retry shortly ({})",
            hour.why
        ));
    }
    match kopter_runtime::aws::classify_anyhow(&e) {
        Some(class) => DataError::Unavailable(format!("{} ({})", e, class.label())),
        None => DataError::Other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_hour_caught_mid_rewrite_is_unavailable_not_internal() {
        let e = anyhow::Error::new(IncompleteHour {
            pk: "acme#111111111111#res#2026-11-30T10".into(),
            why: "result ab12: chunks [0] of 2".into(),
        })
        .context("resource hours of 111111111111");
        match store_error(e) {
            DataError::Unavailable(m) => {
                assert!(m.contains("being recomputed"), "{m}");
                assert!(m.contains("chunks [0] of 2"), "{m}");
                // The partition key (with the tenant) stays in the log.
                assert!(!m.contains("acme#"), "{m}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(matches!(
            store_error(anyhow::anyhow!("a bug")),
            DataError::Other(_)
        ));
    }
}
