//! CloudTrail for the demo: a trail bucket whose new objects notify the
//! trail-ingest queue (S3 event notifications to SQS), and log files
//! written into it as CloudTrail writes them (`.json.gz`, key
//! `{prefix}/AWSLogs/{account}/CloudTrail/{region}/{y}/{m}/{d}/…`): the
//! estate's own EC2 calls plus a few security-notable events.

use std::io::Write;

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Duration, Utc};
use kopter_runtime::ServiceContext;
use kopter_schema::Service;
use serde_json::{Value, json};

use crate::estate::Made;

/// Creates the bucket (idempotent) and points its object-created
/// notifications at the trail-ingest queue.
pub async fn create_bucket(ctx: &ServiceContext, bucket: &str) -> anyhow::Result<()> {
    let s3 = trail_ingest::s3_client(&ctx.aws.sdk);
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("create bucket {bucket}: {e:?}"))?;
    }
    let sqs = ctx.aws.sqs();
    let url = sqs
        .get_queue_url()
        .queue_name(ctx.names.queue(Service::TrailIngest))
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| anyhow::anyhow!("trail-ingest queue has no ARN"))?;
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .id("kopter-trail-ingest")
                        .queue_arn(arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()?,
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("bucket notification of {bucket}: {e:?}"))?;
    Ok(())
}

fn event_id(account: &str, n: usize, salt: u32) -> String {
    format!(
        "{:08x}-{}-4{:03x}-8{:03x}-{:012x}",
        salt,
        &account[..4],
        n % 4096,
        (n * 7) % 4096,
        n
    )
}

#[allow(clippy::too_many_arguments)]
fn record(
    account: &str,
    region: &str,
    at: DateTime<Utc>,
    id: String,
    source: &str,
    name: &str,
    identity: Value,
    extra: Value,
) -> Value {
    let mut r = json!({
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "198.51.100.23",
        "userAgent": "aws-cli/2.17.20 md/Botocore#1.34.162",
        "requestParameters": null,
        "responseElements": null,
        "requestID": format!("{id}-req"),
        "eventID": id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
    });
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            r.insert(k.clone(), v.clone());
        }
    }
    r
}

fn user(account: &str, name: &str) -> Value {
    json!({
        "type": "IAMUser",
        "principalId": format!("AIDA{}{}", account, name.len()),
        "arn": format!("arn:aws:iam::{account}:user/{name}"),
        "accountId": account,
        "accessKeyId": format!("AKIA{account}"),
        "userName": name,
    })
}

fn root(account: &str) -> Value {
    json!({"type": "Root", "principalId": account, "arn": format!("arn:aws:iam::{account}:root"), "accountId": account})
}

/// One log file per (account, region): the estate's RunInstances and
/// StopInstances calls, and — per account `n` — some notable events.
/// Returns (region, records) pairs.
pub fn log_records(
    account: &str,
    n: usize,
    made: &Made,
    now: DateTime<Utc>,
    salt: u32,
) -> Vec<(String, Vec<Value>)> {
    let mut by_region: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    let mut k = 0;
    let mut next_id = || {
        k += 1;
        event_id(account, k, salt)
    };
    let t0 = now - Duration::minutes(10);
    for (i, (region, id, name)) in made.instances.iter().enumerate() {
        let at = t0 + Duration::seconds(i as i64 * 7);
        by_region.entry(region.clone()).or_default().push(record(
            account,
            region,
            at,
            next_id(),
            "ec2.amazonaws.com",
            "RunInstances",
            user(account, "deploy"),
            json!({
                "requestParameters": {"instancesSet": {"items": [{"minCount": 1, "maxCount": 1}]}},
                "responseElements": {"instancesSet": {"items": [{"instanceId": id, "tagSet": {"items": [{"key": "Name", "value": name}]}}]}},
            }),
        ));
    }
    let home = made
        .instances
        .first()
        .map_or("us-east-1".to_owned(), |(r, ..)| r.clone());
    let mut notable = Vec::new();
    let at = |m: i64| now - Duration::minutes(m);
    let signin = |at: DateTime<Utc>, who: Value, ok: bool, mfa: &str, id: String| {
        record(
            account,
            "us-east-1",
            at,
            id,
            "signin.amazonaws.com",
            "ConsoleLogin",
            who,
            json!({
                "eventType": "AwsConsoleSignIn",
                "readOnly": false,
                "responseElements": {"ConsoleLogin": if ok { "Success" } else { "Failure" }},
                "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No", "MFAUsed": mfa},
                "errorMessage": if ok { Value::Null } else { json!("Failed authentication") },
            }),
        )
    };
    match n % 3 {
        0 => {
            notable.push(signin(at(8), user(account, "alice"), true, "No", next_id()));
            notable.push(record(
                account,
                &home,
                at(6),
                next_id(),
                "ec2.amazonaws.com",
                "AuthorizeSecurityGroupIngress",
                user(account, "alice"),
                json!({"requestParameters": {"groupId": "sg-0a1b2c3d4e5f60718", "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}}}),
            ));
            notable.push(record(
                account,
                "us-east-1",
                at(5),
                next_id(),
                "iam.amazonaws.com",
                "CreateAccessKey",
                user(account, "alice"),
                json!({"requestParameters": {"userName": "ci-bot"}}),
            ));
        }
        1 => {
            for m in 0..3 {
                notable.push(signin(
                    at(9 - m),
                    user(account, "bob"),
                    false,
                    "No",
                    next_id(),
                ));
            }
            notable.push(record(
                account,
                "us-east-1",
                at(4),
                next_id(),
                "iam.amazonaws.com",
                "CreateUser",
                user(account, "bob"),
                json!({"requestParameters": {"userName": "contractor"}}),
            ));
        }
        _ => {
            notable.push(signin(at(7), root(account), true, "No", next_id()));
            notable.push(record(
                account,
                "us-east-1",
                at(3),
                next_id(),
                "cloudtrail.amazonaws.com",
                "StopLogging",
                user(account, "mallory"),
                json!({"requestParameters": {"name": format!("arn:aws:cloudtrail:us-east-1:{account}:trail/org-trail")}}),
            ));
        }
    }
    // Routine read-only calls, as most of a real trail is.
    for (i, name) in ["DescribeInstances", "DescribeVolumes", "DescribeSnapshots"]
        .iter()
        .enumerate()
    {
        notable.push(record(
            account,
            &home,
            at(2) + Duration::seconds(i as i64),
            next_id(),
            "ec2.amazonaws.com",
            name,
            user(account, "deploy"),
            json!({"readOnly": true}),
        ));
    }
    for r in notable {
        let region = r["awsRegion"].as_str().unwrap_or("us-east-1").to_owned();
        by_region.entry(region).or_default().push(r);
    }
    by_region.into_iter().collect()
}

/// The object key CloudTrail would write a file of `account`/`region` at.
pub fn key(prefix: &str, account: &str, region: &str, at: DateTime<Utc>, unique: &str) -> String {
    format!(
        "{prefix}/AWSLogs/{account}/CloudTrail/{region}/{}/{account}_CloudTrail_{region}_{}_{unique}.json.gz",
        at.format("%Y/%m/%d"),
        at.format("%Y%m%dT%H%MZ"),
    )
}

pub fn gzip(records: &[Value]) -> anyhow::Result<Vec<u8>> {
    let body = json!({ "Records": records }).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes())?;
    Ok(gz.finish()?)
}

/// Writes one account's log files; returns (files, records).
pub async fn write_logs(
    ctx: &ServiceContext,
    bucket: &str,
    prefix: &str,
    account: &str,
    n: usize,
    made: &Made,
) -> anyhow::Result<(usize, usize)> {
    let s3 = trail_ingest::s3_client(&ctx.aws.sdk);
    let now = Utc::now();
    let salt: u32 = rand::random();
    let mut files = 0;
    let mut records = 0;
    for (region, recs) in log_records(account, n, made, now, salt) {
        let unique = format!("{salt:08X}");
        let k = key(prefix, account, &region, now, &unique);
        s3.put_object()
            .bucket(bucket)
            .key(&k)
            .content_type("application/json")
            .content_encoding("gzip")
            .body(gzip(&recs)?.into())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("put {k}: {e:?}"))?;
        files += 1;
        records += recs.len();
    }
    Ok((files, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cloudtrail_shaped_and_match_the_rules() {
        let made = Made {
            instances: vec![("eu-west-1".into(), "i-0abc".into(), "web-1")],
            volumes: 1,
        };
        let now: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        let mut findings = 0;
        let mut ids = std::collections::HashSet::new();
        for n in 0..3 {
            // write_logs draws a random salt per account and run.
            for (region, recs) in log_records("111111111111", n, &made, now, 7 + n as u32) {
                for r in &recs {
                    assert_eq!(r["awsRegion"], region.as_str());
                    assert!(ids.insert(r["eventID"].as_str().unwrap().to_owned()));
                    let text = r.to_string();
                    let rec = trail_ingest::normalise::normalise(text.as_bytes()).unwrap();
                    findings += trail_ingest::rules::evaluate(&rec).len();
                }
            }
        }
        // alice: sign-in without MFA, SSH open to the world, access key;
        // bob: 3 failed sign-ins, user created; root sign-in (root
        // activity + without MFA) and StopLogging.
        assert!(findings >= 9, "{findings}");
        let k = key("acme", "111111111111", "eu-west-1", now, "X1");
        assert_eq!(
            k,
            "acme/AWSLogs/111111111111/CloudTrail/eu-west-1/2026/01/02/111111111111_CloudTrail_eu-west-1_20260102T0304Z_X1.json.gz"
        );
        match trail_ingest::key::classify_key(&k) {
            trail_ingest::key::KeyKind::LogFile(l) => {
                assert_eq!(l.prefix, "acme");
                assert_eq!(l.account.as_str(), "111111111111");
                assert_eq!(l.region, "eu-west-1");
            }
            other => panic!("not a log file key: {other:?}"),
        }
    }
}
