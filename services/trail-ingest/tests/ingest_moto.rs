//! trail-ingest end to end against moto: a log file put into S3, with a
//! bucket notification to the queue, ends as audit rows of the right
//! tenant, once; spoofed accounts are rejected; derived events are sent.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{TimeZone, Utc};
use kopter_runtime::accounts::Onboarding;
use kopter_runtime::worker::{RunSummary, WorkerSettings};
use kopter_runtime::{SqsQueue, Worker};
use kopter_schema::items::TrailSource;
use kopter_schema::{Envelope, Message, Service, TenantId};
use kopter_store::audit::AuditQuery;
use kopter_tests::{TestEnv, eventually, random_account, unique};
use tokio_util::sync::CancellationToken;

const FIXTURE: &str = include_str!("fixtures/doc_example_records.json");
const DOC_ACCOUNT: &str = "111122223333";
const DOC_OTHER_ACCOUNT: &str = "123456789012";

/// The AWS documentation's records that carry a recipient account, with
/// that account renamed to `ours`, and the other account to `theirs`;
/// gzipped as CloudTrail delivers them. Returns (file, records of ours,
/// records of theirs).
fn log_file(ours: &str, theirs: &str) -> (Vec<u8>, usize, usize) {
    let doc: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let mut kept = Vec::new();
    // Documentation examples reuse some event ids: count distinct events.
    let mut seen = std::collections::HashSet::new();
    let (mut n_ours, mut n_theirs) = (0, 0);
    for (i, r) in doc["Records"].as_array().unwrap().iter().enumerate() {
        // Some documentation examples are partial (no eventSource).
        if r.get("eventSource").is_none() || r.get("eventTime").is_none() {
            continue;
        }
        // The EC2 and IAM examples omit eventID and recipientAccountId:
        // complete them as CloudTrail would, for our account.
        let mut r = r.clone();
        // Examples span 2014-2022; put them all on one day, in their order.
        r["eventTime"] = format!("2022-11-10T16:{:02}:00Z", i % 60).into();
        if r.get("eventID").is_none() {
            r["eventID"] = format!("00000000-0000-4000-8000-{i:012}").into();
            r["recipientAccountId"] = DOC_ACCOUNT.into();
        }
        let Some(id) = r["eventID"].as_str() else {
            continue;
        };
        let first = seen.insert((
            id.to_owned(),
            r["eventTime"].to_string(),
            r["recipientAccountId"].to_string(),
        ));
        match r["recipientAccountId"].as_str() {
            Some(DOC_ACCOUNT) => n_ours += usize::from(first),
            Some(DOC_OTHER_ACCOUNT) => n_theirs += usize::from(first),
            _ => continue,
        }
        let text = r
            .to_string()
            .replace(DOC_ACCOUNT, ours)
            .replace(DOC_OTHER_ACCOUNT, theirs);
        kept.push(serde_json::from_str::<serde_json::Value>(&text).unwrap());
    }
    let body = serde_json::json!({ "Records": kept }).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    (gz.finish().unwrap(), n_ours, n_theirs)
}

struct Setup {
    env: TestEnv,
    s3: aws_sdk_s3::Client,
    bucket: String,
    ours: String,
    theirs: String,
}

async fn setup() -> Setup {
    let env = TestEnv::with(|c| c.queues.max_receive_count = 1).await;
    let s3 = trail_ingest::s3_client(&env.ctx.aws.sdk);
    let bucket = unique("trail-");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let queue_url = env.queue_url(Service::TrailIngest).await;
    let queue_arn = env
        .sqs()
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (ours, theirs) = (random_account(), random_account());
    let role = |a: &str| format!("arn:aws:iam::{a}:role/KopterAccess");
    env.ctx
        .accounts
        .onboard(
            Onboarding::parse("acme", &ours, &role(&ours), &[]).unwrap(),
            Some(TrailSource {
                bucket: bucket.clone(),
                prefix: "acme".into(),
                customer_owned: false,
            }),
        )
        .await
        .unwrap();
    env.ctx
        .accounts
        .onboard(
            Onboarding::parse("globex", &theirs, &role(&theirs), &[]).unwrap(),
            None,
        )
        .await
        .unwrap();
    Setup {
        env,
        s3,
        bucket,
        ours,
        theirs,
    }
}

fn key_for(account: &str, prefix: &str) -> String {
    format!(
        "{prefix}/AWSLogs/{account}/CloudTrail/us-east-1/2022/11/10/{account}_CloudTrail_us-east-1_20221110T1625Z_{}.json.gz",
        unique("f")
    )
}

fn all_time(tenant: &str) -> AuditQuery {
    AuditQuery {
        tenant: TenantId::new(tenant).unwrap(),
        since: Utc.with_ymd_and_hms(2022, 11, 1, 0, 0, 0).unwrap(),
        until: Utc.with_ymd_and_hms(2022, 12, 1, 0, 0, 0).unwrap(),
        principal: None,
        event: None,
        source: None,
        resource: None,
        caller_account: None,
        limit: 1000,
    }
}

async fn start(s: &Setup) -> (CancellationToken, tokio::task::JoinHandle<RunSummary>) {
    let q = SqsQueue::resolve(s.env.sqs(), &s.env.ctx.names.queue(Service::TrailIngest))
        .await
        .unwrap();
    let handler = Arc::new(trail_ingest::TrailHandler(trail_ingest::ingestor(
        &s.env.ctx,
    )));
    let token = CancellationToken::new();
    let settings = WorkerSettings::from(&s.env.config.worker);
    let task = tokio::spawn(Worker::new(Arc::new(q), handler, settings).run(token.clone()));
    (token, task)
}

async fn drained(s: &Setup) {
    let url = s.env.queue_url(Service::TrailIngest).await;
    eventually(
        "the trail queue to drain",
        Duration::from_secs(30),
        || async { (s.env.depth(&url).await == (0, 0)).then_some(()) },
    )
    .await;
}

async fn messages(s: &Setup, service: Service) -> Vec<Envelope> {
    let url = s.env.queue_url(service).await;
    let mut out = Vec::new();
    loop {
        let got = s.env.receive(&url, Duration::from_secs(60)).await;
        if got.is_empty() {
            return out;
        }
        out.extend(
            got.iter()
                .map(|m| Envelope::decode(m.body.as_deref().unwrap()).unwrap()),
        );
    }
}

#[tokio::test]
async fn a_log_file_in_s3_becomes_audit_rows_once_and_derived_events() {
    let s = setup().await;
    let (file, n_ours, n_theirs) = log_file(&s.ours, &s.theirs);
    assert!(n_ours >= 6 && n_theirs >= 3, "{n_ours} {n_theirs}");
    let key = key_for(&s.ours, "acme");
    let (stop, task) = start(&s).await;
    s.s3.put_object()
        .bucket(&s.bucket)
        .key(&key)
        .body(ByteStream::from(file.clone()))
        .send()
        .await
        .unwrap();
    let store = trail_ingest::ingestor(&s.env.ctx).store;
    let rows = eventually("audit rows for acme", Duration::from_secs(30), || async {
        let rows = store.query(&all_time("acme")).await.unwrap();
        (rows.len() >= n_ours).then_some(rows)
    })
    .await;
    drained(&s).await;
    // Exactly acme's records, all filed under acme and its account; the
    // records naming globex's account inside acme's file were rejected.
    assert_eq!(rows.len(), n_ours);
    assert!(
        rows.iter()
            .all(|r| r.tenant.as_str() == "acme" && r.account.as_str() == s.ours)
    );
    assert!(store.query(&all_time("globex")).await.unwrap().is_empty());

    // The same file again (a re-put): nothing new.
    s.s3.put_object()
        .bucket(&s.bucket)
        .key(&key)
        .body(ByteStream::from(file))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    drained(&s).await;
    assert_eq!(store.query(&all_time("acme")).await.unwrap().len(), n_ours);

    // A key naming globex's account inside acme's prefix is rejected whole.
    let spoof = key_for(&s.theirs, "acme");
    let (file, _, _) = log_file(&s.theirs, &s.ours);
    s.s3.put_object()
        .bucket(&s.bucket)
        .key(&spoof)
        .body(ByteStream::from(file))
        .send()
        .await
        .unwrap();
    let dlq = s.env.dlq_url(Service::TrailIngest).await;
    eventually(
        "the spoofed file's message in the DLQ",
        Duration::from_secs(30),
        || async { (s.env.depth(&dlq).await.0 >= 1).then_some(()) },
    )
    .await;
    assert!(store.query(&all_time("globex")).await.unwrap().is_empty());
    assert_eq!(store.query(&all_time("acme")).await.unwrap().len(), n_ours);
    stop.cancel();
    task.await.unwrap();

    // Derived events: a targeted re-describe of the EC2 instances that were
    // started/stopped, and security findings, for acme only.
    let describes: Vec<_> = messages(&s, Service::Describer)
        .await
        .into_iter()
        .filter_map(|e| match e.message {
            Message::DescribeTargeted(t) => Some(t),
            _ => None,
        })
        .collect();
    assert!(!describes.is_empty(), "no describe.targeted");
    assert!(
        describes
            .iter()
            .all(|d| d.tenant.as_str() == "acme" && d.account.as_str() == s.ours)
    );
    assert!(describes.iter().any(|d| !d.instance_ids.is_empty()));
    let findings: Vec<_> = messages(&s, Service::Notifier)
        .await
        .into_iter()
        .filter_map(|e| match e.message {
            Message::SecurityFinding(f) => Some(f),
            _ => None,
        })
        .collect();
    assert!(!findings.is_empty(), "no security findings");
    assert!(findings.iter().all(|f| f.tenant.as_str() == "acme"));
}

#[tokio::test]
async fn queries_by_principal_event_and_resource() {
    let s = setup().await;
    let (file, _, _) = log_file(&s.ours, &s.theirs);
    let ingestor = trail_ingest::ingestor(&s.env.ctx);
    let tenant = TenantId::new("acme").unwrap();
    let account = kopter_schema::AccountId::new(s.ours.clone()).unwrap();
    let report = ingestor
        .ingest_reader(&tenant, &account, std::io::Cursor::new(file.clone()), false)
        .await
        .unwrap();
    assert_eq!(
        report.new + report.duplicates,
        report.records - report.rejected
    );
    assert!(
        report.rejected > 0,
        "records naming another account must be rejected"
    );
    let again = ingestor
        .ingest_reader(&tenant, &account, std::io::Cursor::new(file), false)
        .await
        .unwrap();
    assert_eq!(
        (again.new, again.duplicates),
        (0, report.new + report.duplicates)
    );

    let all = ingestor.store.query(&all_time("acme")).await.unwrap();
    // Newest first.
    assert!(all.windows(2).all(|w| w[0].sk >= w[1].sk));
    let mut by_event = all_time("acme");
    by_event.event = Some("ConsoleLogin".into());
    let logins = ingestor.store.query(&by_event).await.unwrap();
    assert!(!logins.is_empty());
    assert!(logins.iter().all(|r| r.event_name == "ConsoleLogin"));
    assert_eq!(
        logins.len(),
        all.iter()
            .filter(|r| r.event_name == "ConsoleLogin")
            .count()
    );

    let mut by_source = all_time("acme");
    by_source.source = Some("signin.amazonaws.com".into());
    let signins = ingestor.store.query(&by_source).await.unwrap();
    assert!(!signins.is_empty());
    assert_eq!(
        signins.len(),
        all.iter()
            .filter(|r| r.event_source == "signin.amazonaws.com")
            .count()
    );

    let principal = all.iter().find_map(|r| r.principal_arn.clone()).unwrap();
    let mut by_principal = all_time("acme");
    by_principal.principal = Some(principal.clone());
    let mine = ingestor.store.query(&by_principal).await.unwrap();
    assert_eq!(
        mine.len(),
        all.iter()
            .filter(|r| r.principal_arn.as_ref() == Some(&principal))
            .count()
    );

    let resource = all
        .iter()
        .find_map(|r| r.resources.first().cloned())
        .expect("a record with resources");
    let mut by_resource = all_time("acme");
    by_resource.resource = Some(resource.clone());
    let touched = ingestor.store.query(&by_resource).await.unwrap();
    assert_eq!(
        touched.len(),
        all.iter()
            .filter(|r| r.resources.contains(&resource))
            .count()
    );
    // A record touching two instances is found through either of them.
    let two = record(
        &s.ours,
        "dddddddd-0000-4000-8000-000000000001",
        "StopInstances",
        serde_json::json!({"requestParameters": {"instancesSet": {"items": [
            {"instanceId": "i-0000000000000000a"}, {"instanceId": "i-0000000000000000b"}]}}}),
    );
    ingestor
        .ingest_reader(
            &tenant,
            &account,
            std::io::Cursor::new(gzip(
                serde_json::json!({"Records": [two]}).to_string().as_bytes(),
            )),
            false,
        )
        .await
        .unwrap();
    for id in ["i-0000000000000000a", "i-0000000000000000b"] {
        let mut q = all_time("acme");
        q.resource = Some(id.into());
        let found = ingestor.store.query(&q).await.unwrap();
        assert_eq!(found.len(), 1, "{id}");
        assert_eq!(found[0].event_id, "dddddddd-0000-4000-8000-000000000001");
    }
    // A record naming several resources is one event, found by each.
    let everything = ingestor.store.query(&all_time("acme")).await.unwrap();
    assert_eq!(everything.len(), all.len() + 1);

    // Another tenant asking for the same resource sees nothing.
    let mut other = all_time("globex");
    other.resource = Some(resource);
    assert!(ingestor.store.query(&other).await.unwrap().is_empty());
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body).unwrap();
    gz.finish().unwrap()
}

fn record(account: &str, id: &str, name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut r = serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{account}:user/dev"), "accountId": account},
        "eventTime": "2022-11-10T17:00:00Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "192.0.2.1",
        "userAgent": "aws-cli/2",
        "eventID": id,
        "readOnly": false,
        "recipientAccountId": account,
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

#[tokio::test]
async fn run_instances_produces_a_targeted_describe_for_the_new_instance() {
    let s = setup().await;
    let run = record(
        &s.ours,
        "11111111-2222-4333-8444-555555555555",
        "RunInstances",
        serde_json::json!({"responseElements": {"instancesSet": {"items": [{"instanceId": "i-0123456789abcdef0"}]}}}),
    );
    let file = gzip(serde_json::json!({"Records": [run]}).to_string().as_bytes());
    let ingestor = trail_ingest::ingestor(&s.env.ctx);
    let report = ingestor
        .ingest_reader(
            &TenantId::new("acme").unwrap(),
            &kopter_schema::AccountId::new(s.ours.clone()).unwrap(),
            std::io::Cursor::new(file),
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.new, 1);
    assert_eq!(report.targets.len(), 1);
    let describes = messages(&s, Service::Describer).await;
    match &describes[..] {
        [e] => match &e.message {
            Message::DescribeTargeted(t) => {
                assert_eq!(t.region, "eu-west-1");
                assert_eq!(t.account.as_str(), s.ours);
                assert_eq!(t.instance_ids, vec!["i-0123456789abcdef0".to_string()]);
            }
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("expected one describe.targeted, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_files_keep_earlier_rows_and_fail_with_a_clear_error() {
    let s = setup().await;
    let tenant = TenantId::new("acme").unwrap();
    let account = kopter_schema::AccountId::new(s.ours.clone()).unwrap();
    let mut ingestor = trail_ingest::ingestor(&s.env.ctx);
    ingestor.config.max_record_bytes = 64 * 1024;
    let ids: Vec<String> = (0..200)
        .map(|i| format!("aaaaaaaa-0000-4000-8000-{i:012}"))
        .collect();
    let good: Vec<_> = ids
        .iter()
        .map(|id| {
            record(
                &s.ours,
                id,
                "DescribeInstances",
                serde_json::json!({"readOnly": true}),
            )
        })
        .collect();
    let body = serde_json::json!({"Records": good}).to_string();

    // Truncated gzip: the rows before the cut are written, the error names
    // the problem and the byte offset.
    let full = gzip(body.as_bytes());
    let cut = full[..full.len() / 2].to_vec();
    let err = ingestor
        .ingest_reader(&tenant, &account, std::io::Cursor::new(cut), false)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("offset") || text.contains("byte"), "{text}");
    let written = ingestor.store.query(&all_time("acme")).await.unwrap().len();
    assert!(
        written > 0 && written < 200,
        "{written} rows after a truncated file"
    );
    // The retry of the whole file completes it: its one segment is new
    // (the partial file's was another), and the log shows each record once.
    let report = ingestor
        .ingest_reader(&tenant, &account, std::io::Cursor::new(full.clone()), false)
        .await
        .unwrap();
    assert_eq!(
        (report.new, report.duplicates, report.segments),
        (200, 0, 1)
    );
    let rows = ingestor.store.query(&all_time("acme")).await.unwrap();
    let mut keys: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // Again: the same segment, a duplicate.
    let report = ingestor
        .ingest_reader(&tenant, &account, std::io::Cursor::new(full), false)
        .await
        .unwrap();
    assert_eq!((report.new, report.duplicates), (0, 200));

    // Not gzip at all.
    let err = ingestor
        .ingest_reader(
            &tenant,
            &account,
            std::io::Cursor::new(body.clone().into_bytes()),
            false,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("gzip"), "{err}");

    // Invalid JSON inside a record, a record without eventID, a huge
    // record: none of them stops the file any more (issue 18 item 3).
    let broken = body.replacen("\"eventName\"", "\"eventName\" oops", 1);
    let report = ingestor
        .ingest_reader(
            &tenant,
            &account,
            std::io::Cursor::new(gzip(broken.as_bytes())),
            false,
        )
        .await
        .unwrap();
    // The other 199 make a segment of their own (new: not the same
    // records as the whole file's), shown once each.
    assert_eq!((report.quarantined, report.new), (1, 199));
    assert!(
        report.problems[0].starts_with("record 0 at byte 12 quarantined (invalid_json)"),
        "{:?}",
        report.problems
    );
    let huge = record(
        &s.ours,
        "bbbbbbbb-0000-4000-8000-000000000000",
        "X",
        serde_json::json!({"requestParameters": {"blob": "x".repeat(200 * 1024)}}),
    );
    let report = ingestor
        .ingest_reader(
            &tenant,
            &account,
            std::io::Cursor::new(gzip(
                serde_json::json!({"Records": [huge]})
                    .to_string()
                    .as_bytes(),
            )),
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.quarantined, 1);
    assert!(
        report.problems[0].contains("65536"),
        "{:?}",
        report.problems
    );
    assert_eq!(
        ingestor.store.query(&all_time("acme")).await.unwrap().len(),
        200
    );
}

/// Puts `body` (already gzipped) under a fresh key of `s.ours` and ingests
/// it through the handler, as the queue would deliver it.
async fn ingest_via_s3(
    s: &Setup,
    ingestor: &trail_ingest::ingest::Ingestor,
    file: Vec<u8>,
) -> (String, trail_ingest::ingest::FileReport) {
    let key = key_for(&s.ours, "acme");
    s.s3.put_object()
        .bucket(&s.bucket)
        .key(&key)
        .body(ByteStream::from(file))
        .send()
        .await
        .unwrap();
    let obj = trail_ingest::notification::TrailObject {
        bucket: s.bucket.clone(),
        key: key.clone(),
    };
    match ingestor.ingest_object(&obj).await.unwrap() {
        trail_ingest::ingest::FileOutcome::Ingested(r) => (key, r),
        other => panic!("not ingested: {other:?}"),
    }
}

fn metric(name: &str, label: &str) -> f64 {
    let text = kopter_runtime::metrics::render();
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Issue 18 item 3: every kind of bad record is quarantined with its
/// reason, file, index and offset; the records after it are filed and the
/// message is acknowledged; a replay with a raised limit files what now
/// fits and releases its item, and keeps what is still bad.
#[tokio::test]
async fn one_bad_record_never_blocks_the_rest_of_the_file() {
    let s = setup().await;
    let tenant = TenantId::new("acme").unwrap();
    let mut ingestor = trail_ingest::ingestor(&s.env.ctx);
    ingestor.config.max_record_bytes = 16 * 1024;
    let good = |i: u32| {
        record(
            &s.ours,
            &format!("cccccccc-0000-4000-8000-{i:012}"),
            "DescribeInstances",
            serde_json::json!({}),
        )
    };
    let oversized = record(
        &s.ours,
        "cccccccc-0000-4000-8000-100000000000",
        "PutObject",
        serde_json::json!({"requestParameters": {"blob": "x".repeat(40 * 1024)}}),
    );
    let mut no_id = good(2);
    no_id.as_object_mut().unwrap().remove("eventID");
    // CloudTrail files of 2015-16: no recipientAccountId.
    let mut no_recipient = good(3);
    no_recipient
        .as_object_mut()
        .unwrap()
        .remove("recipientAccountId");
    let mut bad_time = good(4);
    bad_time["eventTime"] = "yesterday".into();
    let mut no_source = good(5);
    no_source.as_object_mut().unwrap().remove("eventSource");
    let records = [
        good(0).to_string(),
        oversized.to_string(),
        no_id.to_string(),
        r#"{"eventID":"x","eventTime":,}"#.to_owned(),
        no_recipient.to_string(),
        bad_time.to_string(),
        no_source.to_string(),
        good(1).to_string(),
    ];
    let body = format!(r#"{{"Records":[{}]}}"#, records.join(","));
    let offset_of = |i: usize| body.find(&records[i]).unwrap() as u64;
    let before = metric(
        "kopter_trail_records_quarantined_total",
        "reason=\"too_large\"",
    );

    let (key, report) = ingest_via_s3(&s, &ingestor, gzip(body.as_bytes())).await;
    assert_eq!(
        (report.records, report.new, report.quarantined),
        (8, 4, 4),
        "{:?}",
        report.problems
    );
    let rows = ingestor.store.query(&all_time("acme")).await.unwrap();
    assert_eq!(rows.len(), 4);
    let derived = rows
        .iter()
        .find(|r| r.event_id.starts_with("kopter-"))
        .expect("the record without eventID is filed under a derived id");
    assert_eq!(derived.account.as_str(), s.ours);
    assert!(
        rows.iter().any(|r| r.event_id.ends_with("000000000003")),
        "no recipient: filed"
    );

    let q = ingestor.store.quarantined(&tenant, None).await.unwrap();
    let mut got: Vec<(u64, u64, &str, bool)> = q
        .iter()
        .map(|q| (q.index, q.offset, q.reason.as_str(), q.raw.is_some()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (1, offset_of(1), "too_large", false),
            (3, offset_of(3), "invalid_json", true),
            (5, offset_of(5), "bad_time", true),
            (6, offset_of(6), "missing_field", true),
        ]
    );
    for item in &q {
        assert_eq!(
            (item.bucket.as_str(), item.key.as_str()),
            (s.bucket.as_str(), key.as_str())
        );
        assert_eq!(item.account.as_str(), s.ours);
    }
    let missing = q.iter().find(|q| q.index == 6).unwrap();
    assert_eq!(missing.detail, "record has no eventSource");
    assert_eq!(
        missing.raw.as_deref(),
        Some(records[6].as_str()),
        "kept raw, as received"
    );
    assert!(
        metric(
            "kopter_trail_records_quarantined_total",
            "reason=\"too_large\""
        ) >= before + 1.0
    );
    // Another tenant sees none of it.
    let globex = TenantId::new("globex").unwrap();
    assert!(
        ingestor
            .store
            .quarantined(&globex, None)
            .await
            .unwrap()
            .is_empty()
    );

    // The message is acknowledged: the handler succeeds.
    let notice = serde_json::json!({"s3Bucket": s.bucket, "s3ObjectKey": [key]}).to_string();
    let delivery = kopter_runtime::Delivery {
        message_id: "m-1".into(),
        body: notice,
        receive_count: 1,
        attributes: Default::default(),
        sent_at_ms: None,
    };
    kopter_runtime::Handler::handle(&trail_ingest::TrailHandler(ingestor.clone()), &delivery)
        .await
        .unwrap();
    // Read again, the record without eventID keeps its id: a duplicate.
    assert_eq!(
        ingestor.store.query(&all_time("acme")).await.unwrap().len(),
        4
    );

    // Replay with a limit the oversized record fits: it is filed and its
    // item released; the other three are still bad and stay.
    ingestor.config.max_record_bytes = 1 << 20;
    let replay = kopter_runtime::Delivery {
        body: kopter_store::audit::quarantine_replay_body(&s.bucket, &key),
        ..delivery
    };
    kopter_runtime::Handler::handle(&trail_ingest::TrailHandler(ingestor.clone()), &replay)
        .await
        .unwrap();
    let rows = ingestor.store.query(&all_time("acme")).await.unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().any(|r| r.event_name == "PutObject"));
    let left: Vec<u64> = ingestor
        .store
        .quarantined(&tenant, None)
        .await
        .unwrap()
        .iter()
        .map(|q| q.index)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(left, [3, 5, 6]);
}

/// Issue 18 item 2: `cat a.json.gz b.json.gz` — every record of every
/// document is filed.
#[tokio::test]
async fn every_document_of_a_multi_member_gzip_is_filed() {
    let s = setup().await;
    let ingestor = trail_ingest::ingestor(&s.env.ctx);
    let doc = |from: u32, n: u32| {
        let records: Vec<_> = (from..from + n)
            .map(|i| {
                record(
                    &s.ours,
                    &format!("dddddddd-0000-4000-8000-{i:012}"),
                    "DescribeVolumes",
                    serde_json::json!({}),
                )
            })
            .collect();
        gzip(
            serde_json::json!({ "Records": records })
                .to_string()
                .as_bytes(),
        )
    };
    let mut file = doc(0, 3);
    file.extend(doc(3, 4));
    let (_, report) = ingest_via_s3(&s, &ingestor, file).await;
    assert_eq!((report.records, report.new), (7, 7));
    assert_eq!(
        ingestor.store.query(&all_time("acme")).await.unwrap().len(),
        7
    );

    // Anything but another document after the first: loud, never a
    // silent partial success.
    let mut bad = doc(10, 1);
    bad.extend(gzip(b"not json"));
    let key = key_for(&s.ours, "acme");
    s.s3.put_object()
        .bucket(&s.bucket)
        .key(&key)
        .body(ByteStream::from(bad))
        .send()
        .await
        .unwrap();
    let err = ingestor
        .ingest_object(&trail_ingest::notification::TrailObject {
            bucket: s.bucket.clone(),
            key,
        })
        .await
        .unwrap_err();
    let text = format!("{:#}", anyhow::Error::new(err));
    assert!(text.contains("after a document"), "{text}");
}

/// Issue 18 items 1 and 4: every identity type names a principal that
/// finds its rows, the caller's account is a filter, and a principal ARN
/// of IAM's maximum length (2,048 characters) is filed and found.
#[tokio::test]
async fn every_identity_is_searchable_by_principal_and_caller_account() {
    let s = setup().await;
    let tenant = TenantId::new("acme").unwrap();
    let account = kopter_schema::AccountId::new(s.ours.clone()).unwrap();
    let ingestor = trail_ingest::ingestor(&s.env.ctx);
    let long_arn = format!("arn:aws:iam::{}:user/{}", s.ours, "p".repeat(2048 - 31));
    assert_eq!(long_arn.len(), 2048);
    let identities = [
        (
            serde_json::json!({"type": "SAMLUser", "principalId": "idp:alice", "userName": "alice", "identityProvider": "idp.example.com"}),
            "saml:idp.example.com/alice".to_owned(),
            None,
        ),
        (
            serde_json::json!({"type": "WebIdentityUser", "principalId": "accounts.google.com:app:u1", "userName": "u1", "identityProvider": "accounts.google.com"}),
            "web-identity:accounts.google.com/u1".to_owned(),
            None,
        ),
        (
            serde_json::json!({"type": "AWSAccount", "principalId": "AIDAOTHER", "accountId": "444455556666"}),
            "account:444455556666/AIDAOTHER".to_owned(),
            Some("444455556666"),
        ),
        (
            serde_json::json!({"type": "IdentityCenterUser", "accountId": s.ours, "onBehalfOf": {"userId": "u-9", "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-1"}}),
            "identity-center:arn:aws:identitystore::111122223333:identitystore/d-1/u-9".to_owned(),
            Some(s.ours.as_str()),
        ),
        (
            serde_json::json!({"type": "AWSService", "invokedBy": "config.amazonaws.com"}),
            "config.amazonaws.com".to_owned(),
            None,
        ),
        (
            serde_json::json!({"type": "IAMUser", "arn": long_arn, "accountId": s.ours}),
            long_arn.clone(),
            Some(s.ours.as_str()),
        ),
    ];
    let records: Vec<_> = identities
        .iter()
        .enumerate()
        .map(|(i, (identity, _, _))| {
            record(
                &s.ours,
                &format!("eeeeeeee-0000-4000-8000-{i:012}"),
                "DescribeInstances",
                serde_json::json!({"userIdentity": identity}),
            )
        })
        .collect();
    let report = ingestor
        .ingest_reader(
            &tenant,
            &account,
            std::io::Cursor::new(gzip(
                serde_json::json!({ "Records": records })
                    .to_string()
                    .as_bytes(),
            )),
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.new, 6, "{:?}", report.problems);
    for (_, principal, caller) in &identities {
        let mut q = all_time("acme");
        q.principal = Some(principal.clone());
        let rows = ingestor.store.query(&q).await.unwrap();
        assert_eq!(rows.len(), 1, "{principal:.80}");
        assert_eq!(rows[0].principal_arn.as_ref(), Some(principal));
        assert_eq!(rows[0].caller_account.as_deref(), *caller);
    }
    let mut q = all_time("acme");
    q.caller_account = Some("444455556666".into());
    let rows = ingestor.store.query(&q).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].principal_arn.as_deref(),
        Some("account:444455556666/AIDAOTHER")
    );
    // The long ARN is searched by its hash; the row keeps the whole ARN.
    let mut q = all_time("acme");
    q.principal = Some(long_arn.clone());
    let rows = ingestor.store.query(&q).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].principal_arn.as_ref(), Some(&long_arn));
}

/// Issue 18 item 7: the same event id and time with other content does
/// not replace the stored record: the log shows the first written. (With
/// segments, issue 23, the second file's segment is stored too — new
/// content is a new segment — and readers keep the first written copy.)
#[tokio::test]
async fn a_different_record_under_a_stored_key_leaves_the_first_shown() {
    let s = setup().await;
    let tenant = TenantId::new("acme").unwrap();
    let account = kopter_schema::AccountId::new(s.ours.clone()).unwrap();
    let ingestor = trail_ingest::ingestor(&s.env.ctx);
    let first = record(
        &s.ours,
        "ffffffff-0000-4000-8000-000000000001",
        "StopInstances",
        serde_json::json!({}),
    );
    // With resources, so each is searchable by either.
    let with_refs = |name: &str| {
        record(
            &s.ours,
            "ffffffff-0000-4000-8000-000000000002",
            name,
            serde_json::json!({"resources": [{"ARN": "arn:aws:s3:::a"}, {"ARN": "arn:aws:s3:::b"}]}),
        )
    };
    let file = |records: Vec<serde_json::Value>| {
        std::io::Cursor::new(gzip(
            serde_json::json!({ "Records": records })
                .to_string()
                .as_bytes(),
        ))
    };
    let r = ingestor
        .ingest_reader(
            &tenant,
            &account,
            file(vec![first.clone(), with_refs("GetObject")]),
            false,
        )
        .await
        .unwrap();
    assert_eq!(r.new, 2);
    // The same records again: duplicates.
    let r = ingestor
        .ingest_reader(
            &tenant,
            &account,
            file(vec![first.clone(), with_refs("GetObject")]),
            false,
        )
        .await
        .unwrap();
    assert_eq!((r.new, r.duplicates, r.segments), (0, 2, 1));
    let mut other = first.clone();
    other["eventName"] = "TerminateInstances".into();
    let r = ingestor
        .ingest_reader(
            &tenant,
            &account,
            file(vec![other, with_refs("DeleteObject")]),
            false,
        )
        .await
        .unwrap();
    assert_eq!((r.new, r.duplicates), (2, 0), "another segment");
    let names: Vec<String> = ingestor
        .store
        .query(&all_time("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event_name)
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["GetObject".to_owned(), "StopInstances".to_owned()],
        "each key once, the first written shown"
    );
    // A search by the second resource finds the first record only.
    let mut q = all_time("acme");
    q.resource = Some("arn:aws:s3:::b".into());
    let found = ingestor.store.query(&q).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].event_name, "GetObject");
    let got = ingestor
        .store
        .get(&tenant, &found[0].sk)
        .await
        .unwrap()
        .expect("by key");
    assert_eq!(got.event_name, "GetObject");
}

/// Issue 18 item 6: a tenant turns a rule off; its matches are no longer
/// findings for that tenant (nor published), other rules still are.
#[tokio::test]
async fn a_rule_turned_off_for_a_tenant_finds_nothing_there() {
    let s = setup().await;
    let tenant = TenantId::new("acme").unwrap();
    let account = kopter_schema::AccountId::new(s.ours.clone()).unwrap();
    let ingestor = trail_ingest::ingestor(&s.env.ctx);
    ingestor
        .store
        .set_rule_enabled(&tenant, "root-activity", false)
        .await
        .unwrap();
    let root = serde_json::json!({"type": "Root", "arn": format!("arn:aws:iam::{}:root", s.ours), "accountId": s.ours});
    let stop = record(
        &s.ours,
        "abababab-0000-4000-8000-000000000001",
        "StopLogging",
        serde_json::json!({"userIdentity": root, "eventSource": "cloudtrail.amazonaws.com"}),
    );
    let r = ingestor
        .ingest_reader(
            &tenant,
            &account,
            std::io::Cursor::new(gzip(
                serde_json::json!({ "Records": [stop] })
                    .to_string()
                    .as_bytes(),
            )),
            false,
        )
        .await
        .unwrap();
    let rules: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, ["cloudtrail-stopped"]);
    let row = &ingestor.store.query(&all_time("acme")).await.unwrap()[0];
    assert_eq!(row.findings, ["cloudtrail-stopped"]);
    // On again.
    ingestor
        .store
        .set_rule_enabled(&tenant, "root-activity", true)
        .await
        .unwrap();
    assert!(
        ingestor
            .store
            .settings(&tenant)
            .await
            .unwrap()
            .disabled_rules
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_envelopes_are_permanent_errors_naming_the_message() {
    let s = setup().await;
    let handler = trail_ingest::TrailHandler(trail_ingest::ingestor(&s.env.ctx));
    let delivery = kopter_runtime::Delivery {
        message_id: "msg-123".into(),
        body: r#"{"hello": "world"}"#.into(),
        receive_count: 1,
        attributes: Default::default(),
        sent_at_ms: None,
    };
    let err = kopter_runtime::Handler::handle(&handler, &delivery)
        .await
        .unwrap_err();
    assert!(err.is_permanent());
    assert!(err.to_string().contains("msg-123"), "{err}");
    // An S3 test event is acknowledged.
    let test_event = kopter_runtime::Delivery {
        body: include_str!("fixtures/s3_TestEvent.json").into(),
        ..delivery
    };
    kopter_runtime::Handler::handle(&handler, &test_event)
        .await
        .unwrap();
}

#[tokio::test]
async fn replay_dry_run_counts_records_without_aws() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trail.json.gz");
    let (file, n_ours, n_theirs) = log_file("111122223333", "123456789012");
    std::fs::write(&path, file).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_trail-ingest"))
        .args(["replay", "--dry-run"])
        .arg(&path)
        .env("KOPTER_CONFIG", "/nonexistent/kopter.toml")
        // Nothing listens here: a dry run must not call AWS.
        .env("KOPTER_AWS__ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Records of another account are rejected: reported, and the exit
    // code says not everything was filed.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains(&format!("rejected {n_theirs}")), "{stdout}");
    assert!(stdout.contains("records/s"), "{stdout}");
    assert_eq!(
        stderr.matches("rejected: event").count(),
        n_theirs,
        "{stderr}"
    );
    assert!(n_ours > 0);
}

/// Issue 18 item 8: replay goes on past a missing file, a file that is not
/// gzip and a file with a bad record, reports each, and exits non-zero at
/// the end; a good file after them is still read.
#[tokio::test]
async fn replay_of_several_files_goes_on_and_reports_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json.gz");
    let not_gzip = dir.path().join("plain.json.gz");
    std::fs::write(&not_gzip, b"{\"Records\":[]}").unwrap();
    let acct = "111122223333";
    let rec = |id: &str| record(acct, id, "DescribeInstances", serde_json::json!({}));
    // The first record is over the default 8 MiB limit: skipped unread
    // (the account comes from the next record), quarantined, and the
    // rest of the file is still read.
    let with_bad = dir.path().join("bad-record.json.gz");
    let oversized = record(
        acct,
        "a-0",
        "PutObject",
        serde_json::json!({"requestParameters": {"blob": "x".repeat(9 << 20)}}),
    );
    let body = format!(
        r#"{{"Records":[{oversized},{},{{"eventID":"zz","eventTime":"2022-11-10T17:00:00Z","recipientAccountId":"{acct}"}},{}]}}"#,
        rec("a-1"),
        rec("a-2")
    );
    std::fs::write(&with_bad, gzip(body.as_bytes())).unwrap();
    let good = dir.path().join("good.json.gz");
    let body = serde_json::json!({"Records": [rec("b-1"), rec("b-2"), rec("b-3")]}).to_string();
    std::fs::write(&good, gzip(body.as_bytes())).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_trail-ingest"))
        .args(["replay", "--dry-run"])
        .args([&missing, &not_gzip, &with_bad, &good])
        .env("KOPTER_CONFIG", "/nonexistent/kopter.toml")
        .env("KOPTER_AWS__ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("missing.json.gz: FAILED: cannot open"),
        "{stderr}"
    );
    assert!(stderr.contains("plain.json.gz: FAILED"), "{stderr}");
    assert!(stderr.to_lowercase().contains("gzip"), "{stderr}");
    assert!(
        stderr.contains("bad-record.json.gz: record 0 at byte 12 quarantined (too_large)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad-record.json.gz: record 2 at byte")
            && stderr.contains("(missing_field): record has no eventSource"),
        "{stderr}"
    );
    assert!(
        stdout.contains("bad-record.json.gz: records 4 new 2"),
        "{stdout}"
    );
    assert!(stdout.contains("good.json.gz: records 3 new 3"), "{stdout}");
    assert!(stderr.contains("3 of 4 files failed"), "{stderr}");
}

#[tokio::test]
async fn a_customer_owned_bucket_is_read_through_the_customers_role() {
    let s = setup().await;
    let account = random_account();
    let bucket = unique("cust-trail-");
    let rec = s
        .env
        .ctx
        .accounts
        .onboard(
            Onboarding::parse(
                "initech",
                &account,
                &format!("arn:aws:iam::{account}:role/KopterAccess"),
                &[],
            )
            .unwrap(),
            Some(TrailSource {
                bucket: bucket.clone(),
                prefix: String::new(),
                customer_owned: true,
            }),
        )
        .await
        .unwrap();
    // The customer creates the bucket and CloudTrail writes into it, in the
    // customer's own account.
    let role = kopter_runtime::CustomerRole::from(&rec);
    let customer_sdk = s
        .env
        .ctx
        .credentials
        .sdk_config(&s.env.ctx.aws.sdk, &role, "us-east-1")
        .await
        .unwrap();
    let customer_s3 = trail_ingest::s3_client(&customer_sdk);
    customer_s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let key = format!(
        "AWSLogs/{account}/CloudTrail/us-east-1/2022/11/10/{account}_CloudTrail_us-east-1_20221110T1700Z_abc.json.gz"
    );
    let body = serde_json::json!({"Records": [record(&account, "cccccccc-0000-4000-8000-000000000001", "DescribeInstances", serde_json::json!({}))]});
    customer_s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(ByteStream::from(gzip(body.to_string().as_bytes())))
        .send()
        .await
        .unwrap();
    // moto does not enforce S3 permissions, so check that the ingestor
    // assumed the customer's role to read (a fresh credential cache must
    // call AssumeRole once).
    let mut ingestor = trail_ingest::ingestor(&s.env.ctx);
    ingestor.credentials = kopter_runtime::CredentialCache::new(
        s.env.ctx.aws.sts(),
        "trail-ingest",
        &s.env.config.credentials,
    );
    let assumed = || {
        kopter_runtime::metrics::runtime()
            .assume_role
            .with_label_values(&["ok"])
            .get()
    };
    let before = assumed();
    let outcome = ingestor
        .ingest_object(&trail_ingest::notification::TrailObject { bucket, key })
        .await
        .unwrap();
    match outcome {
        trail_ingest::ingest::FileOutcome::Ingested(r) => assert_eq!((r.records, r.new), (1, 1)),
        other => panic!("{other:?}"),
    }
    assert!(
        assumed() > before,
        "the customer's bucket was read without its role"
    );
    let rows = ingestor.store.query(&all_time("initech")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].account.as_str(), account);
}

/// S3 answers a request signed for the wrong region with a redirect that
/// names the bucket's region (the Rust SDK does not follow it). A stand-in
/// S3 does the same: 301 + `x-amz-bucket-region: eu-west-1` unless the
/// request is signed for eu-west-1; DynamoDB, SQS and SNS stay on moto.
#[tokio::test]
async fn a_trail_bucket_in_another_region_is_read_after_s3_names_it() {
    use axum::http::{HeaderMap, StatusCode};
    let s = setup().await;
    let body = serde_json::json!({"Records": [record(&s.ours, "dddddddd-0000-4000-8000-000000000001", "DescribeInstances", serde_json::json!({}))]});
    let object = gzip(body.to_string().as_bytes());
    let hits = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (h, o) = (hits.clone(), object.clone());
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let (h, o) = (h.clone(), o.clone());
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            // Credential=AKID/20221110/eu-west-1/s3/aws4_request
            let region = auth.split('/').nth(2).unwrap_or("").to_string();
            h.lock().unwrap().push(region.clone());
            if region == "eu-west-1" {
                (StatusCode::OK, HeaderMap::new(), o)
            } else {
                let mut hm = HeaderMap::new();
                hm.insert("x-amz-bucket-region", "eu-west-1".parse().unwrap());
                let xml = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message></Error>".to_vec();
                (StatusCode::MOVED_PERMANENTLY, hm, xml)
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut ingestor = trail_ingest::ingestor(&s.env.ctx);
    ingestor.base_sdk = ingestor.base_sdk.to_builder().endpoint_url(&fake).build();
    ingestor.s3 = trail_ingest::s3_client(&ingestor.base_sdk);
    let key = key_for(&s.ours, "acme");
    let obj = trail_ingest::notification::TrailObject {
        bucket: s.bucket.clone(),
        key,
    };
    match ingestor.ingest_object(&obj).await.unwrap() {
        trail_ingest::ingest::FileOutcome::Ingested(r) => assert_eq!((r.records, r.new), (1, 1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(*hits.lock().unwrap(), vec!["us-east-1", "eu-west-1"]);
    // The region is remembered: the next file goes straight there.
    ingestor.ingest_object(&obj).await.unwrap();
    assert_eq!(hits.lock().unwrap().len(), 3);
    assert_eq!(hits.lock().unwrap()[2], "eu-west-1");
}

/// Issue 19, items 1 and 2: DynamoDB keeps refusing two rows of a file (a
/// hot key). Each is retried on its own; the file's other rows are written
/// and their findings told, then the message fails as back-pressure. The
/// redelivery, with the key cooled off, writes only the two rows — every
/// row already there costs one call — and tells the same findings again
/// with the same identities (the notifier's dedup key: account, event id,
/// rule), plus the ones of the rows it wrote.
#[tokio::test]
async fn rows_that_keep_failing_fail_the_message_after_the_filed_rows_are_told() {
    use kopter_runtime::aws::ErrorClass;
    use kopter_tests::faults::{Fault, FaultPlan, FaultProxy};

    let s = setup().await;
    let a = s.ours.as_str();
    let id = |n: u32| format!("aaaaaaaa-0000-4000-8000-{n:012}");
    let (user, access_key, stop, run, describe) = (id(1), id(2), id(3), id(4), id(5));
    let iam = serde_json::json!({"eventSource": "iam.amazonaws.com", "awsRegion": "us-east-1"});
    // Two of the records are of the next hour: a segment of their own,
    // whose key starts with the newest one's time.
    let records = vec![
        record(a, &user, "CreateUser", iam.clone()),
        record(a, &access_key, "CreateAccessKey", iam),
        record(
            a,
            &stop,
            "StopLogging",
            serde_json::json!({"eventSource": "cloudtrail.amazonaws.com", "eventTime": "2022-11-10T18:05:00Z"}),
        ),
        // Two instances: searchable by either.
        record(
            a,
            &run,
            "RunInstances",
            serde_json::json!({"eventTime": "2022-11-10T18:04:00Z", "responseElements": {"instancesSet": {"items": [
                {"instanceId": "i-0aaaaaaaaaaaaaaa1"}, {"instanceId": "i-0aaaaaaaaaaaaaaa2"}
            ]}}}),
        ),
        record(a, &describe, "DescribeInstances", serde_json::json!({})),
    ];
    let key = key_for(a, "acme");
    s.s3.put_object()
        .bucket(&s.bucket)
        .key(&key)
        .body(ByteStream::from(gzip(
            serde_json::json!({ "Records": records })
                .to_string()
                .as_bytes(),
        )))
        .send()
        .await
        .unwrap();
    let delivery = kopter_runtime::Delivery {
        message_id: "m-1".into(),
        body: serde_json::json!({"Records": [{
            "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": s.bucket}, "object": {"key": key}}
        }]})
        .to_string(),
        receive_count: 1,
        attributes: Default::default(),
        sent_at_ms: None,
    };

    // The audit table through the proxy, one SDK attempt per call, so the
    // row retries are what is tested.
    let upstream = kopter_tests::dynamodb_endpoint().unwrap_or_else(kopter_tests::endpoint);
    let proxy = FaultProxy::start(&upstream, FaultPlan::none())
        .await
        .unwrap();
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&s.env.ctx.aws.sdk)
            .endpoint_url(proxy.url())
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build(),
    );
    let mut ingestor = trail_ingest::ingestor(&s.env.ctx);
    ingestor.store = kopter_store::audit::AuditStore::new(ddb, &s.env.ctx.names);
    ingestor.config.record_write_attempts = 3;
    ingestor.config.record_retry_backoff = Duration::from_millis(10);
    let finding_keys = |envs: Vec<Envelope>| {
        let mut keys: Vec<(String, String, String)> = envs
            .into_iter()
            .filter_map(|e| match e.message {
                Message::SecurityFinding(f) => Some((f.account.to_string(), f.event_id, f.rule)),
                _ => None,
            })
            .collect();
        keys.sort();
        keys
    };
    let event_ids = |rows: Vec<kopter_store::audit::AuditRow>| {
        let mut ids: Vec<String> = rows.into_iter().map(|r| r.event_id).collect();
        ids.sort();
        ids
    };

    proxy.throttle_matching(&["2022-11-10T18:05:00.000Z#seg:"]);
    let err = ingestor.handle(&delivery).await.unwrap_err();
    assert!(!err.is_permanent());
    assert_eq!(err.backpressure(), Some(ErrorClass::Throttling), "{err}");
    let text = format!("{err}");
    assert!(text.contains("2 of 5 records not written"), "{text}");
    assert!(
        text.contains(&key) && text.contains("gave up after 3 attempts"),
        "{text}"
    );
    // The refused segment: three attempts, each one call (its summary's
    // put, which goes first).
    assert_eq!(proxy.counts().of(Fault::Throttle, "dynamodb"), 3);
    let store = trail_ingest::ingestor(&s.env.ctx).store;
    assert_eq!(
        event_ids(store.query(&all_time("acme")).await.unwrap()),
        vec![user.clone(), access_key.clone(), describe.clone()]
    );
    let told = finding_keys(messages(&s, Service::Notifier).await);
    assert_eq!(
        told,
        vec![
            (a.to_owned(), user.clone(), "iam-user-created".to_owned()),
            (
                a.to_owned(),
                access_key.clone(),
                "iam-access-key-created".to_owned()
            ),
        ],
        "the filed rows' findings are told, not the failed one's"
    );
    assert!(
        messages(&s, Service::Describer).await.is_empty(),
        "RunInstances was not filed: no re-describe yet"
    );

    // Redelivery, the hot key cooled off.
    proxy.throttle_matching(&[]);
    let calls = |p: &FaultProxy| p.counts().of(Fault::None, "dynamodb");
    let before = calls(&proxy);
    ingestor.handle(&delivery).await.unwrap();
    assert_eq!(
        calls(&proxy) - before,
        4,
        "two per segment: its summary, its conditional put (one fails: the segment is there)"
    );
    assert_eq!(
        event_ids(store.query(&all_time("acme")).await.unwrap()),
        vec![
            user.clone(),
            access_key.clone(),
            stop.clone(),
            run.clone(),
            describe
        ]
    );
    // Searchable by its second resource.
    let mut by_second = all_time("acme");
    by_second.resource = Some("i-0aaaaaaaaaaaaaaa2".into());
    assert_eq!(event_ids(store.query(&by_second).await.unwrap()), vec![run]);
    let told_again = finding_keys(messages(&s, Service::Notifier).await);
    assert_eq!(told_again.len(), 3, "{told_again:?}");
    assert!(
        told.iter().all(|k| told_again.contains(k)),
        "same identities"
    );
    assert!(told_again.contains(&(a.to_owned(), stop, "cloudtrail-stopped".to_owned())));
    assert_eq!(messages(&s, Service::Describer).await.len(), 1);

    // A third delivery writes no segment: two summaries (idempotent) and
    // two failed conditional checks.
    let before = calls(&proxy);
    ingestor.handle(&delivery).await.unwrap();
    assert_eq!(calls(&proxy) - before, 4);
}

/// Issue 23: a record that makes its segment too large for DynamoDB (here
/// 400 KB of incompressible resource ARNs, which are stored whole) does
/// not take its segment's other records with it: the segment is filed
/// record by record, and only that record is quarantined (`unwritable`).
/// A redelivery does the same, writing nothing twice.
#[tokio::test]
async fn a_record_too_large_to_store_is_quarantined_and_the_rest_of_its_segment_filed() {
    let s = setup().await;
    let tenant = TenantId::new("acme").unwrap();
    let ingestor = trail_ingest::ingestor(&s.env.ctx);
    // Pseudo-random base64: deflate cannot shrink it below ~3/4.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut noise = |n: usize| -> String {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % 64) as usize] as char
            })
            .collect()
    };
    let arns: Vec<serde_json::Value> = (0..100)
        .map(|_| serde_json::json!({"ARN": format!("arn:aws:s3:::{}", noise(4000))}))
        .collect();
    let id = |n: u32| format!("cccccccc-0000-4000-8000-{n:012}");
    let mut records: Vec<serde_json::Value> = (1..=5)
        .map(|n| record(&s.ours, &id(n), "DescribeInstances", serde_json::json!({})))
        .collect();
    records.insert(
        2,
        record(
            &s.ours,
            &id(9),
            "PutBucketPolicy",
            serde_json::json!({"eventSource": "s3.amazonaws.com", "resources": arns}),
        ),
    );
    let file = gzip(
        serde_json::json!({ "Records": records })
            .to_string()
            .as_bytes(),
    );
    let (key, r) = ingest_via_s3(&s, &ingestor, file.clone()).await;
    assert_eq!(
        (r.records, r.new, r.quarantined),
        (6, 5, 1),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems[0].starts_with("record 2 at byte") && r.problems[0].contains("unwritable"),
        "{:?}",
        r.problems
    );
    let mut filed: Vec<String> = ingestor
        .store
        .query(&all_time("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    filed.sort();
    assert_eq!(filed, (1..=5).map(id).collect::<Vec<_>>());
    let q = ingestor.store.quarantined(&tenant, None).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].key.as_str(), q[0].index), (key.as_str(), 2));
    assert_eq!(q[0].reason, "unwritable");

    // Again: the one-record segments are there (duplicates), the big one
    // is quarantined again (the same item).
    let obj = trail_ingest::notification::TrailObject {
        bucket: s.bucket.clone(),
        key: key.clone(),
    };
    let again = match ingestor.ingest_object(&obj).await.unwrap() {
        trail_ingest::ingest::FileOutcome::Ingested(r) => r,
        other => panic!("not ingested: {other:?}"),
    };
    assert_eq!((again.new, again.duplicates, again.quarantined), (0, 5, 1));
    assert_eq!(
        ingestor
            .store
            .quarantined(&tenant, None)
            .await
            .unwrap()
            .len(),
        1
    );
}
