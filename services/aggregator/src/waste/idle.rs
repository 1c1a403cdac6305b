//! Idle running instances from CloudWatch (issue 22): Trusted Advisor's
//! low-utilisation rule — daily `CPUUtilization` maximum below X % and
//! network in + out below Y MB on most of the last 14 days.
//!
//! * [`classify`] is pure: days of datapoints → idle, busy or undecided.
//!   A day without both datapoints counts for nothing; too few days with
//!   data is *undecided*, never idle.
//! * [`fetch`] reads in two stages, each batched to at most 500 queries a
//!   `GetMetricData` call (AWS's limit per call,
//!   <https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html>):
//!   first the CPU maximum of every instance (1 query each, 500 a call);
//!   then network in and out (2 queries each, 250 a call) only for the
//!   instances whose CPU alone does not rule idleness out
//!   ([`busy_by_cpu`]). A day is idle only when both hold, so an instance
//!   whose CPU was high on too many days is busy whatever its network.
//! * [`valid_days`]: how long a verdict stands — the window slides a day
//!   at a time, so a busy instance cannot become idle, nor an idle one
//!   stop being idle, before enough days have passed; it is not read
//!   before then.
//!
//! A failed call (throttled after the SDK's retries, denied), or a series
//! CloudWatch did not complete, leaves its instances undecided.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StatusCode,
};
use chrono::{DateTime, Duration, Utc};

/// Queries per `GetMetricData` call (AWS's maximum).
pub const MAX_QUERIES_PER_CALL: usize = 500;
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

impl IdleRule {
    /// The rule as stored beside a verdict: a verdict read under other
    /// thresholds is read again.
    pub fn key(&self) -> String {
        format!(
            "cpu<{}%;net<{}MB;days>={}",
            self.cpu_max_percent, self.network_mb_per_day, self.idle_days
        )
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

/// Classifies days (by their start) of one instance. A busy verdict's
/// `idle_days` counts the days that were idle or had no data to tell (an
/// upper bound: what [`valid_days`] needs).
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
    Verdict::Busy {
        idle_days: idle_days + missing,
    }
}

/// The verdict from CPU alone when it rules idleness out: the days whose
/// CPU maximum was low or unknown are fewer than the rule's idle days.
/// `None`: the network decides.
pub fn busy_by_cpu(days: &BTreeMap<DateTime<Utc>, Day>, rule: &IdleRule) -> Option<Verdict> {
    let known = days
        .values()
        .filter(|d| d.cpu_max_percent.is_some())
        .count() as u32;
    let low = days
        .values()
        .filter(|d| d.cpu_max_percent.is_some_and(|c| c < rule.cpu_max_percent))
        .count() as u32;
    let could = low + (WINDOW_DAYS as u32).saturating_sub(known);
    (could < rule.idle_days).then_some(Verdict::Busy { idle_days: could })
}

/// Days a verdict stands, read at the start of a day. The window gains
/// one day and loses one each day, so the count of idle days moves by at
/// most one a day: a busy instance with `b` days that were or may have
/// been idle cannot be idle before `idle_days - b` days; an idle one with
/// `k` idle days stays idle for `k - idle_days` more. Undecided: a day.
pub fn valid_days(verdict: &Verdict, rule: &IdleRule) -> u32 {
    match verdict {
        Verdict::Busy { idle_days } => rule.idle_days.saturating_sub(*idle_days).max(1),
        Verdict::Idle { idle_days, .. } => (idle_days + 1).saturating_sub(rule.idle_days).max(1),
        Verdict::Undecided { .. } => 1,
    }
}

/// A metric read for the rule: its query id prefix, name and statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Series {
    CpuMax,
    NetworkIn,
    NetworkOut,
}

impl Series {
    fn id_prefix(self) -> &'static str {
        match self {
            Series::CpuMax => "c",
            Series::NetworkIn => "n",
            Series::NetworkOut => "o",
        }
    }
    fn of(id: &str) -> Option<Self> {
        match id.get(..1)? {
            "c" => Some(Series::CpuMax),
            "n" => Some(Series::NetworkIn),
            "o" => Some(Series::NetworkOut),
            _ => None,
        }
    }
    fn query(self, id: String, instance: &str) -> MetricDataQuery {
        let (metric, stat) = match self {
            Series::CpuMax => ("CPUUtilization", "Maximum"),
            Series::NetworkIn => ("NetworkIn", "Sum"),
            Series::NetworkOut => ("NetworkOut", "Sum"),
        };
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
    fn set(self, d: &mut Day, v: f64) {
        match self {
            Series::CpuMax => d.cpu_max_percent = Some(v),
            Series::NetworkIn => d.network_in_bytes = Some(v),
            Series::NetworkOut => d.network_out_bytes = Some(v),
        }
    }
}

const CPU: &[Series] = &[Series::CpuMax];
const NETWORK: &[Series] = &[Series::NetworkIn, Series::NetworkOut];

/// `GetMetricData` calls to read `instances` once in full when
/// `candidates` of them need their network read too.
pub fn calls(instances: usize, candidates: usize) -> usize {
    instances.div_ceil(MAX_QUERIES_PER_CALL / CPU.len())
        + candidates.div_ceil(MAX_QUERIES_PER_CALL / NETWORK.len())
}

/// Reads the last [`WINDOW_DAYS`] whole UTC days before `today` (a day's
/// start) of `instances` and classifies each: CPU first, network for the
/// instances CPU does not settle. Returns the verdicts and the number of
/// calls made.
pub async fn fetch(
    cw: &aws_sdk_cloudwatch::Client,
    instances: &[String],
    today: DateTime<Utc>,
    rule: &IdleRule,
) -> (BTreeMap<String, Verdict>, usize) {
    let mut days = BTreeMap::new();
    let mut verdicts = BTreeMap::new();
    let mut calls = read(cw, instances, CPU, today, &mut days).await;
    let mut candidates = Vec::new();
    for (instance, d) in &days {
        match d {
            Err(reason) => {
                verdicts.insert(
                    instance.clone(),
                    Verdict::Undecided {
                        reason: reason.clone(),
                    },
                );
            }
            Ok(d) => match busy_by_cpu(d, rule) {
                Some(v) => {
                    verdicts.insert(instance.clone(), v);
                }
                None => candidates.push(instance.clone()),
            },
        }
    }
    calls += read(cw, &candidates, NETWORK, today, &mut days).await;
    for instance in candidates {
        let v = match &days[&instance] {
            Err(reason) => Verdict::Undecided {
                reason: reason.clone(),
            },
            Ok(d) => classify(d, rule),
        };
        verdicts.insert(instance, v);
    }
    (verdicts, calls)
}

type Read = BTreeMap<String, Result<BTreeMap<DateTime<Utc>, Day>, String>>;

/// Reads `series` of `instances` into `out` (merged with what it holds),
/// batched to ≤ [`MAX_QUERIES_PER_CALL`] queries a call, following
/// `NextToken`. An instance of a failed call, or whose series did not end
/// `Complete`, becomes `Err(reason)`. Returns the calls made.
async fn read(
    cw: &aws_sdk_cloudwatch::Client,
    instances: &[String],
    series: &[Series],
    today: DateTime<Utc>,
    out: &mut Read,
) -> usize {
    let start = today - Duration::days(WINDOW_DAYS);
    let mut calls = 0;
    for chunk in instances.chunks(MAX_QUERIES_PER_CALL / series.len()) {
        let mut req = cw
            .get_metric_data()
            .start_time(aws_smithy_types::DateTime::from_secs(start.timestamp()))
            .end_time(aws_smithy_types::DateTime::from_secs(today.timestamp()))
            .scan_by(ScanBy::TimestampAscending);
        for (i, instance) in chunk.iter().enumerate() {
            out.entry(instance.clone())
                .or_insert_with(|| Ok(BTreeMap::new()));
            for s in series {
                req = req.metric_data_queries(s.query(format!("{}{i}", s.id_prefix()), instance));
            }
        }
        // The last status of each query id: a series left `PartialData`
        // (or worse) is not a day without data.
        let mut status: BTreeMap<String, StatusCode> = BTreeMap::new();
        let mut failed = None;
        let mut next: Option<String> = None;
        loop {
            calls += 1;
            let page = match req.clone().set_next_token(next.clone()).send().await {
                Ok(o) => o,
                Err(e) => {
                    failed = Some(format!(
                        "GetMetricData failed: {}",
                        aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
                    ));
                    break;
                }
            };
            for r in page.metric_data_results() {
                let Some(id) = r.id() else { continue };
                let (Some(s), Some(instance)) = (
                    Series::of(id),
                    id.get(1..)
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| chunk.get(i)),
                ) else {
                    continue;
                };
                if let Some(code) = r.status_code() {
                    status.insert(id.to_owned(), code.clone());
                }
                let Some(Ok(per_day)) = out.get_mut(instance) else {
                    continue;
                };
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    let Some(day) =
                        DateTime::from_timestamp(t.secs() - t.secs().rem_euclid(86_400), 0)
                    else {
                        continue;
                    };
                    s.set(per_day.entry(day).or_default(), *v);
                }
            }
            next = page.next_token().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        for (i, instance) in chunk.iter().enumerate() {
            let reason = failed.clone().or_else(|| {
                series.iter().find_map(|s| {
                    let id = format!("{}{i}", s.id_prefix());
                    match status.get(&id) {
                        None | Some(StatusCode::Complete) => None,
                        Some(code) => Some(format!("CloudWatch answered {code} for {id}")),
                    }
                })
            });
            if let Some(reason) = reason {
                out.insert(instance.clone(), Err(reason));
            }
        }
    }
    calls
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
        // 7 busy days with data: busy whatever the other 7 were (which
        // may have been idle: counted as such).
        let mut spec = vec![(Some(90.0), Some(1.0)); 7];
        spec.extend(vec![(None, None); 7]);
        assert_eq!(
            classify(&days(&spec), &IdleRule::default()),
            Verdict::Busy { idle_days: 7 }
        );
    }

    #[test]
    fn cpu_alone_rules_out_idleness_only_when_too_few_days_could_be_idle() {
        let cpu = |spec: &[Option<f64>]| -> BTreeMap<DateTime<Utc>, Day> {
            let first: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
            spec.iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        first + Duration::days(i as i64),
                        Day {
                            cpu_max_percent: *c,
                            ..Day::default()
                        },
                    )
                })
                .collect()
        };
        let rule = IdleRule::default();
        // CPU 60 % every day: busy, no network read.
        assert_eq!(
            busy_by_cpu(&cpu(&[Some(60.0); 14]), &rule),
            Some(Verdict::Busy { idle_days: 0 })
        );
        // 7 low days and 7 high: 7 < 8, busy.
        let mut spec = vec![Some(1.0); 7];
        spec.extend([Some(60.0); 7]);
        assert_eq!(
            busy_by_cpu(&cpu(&spec), &rule),
            Some(Verdict::Busy { idle_days: 7 })
        );
        // 6 high, 8 low: the network decides.
        let mut spec = vec![Some(60.0); 6];
        spec.extend([Some(1.0); 8]);
        assert_eq!(busy_by_cpu(&cpu(&spec), &rule), None);
        // 7 high and 7 without a datapoint: could be 7 idle days: busy.
        // 6 high and 8 without: could be idle: the network decides (and
        // classify then says undecided).
        let mut spec = vec![Some(60.0); 7];
        spec.extend([None; 7]);
        assert!(busy_by_cpu(&cpu(&spec), &rule).is_some());
        let mut spec = vec![Some(60.0); 6];
        spec.extend([None; 8]);
        assert_eq!(busy_by_cpu(&cpu(&spec), &rule), None);
        assert!(matches!(
            classify(&cpu(&spec), &rule),
            Verdict::Undecided { .. }
        ));
    }

    #[test]
    fn a_verdict_stands_until_the_sliding_window_could_change_it() {
        let rule = IdleRule::default();
        // Busy every day: 8 more days before 8 idle days are possible.
        assert_eq!(valid_days(&Verdict::Busy { idle_days: 0 }, &rule), 8);
        assert_eq!(valid_days(&Verdict::Busy { idle_days: 7 }, &rule), 1);
        // Idle 14 of 14: still ≥ 8 idle days after 6 days, not after 7.
        let first_idle_day = "2026-11-01T00:00:00Z".parse().unwrap();
        let idle = |k| Verdict::Idle {
            idle_days: k,
            first_idle_day,
        };
        assert_eq!(valid_days(&idle(14), &rule), 7);
        assert_eq!(valid_days(&idle(8), &rule), 1);
        let undecided = Verdict::Undecided {
            reason: String::new(),
        };
        assert_eq!(valid_days(&undecided, &rule), 1);
        // Checked against the slide itself: an always-idle run followed
        // by busy days; re-classified each day, the verdict flips no
        // earlier than `valid_days` said.
        let mut spec = vec![(Some(1.0), Some(1.0)); 14];
        spec.extend(vec![(Some(90.0), Some(900.0)); 14]);
        let first = classify(&days(&spec[..14]), &rule);
        let flips = (1..=14)
            .find(|d| {
                !matches!(
                    classify(&days(&spec[*d..d + 14]), &rule),
                    Verdict::Idle { .. }
                )
            })
            .unwrap();
        assert_eq!(flips as u32, valid_days(&first, &rule));
    }

    #[test]
    fn calls_per_thousand_instances() {
        // 1,000 instances: 2 calls of 500 CPU queries; network for 100
        // candidates: 200 queries, 1 call.
        assert_eq!(calls(1000, 0), 2);
        assert_eq!(calls(1000, 100), 3);
        assert_eq!(calls(1000, 250), 3);
        assert_eq!(calls(1000, 251), 4);
        assert_eq!(calls(0, 0), 0);
    }
}
