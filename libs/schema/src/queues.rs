//! Services, their queues, and which events each receives from the
//! `kopter-events` topic.
//!
//! Every service long-polls its own queue; each queue has a DLQ with a
//! redrive policy. Events published to the topic carry a string message
//! attribute [`EVENT_TYPE_ATTRIBUTE`]; a subscription's filter policy lists
//! the event types its queue wants. Subscriptions use raw message delivery,
//! so a queue message body is exactly the [`crate::Envelope`] JSON.

use std::fmt;
use std::str::FromStr;

use crate::messages::EventType;

/// SNS message attribute that filter policies match on.
pub const EVENT_TYPE_ATTRIBUTE: &str = "event_type";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Describer,
    Pricing,
    Aggregator,
    TrailIngest,
    Notifier,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Describer,
        Service::Pricing,
        Service::Aggregator,
        Service::TrailIngest,
        Service::Notifier,
    ];

    /// The service's name: its binary, queue suffix and metrics label.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Describer => "describer",
            Service::Pricing => "pricing",
            Service::Aggregator => "aggregator",
            Service::TrailIngest => "trail-ingest",
            Service::Notifier => "notifier",
        }
    }

    /// Default port of the service's `/metrics` `/healthz` `/readyz` server.
    pub const fn default_http_port(self) -> u16 {
        match self {
            Service::Describer => 9101,
            Service::Pricing => 9102,
            Service::Aggregator => 9103,
            Service::TrailIngest => 9104,
            Service::Notifier => 9105,
        }
    }

    /// Whether a message of this kind belongs on this service's queue:
    /// its own direct messages, plus the events it subscribes to.
    pub fn accepts(self, kind: &str) -> bool {
        let direct = match self {
            Service::Describer => kind.starts_with("describe.") || kind.starts_with("backup."),
            Service::Pricing => kind.starts_with("pricing."),
            Service::Aggregator => kind.starts_with("aggregate."),
            Service::TrailIngest => false,
            Service::Notifier => kind.starts_with("notify."),
        };
        direct || self.subscribed_events().iter().any(|e| e.as_str() == kind)
    }

    /// Event types this service's queue receives from the topic.
    pub const fn subscribed_events(self) -> &'static [EventType] {
        match self {
            Service::Describer => &[EventType::DescribeTargeted],
            Service::Pricing => &[],
            Service::Aggregator => &[EventType::InventoryChanged, EventType::PricesUpdated],
            Service::TrailIngest => &[],
            Service::Notifier => &[
                EventType::SecurityFinding,
                EventType::InventoryChanged,
                EventType::BackupFailed,
                EventType::BudgetCrossed,
                EventType::CostSpike,
                EventType::AccountHealth,
                EventType::OrgAccountChanged,
                EventType::WasteFinding,
            ],
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.name() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Service::ALL.iter().map(|s| s.name()).collect();
                format!("unknown service {s:?} (known: {})", known.join(", "))
            })
    }
}

/// A topic subscription: which queue, and its filter policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub service: Service,
    pub events: &'static [EventType],
}

impl Subscription {
    /// Every subscription of the `kopter-events` topic.
    pub fn all() -> Vec<Subscription> {
        Service::ALL
            .into_iter()
            .filter(|s| !s.subscribed_events().is_empty())
            .map(|service| Subscription {
                service,
                events: service.subscribed_events(),
            })
            .collect()
    }

    /// The SNS filter policy JSON (`{"event_type": ["a", "b"]}`).
    pub fn filter_policy(&self) -> String {
        let names: Vec<&str> = self.events.iter().map(|e| e.as_str()).collect();
        serde_json::json!({ EVENT_TYPE_ATTRIBUTE: names }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_policy_lists_event_types() {
        let sub = Subscription::all()
            .into_iter()
            .find(|s| s.service == Service::Aggregator)
            .unwrap();
        assert_eq!(
            sub.filter_policy(),
            r#"{"event_type":["inventory.changed","prices.updated"]}"#
        );
    }

    #[test]
    fn every_kind_has_exactly_one_direct_home_or_subscribers() {
        use crate::Message;
        for kind in Message::KINDS {
            let homes: Vec<_> = Service::ALL.iter().filter(|s| s.accepts(kind)).collect();
            assert!(!homes.is_empty(), "{kind} has no consumer");
        }
        assert!(Service::Describer.accepts("backup.run"));
        assert!(Service::Describer.accepts("describe.targeted"));
        assert!(!Service::Describer.accepts("pricing.refresh_all"));
        assert!(Service::Notifier.accepts("security.finding"));
        assert!(!Service::Notifier.accepts("prices.updated"));
    }

    #[test]
    fn service_names_round_trip() {
        for s in Service::ALL {
            assert_eq!(s.name().parse::<Service>().unwrap(), s);
        }
        assert!("nope".parse::<Service>().unwrap_err().contains("known"));
    }
}
