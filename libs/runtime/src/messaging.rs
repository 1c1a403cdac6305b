//! Sending messages to a service's queue and publishing events to the
//! `kopter-events` topic. Queue URLs and the topic ARN are resolved once.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use aws_sdk_sns::types::MessageAttributeValue;
use kopter_schema::queues::EVENT_TYPE_ATTRIBUTE;
use kopter_schema::{Envelope, Message, Names, Service};
use tokio::sync::OnceCell;

#[derive(Clone, Debug)]
pub struct Outbox {
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    names: Names,
    urls: Arc<tokio::sync::Mutex<HashMap<Service, String>>>,
    topic_arn: Arc<OnceCell<String>>,
}

/// A new envelope with a random id, sent now.
pub fn envelope(message: Message) -> Envelope {
    let id: u128 = rand::random();
    Envelope::new(format!("{id:032x}"), chrono::Utc::now(), message)
}

impl Outbox {
    pub fn new(sqs: aws_sdk_sqs::Client, sns: aws_sdk_sns::Client, names: Names) -> Self {
        Self {
            sqs,
            sns,
            names,
            urls: Arc::default(),
            topic_arn: Arc::default(),
        }
    }

    pub async fn queue_url(&self, service: Service) -> anyhow::Result<String> {
        let mut urls = self.urls.lock().await;
        if let Some(u) = urls.get(&service) {
            return Ok(u.clone());
        }
        let name = self.names.queue(service);
        let url = self
            .sqs
            .get_queue_url()
            .queue_name(&name)
            .send()
            .await
            .with_context(|| format!("look up queue {name}"))?
            .queue_url
            .with_context(|| format!("queue {name} has no URL"))?;
        urls.insert(service, url.clone());
        Ok(url)
    }

    /// Sends one envelope to a service's queue.
    pub async fn send(&self, service: Service, env: &Envelope) -> anyhow::Result<()> {
        let url = self.queue_url(service).await?;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(env.to_json())
            .send()
            .await
            .with_context(|| format!("send {} to {}", env.message.kind(), service))?;
        Ok(())
    }

    pub async fn topic_arn(&self) -> anyhow::Result<String> {
        self.topic_arn
            .get_or_try_init(|| async {
                let name = self.names.events_topic();
                let mut pages = self.sns.list_topics().into_paginator().send();
                while let Some(page) = pages.next().await {
                    for t in page.context("list SNS topics")?.topics.unwrap_or_default() {
                        if let Some(arn) = t.topic_arn
                            && arn.rsplit(':').next() == Some(name.as_str())
                        {
                            return Ok(arn);
                        }
                    }
                }
                anyhow::bail!("topic {name} not found (has `kopterctl bootstrap` run?)")
            })
            .await
            .cloned()
    }

    /// Publishes an event to `kopter-events` with its `event_type`
    /// attribute, for the subscriptions' filter policies.
    pub async fn publish(&self, env: &Envelope) -> anyhow::Result<()> {
        let event_type = env
            .message
            .event_type()
            .with_context(|| format!("{} is not an event type of the topic", env.message.kind()))?;
        let arn = self.topic_arn().await?;
        self.sns
            .publish()
            .topic_arn(arn)
            .message(env.to_json())
            .message_attributes(
                EVENT_TYPE_ATTRIBUTE,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(event_type.as_str())
                    .build()
                    .expect("data type is set"),
            )
            .send()
            .await
            .with_context(|| format!("publish {}", event_type.as_str()))?;
        Ok(())
    }
}
