//! Cost series, per-resource cost and budgets (`/v1/cost`, `/v1/resources/{id}/cost`, `/v1/budgets`).

/// What the cost endpoints read and write.
pub trait CostData {}
