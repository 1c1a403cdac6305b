//! `kopterctl dlq list|show|redrive --service S`: a service's dead-letter
//! queue — what is in it, why each message failed, and moving messages
//! back to the service's queue once the cause is fixed.
//!
//! Looking never consumes: messages are received hidden for
//! [`PEEK_HIDE`] (long enough to walk the queue without seeing one twice)
//! and made visible again at once afterwards; nothing is deleted. The
//! reason comes from the failure log the worker writes
//! (`kopter_runtime::queue::failures`); SQS itself records none. Redrive
//! sends a copy to the main queue first and deletes the dead letter only
//! after SQS accepted the copy, so an interrupted redrive leaves a message
//! in both queues (handled twice, idempotently), never in neither. See
//! `libs/runtime/src/queue/design.md`, "Dead letters".

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message as SqsMessage, MessageSystemAttributeName,
};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use kopter_runtime::AwsContext;
use kopter_runtime::queue::failures::{FailureLog, FailureRecord};
use kopter_schema::{Envelope, Names, Service};
use serde::Serialize;

/// How long a looked-at message stays hidden if kopterctl dies before it
/// makes the message visible again.
pub const PEEK_HIDE: Duration = Duration::from_secs(30);
/// How long a message being redriven stays hidden: covers one send and
/// one delete with the SDK's retries.
const REDRIVE_HIDE: Duration = Duration::from_secs(120);

#[derive(Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Every message in a service's DLQ: id, kind, why it failed, when.
    List {
        /// describer, pricing, aggregator, trail-ingest or notifier.
        #[arg(long)]
        service: Service,
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        format: crate::output::FormatArg,
    },
    /// One message whole: attributes, failure record, pretty-printed body.
    Show {
        #[arg(long)]
        service: Service,
        /// The SQS message id (from `dlq list`).
        id: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Move messages back to the service's queue (send, then delete).
    Redrive {
        #[arg(long)]
        service: Service,
        /// A message id to move (repeatable).
        #[arg(long = "id", conflicts_with = "all")]
        ids: Vec<String>,
        /// Move every message.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// One dead letter as `list`, `show` and `--format json` present it.
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    /// The envelope's kind; for trail-ingest's S3/SNS notifications
    /// `s3-notification` or `s3:TestEvent`; `undecodable` otherwise.
    pub kind: String,
    /// Why the body is not a message this service accepts, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
    /// SQS `ApproximateReceiveCount`: the service's receives plus one for
    /// every earlier look by `kopterctl dlq`.
    pub receive_count: u32,
    /// SQS `SentTimestamp`: when the message was first enqueued.
    pub sent_at: Option<DateTime<Utc>>,
    /// SQS `ApproximateFirstReceiveTimestamp`.
    pub first_received_at: Option<DateTime<Utc>>,
    /// The worker's failure record, if one was written (a message whose
    /// receives all ended in crashes or lost visibility has none).
    pub failure: Option<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_attributes: Option<BTreeMap<String, String>>,
    /// The body, as JSON when it parses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// Receives whose handler failed.
    pub failures: u32,
    /// `retry`, `permanent` or `panic`.
    pub outcome: String,
    pub reason: String,
}

impl From<FailureRecord> for Failure {
    fn from(r: FailureRecord) -> Self {
        Self {
            first_failed_at: r.first_failed_at,
            last_failed_at: r.last_failed_at,
            failures: r.failures,
            outcome: r.outcome,
            reason: r.reason,
        }
    }
}

/// One message moved back by `redrive`.
#[derive(Debug, Serialize)]
struct Moved {
    /// Its id in the DLQ.
    from_id: String,
    /// Its new id in the service's queue.
    to_id: String,
    kind: String,
}

pub async fn run(aws: &AwsContext, names: &Names, args: DlqArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DlqCommand::List {
            service,
            limit,
            format,
        } => {
            let dlq = Dlq::open(aws, names, service).await?;
            let messages = dlq.peek(limit, None).await?;
            let mut letters = Vec::with_capacity(messages.len());
            for m in &messages {
                letters.push(dlq.dead_letter(m, false).await?);
            }
            crate::output::print(format.get(), &listing(&dlq.name, &letters), &letters)?;
        }
        DlqCommand::Show {
            service,
            id,
            format,
        } => {
            let dlq = Dlq::open(aws, names, service).await?;
            let messages = dlq.peek(usize::MAX, Some(&id)).await?;
            let Some(m) = messages
                .iter()
                .find(|m| m.message_id.as_deref() == Some(&id))
            else {
                eprintln!("kopterctl: no message {id} in {}", dlq.name);
                return Ok(ExitCode::FAILURE);
            };
            let letter = dlq.dead_letter(m, true).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&letter)?),
                Format::Table => print_one(&letter)?,
            }
        }
        DlqCommand::Redrive {
            service,
            ids,
            all,
            format,
        } => {
            if ids.is_empty() && !all {
                eprintln!("kopterctl: dlq redrive needs --all or at least one --id");
                return Ok(ExitCode::from(2));
            }
            let dlq = Dlq::open(aws, names, service).await?;
            let wanted: Option<BTreeSet<String>> = (!all).then(|| ids.into_iter().collect());
            let (moved, missing) = dlq.redrive(wanted).await?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "moved": moved,
                        "not_found": missing,
                    }))?
                ),
                Format::Table => {
                    for m in &moved {
                        println!("moved {} → {} ({})", m.from_id, m.to_id, m.kind);
                    }
                    println!(
                        "{} message(s) moved from {} to {}",
                        moved.len(),
                        dlq.name,
                        dlq.main_name
                    );
                }
            }
            if !missing.is_empty() {
                eprintln!(
                    "kopterctl: not in {}: {}",
                    dlq.name,
                    missing.into_iter().collect::<Vec<_>>().join(", ")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A service's DLQ and the queue its messages came from.
struct Dlq {
    sqs: aws_sdk_sqs::Client,
    service: Service,
    name: String,
    url: String,
    main_name: String,
    main_url: String,
    failures: FailureLog,
}

impl Dlq {
    async fn open(aws: &AwsContext, names: &Names, service: Service) -> anyhow::Result<Self> {
        let sqs = aws.sqs();
        let name = names.dlq(service);
        let main_name = names.queue(service);
        let url = queue_url(&sqs, &name).await?;
        let main_url = queue_url(&sqs, &main_name).await?;
        Ok(Self {
            failures: FailureLog::new(aws.dynamodb(), names, service, Duration::ZERO),
            sqs,
            service,
            name,
            url,
            main_name,
            main_url,
        })
    }

    /// Receives hidden for `hide`, at most 10, waiting up to 1 s (a long
    /// poll asks every SQS server, so an empty answer means empty).
    async fn receive(&self, hide: Duration) -> anyhow::Result<Vec<SqsMessage>> {
        Ok(self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(hide.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .with_context(|| format!("receive from {}", self.name))?
            .messages
            .unwrap_or_default())
    }

    /// Up to `limit` messages (or until `stop_at` is seen), then made
    /// visible again. Nothing is deleted.
    async fn peek(&self, limit: usize, stop_at: Option<&str>) -> anyhow::Result<Vec<SqsMessage>> {
        let mut seen: Vec<SqsMessage> = Vec::new();
        let result = async {
            while seen.len() < limit {
                let batch = self.receive(PEEK_HIDE).await?;
                if batch.is_empty() {
                    break;
                }
                let found = stop_at
                    .is_some_and(|id| batch.iter().any(|m| m.message_id.as_deref() == Some(id)));
                seen.extend(batch);
                if found {
                    break;
                }
            }
            anyhow::Ok(())
        }
        .await;
        self.release(seen.iter().filter_map(|m| m.receipt_handle.clone()))
            .await;
        result?;
        seen.truncate(limit);
        Ok(seen)
    }

    /// Makes received messages visible again (best effort: on failure
    /// they reappear when their hiding ends anyway).
    async fn release(&self, receipts: impl Iterator<Item = String>) {
        let receipts: Vec<String> = receipts.collect();
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let out = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            let failed = match out {
                Ok(o) => o.failed.len(),
                Err(e) => {
                    eprintln!(
                        "kopterctl: make messages visible again in {}: {e}",
                        self.name
                    );
                    chunk.len()
                }
            };
            if failed > 0 {
                eprintln!(
                    "kopterctl: {failed} message(s) stay hidden in {} for up to {} s",
                    self.name,
                    PEEK_HIDE.as_secs()
                );
            }
        }
    }

    async fn dead_letter(&self, m: &SqsMessage, whole: bool) -> anyhow::Result<DeadLetter> {
        let id = m.message_id.clone().unwrap_or_default();
        let body = m.body.as_deref().unwrap_or("");
        let (kind, decode_error) = kind_of(self.service, body);
        let attr = |k: MessageSystemAttributeName| {
            m.attributes
                .as_ref()
                .and_then(|a| a.get(&k))
                .map(String::as_str)
        };
        let time = |k| {
            attr(k)
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_millis)
        };
        let failure = self.failures.get(&id).await?.map(Failure::from);
        Ok(DeadLetter {
            kind,
            decode_error,
            receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            sent_at: time(MessageSystemAttributeName::SentTimestamp),
            first_received_at: time(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp),
            failure,
            message_attributes: whole.then(|| {
                m.message_attributes
                    .iter()
                    .flatten()
                    .map(|(k, v)| {
                        let value = v
                            .string_value
                            .clone()
                            .unwrap_or_else(|| format!("({} value)", v.data_type));
                        (k.clone(), value)
                    })
                    .collect()
            }),
            body: whole.then(|| {
                serde_json::from_str(body)
                    .unwrap_or_else(|_| serde_json::Value::String(body.to_owned()))
            }),
            message_id: id,
        })
    }

    /// Moves the wanted messages (all when `None`) back to the service's
    /// queue; returns what moved and the wanted ids not found.
    async fn redrive(
        &self,
        mut wanted: Option<BTreeSet<String>>,
    ) -> anyhow::Result<(Vec<Moved>, BTreeSet<String>)> {
        let mut moved = Vec::new();
        let mut skipped = Vec::new();
        let result = async {
            loop {
                if wanted.as_ref().is_some_and(BTreeSet::is_empty) {
                    break;
                }
                let batch = self.receive(REDRIVE_HIDE).await?;
                if batch.is_empty() {
                    break;
                }
                for m in batch {
                    let (Some(id), Some(receipt)) =
                        (m.message_id.clone(), m.receipt_handle.clone())
                    else {
                        continue;
                    };
                    if let Some(w) = wanted.as_mut()
                        && !w.remove(&id)
                    {
                        skipped.push(receipt);
                        continue;
                    }
                    moved.push(self.move_back(&m, &id, &receipt).await?);
                }
            }
            anyhow::Ok(())
        }
        .await;
        self.release(skipped.into_iter()).await;
        result?;
        Ok((moved, wanted.unwrap_or_default()))
    }

    /// Send first, delete after: a crash in between leaves a duplicate,
    /// which the idempotent handlers absorb, never a lost message.
    async fn move_back(&self, m: &SqsMessage, id: &str, receipt: &str) -> anyhow::Result<Moved> {
        let body = m.body.clone().unwrap_or_default();
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.main_url)
            .message_body(&body)
            .set_message_attributes(m.message_attributes.clone())
            .send()
            .await
            .with_context(|| format!("send message {id} back to {}", self.main_name))?;
        self.sqs
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .with_context(|| {
                format!(
                    "delete message {id} from {} after copying it to {} (it is now in both; \
                     the copy will be handled, and this one can be deleted or redriven again)",
                    self.name, self.main_name
                )
            })?;
        Ok(Moved {
            from_id: id.to_owned(),
            to_id: sent.message_id.unwrap_or_default(),
            kind: kind_of(self.service, &body).0,
        })
    }
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> anyhow::Result<String> {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .with_context(|| format!("look up queue {name} (has `kopterctl bootstrap` run?)"))?
        .queue_url
        .with_context(|| format!("GetQueueUrl for {name} returned no URL"))
}

/// The shape of a trail-ingest message, told from its JSON alone (kopterctl
/// does not link the service): an S3 event notification (`Records`, S3's
/// `s3:TestEvent`), CloudTrail's own SNS notice (`s3Bucket` +
/// `s3ObjectKey`), each also inside an SNS envelope (`Type: Notification`,
/// the notification in `Message`). Shapes: the S3 User Guide, "Event
/// message structure"; the CloudTrail User Guide, "Configuring SNS
/// notifications for CloudTrail".
fn trail_kind(body: &str) -> (String, Option<String>) {
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return ("undecodable".into(), Some(format!("not JSON: {e}"))),
    };
    let inner = match (
        value.get("Type").and_then(|t| t.as_str()),
        value.get("Message"),
    ) {
        (Some("Notification"), Some(serde_json::Value::String(m))) => {
            match serde_json::from_str::<serde_json::Value>(m) {
                Ok(v) => v,
                Err(e) => {
                    return (
                        "undecodable".into(),
                        Some(format!("SNS Message is not JSON: {e}")),
                    );
                }
            }
        }
        _ => value,
    };
    if inner.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        ("s3:TestEvent".into(), None)
    } else if inner.get("Records").is_some_and(|r| r.is_array()) {
        ("s3-notification".into(), None)
    } else if inner.get("s3Bucket").is_some() && inner.get("s3ObjectKey").is_some() {
        ("cloudtrail-notification".into(), None)
    } else {
        (
            "undecodable".into(),
            Some("neither an S3 event notification nor a CloudTrail SNS notice".into()),
        )
    }
}

/// What a body is, as the service would see it, and why it cannot be
/// decoded if it cannot.
fn kind_of(service: Service, body: &str) -> (String, Option<String>) {
    if service == Service::TrailIngest {
        return trail_kind(body);
    }
    match Envelope::decode(body) {
        Ok(env) if service.accepts(env.message.kind()) => (env.message.kind().to_owned(), None),
        Ok(env) => (
            env.message.kind().to_owned(),
            Some(format!("kind is not for the {} service", service.name())),
        ),
        Err(e) => {
            // A kind this build does not know is still worth naming.
            let raw = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("kind")?.as_str().map(str::to_owned));
            (
                raw.unwrap_or_else(|| "undecodable".into()),
                Some(e.to_string()),
            )
        }
    }
}

fn short_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

fn listing(dlq: &str, letters: &[DeadLetter]) -> crate::output::Listing {
    let mut t =
        crate::output::Listing::new(&["ID", "KIND", "RECEIVES", "FIRST FAILED", "SENT", "REASON"])
            .right_aligned(&[2]);
    for l in letters {
        let reason = match (&l.failure, &l.decode_error) {
            (Some(f), _) => format!("{}: {}", f.outcome, one_line(&f.reason, 100)),
            (None, Some(e)) => format!("(no failure recorded) {}", one_line(e, 80)),
            (None, None) => "(no failure recorded: crashed or lost visibility?)".into(),
        };
        t.row(vec![
            l.message_id.clone(),
            l.kind.clone(),
            l.receive_count.to_string(),
            short_time(l.failure.as_ref().map(|f| f.first_failed_at)),
            short_time(l.sent_at),
            reason,
        ]);
    }
    t.note(format!("{} message(s) in {dlq}", letters.len()));
    t
}

fn print_one(l: &DeadLetter) -> anyhow::Result<()> {
    println!("message id      {}", l.message_id);
    println!("kind            {}", l.kind);
    if let Some(e) = &l.decode_error {
        println!("decode error    {e}");
    }
    println!("receive count   {}", l.receive_count);
    println!("sent            {}", short_time(l.sent_at));
    println!("first received  {}", short_time(l.first_received_at));
    match &l.failure {
        Some(f) => {
            println!("first failed    {}", short_time(Some(f.first_failed_at)));
            println!("last failed     {}", short_time(Some(f.last_failed_at)));
            println!("failures        {} (last: {})", f.failures, f.outcome);
            println!("reason          {}", f.reason);
        }
        None => println!("reason          (no failure recorded)"),
    }
    for (k, v) in l.message_attributes.iter().flatten() {
        println!("attribute       {k} = {v}");
    }
    println!("body:");
    if let Some(body) = &l.body {
        println!("{}", serde_json::to_string_pretty(body)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_even_when_not_decodable() {
        let env = serde_json::to_string(&kopter_runtime::messaging::envelope(
            kopter_schema::Message::DescribeSweep(kopter_schema::messages::Sweep {}),
        ))
        .unwrap();
        assert_eq!(
            kind_of(Service::Describer, &env),
            ("describe.sweep".into(), None)
        );
        let (kind, why) = kind_of(Service::Pricing, &env);
        assert_eq!(kind, "describe.sweep");
        assert!(why.unwrap().contains("not for the pricing service"));
        let (kind, why) = kind_of(
            Service::Describer,
            r#"{"v":1,"id":"x","sent_at":"2025-01-01T00:00:00Z","kind":"describe.nope","body":{}}"#,
        );
        assert_eq!(kind, "describe.nope");
        assert!(why.is_some());
        assert_eq!(kind_of(Service::Notifier, "garbage").0, "undecodable");
        assert_eq!(
            kind_of(Service::TrailIngest, r#"{"Event":"s3:TestEvent"}"#).0,
            "s3:TestEvent"
        );
    }

    #[test]
    fn reasons_fit_on_one_line() {
        assert_eq!(one_line("a\n  b", 10), "a b");
        assert_eq!(one_line("abcdefghijkl", 5), "abcd…");
    }
}
