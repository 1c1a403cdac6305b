//! Environment-prefixed resource names: `{env}-kopter-{thing}`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::queues::Service;
use crate::tables::Table;

/// An environment name (`dev`, `prod`, a per-test random name...).
/// Lowercase letters, digits and `-`, 1-32 characters, so that every derived
/// name stays within SQS's 80 and DynamoDB's 255 character limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid environment name {0:?}: use 1-32 characters of lowercase letters, digits and '-'")]
pub struct EnvNameError(pub String);

impl EnvName {
    pub fn new(raw: impl Into<String>) -> Result<Self, EnvNameError> {
        let raw = raw.into();
        let ok = !raw.is_empty()
            && raw.len() <= 32
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw))
        } else {
            Err(EnvNameError(raw))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EnvName {
    type Error = EnvNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<EnvName> for String {
    fn from(v: EnvName) -> String {
        v.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Derives every physical resource name of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    env: EnvName,
}

impl Names {
    pub fn new(env: EnvName) -> Self {
        Self { env }
    }

    pub fn env(&self) -> &EnvName {
        &self.env
    }

    pub fn table(&self, table: Table) -> String {
        format!("{}-kopter-{}", self.env, table.spec().suffix)
    }

    pub fn queue(&self, service: Service) -> String {
        format!("{}-kopter-{}", self.env, service.name())
    }

    pub fn dlq(&self, service: Service) -> String {
        format!("{}-kopter-{}-dlq", self.env, service.name())
    }

    pub fn events_topic(&self) -> String {
        format!("{}-kopter-events", self.env)
    }

    /// The prefix that the customer-side role names must carry, so Kopter's
    /// task roles can be limited to `sts:AssumeRole` on `role/{prefix}*`.
    pub fn customer_role_prefix() -> &'static str {
        "KopterAccess"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_environment_prefix() {
        let n = Names::new(EnvName::new("prod").unwrap());
        assert_eq!(n.table(Table::AuditLog), "prod-kopter-audit-log");
        assert_eq!(n.queue(Service::TrailIngest), "prod-kopter-trail-ingest");
        assert_eq!(n.dlq(Service::TrailIngest), "prod-kopter-trail-ingest-dlq");
        assert_eq!(n.events_topic(), "prod-kopter-events");
    }

    #[test]
    fn longest_names_fit_aws_limits() {
        let n = Names::new(EnvName::new("x".repeat(32)).unwrap());
        for s in Service::ALL {
            assert!(n.dlq(s).len() <= 80, "{}", n.dlq(s));
        }
        for t in Table::ALL {
            assert!(n.table(t).len() <= 255);
        }
    }

    #[test]
    fn bad_env_names_are_refused() {
        for bad in ["", "Prod", "a_b", "a.b", &"x".repeat(33)] {
            assert!(EnvName::new(bad).is_err(), "{bad:?}");
        }
    }
}
