//! The pricing service's metrics (process registry; labels are small
//! closed sets: outcome, price kind, region code).

use std::sync::LazyLock;

use kopter_runtime::metrics::register;
use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

use crate::offer::Counts;
use kopter_store::prices::StoredCounts;

pub struct PricingMetrics {
    /// `kopter_pricing_region_refreshes_total{outcome=ingested|unchanged|failed}`
    refreshes: IntCounterVec,
    /// `kopter_pricing_offer_bytes_total`
    bytes: IntCounter,
    /// `kopter_pricing_offer_parse_duration_seconds` (download + parse of one file)
    parse_seconds: Histogram,
    /// `kopter_pricing_offer_throughput_bytes_per_second` (last file)
    throughput: Gauge,
    /// `kopter_pricing_prices_stored_total{kind=on_demand|reserved|ebs}`
    stored: IntCounterVec,
    /// `kopter_pricing_spot_points_stored_total`
    spot: IntCounter,
    /// `kopter_pricing_last_refresh_timestamp_seconds{region}`: when a
    /// refresh last succeeded for the region (a new version made current,
    /// or the version in force confirmed unchanged).
    fresh: GaugeVec,
    /// `kopter_pricing_version_conflicts_total`: ingests refused because
    /// the version was already stored with other content.
    conflicts: IntCounter,
    /// `kopter_pricing_unexpected_format_total`: offer files whose
    /// `formatVersion` is not the one the parser was written for.
    unexpected_format: IntCounter,
}

impl PricingMetrics {
    pub fn get() -> &'static Self {
        static M: LazyLock<PricingMetrics> = LazyLock::new(PricingMetrics::new);
        &M
    }

    fn new() -> Self {
        Self {
            refreshes: register(
                IntCounterVec::new(
                    Opts::new(
                        "kopter_pricing_region_refreshes_total",
                        "Region price refreshes by outcome",
                    ),
                    &["outcome"],
                )
                .expect("metric"),
            ),
            bytes: register(
                IntCounter::new(
                    "kopter_pricing_offer_bytes_total",
                    "Offer file bytes parsed",
                )
                .expect("metric"),
            ),
            parse_seconds: register(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kopter_pricing_offer_parse_duration_seconds",
                        "Download and parse time of one offer file",
                    )
                    .buckets(vec![
                        0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0,
                    ]),
                )
                .expect("metric"),
            ),
            throughput: register(
                Gauge::new(
                    "kopter_pricing_offer_throughput_bytes_per_second",
                    "Download and parse throughput of the last offer file",
                )
                .expect("metric"),
            ),
            stored: register(
                IntCounterVec::new(
                    Opts::new(
                        "kopter_pricing_prices_stored_total",
                        "Prices written, by kind",
                    ),
                    &["kind"],
                )
                .expect("metric"),
            ),
            spot: register(
                IntCounter::new(
                    "kopter_pricing_spot_points_stored_total",
                    "Spot price points written",
                )
                .expect("metric"),
            ),
            fresh: register(
                GaugeVec::new(
                    Opts::new(
                        "kopter_pricing_last_refresh_timestamp_seconds",
                        "Unix time of the last successful price refresh of a region (new version or confirmed unchanged)",
                    ),
                    &["region"],
                )
                .expect("metric"),
            ),
            conflicts: register(
                IntCounter::new(
                    "kopter_pricing_version_conflicts_total",
                    "Offer ingests refused: the version was already stored with other content",
                )
                .expect("metric"),
            ),
            unexpected_format: register(
                IntCounter::new(
                    "kopter_pricing_unexpected_format_total",
                    "Offer files whose formatVersion is not the one the parser expects",
                )
                .expect("metric"),
            ),
        }
    }

    pub fn version_conflict(&self) {
        self.conflicts.inc();
    }

    pub fn unexpected_format(&self) {
        self.unexpected_format.inc();
    }

    pub fn refresh(&self, outcome: &str) {
        self.refreshes.with_label_values(&[outcome]).inc();
    }

    pub fn parsed(&self, counts: &Counts, seconds: f64) {
        self.bytes.inc_by(counts.bytes);
        self.parse_seconds.observe(seconds);
        if seconds > 0.0 {
            self.throughput.set(counts.bytes as f64 / seconds);
        }
    }

    pub fn stored(&self, c: &StoredCounts) {
        self.stored
            .with_label_values(&["on_demand"])
            .inc_by(c.on_demand);
        self.stored
            .with_label_values(&["reserved"])
            .inc_by(c.reserved);
        self.stored.with_label_values(&["ebs"]).inc_by(c.ebs);
    }

    pub fn spot(&self, n: u64) {
        self.spot.inc_by(n);
    }

    pub fn mark_fresh(&self, region: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.fresh.with_label_values(&[region]).set(now);
    }
}
