//! Decoding one SQS message body on the trail-ingest queue into the S3
//! objects to read.
//!
//! Customers wire their trail bucket to our queue in whichever way their
//! account already has, so one queue sees several shapes and nothing in the
//! message says which one it is. We tell them apart by their keys:
//!
//! | top-level keys | what sent it | keys in it |
//! |---|---|---|
//! | `Records` | S3 event notification (bucket → SQS, or → SNS with raw delivery) | URL-encoded, form style |
//! | `s3Bucket`, `s3ObjectKey` | CloudTrail's own "log delivered" SNS notification | verbatim |
//! | the same plus `"kopterReplay": true` | `kopterctl audit quarantine replay` ([`kopter_store::audit::quarantine_replay_body`]) | verbatim |
//! | `Event` (= `s3:TestEvent`) | S3 checking the destination when the notification is configured | none |
//! | `Type` + `TopicArn`/`MessageId` | SNS envelope (raw delivery off); its `Message` string is one of the above | – |
//!
//! Why the details:
//!
//! - S3 encodes keys like an HTML form (`+` is a space, `%XX` an escape),
//!   while CloudTrail's notification carries the key as it is in the
//!   bucket. Decoding the CloudTrail keys too would corrupt keys that
//!   contain `+` or `%`, so decoding depends on the shape.
//! - Only `ObjectCreated:*` records name something new to read; removals,
//!   restores and lifecycle transitions on the same bucket are expected
//!   noise and are dropped quietly rather than dead-lettered.
//! - A `Records` list from anything other than `aws:s3` (a CloudTrail log
//!   file or a Lambda event pasted onto the queue) is an error: guessing
//!   would read the wrong objects.
//! - SNS subscription confirmations are errors, not something we act on:
//!   confirming a subscription is an operator's decision, and visiting a
//!   URL taken from a queue message would let anyone who can write to the
//!   topic make us fetch arbitrary URLs.
//! - Only one level of SNS wrapping exists in practice; a second one is
//!   rejected rather than unwrapped recursively.
//! - CloudTrail lists the same key twice at times (see the
//!   `SQSMessageBody.json` fixture); reading it twice would only waste
//!   work, so duplicates within one message are dropped, order kept.
//! - Everything that goes wrong is an error naming the shape or field, so
//!   the message can be dead-lettered with a reason an operator can act on.
//!   Values copied into errors are clipped: a message body can be 256 KiB.

use std::borrow::Cow;
use std::collections::HashSet;

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

/// One S3 object to read. `key` is the real object key (already decoded
/// where the notification encoded it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailObject {
    pub bucket: String,
    pub key: String,
}

/// What one queue message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Objects to read, deduplicated, in message order. May be empty when
    /// every record was an event we ignore (e.g. `ObjectRemoved:*`).
    Objects(Vec<TrailObject>),
    /// S3's `s3:TestEvent`: nothing to read, safe to acknowledge.
    TestEvent,
    /// Files to read again for `kopterctl audit quarantine replay`: read
    /// as usual, and once a file is read to the end its quarantine items
    /// from before are released (records still bad are quarantined
    /// again by the reading).
    Replay(Vec<TrailObject>),
}

/// Why a message body could not be decoded. Record and key indexes are
/// 0-based positions in the message's JSON list.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("unknown envelope shape: {0}")]
    UnknownShape(String),
    #[error("SNS Message is not JSON: {0}")]
    SnsMessageNotJson(serde_json::Error),
    #[error("SNS Notification has no string Message")]
    SnsNoMessage,
    #[error(
        "SNS {0} message is not a Notification: nothing to read (subscriptions are confirmed by an operator, not by trail-ingest)"
    )]
    SnsNotNotification(String),
    #[error("SNS Message is itself an SNS {0} envelope: only one level of wrapping is expected")]
    NestedSns(String),
    #[error("S3 event {0}")]
    S3Event(&'static str),
    #[error("S3 event record {index} {problem}")]
    S3Record { index: usize, problem: &'static str },
    #[error("S3 event record {index} has eventSource {found:?}, expected \"aws:s3\"")]
    S3WrongSource { index: usize, found: String },
    #[error("S3 message with Event {0:?} is not an s3:TestEvent")]
    S3NotTestEvent(String),
    #[error("CloudTrail notification {0}")]
    CloudTrail(&'static str),
    #[error("CloudTrail notification s3ObjectKey {index} {problem}")]
    CloudTrailKey { index: usize, problem: &'static str },
}

type Result<T> = std::result::Result<T, NotificationError>;

/// Decodes one SQS message body. Never panics on any input.
pub fn parse_notification(body: &str) -> Result<Notification> {
    let outer: Value = serde_json::from_str(body).map_err(NotificationError::NotJson)?;
    let Value::Object(outer) = outer else {
        return Err(NotificationError::UnknownShape(format!(
            "top-level is {}",
            json_kind(&outer)
        )));
    };
    if let Some(kind) = sns_type(&outer) {
        if kind != "Notification" {
            return Err(NotificationError::SnsNotNotification(clip(kind)));
        }
        let Some(Value::String(message)) = outer.get("Message") else {
            return Err(NotificationError::SnsNoMessage);
        };
        let inner: Value =
            serde_json::from_str(message).map_err(NotificationError::SnsMessageNotJson)?;
        let Value::Object(inner) = inner else {
            return Err(NotificationError::UnknownShape(format!(
                "SNS Message is {}",
                json_kind(&inner)
            )));
        };
        if let Some(kind) = sns_type(&inner) {
            return Err(NotificationError::NestedSns(clip(kind)));
        }
        return parse_payload(&inner, "SNS Message top-level keys");
    }
    parse_payload(&outer, "top-level keys")
}

/// The SNS `Type` if `obj` looks like an SNS envelope. `Type` alone is too
/// common a key to go by, so one of the SNS ids must be there too.
fn sns_type(obj: &Map<String, Value>) -> Option<&str> {
    let kind = obj.get("Type")?.as_str()?;
    (obj.contains_key("TopicArn") || obj.contains_key("MessageId")).then_some(kind)
}

/// The payload an SNS envelope carries, or the whole body with raw delivery.
fn parse_payload(obj: &Map<String, Value>, where_keys: &str) -> Result<Notification> {
    if obj.contains_key("Records") {
        s3_event(obj)
    } else if obj.contains_key("s3Bucket") || obj.contains_key("s3ObjectKey") {
        cloudtrail_notification(obj)
    } else if let Some(event) = obj.get("Event") {
        match event.as_str() {
            Some("s3:TestEvent") => Ok(Notification::TestEvent),
            Some(other) => Err(NotificationError::S3NotTestEvent(clip(other))),
            None => Err(NotificationError::S3NotTestEvent(
                json_kind(event).to_owned(),
            )),
        }
    } else {
        Err(NotificationError::UnknownShape(format!(
            "{where_keys} [{}]",
            key_list(obj)
        )))
    }
}

fn s3_event(obj: &Map<String, Value>) -> Result<Notification> {
    let Some(Value::Array(records)) = obj.get("Records") else {
        return Err(NotificationError::S3Event("Records is not a list"));
    };
    if records.is_empty() {
        return Err(NotificationError::S3Event("has an empty Records list"));
    }
    let mut objects = Objects::default();
    for (index, record) in records.iter().enumerate() {
        let bad = |problem| NotificationError::S3Record { index, problem };
        let Value::Object(record) = record else {
            return Err(bad("is not an object"));
        };
        match record.get("eventSource") {
            Some(Value::String(source)) if source == "aws:s3" => {}
            Some(Value::String(source)) => {
                return Err(NotificationError::S3WrongSource {
                    index,
                    found: clip(source),
                });
            }
            Some(_) => return Err(bad("has a non-string eventSource")),
            None => return Err(bad("has no eventSource")),
        }
        let Some(name) = record.get("eventName").and_then(Value::as_str) else {
            return Err(bad("has no eventName"));
        };
        // S3 sends `ObjectCreated:Put`; some sample events (aws-lambda-go)
        // spell it with an `s3:` prefix as in notification configurations.
        if !name
            .strip_prefix("s3:")
            .unwrap_or(name)
            .starts_with("ObjectCreated:")
        {
            continue;
        }
        let s3 = record.get("s3");
        let bucket = s3
            .and_then(|s3| s3.get("bucket"))
            .and_then(|bucket| bucket.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("has no bucket name"))?;
        if bucket.is_empty() {
            return Err(bad("has an empty bucket name"));
        }
        let raw_key = s3
            .and_then(|s3| s3.get("object"))
            .and_then(|object| object.get("key"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("has no object key"))?;
        let key = decode_s3_key(raw_key)
            .ok_or_else(|| bad("has an object key that is not UTF-8 once URL-decoded"))?;
        if key.is_empty() {
            return Err(bad("has an empty object key"));
        }
        objects.push(bucket, key);
    }
    Ok(Notification::Objects(objects.list))
}

/// S3 event keys are form-encoded: `+` is a space and a literal `+`
/// arrives as `%2B`, so `+` must become a space before `%XX` is decoded.
fn decode_s3_key(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

fn cloudtrail_notification(obj: &Map<String, Value>) -> Result<Notification> {
    let bucket = match obj.get("s3Bucket") {
        Some(Value::String(bucket)) if bucket.is_empty() => {
            return Err(NotificationError::CloudTrail("has an empty s3Bucket"));
        }
        Some(Value::String(bucket)) => bucket,
        _ => return Err(NotificationError::CloudTrail("has no s3Bucket string")),
    };
    let Some(Value::Array(keys)) = obj.get("s3ObjectKey") else {
        return Err(NotificationError::CloudTrail("has no s3ObjectKey list"));
    };
    if keys.is_empty() {
        return Err(NotificationError::CloudTrail(
            "has an empty s3ObjectKey list",
        ));
    }
    let mut objects = Objects::default();
    for (index, key) in keys.iter().enumerate() {
        let bad = |problem| NotificationError::CloudTrailKey { index, problem };
        match key {
            Value::String(key) if key.is_empty() => return Err(bad("is empty")),
            // Verbatim: CloudTrail does not URL-encode these.
            Value::String(key) => objects.push(bucket, key.clone()),
            _ => return Err(bad("is not a string")),
        }
    }
    if obj.get("kopterReplay") == Some(&Value::Bool(true)) {
        return Ok(Notification::Replay(objects.list));
    }
    Ok(Notification::Objects(objects.list))
}

/// Objects in first-seen order without repeats.
#[derive(Default)]
struct Objects {
    list: Vec<TrailObject>,
    seen: HashSet<(String, String)>,
}

impl Objects {
    fn push(&mut self, bucket: &str, key: String) {
        if self.seen.insert((bucket.to_owned(), key.clone())) {
            self.list.push(TrailObject {
                bucket: bucket.to_owned(),
                key,
            });
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// At most this many keys, each clipped, so a hostile body cannot blow up
/// the error (and the log line it ends up in).
const MAX_KEYS_SHOWN: usize = 12;
const MAX_VALUE_CHARS: usize = 64;

fn key_list(obj: &Map<String, Value>) -> String {
    // Sorted so the message does not depend on serde_json's map order.
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut shown: Vec<String> = keys.into_iter().take(MAX_KEYS_SHOWN).map(clip).collect();
    if obj.len() > MAX_KEYS_SHOWN {
        shown.push(format!("… {} more", obj.len() - MAX_KEYS_SHOWN));
    }
    shown.join(", ")
}

fn clip(value: &str) -> String {
    match value.char_indices().nth(MAX_VALUE_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLOUDTRAIL_IN_SNS: &str = include_str!("../tests/fixtures/SQSMessageBody.json");
    const CLOUDTRAIL_RAW_0: &str = include_str!("../tests/fixtures/sns_message_s3ObjectKey_0.json");
    const CLOUDTRAIL_RAW_1: &str = include_str!("../tests/fixtures/sns_message_s3ObjectKey_1.json");
    const S3_TEST_EVENT: &str = include_str!("../tests/fixtures/s3_TestEvent.json");
    const S3_PUT: &str = include_str!("../tests/fixtures/s3_event_v2.1_ObjectCreated_Put.json");
    const S3_PUT_LAMBDA: &str = include_str!("../tests/fixtures/events_testdata_s3-event.json");
    const S3_LIFECYCLE: &str =
        include_str!("../tests/fixtures/events_testdata_s3-lifecycle-event.json");
    const LAMBDA_SNS_EVENT: &str = include_str!("../tests/fixtures/events_testdata_sns-event.json");
    const SNS_HELLO_WORLD: &str =
        include_str!("../tests/fixtures/sns-sqs-as-subscriber_Notification.json");
    const SNS_SUBSCRIBE: &str =
        include_str!("../tests/fixtures/http_post_body_SubscriptionConfirmation.json");
    const SNS_UNSUBSCRIBE: &str =
        include_str!("../tests/fixtures/http_post_body_UnsubscribeConfirmation.json");

    const ENCODED_KEY: &str =
        "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/02/my+file%3D1.json.gz";
    const DECODED_KEY: &str =
        "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/02/my file=1.json.gz";

    fn objects(body: &str) -> Vec<(String, String)> {
        match parse_notification(body) {
            Ok(Notification::Objects(list)) => {
                list.into_iter().map(|o| (o.bucket, o.key)).collect()
            }
            other => panic!("expected objects, got {other:?}"),
        }
    }

    fn error(body: &str) -> String {
        match parse_notification(body) {
            Err(e) => e.to_string(),
            Ok(n) => panic!("expected an error, got {n:?}"),
        }
    }

    fn pair(bucket: &str, key: &str) -> (String, String) {
        (bucket.to_owned(), key.to_owned())
    }

    /// Wraps `inner` the way SNS does with raw delivery off.
    fn sns_wrap(inner: &str) -> String {
        json!({
            "Type": "Notification",
            "MessageId": "6a18da96-bcc5-52f2-b5e9-91006caecea2",
            "TopicArn": "arn:aws:sns:us-east-1:111122223333:trail",
            "Message": inner,
            "Timestamp": "2024-01-02T00:00:00.000Z",
        })
        .to_string()
    }

    fn s3_record(event_name: &str, bucket: &str, key: &str) -> Value {
        json!({
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": event_name,
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
        })
    }

    fn s3_event(records: Vec<Value>) -> String {
        json!({ "Records": records }).to_string()
    }

    #[test]
    fn cloudtrail_notification_in_sns_envelope_fixture_is_deduplicated() {
        let key = "myprefix/AWSLogs/123456789012/CloudTrail/us-east-1/2014/03/09/123456789012_CloudTrail_us-east-1_20140309T2015Z_996mpJdKNLd1Yvzl.json.gz";
        assert_eq!(
            objects(CLOUDTRAIL_IN_SNS),
            vec![pair("my-test-bucket", key)]
        );
    }

    #[test]
    fn cloudtrail_raw_notification_fixtures_keep_order() {
        assert_eq!(
            objects(CLOUDTRAIL_RAW_0),
            vec![pair(
                "your-bucket-name",
                "AWSLogs/123456789012/CloudTrail/us-east-2/2013/12/13/123456789012_CloudTrail_us-west-2_20131213T1920Z_LnPgDQnpkSKEsppV.json.gz"
            )]
        );
        let keys: Vec<String> = objects(CLOUDTRAIL_RAW_1)
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        let prefix = "AWSLogs/123456789012/CloudTrail/us-east-2/2016/08/11/123456789012_CloudTrail_us-east-2_";
        assert_eq!(
            keys,
            [
                "20160811T2215Z_kpaMYavMQA9Ahp7L.json.gz",
                "20160811T2210Z_zqDkyQv3TK8ZdLr0.json.gz",
                "20160811T2205Z_jaMVRa6JfdLCJYHP.json.gz",
            ]
            .map(|tail| format!("{prefix}{tail}"))
        );
    }

    #[test]
    fn cloudtrail_raw_fixture_inside_sns_envelope() {
        assert_eq!(
            objects(&sns_wrap(CLOUDTRAIL_RAW_1)),
            objects(CLOUDTRAIL_RAW_1)
        );
    }

    #[test]
    fn quarantine_replay_notices_name_their_files() {
        let body = kopter_store::audit::quarantine_replay_body("b", "AWSLogs/1/a+b%20.json.gz");
        assert_eq!(
            parse_notification(&body).expect("replay"),
            Notification::Replay(vec![TrailObject {
                bucket: "b".into(),
                key: "AWSLogs/1/a+b%20.json.gz".into()
            }])
        );
    }

    #[test]
    fn cloudtrail_keys_are_not_url_decoded() {
        let body = json!({"s3Bucket": "b", "s3ObjectKey": [ENCODED_KEY]}).to_string();
        assert_eq!(objects(&body), vec![pair("b", ENCODED_KEY)]);
    }

    #[test]
    fn s3_put_fixture() {
        assert_eq!(objects(S3_PUT), vec![pair("mybucket", "HappyFace.jpg")]);
    }

    #[test]
    fn s3_lambda_fixture_key_is_percent_decoded() {
        assert_eq!(
            objects(S3_PUT_LAMBDA),
            vec![pair("sourcebucket", "Happy Face.jpg")]
        );
    }

    #[test]
    fn s3_key_plus_is_space_and_percent_escapes_decoded() {
        let body = s3_event(vec![s3_record(
            "ObjectCreated:Put",
            "trail-bucket",
            ENCODED_KEY,
        )]);
        assert_eq!(objects(&body), vec![pair("trail-bucket", DECODED_KEY)]);
        // A literal '+' arrives as %2B and must survive.
        let body = s3_event(vec![s3_record("ObjectCreated:Put", "b", "a%2Bb+c")]);
        assert_eq!(objects(&body), vec![pair("b", "a+b c")]);
    }

    #[test]
    fn s3_event_inside_sns_envelope() {
        assert_eq!(
            objects(&sns_wrap(S3_PUT)),
            vec![pair("mybucket", "HappyFace.jpg")]
        );
        let body = s3_event(vec![s3_record(
            "ObjectCreated:CompleteMultipartUpload",
            "b",
            ENCODED_KEY,
        )]);
        assert_eq!(objects(&sns_wrap(&body)), vec![pair("b", DECODED_KEY)]);
    }

    #[test]
    fn s3_non_created_events_are_ignored() {
        assert_eq!(objects(S3_LIFECYCLE), vec![]);
        let body = s3_event(vec![
            s3_record("ObjectRemoved:Delete", "b", "gone.json.gz"),
            s3_record("ObjectCreated:Put", "b", "k2"),
            s3_record("ObjectCreated:Copy", "b", "k1"),
            s3_record("ObjectCreated:Put", "b", "k2"),
            s3_record("ObjectCreated:Put", "other", "k2"),
        ]);
        assert_eq!(
            objects(&body),
            vec![pair("b", "k2"), pair("b", "k1"), pair("other", "k2")]
        );
    }

    #[test]
    fn s3_test_event_raw_and_in_sns() {
        assert_eq!(
            parse_notification(S3_TEST_EVENT).unwrap(),
            Notification::TestEvent
        );
        assert_eq!(
            parse_notification(&sns_wrap(S3_TEST_EVENT)).unwrap(),
            Notification::TestEvent
        );
        let other = json!({"Service": "Amazon S3", "Event": "s3:Other"}).to_string();
        assert_eq!(
            error(&other),
            "S3 message with Event \"s3:Other\" is not an s3:TestEvent"
        );
    }

    #[test]
    fn sns_confirmations_are_errors_naming_the_type() {
        let e = error(SNS_SUBSCRIBE);
        assert!(
            e.starts_with("SNS SubscriptionConfirmation message is not a Notification"),
            "{e}"
        );
        let e = error(SNS_UNSUBSCRIBE);
        assert!(
            e.starts_with("SNS UnsubscribeConfirmation message is not a Notification"),
            "{e}"
        );
    }

    #[test]
    fn sns_message_not_json() {
        let e = error(SNS_HELLO_WORLD);
        assert!(e.starts_with("SNS Message is not JSON: "), "{e}");
        let truncated = &CLOUDTRAIL_RAW_1[..CLOUDTRAIL_RAW_1.len() / 2];
        let e = error(&sns_wrap(truncated));
        assert!(e.starts_with("SNS Message is not JSON: "), "{e}");
    }

    #[test]
    fn sns_envelope_problems() {
        let no_message = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "t"});
        assert_eq!(
            error(&no_message.to_string()),
            "SNS Notification has no string Message"
        );
        let nested = sns_wrap(&sns_wrap(S3_PUT));
        assert_eq!(
            error(&nested),
            "SNS Message is itself an SNS Notification envelope: only one level of wrapping is expected"
        );
        let e = error(&sns_wrap("[1, 2]"));
        assert_eq!(e, "unknown envelope shape: SNS Message is a list");
        let e = error(&sns_wrap(r#"{"hello": "world"}"#));
        assert_eq!(
            e,
            "unknown envelope shape: SNS Message top-level keys [hello]"
        );
    }

    #[test]
    fn invalid_truncated_and_empty_bodies() {
        for body in [
            "",
            "   ",
            "not json",
            "{\"Records\": [",
            &S3_PUT[..S3_PUT.len() - 3],
        ] {
            let e = error(body);
            assert!(e.starts_with("not JSON: "), "{body:?}: {e}");
        }
        let e = error(&CLOUDTRAIL_IN_SNS[..200]);
        assert!(e.starts_with("not JSON: "), "{e}");
    }

    #[test]
    fn unknown_shapes_are_named() {
        assert_eq!(
            error(r#"{"foo": 1, "bar": {"baz": 2}}"#),
            "unknown envelope shape: top-level keys [bar, foo]"
        );
        assert_eq!(error("[]"), "unknown envelope shape: top-level is a list");
        assert_eq!(error("42"), "unknown envelope shape: top-level is a number");
        assert_eq!(error("{}"), "unknown envelope shape: top-level keys []");
    }

    #[test]
    fn unknown_shape_error_is_bounded() {
        let mut map = Map::new();
        for i in 0..1000 {
            map.insert(format!("{i:04}{}", "x".repeat(500)), Value::Null);
        }
        let e = error(&Value::Object(map).to_string());
        assert!(e.len() < 2000, "{} bytes", e.len());
        assert!(e.ends_with("… 988 more]"), "{e}");
    }

    #[test]
    fn records_from_other_sources_are_errors() {
        assert_eq!(
            error(LAMBDA_SNS_EVENT),
            "S3 event record 0 has no eventSource"
        );
        let mut record = s3_record("ObjectCreated:Put", "b", "k");
        record["eventSource"] = json!("ec2.amazonaws.com");
        assert_eq!(
            error(&s3_event(vec![
                s3_record("ObjectCreated:Put", "b", "k"),
                record
            ])),
            "S3 event record 1 has eventSource \"ec2.amazonaws.com\", expected \"aws:s3\""
        );
    }

    #[test]
    fn s3_record_problems_name_the_record() {
        let mut no_key = s3_record("ObjectCreated:Put", "b", "k");
        no_key["s3"]["object"] = json!({"size": 1});
        let ok = s3_record("ObjectCreated:Put", "b", "k");
        let body = s3_event(vec![ok.clone(), ok.clone(), no_key]);
        assert_eq!(error(&body), "S3 event record 2 has no object key");

        let cases = [
            (
                s3_record("ObjectCreated:Put", "", "k"),
                "has an empty bucket name",
            ),
            (
                s3_record("ObjectCreated:Put", "b", ""),
                "has an empty object key",
            ),
            (
                s3_record("ObjectCreated:Put", "b", "bad%FF"),
                "has an object key that is not UTF-8 once URL-decoded",
            ),
            (json!({"eventSource": "aws:s3"}), "has no eventName"),
            (json!({"eventSource": 3}), "has a non-string eventSource"),
            (json!("record"), "is not an object"),
            (
                json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}),
                "has no bucket name",
            ),
        ];
        for (record, problem) in cases {
            assert_eq!(
                error(&s3_event(vec![record])),
                format!("S3 event record 0 {problem}")
            );
        }
        assert_eq!(
            error(r#"{"Records": []}"#),
            "S3 event has an empty Records list"
        );
        assert_eq!(
            error(r#"{"Records": {}}"#),
            "S3 event Records is not a list"
        );
    }

    #[test]
    fn cloudtrail_notification_problems() {
        let cases = [
            (
                json!({"s3Bucket": "", "s3ObjectKey": ["k"]}),
                "CloudTrail notification has an empty s3Bucket",
            ),
            (
                json!({"s3ObjectKey": ["k"]}),
                "CloudTrail notification has no s3Bucket string",
            ),
            (
                json!({"s3Bucket": "b"}),
                "CloudTrail notification has no s3ObjectKey list",
            ),
            (
                json!({"s3Bucket": "b", "s3ObjectKey": "k"}),
                "CloudTrail notification has no s3ObjectKey list",
            ),
            (
                json!({"s3Bucket": "b", "s3ObjectKey": []}),
                "CloudTrail notification has an empty s3ObjectKey list",
            ),
            (
                json!({"s3Bucket": "b", "s3ObjectKey": ["k", ""]}),
                "CloudTrail notification s3ObjectKey 1 is empty",
            ),
            (
                json!({"s3Bucket": "b", "s3ObjectKey": [7]}),
                "CloudTrail notification s3ObjectKey 0 is not a string",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(error(&body.to_string()), expected);
        }
    }

    #[test]
    fn long_values_in_errors_are_clipped() {
        let body = json!({"Type": "x".repeat(10_000), "MessageId": "m"}).to_string();
        let e = error(&body);
        assert!(e.len() < 300, "{e}");
        assert!(
            e.contains(&format!("{}…", "x".repeat(MAX_VALUE_CHARS))),
            "{e}"
        );
    }
}
