//! A tenant's delivery channels, in the tenant-settings row of the accounts
//! table (`pk = {tenant}`, `sk = _tenant`).
//!
//! Attributes are prefixed `notify_` and written with `UpdateItem`, so other
//! settings on the same row (budgets, …) are left alone:
//!
//! | attribute | meaning |
//! |---|---|
//! | `notify_webhook` | Slack-compatible incoming-webhook URL (never logged) |
//! | `notify_webhook_min_severity` | lowest severity sent there (default `info`) |
//! | `notify_email` | list of recipient addresses |
//! | `notify_email_min_severity` | lowest severity emailed (default `warning`) |
//! | `notify_digest` | send the daily digest to the channels (default true) |
//! | `notify_{webhook,email}_failing` | `{reason, since}` once a channel failed past its limit |

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use kopter_schema::items::{TENANT_SETTINGS_SK, keys};
use kopter_schema::messages::Severity;
use kopter_schema::{Names, Table, TenantId};
use serde::{Deserialize, Serialize};

use crate::webhook_url::WebhookUrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Webhook,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Webhook, Channel::Email];

    /// Also the metric label.
    pub const fn name(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
    }

    fn failing_attr(self) -> &'static str {
        match self {
            Channel::Webhook => "notify_webhook_failing",
            Channel::Email => "notify_email_failing",
        }
    }
}

/// Why and since when a channel is marked failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failing {
    pub reason: String,
    pub since: DateTime<Utc>,
}

/// A tenant's channels as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantChannels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_webhook: Option<WebhookUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_webhook_min_severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify_email: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_email_min_severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_digest: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_webhook_failing: Option<Failing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_email_failing: Option<Failing>,
}

impl TenantChannels {
    pub fn configured(&self, ch: Channel) -> bool {
        match ch {
            Channel::Webhook => self.notify_webhook.is_some(),
            Channel::Email => !self.notify_email.is_empty(),
        }
    }

    pub fn min_severity(&self, ch: Channel) -> Severity {
        match ch {
            Channel::Webhook => self.notify_webhook_min_severity.unwrap_or(Severity::Info),
            Channel::Email => self.notify_email_min_severity.unwrap_or(Severity::Warning),
        }
    }

    pub fn digest(&self) -> bool {
        self.notify_digest.unwrap_or(true)
    }

    pub fn failing(&self, ch: Channel) -> Option<&Failing> {
        match ch {
            Channel::Webhook => self.notify_webhook_failing.as_ref(),
            Channel::Email => self.notify_email_failing.as_ref(),
        }
    }
}

/// A change to a tenant's channels (`kopterctl channels set`). `None`
/// leaves a setting as it is. Changing a channel clears its failing mark.
#[derive(Debug, Clone, Default)]
pub struct ChannelUpdate {
    /// `Some(None)` removes the webhook.
    pub webhook: Option<Option<WebhookUrl>>,
    pub webhook_min_severity: Option<Severity>,
    /// `Some(vec![])` removes email delivery.
    pub email: Option<Vec<String>>,
    pub email_min_severity: Option<Severity>,
    pub digest: Option<bool>,
    /// Clear failing marks without changing anything else.
    pub reset: bool,
}

/// Basic shape check of an email address (SES does the rest).
pub fn valid_email(addr: &str) -> bool {
    let Some((local, domain)) = addr.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && addr.matches('@').count() == 1
        && !addr
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;".contains(c))
}

#[derive(Clone, Debug)]
pub struct ChannelStore {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
}

impl ChannelStore {
    pub fn new(ddb: aws_sdk_dynamodb::Client, names: &Names) -> Self {
        Self {
            ddb,
            table: names.table(Table::Accounts),
        }
    }

    fn key(tenant: &TenantId) -> [(String, AttributeValue); 2] {
        [
            ("pk".into(), AttributeValue::S(keys::account_pk(tenant))),
            ("sk".into(), AttributeValue::S(TENANT_SETTINGS_SK.into())),
        ]
    }

    /// The tenant's channels (none configured if the row does not exist).
    pub async fn get(&self, tenant: &TenantId) -> anyhow::Result<TenantChannels> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant).into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("read the channels of tenant {tenant}"))?;
        match out.item {
            Some(item) => serde_dynamo::from_item(item)
                .with_context(|| format!("decode the channels of tenant {tenant}")),
            None => Ok(TenantChannels::default()),
        }
    }

    pub async fn update(&self, tenant: &TenantId, u: &ChannelUpdate) -> anyhow::Result<()> {
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut values = std::collections::HashMap::new();
        let sev = |s: Severity| AttributeValue::S(crate::event::severity_name(s).into());
        match &u.webhook {
            Some(Some(url)) => {
                set.push("notify_webhook = :w");
                values.insert(":w".to_owned(), AttributeValue::S(url.expose().to_owned()));
            }
            Some(None) => remove.push("notify_webhook"),
            None => {}
        }
        if u.webhook.is_some() || u.reset {
            remove.push(Channel::Webhook.failing_attr());
        }
        if let Some(s) = u.webhook_min_severity {
            set.push("notify_webhook_min_severity = :ws");
            values.insert(":ws".to_owned(), sev(s));
        }
        match &u.email {
            Some(addrs) if !addrs.is_empty() => {
                set.push("notify_email = :e");
                values.insert(
                    ":e".to_owned(),
                    AttributeValue::L(addrs.iter().cloned().map(AttributeValue::S).collect()),
                );
            }
            Some(_) => remove.push("notify_email"),
            None => {}
        }
        if u.email.is_some() || u.reset {
            remove.push(Channel::Email.failing_attr());
        }
        if let Some(s) = u.email_min_severity {
            set.push("notify_email_min_severity = :es");
            values.insert(":es".to_owned(), sev(s));
        }
        if let Some(d) = u.digest {
            set.push("notify_digest = :d");
            values.insert(":d".to_owned(), AttributeValue::Bool(d));
        }
        let mut expr = String::new();
        if !set.is_empty() {
            expr.push_str("SET ");
            expr.push_str(&set.join(", "));
        }
        if !remove.is_empty() {
            expr.push_str(" REMOVE ");
            expr.push_str(&remove.join(", "));
        }
        if expr.is_empty() {
            return Ok(());
        }
        self.ddb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant).into_iter().collect()))
            .update_expression(expr.trim())
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .send()
            .await
            .with_context(|| format!("update the channels of tenant {tenant}"))?;
        Ok(())
    }

    /// Marks a channel failing with a reason (which must not contain the
    /// webhook URL: callers pass errors stripped of it).
    pub async fn mark_failing(
        &self,
        tenant: &TenantId,
        ch: Channel,
        reason: &str,
    ) -> anyhow::Result<()> {
        let failing = Failing {
            reason: reason.chars().take(1000).collect(),
            since: Utc::now(),
        };
        self.ddb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant).into_iter().collect()))
            .update_expression("SET #f = :f")
            .expression_attribute_names("#f", ch.failing_attr())
            .expression_attribute_values(
                ":f",
                AttributeValue::M(serde_dynamo::to_item(&failing).context("encode failing")?),
            )
            .send()
            .await
            .with_context(|| format!("mark the {} channel of {tenant} failing", ch.name()))?;
        Ok(())
    }

    /// Clears a failing mark after a successful delivery.
    pub async fn clear_failing(&self, tenant: &TenantId, ch: Channel) -> anyhow::Result<()> {
        self.ddb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant).into_iter().collect()))
            .update_expression("REMOVE #f")
            .expression_attribute_names("#f", ch.failing_attr())
            .send()
            .await
            .with_context(|| format!("clear the failing mark of {tenant}'s {}", ch.name()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shapes() {
        assert!(valid_email("ops@example.com"));
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@",
            "ops@example",
            "a@b@c.com",
            "a b@c.com",
            "a@c.com,b@d.com",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let c = TenantChannels::default();
        assert!(!c.configured(Channel::Webhook) && !c.configured(Channel::Email));
        assert_eq!(c.min_severity(Channel::Webhook), Severity::Info);
        assert_eq!(c.min_severity(Channel::Email), Severity::Warning);
        assert!(c.digest());
    }
}
