//! The `inventory` and `ec2-events` tables: the current row of every
//! instance, volume and snapshot, and every state change (the history the
//! aggregator prices).

mod rows;
mod store;

pub use rows::*;
pub use store::*;
