//! From a topic event to what the notifier tells: severity, text, links,
//! the rule it collapses under, and the identity it is deduplicated by.
//!
//! The identity is built from the event's own fields, never from the
//! envelope id: publishers make a new envelope when they publish again
//! (trail-ingest republishes findings for duplicate records; a describer
//! retry republishes a change), so only the body is stable across both
//! SQS redelivery and republishing.

use chrono::{DateTime, SecondsFormat, Utc};
use kopter_schema::Message;
use kopter_schema::messages::Severity;
pub use kopter_store::event::*;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The event to tell for a topic message; `None` for messages that are
/// not events or not worth telling.
pub fn from_message(msg: &Message) -> Option<Event> {
    let ev = match msg {
        Message::SecurityFinding(f) => Event {
            tenant: f.tenant.clone(),
            kind: msg.kind(),
            rule: key_safe(&f.rule),
            identity: format!("finding:{}:{}:{}", f.account, f.event_id, f.rule),
            severity: f.severity,
            title: f.summary.clone(),
            text: format!(
                "{} in account {} ({}) by {} at {}",
                f.event_name,
                f.account,
                f.region,
                f.principal.as_deref().unwrap_or("an unknown principal"),
                ts(f.at)
            ),
            at: f.at,
            account: Some(f.account.clone()),
            resource: None,
            audit: Some(AuditRef {
                pk: format!("{}#{}", f.tenant, f.at.format("%Y-%m-%d")),
                sk: kopter_store::audit::record_sort_key(f.at, &f.event_id),
            }),
        },
        Message::InventoryChanged(c) => {
            if !TOLD_INVENTORY_CHANGES.contains(&c.change.as_str()) {
                return None;
            }
            Event {
                tenant: c.tenant.clone(),
                kind: msg.kind(),
                rule: key_safe(&format!("inventory.{}.{}", c.resource_kind, c.change)),
                identity: format!(
                    "inventory:{}:{}:{}:{}:{}",
                    c.account,
                    c.region,
                    c.resource_id,
                    c.change,
                    ts(c.at)
                ),
                severity: Severity::Info,
                title: format!(
                    "{} {}",
                    capitalise(&c.resource_kind),
                    c.change.replace('_', " ")
                ),
                text: format!(
                    "{} {} in account {} ({}) {} at {}",
                    c.resource_kind,
                    c.resource_id,
                    c.account,
                    c.region,
                    c.change.replace('_', " "),
                    ts(c.at)
                ),
                at: c.at,
                account: Some(c.account.clone()),
                resource: Some(format!("{}/{}/{}", c.account, c.region, c.resource_id)),
                audit: None,
            }
        }
        Message::BackupFailed(b) => Event {
            tenant: b.tenant.clone(),
            kind: msg.kind(),
            rule: "backup.failed".into(),
            identity: format!(
                "backup:{}:{}:{}:{}",
                b.account,
                b.region,
                b.resource_id,
                ts(b.at)
            ),
            severity: Severity::Warning,
            title: "Backup failed".into(),
            text: format!(
                "Backup of {} in account {} ({}) failed at {}: {}",
                b.resource_id,
                b.account,
                b.region,
                ts(b.at),
                b.reason
            ),
            at: b.at,
            account: Some(b.account.clone()),
            resource: Some(format!("{}/{}/{}", b.account, b.region, b.resource_id)),
            audit: None,
        },
        Message::BudgetCrossed(b) => Event {
            tenant: b.tenant.clone(),
            kind: msg.kind(),
            rule: "budget.crossed".into(),
            // Once per month and threshold, however often it is recomputed.
            identity: format!("budget:{}:{}", b.month, b.threshold_percent),
            severity: if b.threshold_percent >= 100 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            title: format!("Budget {}% crossed", b.threshold_percent),
            text: format!(
                "{}: month to date {:.2} {cur} of a {:.2} {cur} budget; forecast {:.2} {cur}",
                b.month,
                b.month_to_date,
                b.budget,
                b.forecast,
                cur = b.currency
            ),
            // When it was crossed (stable across republications: the
            // aggregator records the first time), so the newest-first feed
            // shows it among the events of that hour; messages from before
            // `crossed_at` fall back to the month's first instant.
            at: b.crossed_at.unwrap_or_else(|| {
                format!("{}-01T00:00:00Z", b.month)
                    .parse()
                    .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
            }),
            account: None,
            resource: None,
            audit: None,
        },
        Message::CostSpike(c) => Event {
            tenant: c.tenant.clone(),
            kind: msg.kind(),
            rule: "cost.spike".into(),
            identity: format!("cost-spike:{}:{}", c.account, ts(c.hour)),
            severity: Severity::Warning,
            title: "Cost spike".into(),
            text: format!(
                "Account {} cost {:.2} {cur} in the hour from {}, {:.1}× the {:.2} {cur} before",
                c.account,
                c.current,
                ts(c.hour),
                c.factor,
                c.previous,
                cur = c.currency
            ),
            at: c.hour,
            account: Some(c.account.clone()),
            resource: None,
            audit: None,
        },
        Message::AccountHealth(h) => Event {
            tenant: h.tenant.clone(),
            kind: msg.kind(),
            rule: if h.healthy {
                "account.healthy".into()
            } else {
                "account.unhealthy".into()
            },
            identity: format!("health:{}:{}:{}", h.account, h.healthy, ts(h.at)),
            severity: if h.healthy {
                Severity::Info
            } else {
                Severity::Critical
            },
            title: if h.healthy {
                "Account reachable again".into()
            } else {
                "Account unreachable".into()
            },
            text: format!(
                "Account {} is {} since {}{}",
                h.account,
                if h.healthy { "healthy" } else { "unhealthy" },
                ts(h.at),
                h.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            at: h.at,
            account: Some(h.account.clone()),
            resource: None,
            audit: None,
        },
        Message::OrgAccountChanged(c) => {
            use kopter_schema::messages::OrgChange;
            let (rule, severity, title, what) = match c.change {
                OrgChange::Onboarded => (
                    "org.onboarded",
                    Severity::Info,
                    "Account joined from the organization",
                    "onboarded with the member role",
                ),
                OrgChange::Paused => (
                    "org.paused",
                    Severity::Warning,
                    "Organization account paused",
                    "no longer described",
                ),
                OrgChange::Resumed => (
                    "org.resumed",
                    Severity::Info,
                    "Organization account active again",
                    "described again",
                ),
            };
            Event {
                tenant: c.tenant.clone(),
                kind: msg.kind(),
                rule: rule.into(),
                identity: format!("org:{}:{:?}:{}", c.account, c.change, ts(c.at)),
                severity,
                title: title.into(),
                text: format!(
                    "Account {} of the organization managed by {} is {} ({what})",
                    c.account, c.management_account, c.status
                ),
                at: c.at,
                account: Some(c.account.clone()),
                resource: None,
                audit: None,
            }
        }
        Message::WasteFinding(w) => {
            let resolved = w.status == "resolved";
            let monthly = w
                .monthly_usd
                .map_or_else(|| "an unknown amount".into(), |m| format!("{m:.2} USD"));
            Event {
                tenant: w.tenant.clone(),
                kind: msg.kind(),
                rule: key_safe(&format!("waste.{}", w.rule)),
                // One event per episode (its `since`) and status, however
                // often the hour is evaluated again.
                identity: format!(
                    "waste:{}:{}:{}:{}:{}",
                    w.account,
                    w.resource_id,
                    w.rule,
                    ts(w.since),
                    w.status
                ),
                severity: if resolved {
                    Severity::Info
                } else {
                    kopter_store::waste::severity(w.monthly_usd)
                },
                title: if resolved {
                    format!("Waste resolved: {} {}", w.rule, w.resource_id)
                } else {
                    format!("Waste: {} {}, {monthly} a month", w.rule, w.resource_id)
                },
                text: if resolved {
                    format!(
                        "{} in account {} ({}): {} ({}); it cost {:.2} USD since {}",
                        w.resource_id,
                        w.account,
                        w.region,
                        w.resolution.as_deref().unwrap_or("resolved"),
                        w.rule,
                        w.accrued_usd,
                        ts(w.since)
                    )
                } else {
                    format!(
                        "{} in account {} ({}): {}. Cost {:.2} USD since {}{}; leaving it costs {monthly} a month. {}",
                        w.resource_id,
                        w.account,
                        w.region,
                        w.detail,
                        w.accrued_usd,
                        ts(w.since),
                        if w.unpriced_hours > 0 {
                            format!(" (+{} hours without a price)", w.unpriced_hours)
                        } else {
                            String::new()
                        },
                        w.action
                    )
                },
                at: w.at,
                account: Some(w.account.clone()),
                resource: Some(format!("{}/{}/{}", w.account, w.region, w.resource_id)),
                audit: None,
            }
        }
        _ => return None,
    };
    Some(ev)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kopter_schema::messages::{InventoryChanged, SecurityFinding};
    use kopter_schema::{AccountId, TenantId};

    fn finding(event_id: &str) -> Message {
        Message::SecurityFinding(SecurityFinding {
            tenant: TenantId::new("acme").unwrap(),
            account: AccountId::new("111122223333").unwrap(),
            region: "us-east-1".into(),
            rule: "console-login-failed".into(),
            severity: Severity::Info,
            event_id: event_id.into(),
            event_name: "ConsoleLogin".into(),
            principal: Some("arn:aws:iam::111122223333:user/bob".into()),
            at: "2026-01-02T03:04:05Z".parse().unwrap(),
            summary: "Failed console sign-in".into(),
        })
    }

    /// A finding links to its record's row by the key the audit log gave
    /// the row, also for an `eventID` the row's key holds hashed (longer
    /// than a key part may be, or with `#`).
    #[test]
    fn findings_link_to_the_row_key_of_odd_event_ids() {
        use kopter_store::audit::{AuditRecord, AuditRow};
        for id in ["e1", "e#r1", &"x".repeat(600)] {
            let link = from_message(&finding(id)).unwrap().audit.unwrap();
            let Message::SecurityFinding(f) = finding(id) else {
                unreachable!()
            };
            let rec = AuditRecord {
                event_id: id.into(),
                event_time: f.at,
                event_source: "signin.amazonaws.com".into(),
                event_name: f.event_name.clone(),
                aws_region: f.region.clone(),
                recipient_account: None,
                user_account: None,
                principal_arn: f.principal.clone(),
                principal_type: None,
                source_ip: None,
                user_agent: None,
                read_only: None,
                error_code: None,
                error_message: None,
                resources: vec![],
                raw: "{}".into(),
                mfa_used: None,
                console_login: None,
            };
            let row = AuditRow::new(&f.tenant, &f.account, &rec, vec![], 1);
            assert_eq!((link.pk, link.sk), (row.pk, row.sk), "{id:.20}");
        }
    }

    #[test]
    fn findings_are_identified_by_account_event_and_rule() {
        let a = from_message(&finding("e1")).unwrap();
        let b = from_message(&finding("e1")).unwrap();
        let c = from_message(&finding("e2")).unwrap();
        assert_eq!(a.identity, b.identity);
        assert_ne!(a.identity, c.identity);
        assert_eq!(a.rule, "console-login-failed");
        assert_eq!(
            a.audit.unwrap(),
            AuditRef {
                pk: "acme#2026-01-02".into(),
                sk: "2026-01-02T03:04:05.000Z#e1".into()
            }
        );
    }

    #[test]
    fn routine_inventory_changes_are_not_told() {
        let change = |c: &str| {
            Message::InventoryChanged(InventoryChanged {
                tenant: TenantId::new("acme").unwrap(),
                account: AccountId::new("111122223333").unwrap(),
                region: "us-east-1".into(),
                resource_id: "i-1".into(),
                resource_kind: "instance".into(),
                change: c.into(),
                at: Utc::now(),
                detail: serde_json::Value::Null,
            })
        };
        assert!(from_message(&change("state_changed")).is_none());
        assert!(from_message(&change("created")).is_none());
        let t = from_message(&change("terminated")).unwrap();
        assert_eq!(t.rule, "inventory.instance.terminated");
        assert_eq!(t.title, "Instance terminated");
    }

    #[test]
    fn stable_ids_are_stable_and_distinct() {
        assert_eq!(stable_id("a"), stable_id("a"));
        assert_ne!(stable_id("a"), stable_id("b"));
        assert_eq!(stable_id("").len(), 32);
        // FNV-1a 128 of "" is its offset basis.
        assert_eq!(stable_id(""), "6c62272e07bb014262b821756295c58d");
    }

    #[test]
    fn key_safe_keeps_separators_out() {
        assert_eq!(key_safe("a#b/C"), "a_b__");
    }

    fn crossed(at: Option<&str>) -> Message {
        Message::BudgetCrossed(kopter_schema::messages::BudgetCrossed {
            tenant: TenantId::new("acme").unwrap(),
            month: "2026-11".into(),
            threshold_percent: 100,
            budget: 100.0,
            month_to_date: 101.0,
            forecast: 120.0,
            currency: "USD".into(),
            crossed_at: at.map(|a| a.parse().unwrap()),
        })
    }

    #[test]
    fn a_budget_crossing_is_dated_when_it_happened() {
        let ev = from_message(&crossed(Some("2026-11-29T15:00:00Z"))).unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(ev.at, at("2026-11-29T15:00:00Z"));
        assert_eq!(ev.severity, Severity::Critical);
        // Same identity whatever the time: one notification per threshold
        // and month. Messages from before `crossed_at`: the month's start.
        let old = from_message(&crossed(None)).unwrap();
        assert_eq!(old.identity, ev.identity);
        assert_eq!(old.at, at("2026-11-01T00:00:00Z"));
    }
}
