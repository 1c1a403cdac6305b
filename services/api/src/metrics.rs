//! The API's Prometheus metrics, in the process registry. Labels are
//! closed sets: route templates (never ids), method, status class, reason.

use std::sync::LazyLock;

use kopter_runtime::metrics::register;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

pub struct ApiMetrics {
    /// `kopter_api_requests_total{route,method,status}` (status `2xx`…`5xx`)
    pub requests: IntCounterVec,
    /// `kopter_api_request_duration_seconds{route}` (to the response head;
    /// a streamed export's body continues after it)
    pub duration: HistogramVec,
    /// `kopter_api_errors_total{type}` (the problem type's short name)
    pub errors: IntCounterVec,
    /// `kopter_api_auth_failures_total{reason}`
    pub auth_failures: IntCounterVec,
    /// `kopter_api_jwks_fetches_total{outcome=ok|error}`
    pub jwks_fetches: IntCounterVec,
}

pub fn api() -> &'static ApiMetrics {
    static METRICS: LazyLock<ApiMetrics> = LazyLock::new(|| {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        ApiMetrics {
            requests: counter(
                "kopter_api_requests_total",
                "API requests by route template, method and status class",
                &["route", "method", "status"],
            ),
            duration: register(
                HistogramVec::new(
                    HistogramOpts::new(
                        "kopter_api_request_duration_seconds",
                        "Time to the response head, by route template",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ]),
                    &["route"],
                )
                .expect("valid metric"),
            ),
            errors: counter(
                "kopter_api_errors_total",
                "API error responses by problem type",
                &["type"],
            ),
            auth_failures: counter(
                "kopter_api_auth_failures_total",
                "Refused bearer tokens by reason",
                &["reason"],
            ),
            jwks_fetches: counter(
                "kopter_api_jwks_fetches_total",
                "Fetches of an issuer's discovery document and JWKS",
                &["outcome"],
            ),
        }
    });
    &METRICS
}
