//! Per-tenant request rate limit (GCRA, `governor`): every authenticated
//! request of a tenant takes one cell; over the limit answers 429 with
//! `Retry-After`. Limits are per process (each replica allows the rate).

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use kopter_schema::TenantId;

use crate::error::ApiError;

/// Idle tenants' state is dropped once this many tenants are tracked.
const RETAIN_ABOVE: usize = 10_000;

pub struct TenantLimiter {
    limiter: DefaultKeyedRateLimiter<TenantId>,
    clock: DefaultClock,
}

impl TenantLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request of `tenant`'s allowance.
    pub fn check(&self, tenant: &TenantId) -> Result<(), ApiError> {
        if self.limiter.len() > RETAIN_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(tenant)
            .map_err(|not_until| ApiError::RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_has_its_own_allowance() {
        let l = TenantLimiter::new(1, 3);
        let acme = TenantId::new("acme").unwrap();
        let globex = TenantId::new("globex").unwrap();
        for _ in 0..3 {
            l.check(&acme).unwrap();
        }
        match l.check(&acme) {
            Err(ApiError::RateLimited { retry_after }) => {
                assert!(retry_after.as_millis() > 0 && retry_after.as_secs() <= 1)
            }
            other => panic!("{other:?}"),
        }
        l.check(&globex).unwrap();
    }
}
