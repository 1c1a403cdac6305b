//! The endpoints. Each handler takes its auth extractor ([`Principal`] or
//! [`Admin`]) first, so it cannot run unauthenticated, and hands the
//! principal's tenant to every data call.
//!
//! [`Principal`]: crate::auth::Principal
//! [`Admin`]: crate::auth::Admin

pub mod audit;
pub mod cost;
pub mod inventory;
pub mod me;
pub mod notifications;
pub mod prices;
pub mod settings;
pub mod waste;

use crate::error::ApiError;

/// Checks a region code's shape (`eu-west-1`, `us-gov-west-1`).
pub fn region(name: &'static str, value: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = value.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_parameter(
            name,
            format!("{value:?} is not an AWS region code like eu-west-1"),
        ))
    }
}

/// Checks a short free-text filter: 1–`max` printable characters.
pub fn short_text(name: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::bad_parameter(
            name,
            format!("must be 1 to {max} printable characters"),
        ));
    }
    Ok(())
}
