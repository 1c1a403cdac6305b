//! In-memory prices.

use futures::future::BoxFuture;
use kopter_schema::TenantId;

use super::MemoryData;
use crate::data::{DataError, Page, PageKey, PageRequest, Price, PriceData, PriceFilter};

impl PriceData for MemoryData {
    fn prices<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a PriceFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Price>, DataError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(tenant.clone());
            let start = match &page.after {
                None => 0,
                Some(PageKey(v)) => v["at"]
                    .as_u64()
                    .ok_or_else(|| anyhow::anyhow!("bad page key {v}"))?
                    as usize,
            };
            let matching: Vec<&Price> = self
                .prices
                .iter()
                .filter(|p| p.region == filter.region)
                .filter(|p| {
                    filter.instance_type.as_deref().is_none_or(|t| {
                        if t.ends_with('.') {
                            p.instance_type.starts_with(t)
                        } else {
                            p.instance_type == t
                        }
                    })
                })
                .filter(|p| {
                    filter
                        .os
                        .as_deref()
                        .is_none_or(|os| p.operating_system == os)
                })
                .collect();
            let end = (start + page.limit as usize).min(matching.len());
            let items = matching
                .get(start..end)
                .unwrap_or_default()
                .iter()
                .map(|p| (*p).clone())
                .collect();
            Ok(Page {
                items,
                next: (end < matching.len()).then(|| PageKey(serde_json::json!({ "at": end }))),
            })
        })
    }
}

/// `n` made-up price rows in `region` (tests, benchmark).
pub fn sample_prices(region: &str, n: usize) -> Vec<Price> {
    (0..n)
        .map(|i| Price {
            region: region.to_owned(),
            version: "20261101000000".into(),
            instance_type: format!("m{}.{}xlarge", 5 + i % 3, i / 3 + 1),
            tenancy: "Shared".into(),
            operation: if i % 2 == 0 {
                "RunInstances".into()
            } else {
                "RunInstances:0002".into()
            },
            operating_system: if i % 2 == 0 { "Linux" } else { "Windows" }.into(),
            license_model: "No License required".into(),
            pre_installed_sw: "NA".into(),
            // Thousandths by division, not accumulated sums, so each is the
            // f64 nearest its decimal (as parsed from a price list).
            usd_per_hour: (96 + i) as f64 / 1000.0,
            effective: "2026-11-01T00:00:00Z".into(),
        })
        .collect()
}
