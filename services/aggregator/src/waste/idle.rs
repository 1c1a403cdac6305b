//! Idle running instances from CloudWatch (issue 22): Trusted Advisor's
//! low-utilisation rule — daily `CPUUtilization` maximum below X % and
//! network in + out below Y MB on most of the last 14 days.
//!
//! * [`classify`] is pure: days of datapoints → idle, busy or undecided.
//!   A day without both datapoints counts for nothing; too few days with
//!   data is *undecided*, never idle.
//! * [`plan`] batches instances into `GetMetricData` calls of at most 500
//!   queries (AWS's limit per call,
//!   <https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html>):
//!   3 queries an instance (CPU maximum, NetworkIn sum, NetworkOut sum, one
//!   datapoint a day), so 166 instances a call.
//! * [`fetch`] runs a plan through the customer's role; a throttled or
//!   failed call leaves its instances undecided.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use chrono::{DateTime, Duration, Utc};

/// Queries per `GetMetricData` call (AWS's maximum).
pub const MAX_QUERIES_PER_CALL: usize = 500;
/// Queries per instance.
pub const QUERIES_PER_INSTANCE: usize = 3;
/// Days looked back.
pub const WINDOW_DAYS: i64 = 14;

/// What makes an instance idle (per tenant, with defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleRule {
    /// The day's CPU maximum must be below this (percent). Default 5.
    pub cpu_max_percent: f64,
    /// The day's network in + out must be below this (MB = 10^6 bytes).
    /// Default 5.
    pub network_mb_per_day: f64,
    /// Days of the window that must be idle ("most of" 14: 8).
    pub idle_days: u32,
}

impl Default for IdleRule {
    fn default() -> Self {
        Self::from(&kopter_store::waste::Thresholds::default())
    }
}

impl From<&kopter_store::waste::Thresholds> for IdleRule {
    fn from(t: &kopter_store::waste::Thresholds) -> Self {
        Self {
            cpu_max_percent: t.idle_cpu_percent,
            network_mb_per_day: t.idle_network_mb,
            idle_days: t.idle_days,
        }
    }
}

/// One UTC day of an instance's metrics (`None`: no datapoint).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Day {
    pub cpu_max_percent: Option<f64>,
    pub network_in_bytes: Option<f64>,
    pub network_out_bytes: Option<f64>,
}

pub use kopter_store::waste::IdleVerdict as Verdict;

/// Classifies days (by their start) of one instance.
pub fn classify(days: &BTreeMap<DateTime<Utc>, Day>, rule: &IdleRule) -> Verdict {
    let mut idle_days = 0;
    let mut with_data = 0;
    let mut first_idle = None;
    for (day, d) in days {
        let (Some(cpu), Some(inb), Some(outb)) =
            (d.cpu_max_percent, d.network_in_bytes, d.network_out_bytes)
        else {
            continue;
        };
        with_data += 1;
        if cpu < rule.cpu_max_percent && (inb + outb) / 1e6 < rule.network_mb_per_day {
            idle_days += 1;
            first_idle.get_or_insert(*day);
        }
    }
    if idle_days >= rule.idle_days {
        return Verdict::Idle {
            idle_days,
            first_idle_day: first_idle.expect("an idle day was counted"),
        };
    }
    // Days without data could all have been idle: decided only when even
    // then the idle days would fall short.
    let missing = (WINDOW_DAYS as u32).saturating_sub(with_data);
    if idle_days + missing >= rule.idle_days {
        return Verdict::Undecided {
            reason: format!("{with_data} of {WINDOW_DAYS} days have CPU and network datapoints"),
        };
    }
    Verdict::Busy { idle_days }
}

/// The queries of one `GetMetricData` call: for instance `i` of the call,
/// ids `c{i}`, `n{i}`, `o{i}`.
pub fn plan(instances: &[String]) -> Vec<Vec<(String, &str)>> {
    instances
        .chunks(MAX_QUERIES_PER_CALL / QUERIES_PER_INSTANCE)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .flat_map(|(i, id)| {
                    [
                        (format!("c{i}"), id.as_str()),
                        (format!("n{i}"), id.as_str()),
                        (format!("o{i}"), id.as_str()),
                    ]
                })
                .collect()
        })
        .collect()
}

/// `GetMetricData` calls a day for `instances` instances (each read once).
pub fn calls_per_day(instances: usize) -> usize {
    instances.div_ceil(MAX_QUERIES_PER_CALL / QUERIES_PER_INSTANCE)
}

fn query(id: &str, instance: &str, metric: &str, stat: &str) -> MetricDataQuery {
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/EC2")
                        .metric_name(metric)
                        .dimensions(
                            Dimension::builder()
                                .name("InstanceId")
                                .value(instance)
                                .build(),
                        )
                        .build(),
                )
                .period(86_400)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

/// Reads the last [`WINDOW_DAYS`] whole UTC days before `today` (a day's
/// start) of `instances` and classifies each. A call that fails (throttled
/// after the SDK's retries, denied) leaves its instances undecided with the
/// reason. Returns the verdicts and the number of calls made.
pub async fn fetch(
    cw: &aws_sdk_cloudwatch::Client,
    instances: &[String],
    today: DateTime<Utc>,
    rule: &IdleRule,
) -> (BTreeMap<String, Verdict>, usize) {
    let start = today - Duration::days(WINDOW_DAYS);
    let mut verdicts = BTreeMap::new();
    let mut calls = 0;
    for batch in plan(instances) {
        let mut days: BTreeMap<&str, BTreeMap<DateTime<Utc>, Day>> = BTreeMap::new();
        let mut by_id: BTreeMap<&str, &str> = BTreeMap::new();
        let mut req = cw
            .get_metric_data()
            .start_time(aws_smithy_types::DateTime::from_secs(start.timestamp()))
            .end_time(aws_smithy_types::DateTime::from_secs(today.timestamp()))
            .scan_by(ScanBy::TimestampAscending);
        for (id, instance) in &batch {
            by_id.insert(id.as_str(), instance);
            days.entry(instance).or_default();
            let (metric, stat) = match &id[..1] {
                "c" => ("CPUUtilization", "Maximum"),
                "n" => ("NetworkIn", "Sum"),
                _ => ("NetworkOut", "Sum"),
            };
            req = req.metric_data_queries(query(id, instance, metric, stat));
        }
        let mut failed = None;
        let mut next: Option<String> = None;
        loop {
            calls += 1;
            let out = match req.clone().set_next_token(next.clone()).send().await {
                Ok(o) => o,
                Err(e) => {
                    failed = Some(format!(
                        "GetMetricData failed: {}",
                        aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
                    ));
                    break;
                }
            };
            for r in out.metric_data_results() {
                let Some(id) = r.id() else { continue };
                let Some(instance) = by_id.get(id) else {
                    continue;
                };
                let per_day = days.entry(instance).or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    let Some(day) =
                        DateTime::from_timestamp(t.secs() - t.secs().rem_euclid(86_400), 0)
                    else {
                        continue;
                    };
                    let d = per_day.entry(day).or_default();
                    match &id[..1] {
                        "c" => d.cpu_max_percent = Some(*v),
                        "n" => d.network_in_bytes = Some(*v),
                        _ => d.network_out_bytes = Some(*v),
                    }
                }
            }
            next = out.next_token().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        for (instance, d) in days {
            let v = match &failed {
                Some(reason) => Verdict::Undecided {
                    reason: reason.clone(),
                },
                None => classify(&d, rule),
            };
            verdicts.insert(instance.to_owned(), v);
        }
    }
    (verdicts, calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(spec: &[(Option<f64>, Option<f64>)]) -> BTreeMap<DateTime<Utc>, Day> {
        let first: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        spec.iter()
            .enumerate()
            .map(|(i, (cpu, net_mb))| {
                (
                    first + Duration::days(i as i64),
                    Day {
                        cpu_max_percent: *cpu,
                        network_in_bytes: net_mb.map(|m| m * 1e6 / 2.0),
                        network_out_bytes: net_mb.map(|m| m * 1e6 / 2.0),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn idle_on_most_days_is_idle_from_the_first_idle_day() {
        // Days 0–1 busy, 2–13 idle (CPU max 2 %, 1 MB).
        let mut spec = vec![(Some(40.0), Some(900.0)); 2];
        spec.extend(vec![(Some(2.0), Some(1.0)); 12]);
        assert_eq!(
            classify(&days(&spec), &IdleRule::default()),
            Verdict::Idle {
                idle_days: 12,
                first_idle_day: "2026-11-03T00:00:00Z".parse().unwrap()
            }
        );
    }

    #[test]
    fn thresholds_are_strict_and_both_must_hold() {
        // CPU exactly 5 % is not below 5 %; 5 MB is not below 5 MB; low
        // CPU with heavy network is not idle.
        for day in [
            (Some(5.0), Some(1.0)),
            (Some(1.0), Some(5.0)),
            (Some(1.0), Some(500.0)),
        ] {
            assert_eq!(
                classify(&days(&[day; 14]), &IdleRule::default()),
                Verdict::Busy { idle_days: 0 },
                "{day:?}"
            );
        }
    }

    #[test]
    fn no_datapoints_is_undecided_never_idle() {
        assert!(matches!(
            classify(&BTreeMap::new(), &IdleRule::default()),
            Verdict::Undecided { .. }
        ));
        // 7 idle days with data, 7 without: could be 14, could be 7.
        let mut spec = vec![(Some(1.0), Some(1.0)); 7];
        spec.extend(vec![(None, None); 7]);
        assert!(matches!(
            classify(&days(&spec), &IdleRule::default()),
            Verdict::Undecided { .. }
        ));
        // CPU without network counts for nothing.
        assert!(matches!(
            classify(&days(&[(Some(1.0), None); 14]), &IdleRule::default()),
            Verdict::Undecided { .. }
        ));
        // 7 busy days with data: busy whatever the other 7 were.
        let mut spec = vec![(Some(90.0), Some(1.0)); 7];
        spec.extend(vec![(None, None); 7]);
        assert_eq!(
            classify(&days(&spec), &IdleRule::default()),
            Verdict::Busy { idle_days: 0 }
        );
    }

    #[test]
    fn batches_stay_within_500_queries() {
        let ids: Vec<String> = (0..1000).map(|i| format!("i-{i:04}")).collect();
        let p = plan(&ids);
        assert_eq!(p.len(), 7, "166 instances a call");
        assert!(p.iter().all(|b| b.len() <= MAX_QUERIES_PER_CALL));
        assert_eq!(p[0].len(), 498);
        assert_eq!(p.iter().map(Vec::len).sum::<usize>(), 3000);
        assert_eq!(calls_per_day(1000), 7);
        assert_eq!(calls_per_day(166), 1);
        assert_eq!(calls_per_day(0), 0);
    }
}
