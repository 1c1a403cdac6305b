//! Every Kopter table's typed rows, key builders and store: the one place
//! services, `kopterctl`, the demo and the api read and write DynamoDB
//! through. What a service computes (the offer parser, the describe diff,
//! the cost engine, the CloudTrail reader and its rules, delivery) stays in
//! the service; what it writes or reads lives here, so no crate has to link
//! another service to read that service's rows. See `DESIGN.md` for each
//! table's writer and readers.

pub mod audit;
pub mod backup;
pub mod channels;
pub mod event;
pub mod feed;
pub mod graph;
pub mod inventory;
pub mod page;
pub mod platform;
pub mod prices;
pub mod purge;
pub mod tenants;
pub mod waste;
pub mod webhook_url;

/// The accounts table (onboarded accounts and the `_tenant` settings row)
/// — its store lives in the runtime, which every worker's context holds.
pub use kopter_runtime::accounts;
