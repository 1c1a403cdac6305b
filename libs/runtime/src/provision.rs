//! Creates every queue, DLQ, topic, subscription and table of an
//! environment from the schema crate (`kopterctl bootstrap`).
//!
//! Idempotent: each resource is looked up first and reported as created,
//! updated (attributes brought in line) or unchanged. A table that exists
//! with a different key schema is an error, never silently recreated.
//! In AWS, Terraform owns these resources; this is for local endpoints and
//! for checking that an environment matches the code.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use kopter_schema::{Names, Service, Subscription, Table};

use crate::aws::AwsContext;
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: &'static str,
    pub name: String,
    pub action: Action,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
        };
        write!(f, "{:<9} {:<12} {}", action, self.kind, self.name)
    }
}

/// Brings the environment in line with the schema; returns what it did.
pub async fn bootstrap(aws: &AwsContext, config: &Config) -> anyhow::Result<Vec<Change>> {
    let names = config.names();
    let sqs = aws.sqs();
    let sns = aws.sns();
    let ddb = aws.dynamodb();
    let mut changes = Vec::new();

    let mut queue_arns = HashMap::new();
    for service in Service::ALL {
        let (dlq_url, change) = ensure_queue(
            &sqs,
            &names.dlq(service),
            HashMap::from([(
                QueueAttributeName::MessageRetentionPeriod,
                config.queues.dlq_retention.as_secs().to_string(),
            )]),
        )
        .await?;
        changes.push(change);
        let dlq_arn = queue_arn(&sqs, &dlq_url).await?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": config.queues.max_receive_count.to_string(),
        })
        .to_string();
        let (url, change) = ensure_queue(
            &sqs,
            &names.queue(service),
            HashMap::from([
                (QueueAttributeName::RedrivePolicy, redrive),
                (
                    QueueAttributeName::VisibilityTimeout,
                    config.worker.visibility_timeout.as_secs().to_string(),
                ),
                (
                    QueueAttributeName::ReceiveMessageWaitTimeSeconds,
                    "20".into(),
                ),
            ]),
        )
        .await?;
        changes.push(change);
        queue_arns.insert(service, (url.clone(), queue_arn(&sqs, &url).await?));
    }

    let topic_name = names.events_topic();
    let existing_topic = find_topic(&sns, &topic_name).await?;
    let topic_arn = sns
        .create_topic()
        .name(&topic_name)
        .send()
        .await
        .with_context(|| format!("create topic {topic_name}"))?
        .topic_arn
        .context("CreateTopic returned no ARN")?;
    changes.push(Change {
        kind: "topic",
        name: topic_name.clone(),
        action: if existing_topic.is_some() {
            Action::Unchanged
        } else {
            Action::Created
        },
    });

    for sub in Subscription::all() {
        let (url, arn) = &queue_arns[&sub.service];
        changes.push(ensure_subscription(&sqs, &sns, &topic_arn, &sub, url, arn).await?);
    }

    for table in Table::ALL {
        changes.push(ensure_table(&ddb, &names, table).await?);
    }
    Ok(changes)
}

async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    wanted: HashMap<QueueAttributeName, String>,
) -> anyhow::Result<(String, Change)> {
    let existing = sqs.get_queue_url().queue_name(name).send().await;
    let change = |action| Change {
        kind: "queue",
        name: name.to_owned(),
        action,
    };
    match existing {
        Ok(out) => {
            let url = out.queue_url.context("GetQueueUrl returned no URL")?;
            let current = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .with_context(|| format!("read attributes of queue {name}"))?
                .attributes
                .unwrap_or_default();
            let differs: HashMap<_, _> = wanted
                .into_iter()
                .filter(|(k, v)| !same_attribute(k, current.get(k), v))
                .collect();
            if differs.is_empty() {
                return Ok((url, change(Action::Unchanged)));
            }
            sqs.set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(differs))
                .send()
                .await
                .with_context(|| format!("update attributes of queue {name}"))?;
            Ok((url, change(Action::Updated)))
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_queue_does_not_exist()) =>
        {
            let url = sqs
                .create_queue()
                .queue_name(name)
                .set_attributes(Some(wanted))
                .send()
                .await
                .with_context(|| format!("create queue {name}"))?
                .queue_url
                .context("CreateQueue returned no URL")?;
            Ok((url, change(Action::Created)))
        }
        Err(err) => Err(anyhow::Error::new(err).context(format!("look up queue {name}"))),
    }
}

/// Redrive policies come back with `maxReceiveCount` as a number or a
/// string depending on the endpoint; compare them as JSON values.
fn same_attribute(k: &QueueAttributeName, current: Option<&String>, wanted: &str) -> bool {
    let Some(current) = current else { return false };
    if *k == QueueAttributeName::RedrivePolicy {
        let norm = |s: &str| -> Option<(String, String)> {
            let v: serde_json::Value = serde_json::from_str(s).ok()?;
            let arn = v.get("deadLetterTargetArn")?.as_str()?.to_owned();
            let count = match v.get("maxReceiveCount")? {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((arn, count))
        };
        return norm(current).is_some() && norm(current) == norm(wanted);
    }
    current == wanted
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("read the ARN of {url}"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .with_context(|| format!("queue {url} has no QueueArn attribute"))
}

async fn find_topic(sns: &aws_sdk_sns::Client, name: &str) -> anyhow::Result<Option<String>> {
    let mut pages = sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.context("list SNS topics")?;
        for t in page.topics.unwrap_or_default() {
            if let Some(arn) = t.topic_arn
                && arn.rsplit(':').next() == Some(name)
            {
                return Ok(Some(arn));
            }
        }
    }
    Ok(None)
}

async fn ensure_subscription(
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    sub: &Subscription,
    queue_url: &str,
    queue_arn: &str,
) -> anyhow::Result<Change> {
    let label = format!(
        "{} <- {}",
        sub.service.name(),
        topic_arn.rsplit(':').next().unwrap_or("")
    );
    let policy = sub.filter_policy();
    // The queue must let the topic deliver to it (enforced by real SQS).
    let access = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "kopter-events",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }],
    })
    .to_string();
    sqs.set_queue_attributes()
        .queue_url(queue_url)
        .attributes(QueueAttributeName::Policy, access)
        .send()
        .await
        .with_context(|| format!("allow {topic_arn} to send to {queue_arn}"))?;

    let mut existing = None;
    let mut pages = sns
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for s in page
            .context("list subscriptions")?
            .subscriptions
            .unwrap_or_default()
        {
            if s.endpoint.as_deref() == Some(queue_arn) && s.protocol.as_deref() == Some("sqs") {
                existing = s.subscription_arn;
            }
        }
    }
    let change = |action| Change {
        kind: "subscription",
        name: label.clone(),
        action,
    };
    match existing {
        Some(arn) => {
            let attrs = sns
                .get_subscription_attributes()
                .subscription_arn(&arn)
                .send()
                .await
                .context("read subscription attributes")?
                .attributes
                .unwrap_or_default();
            let same_filter = attrs
                .get("FilterPolicy")
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                == serde_json::from_str::<serde_json::Value>(&policy).ok();
            let raw = attrs.get("RawMessageDelivery").map(String::as_str) == Some("true");
            if same_filter && raw {
                return Ok(change(Action::Unchanged));
            }
            for (name, value) in [
                ("FilterPolicy", policy.as_str()),
                ("RawMessageDelivery", "true"),
            ] {
                sns.set_subscription_attributes()
                    .subscription_arn(&arn)
                    .attribute_name(name)
                    .attribute_value(value)
                    .send()
                    .await
                    .with_context(|| format!("set {name} on {arn}"))?;
            }
            Ok(change(Action::Updated))
        }
        None => {
            sns.subscribe()
                .topic_arn(topic_arn)
                .protocol("sqs")
                .endpoint(queue_arn)
                .attributes("FilterPolicy", policy)
                .attributes("RawMessageDelivery", "true")
                .send()
                .await
                .with_context(|| format!("subscribe {queue_arn} to {topic_arn}"))?;
            Ok(change(Action::Created))
        }
    }
}

fn key_schema(pk: &str, sk: Option<&str>) -> Vec<KeySchemaElement> {
    let mut out = vec![
        KeySchemaElement::builder()
            .attribute_name(pk)
            .key_type(KeyType::Hash)
            .build()
            .expect("complete key element"),
    ];
    if let Some(sk) = sk {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(sk)
                .key_type(KeyType::Range)
                .build()
                .expect("complete key element"),
        );
    }
    out
}

async fn ensure_table(
    ddb: &aws_sdk_dynamodb::Client,
    names: &Names,
    table: Table,
) -> anyhow::Result<Change> {
    let spec = table.spec();
    let name = names.table(table);
    let change = |action| Change {
        kind: "table",
        name: name.clone(),
        action,
    };
    let described = ddb.describe_table().table_name(&name).send().await;
    let mut action = match described {
        Ok(out) => {
            let desc = out.table.context("DescribeTable returned no table")?;
            let want = key_schema(spec.partition_key, spec.sort_key);
            if desc.key_schema() != want.as_slice() {
                bail!(
                    "table {name} exists with a different key schema than the schema crate declares; migrate it by hand"
                );
            }
            let have: Vec<&str> = desc
                .global_secondary_indexes()
                .iter()
                .filter_map(|g| g.index_name())
                .collect();
            let missing: Vec<&str> = spec
                .gsis
                .iter()
                .map(|g| g.name)
                .filter(|n| !have.contains(n))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "table {name} lacks indexes {missing:?} that the schema crate declares; add them (Terraform) before running this version"
                );
            }
            // An index this version does not read (the audit log's of
            // before segments) costs a write per copied item: reported.
            for extra in have
                .iter()
                .filter(|h| !spec.gsis.iter().any(|g| g.name == **h))
            {
                tracing::warn!(table = %name, index = %extra, "index not declared by the schema crate (no reader uses it); remove it (Terraform does) to stop paying for its copies");
            }
            // An index that copies more than declared still serves every
            // reader (they fetch rows by key whatever an index holds), so
            // it is only reported; one that copies less would not.
            for g in spec.gsis {
                let have = desc
                    .global_secondary_indexes()
                    .iter()
                    .find(|d| d.index_name() == Some(g.name))
                    .and_then(|d| d.projection())
                    .and_then(|p| p.projection_type())
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default();
                if have != g.projection.as_str() {
                    if g.projection == kopter_schema::Projection::All {
                        bail!(
                            "index {name}.{} projects {have}, the schema crate declares ALL; recreate it (Terraform replaces it) before running this version",
                            g.name
                        );
                    }
                    tracing::warn!(table = %name, index = g.name, have = %have, want = g.projection.as_str(), "index projects more than the schema declares; recreate it (Terraform) to stop paying for the copies");
                }
            }
            Action::Unchanged
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            let defs = spec
                .key_attributes()
                .into_iter()
                .map(|a| {
                    AttributeDefinition::builder()
                        .attribute_name(a)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .expect("complete attribute definition")
                })
                .collect();
            let gsis: Vec<_> = spec
                .gsis
                .iter()
                .map(|g| {
                    GlobalSecondaryIndex::builder()
                        .index_name(g.name)
                        .set_key_schema(Some(key_schema(g.partition_key, g.sort_key)))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::from(g.projection.as_str()))
                                .build(),
                        )
                        .build()
                        .expect("complete index")
                })
                .collect();
            ddb.create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest)
                .set_attribute_definitions(Some(defs))
                .set_key_schema(Some(key_schema(spec.partition_key, spec.sort_key)))
                .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
                .send()
                .await
                .with_context(|| format!("create table {name}"))?;
            wait_active(ddb, &name).await?;
            Action::Created
        }
        Err(err) => return Err(anyhow::Error::new(err).context(format!("describe table {name}"))),
    };

    if let Some(ttl) = spec.ttl_attribute {
        let status = ddb
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .with_context(|| format!("read TTL of {name}"))?
            .time_to_live_description;
        let enabled = status.as_ref().is_some_and(|d| {
            matches!(
                d.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            ) && d.attribute_name() == Some(ttl)
        });
        if !enabled {
            ddb.update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(ttl)
                        .build()
                        .expect("complete TTL specification"),
                )
                .send()
                .await
                .with_context(|| format!("enable TTL on {name}.{ttl}"))?;
            if action == Action::Unchanged {
                action = Action::Updated;
            }
        }
    }
    Ok(change(action))
}

async fn wait_active(ddb: &aws_sdk_dynamodb::Client, name: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        let status = ddb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .with_context(|| format!("describe table {name}"))?
            .table
            .and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("table {name} did not become ACTIVE within 5 minutes")
}
