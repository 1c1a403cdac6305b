//! Classifying an S3 object key from a trail bucket.
//!
//! CloudTrail writes every file under a fixed layout:
//!
//! ```text
//! [prefix/]AWSLogs/[o-orgid/]<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/
//!     <account>_CloudTrail_<region>_<yyyymmddThhmmZ>_<unique>.json.gz
//! ```
//!
//! with `CloudTrail-Digest` (integrity digests) and `CloudTrail-Insight`
//! (Insights events) as sibling folders. The account id in the key is
//! what trail-ingest checks against the tenant that onboarded it, so this
//! parse is a security boundary, not a convenience:
//!
//! - It is strict and total: anything that is not exactly the layout is
//!   `Other(reason)` (never a panic), so a file somebody else put in the
//!   bucket is skipped with a reason instead of being filed under an
//!   account it merely names.
//! - Keys with empty, `.` or `..` segments are rejected outright. S3 does
//!   not normalise paths, but anything downstream that does (a console
//!   link, a local mirror) would see a different account than we did.
//! - The account and region appear twice (folder and file name); both must
//!   agree, so neither can be forged on its own.
//! - The trail's `S3KeyPrefix` is free text and may contain slashes and
//!   even `AWSLogs`, so we anchor on the last `AWSLogs` segment that is
//!   followed by a complete layout. The layout has a fixed number of
//!   segments, so at most one anchor can match.
//! - Digest and Insights files are recognised so callers can skip them
//!   deliberately; they are validated as far as the shared layout goes.
//! - The date in the file name is the delivery time, which may differ from
//!   the folder date around midnight as far as we know, so only its format
//!   is checked; `LogKey::date` is the folder date.

use chrono::{NaiveDate, NaiveTime};
use kopter_schema::AccountId;

/// A CloudTrail log file's place in the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKey {
    /// The trail's key prefix without the trailing `/`; empty when none.
    pub prefix: String,
    /// The organization folder (`o-…`) of an organization trail.
    pub org_id: Option<String>,
    pub account: AccountId,
    pub region: String,
    /// The day folder.
    pub date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    LogFile(LogKey),
    Digest,
    Insights,
    /// Not a CloudTrail file; the reason is for logs.
    Other(&'static str),
}

/// S3's own limit; anything longer cannot be a real key.
const MAX_KEY_BYTES: usize = 1024;
const SUFFIX: &str = ".json.gz";

#[derive(Clone, Copy)]
enum Service {
    Logs,
    Digest,
    Insight,
}

pub fn classify_key(key: &str) -> KeyKind {
    if let Err(why) = check_hygiene(key) {
        return KeyKind::Other(why);
    }
    let segments: Vec<&str> = key.split('/').collect();
    let mut nearest_failure = None;
    for anchor in (0..segments.len()).rev() {
        if segments[anchor] != "AWSLogs" {
            continue;
        }
        match parse_layout(&segments[..anchor], &segments[anchor + 1..]) {
            Ok(kind) => return kind,
            // The anchor nearest the end is the one a real file would use,
            // so its failure is the most useful reason.
            Err(why) => nearest_failure = nearest_failure.or(Some(why)),
        }
    }
    KeyKind::Other(nearest_failure.unwrap_or("no AWSLogs folder"))
}

fn check_hygiene(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty key");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("longer than S3's 1024-byte key limit");
    }
    if key.chars().any(char::is_control) {
        return Err("control character in key");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("empty path segment (leading, trailing or double slash)"),
            "." | ".." => return Err("'.' or '..' path segment"),
            _ => {}
        }
    }
    Ok(())
}

fn parse_layout(prefix: &[&str], after: &[&str]) -> Result<KeyKind, &'static str> {
    let (org_id, after) = match after.split_first() {
        Some((first, rest)) if first.starts_with("o-") => {
            if !is_org_id(first) {
                return Err("organization folder is not an o- followed by 10-32 [a-z0-9]");
            }
            (Some((*first).to_owned()), rest)
        }
        _ => (None, after),
    };
    let &[account, service_dir, region, yyyy, mm, dd, file] = after else {
        return Err("wrong number of folders after AWSLogs/");
    };
    let account_id =
        AccountId::new(account).map_err(|_| "account folder is not a 12-digit account id")?;
    let service = match service_dir {
        "CloudTrail" => Service::Logs,
        "CloudTrail-Digest" => Service::Digest,
        "CloudTrail-Insight" => Service::Insight,
        _ => return Err("not a CloudTrail, CloudTrail-Digest or CloudTrail-Insight folder"),
    };
    if !is_region(region) {
        return Err("region folder is not a region name");
    }
    let date = folder_date(yyyy, mm, dd).ok_or("year/month/day folders are not a valid date")?;

    let stem = file
        .strip_suffix(SUFFIX)
        .ok_or("file name does not end in .json.gz")?;
    let mut parts = stem.splitn(4, '_');
    let (Some(file_account), Some(file_service), Some(file_region), Some(tail)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("file name is not <account>_<service>_<region>_…");
    };
    if file_account != account {
        return Err("file name account differs from folder account");
    }
    if file_service != service_dir {
        return Err("file name service differs from folder");
    }
    if file_region != region {
        return Err("file name region differs from folder region");
    }

    match service {
        Service::Logs | Service::Insight => {
            let (stamp, unique) = tail
                .split_once('_')
                .ok_or("file name has no _<unique> part")?;
            if !is_stamp(stamp, false) {
                return Err("file name time is not yyyymmddThhmmZ");
            }
            if unique.is_empty() || !unique.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err("file name unique part is not alphanumeric");
            }
        }
        Service::Digest => {
            // <trail name>_<trail home region>_<yyyymmddThhmmssZ>; trail
            // names may contain '_', so split from the right.
            let (trail_and_home, stamp) = tail
                .rsplit_once('_')
                .ok_or("digest file name has no timestamp")?;
            if !is_stamp(stamp, true) {
                return Err("digest file name time is not yyyymmddThhmmssZ");
            }
            let home_region = trail_and_home
                .rsplit_once('_')
                .filter(|(trail, _)| !trail.is_empty())
                .map(|(_, home)| home);
            if !home_region.is_some_and(is_region) {
                return Err("digest file name has no <trail>_<home region> part");
            }
        }
    }

    Ok(match service {
        Service::Digest => KeyKind::Digest,
        Service::Insight => KeyKind::Insights,
        Service::Logs => KeyKind::LogFile(LogKey {
            prefix: prefix.join("/"),
            org_id,
            account: account_id,
            region: region.to_owned(),
            date,
        }),
    })
}

/// AWS Organizations ids: `o-` and 10 to 32 lowercase letters or digits.
fn is_org_id(segment: &str) -> bool {
    segment.strip_prefix("o-").is_some_and(|id| {
        (10..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Region names: lowercase words and a trailing number, at least three
/// parts (`us-east-1`, `us-gov-west-1`, `eusc-de-east-1`). Kept to the
/// shape rather than a list so new regions need no release.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    s.len() <= 32
        && words.len() >= 2
        && is_digits(number)
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `u32::from_str` would accept a leading `+`; the layout wants digits only.
fn number(s: &str, len: usize) -> Option<u32> {
    if s.len() == len && is_digits(s) {
        s.parse().ok()
    } else {
        None
    }
}

fn folder_date(yyyy: &str, mm: &str, dd: &str) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(
        i32::try_from(number(yyyy, 4)?).ok()?,
        number(mm, 2)?,
        number(dd, 2)?,
    )
}

/// `yyyymmddThhmmZ`, or `yyyymmddThhmmssZ` for digests, as a real instant.
fn is_stamp(stamp: &str, with_seconds: bool) -> bool {
    let Some(body) = stamp.strip_suffix('Z') else {
        return false;
    };
    let Some((date, time)) = body.split_once('T') else {
        return false;
    };
    let date_ok = date.len() == 8
        && date.is_char_boundary(4)
        && date.is_char_boundary(6)
        && folder_date(&date[..4], &date[4..6], &date[6..]).is_some();
    let time_len = if with_seconds { 6 } else { 4 };
    let time_ok = time.len() == time_len
        && is_digits(time)
        && NaiveTime::from_hms_opt(
            number(&time[..2], 2).unwrap_or(99),
            number(&time[2..4], 2).unwrap_or(99),
            if with_seconds {
                number(&time[4..], 2).unwrap_or(99)
            } else {
                0
            },
        )
        .is_some();
    date_ok && time_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::{Notification, parse_notification};

    const CLOUDTRAIL_IN_SNS: &str = include_str!("../tests/fixtures/SQSMessageBody.json");
    const CLOUDTRAIL_RAW_0: &str = include_str!("../tests/fixtures/sns_message_s3ObjectKey_0.json");
    const CLOUDTRAIL_RAW_1: &str = include_str!("../tests/fixtures/sns_message_s3ObjectKey_1.json");
    const DIGEST_FILE: &str = include_str!("../tests/fixtures/digest_file_example_0.json");
    const S3_PUT: &str = include_str!("../tests/fixtures/s3_event_v2.1_ObjectCreated_Put.json");

    const PLAIN: &str = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/02/111122223333_CloudTrail_us-east-1_20240102T0005Z_Mu0KsOhtH1ar15ZZ.json.gz";
    const TAIL: &str = "111122223333/CloudTrail/us-east-1/2024/01/02/111122223333_CloudTrail_us-east-1_20240102T0005Z_Mu0KsOhtH1ar15ZZ.json.gz";

    fn keys_in(body: &str) -> Vec<String> {
        match parse_notification(body) {
            Ok(Notification::Objects(list)) => list.into_iter().map(|o| o.key).collect(),
            other => panic!("expected objects, got {other:?}"),
        }
    }

    fn log(key: &str) -> LogKey {
        match classify_key(key) {
            KeyKind::LogFile(log) => log,
            other => panic!("{key}: expected a log file, got {other:?}"),
        }
    }

    fn other(key: &str) -> &'static str {
        match classify_key(key) {
            KeyKind::Other(why) => why,
            kind => panic!("{key}: expected Other, got {kind:?}"),
        }
    }

    fn expected(
        prefix: &str,
        org: Option<&str>,
        account: &str,
        region: &str,
        ymd: (i32, u32, u32),
    ) -> LogKey {
        LogKey {
            prefix: prefix.to_owned(),
            org_id: org.map(str::to_owned),
            account: AccountId::new(account).unwrap(),
            region: region.to_owned(),
            date: NaiveDate::from_ymd_opt(ymd.0, ymd.1, ymd.2).unwrap(),
        }
    }

    #[test]
    fn plain_log_file() {
        assert_eq!(
            log(PLAIN),
            expected("", None, "111122223333", "us-east-1", (2024, 1, 2))
        );
    }

    #[test]
    fn prefixed_log_file_prefix_may_contain_slashes_and_awslogs() {
        let key = format!("team/a/AWSLogs/{TAIL}");
        assert_eq!(log(&key).prefix, "team/a");
        // The last AWSLogs followed by a full layout wins.
        let key = format!("AWSLogs/222222222222/CloudTrail/old/AWSLogs/{TAIL}");
        let parsed = log(&key);
        assert_eq!(parsed.prefix, "AWSLogs/222222222222/CloudTrail/old");
        assert_eq!(parsed.account.as_str(), "111122223333");
    }

    #[test]
    fn org_trail() {
        let key = format!("AWSLogs/o-abc123def4/{TAIL}");
        assert_eq!(
            log(&key),
            expected(
                "",
                Some("o-abc123def4"),
                "111122223333",
                "us-east-1",
                (2024, 1, 2)
            )
        );
        assert_eq!(log(&format!("p/AWSLogs/o-abc123def4/{TAIL}")).prefix, "p");
        assert_eq!(
            other(&format!("AWSLogs/o-ABC123DEF4/{TAIL}")),
            "organization folder is not an o- followed by 10-32 [a-z0-9]"
        );
        assert_eq!(
            other(&format!("AWSLogs/o-abc/{TAIL}")),
            "organization folder is not an o- followed by 10-32 [a-z0-9]"
        );
    }

    #[test]
    fn fixture_keys_from_notifications() {
        for key in keys_in(CLOUDTRAIL_IN_SNS) {
            assert_eq!(
                log(&key),
                expected("myprefix", None, "123456789012", "us-east-1", (2014, 3, 9))
            );
        }
        let keys = keys_in(CLOUDTRAIL_RAW_1);
        assert_eq!(keys.len(), 3);
        for key in keys {
            assert_eq!(
                log(&key),
                expected("", None, "123456789012", "us-east-2", (2016, 8, 11))
            );
        }
        // The documentation sample says us-east-2 in the folder and
        // us-west-2 in the file name; CloudTrail never writes that.
        for key in keys_in(CLOUDTRAIL_RAW_0) {
            assert_eq!(other(&key), "file name region differs from folder region");
        }
        for key in keys_in(S3_PUT) {
            assert_eq!(other(&key), "no AWSLogs folder");
        }
    }

    #[test]
    fn digest_files_from_fixture() {
        let digest: serde_json::Value = serde_json::from_str(DIGEST_FILE).unwrap();
        for field in ["digestS3Object", "previousDigestS3Object"] {
            let key = digest[field].as_str().unwrap();
            assert_eq!(classify_key(key), KeyKind::Digest, "{key}");
        }
        let logged = digest["logFiles"][0]["s3Object"].as_str().unwrap();
        assert_eq!(
            log(logged),
            expected("", None, "111122223333", "us-east-2", (2015, 8, 17))
        );
        let org_digest = "p/AWSLogs/o-abc123def4/111122223333/CloudTrail-Digest/eu-west-1/2024/01/02/111122223333_CloudTrail-Digest_eu-west-1_my_trail_us-east-1_20240102T010203Z.json.gz";
        assert_eq!(classify_key(org_digest), KeyKind::Digest);
        let no_trail = "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/01/02/111122223333_CloudTrail-Digest_eu-west-1_us-east-1_20240102T010203Z.json.gz";
        assert_eq!(
            other(no_trail),
            "digest file name has no <trail>_<home region> part"
        );
    }

    #[test]
    fn insights_files() {
        let key = "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2019/11/21/111122223333_CloudTrail-Insight_us-east-1_20191121T1835Z_oVcWvdwhJTYSQWXE.json.gz";
        assert_eq!(classify_key(key), KeyKind::Insights);
    }

    #[test]
    fn not_cloudtrail_files() {
        let cases = [
            (
                PLAIN.trim_end_matches(".gz"),
                "file name does not end in .json.gz",
            ),
            (
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/02/my file=1.json.gz",
                "file name is not <account>_<service>_<region>_…",
            ),
            (
                "AWSLogs/111122223333/elasticloadbalancing/us-east-1/2024/01/02/x.log.gz",
                "not a CloudTrail, CloudTrail-Digest or CloudTrail-Insight folder",
            ),
            (
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/x.json.gz",
                "wrong number of folders after AWSLogs/",
            ),
            ("AWSLogs", "wrong number of folders after AWSLogs/"),
            ("HappyFace.jpg", "no AWSLogs folder"),
            ("", "empty key"),
        ];
        for (key, why) in cases {
            assert_eq!(other(key), why, "{key}");
        }
    }

    #[test]
    fn bad_fields() {
        let replace = |from: &str, to: &str| PLAIN.replacen(from, to, 1);
        let cases = [
            (
                replace("/111122223333/", "/11112222333a/"),
                "account folder is not a 12-digit account id",
            ),
            (
                replace("/111122223333/", "/11112222333/"),
                "account folder is not a 12-digit account id",
            ),
            (
                replace("/111122223333/", "/+11122223333/"),
                "account folder is not a 12-digit account id",
            ),
            (
                replace("/2024/01/02/", "/2023/02/29/"),
                "year/month/day folders are not a valid date",
            ),
            (
                replace("/2024/01/02/", "/2024/1/02/"),
                "year/month/day folders are not a valid date",
            ),
            (
                replace("/2024/01/02/", "/+024/01/02/"),
                "year/month/day folders are not a valid date",
            ),
            (
                replace("/us-east-1/", "/US-EAST-1/"),
                "region folder is not a region name",
            ),
            (
                replace("/us-east-1/", "/useast1/"),
                "region folder is not a region name",
            ),
            (
                replace("/CloudTrail/", "/Cloudtrail/"),
                "not a CloudTrail, CloudTrail-Digest or CloudTrail-Insight folder",
            ),
            (
                replace("/111122223333_", "/999999999999_"),
                "file name account differs from folder account",
            ),
            (
                replace("_CloudTrail_", "_CloudTrail-Digest_"),
                "file name service differs from folder",
            ),
            (
                replace("_us-east-1_", "_us-west-2_"),
                "file name region differs from folder region",
            ),
            (
                replace("20240102T0005Z", "20240102T2460Z"),
                "file name time is not yyyymmddThhmmZ",
            ),
            (
                replace("20240102T0005Z", "20240102T000500Z"),
                "file name time is not yyyymmddThhmmZ",
            ),
            (
                replace("20240102T0005Z", "2024010é0005Z"),
                "file name time is not yyyymmddThhmmZ",
            ),
            (
                replace("_Mu0KsOhtH1ar15ZZ", "_Mu0K-sOhtH1ar15ZZ"),
                "file name unique part is not alphanumeric",
            ),
            (
                replace("_Mu0KsOhtH1ar15ZZ", "_"),
                "file name unique part is not alphanumeric",
            ),
        ];
        for (key, why) in cases {
            assert_eq!(other(&key), why, "{key}");
        }
    }

    #[test]
    fn hostile_keys_never_name_another_account() {
        let cases = [
            format!("../AWSLogs/{TAIL}"),
            format!("AWSLogs/../AWSLogs/{TAIL}"),
            "AWSLogs/111122223333/CloudTrail/../../999999999999/CloudTrail/us-east-1/2024/01/02/999999999999_CloudTrail_us-east-1_20240102T0005Z_Mu0KsOhtH1ar15ZZ.json.gz".to_owned(),
            format!("AWSLogs/111122223333/CloudTrail/./{TAIL}"),
            format!("p//AWSLogs/{TAIL}"),
            format!("/AWSLogs/{TAIL}"),
            format!("AWSLogs/{TAIL}/"),
        ];
        for key in &cases {
            let why = other(key);
            assert!(why.contains("segment"), "{key}: {why}");
        }
        assert_eq!(
            other(&format!("AWSLogs/{TAIL}\n")),
            "control character in key"
        );
        assert_eq!(
            other(&format!("{}{PLAIN}", "a/".repeat(600))),
            "longer than S3's 1024-byte key limit"
        );
        // A prefix that spells out another account's layout does not matter:
        // only the last complete layout counts, and it must be consistent.
        let key = format!("AWSLogs/999999999999/CloudTrail/us-east-1/2024/01/02/AWSLogs/{TAIL}");
        assert_eq!(log(&key).account.as_str(), "111122223333");
        let spliced = "AWSLogs/999999999999/CloudTrail/us-east-1/2024/01/02/AWSLogs/111122223333_CloudTrail_us-east-1_20240102T0005Z_Mu0KsOhtH1ar15ZZ.json.gz";
        assert!(matches!(classify_key(spliced), KeyKind::Other(_)));
    }

    #[test]
    fn helpers() {
        assert!(
            is_region("us-gov-west-1") && is_region("eusc-de-east-1") && is_region("cn-north-1")
        );
        assert!(
            !is_region("us-east-")
                && !is_region("-east-1")
                && !is_region("us--1")
                && !is_region("")
        );
        assert!(is_stamp("20240229T235959Z", true) && !is_stamp("20230229T2359Z", false));
        assert!(
            is_org_id("o-abcdefghij") && !is_org_id("o-abcdefghi") && !is_org_id("o-abcdefghi_")
        );
    }
}
