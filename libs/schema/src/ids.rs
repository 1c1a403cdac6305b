//! Validated identifiers that appear in keys.
//!
//! Tenant ids and account ids become the leading part of partition keys,
//! and `#` separates key parts, so both are validated once at the edge:
//! a value that could smuggle a separator or another tenant's prefix into a
//! key never gets past these constructors.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "invalid tenant id {0:?}: use 1-64 characters of lowercase letters, digits and '-', starting with a letter or digit"
    )]
    Tenant(String),
    #[error("invalid AWS account id {0:?}: an account id is exactly 12 digits")]
    Account(String),
}

/// A Kopter tenant (one SaaS customer). Lowercase `[a-z0-9-]`, 1-64 chars.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn new(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && !raw.starts_with('-')
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw))
        } else {
            Err(IdError::Tenant(raw))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A customer's 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    pub fn new(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        if raw.len() == 12 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw))
        } else {
            Err(IdError::Account(raw))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_id_impls {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
        impl FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
string_id_impls!(TenantId);
string_id_impls!(AccountId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_cannot_carry_key_separators() {
        assert!(TenantId::new("acme-corp").is_ok());
        assert!(TenantId::new("t1").is_ok());
        for bad in ["", "Acme", "a#b", "a b", "-x", "a/b", &"x".repeat(65)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(AccountId::new("123456789012").is_ok());
        for bad in ["12345678901", "1234567890123", "12345678901a", ""] {
            let err = AccountId::new(bad).unwrap_err();
            assert!(err.to_string().contains("12 digits"));
        }
    }

    #[test]
    fn serde_validates() {
        let err = serde_json::from_str::<TenantId>("\"BAD#\"").unwrap_err();
        assert!(err.to_string().contains("invalid tenant id"));
    }
}
